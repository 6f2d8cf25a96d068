"""The library behind `gene-ae eval`: how well each method finds relatives, side by side in one run.

Every method (the encoder, k-mer profiles, sourmash) answers the same questions on the same queries:
- mutation retrieval: does a mutated copy of a sequence find its original (recall@k per divergence)?
- label retrieval: are a sequence's nearest neighbours in the same family or genus (leave-one-out)?
- cross-set retrieval: does a gene from one species find its family in another species' genes?
- distance faithfulness: does similarity rank pairs the way alignment identity does (Spearman)?
- reconstruction (encoder only): how much of the input the decoder gives back.

config.py holds EvalConfig, methods.py the method adapters, metrics.py the measurements and report.py
`run_eval` (report assembly, markdown, plots, MLflow).
"""

from __future__ import annotations

from gene_ae.core.labels import MISSING_LABELS, clean_label, parse_label
from gene_ae.evaluate.config import DEFAULT_METHODS, EvalConfig
from gene_ae.evaluate.methods import (
    EmbeddingMethod,
    Method,
    RerankedMethod,
    SourmashMethod,
    VectorIndex,
    build_methods,
)
from gene_ae.evaluate.metrics import (
    copy_recall,
    cross_set_retrieval,
    distance_faithfulness,
    label_retrieval,
    mutation_recall,
    mutation_retrieval,
    reconstruction,
)
from gene_ae.evaluate.report import render_markdown, run_eval

__all__ = [
    "DEFAULT_METHODS",
    "MISSING_LABELS",
    "EmbeddingMethod",
    "EvalConfig",
    "Method",
    "RerankedMethod",
    "SourmashMethod",
    "VectorIndex",
    "build_methods",
    "clean_label",
    "copy_recall",
    "cross_set_retrieval",
    "distance_faithfulness",
    "label_retrieval",
    "mutation_recall",
    "mutation_retrieval",
    "parse_label",
    "reconstruction",
    "render_markdown",
    "run_eval",
]
