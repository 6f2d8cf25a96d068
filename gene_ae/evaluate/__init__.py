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

import importlib

# name -> the module that defines it, imported on first use: `gene-ae search` imports the evaluate config for
# its help, and metrics.py pulls in scipy.stats (1 s of every start-up before this).
_EXPORTS = {
    "MISSING_LABELS": "gene_ae.core.labels", "clean_label": "gene_ae.core.labels", "parse_label": "gene_ae.core.labels",
    "DEFAULT_METHODS": "gene_ae.evaluate.config", "EvalConfig": "gene_ae.evaluate.config",
    **dict.fromkeys(("EmbeddingMethod", "Method", "RerankedMethod", "SourmashMethod", "VectorIndex", "build_methods"),
                    "gene_ae.evaluate.methods"),
    **dict.fromkeys(("copy_recall", "cross_set_retrieval", "distance_faithfulness", "label_retrieval",
                     "mutation_recall", "mutation_retrieval", "reconstruction"), "gene_ae.evaluate.metrics"),
    "render_markdown": "gene_ae.evaluate.report", "run_eval": "gene_ae.evaluate.report",
}  # fmt: skip
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
