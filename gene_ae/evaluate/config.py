"""What `gene-ae eval` measures and with which methods: one typed config, recorded in every report."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_METHODS = (
    "gene-ae", "5-mer", "6-mer", "7-mer", "8-mer", "5-mer@dim", "6-mer@dim", "7-mer@dim", "sourmash-k11",
    "sourmash-k21",
)  # fmt: skip


@dataclass
class EvalConfig:
    divergences: tuple[float, ...] = (0.01, 0.05, 0.10, 0.20, 0.30)  # mutation events per base
    n_queries: int = 200  # sequences mutated per divergence (and reconstructed)
    seed: int = 0
    k_values: tuple[int, ...] = (1, 10, 100)  # recall@k of mutated copies (k over the collection's size: all of it)
    precision_k: tuple[int, ...] = (1, 10)  # precision@k of same-label neighbours
    spearman_pairs: int = 300  # random pairs, and about as many near pairs, for distance faithfulness
    window: int = 0  # reconstruction: bases compared per sequence; 0 = the encoder's window
    reconstruction_lengths: tuple[int, ...] = (64, 128, 256)  # also these shorter prefixes: the curve by length
    methods: tuple[str, ...] = DEFAULT_METHODS  # "gene-ae", "K-mer", "K-mer@SIZE", "K-mer@dim", "sourmash-kK"
    sourmash_ksize: int = 21
    sourmash_scaled: int = 0  # 0 = pick from the collection's median length (baselines.auto_scaled)
    align_max_bases: int = 5000  # alignment identity compares at most this many leading bases of each sequence
    label_queries: int = 2000  # leave-one-out queries at most (sampled when the collection is larger)
    batch_size: int = 64  # encoder batch size
    rerank: int = 0  # also score each method with its top `rerank` hits re-ordered by alignment ("+align" rows)
    align_queries: int = 20  # sources whose copies are also aligned against the whole collection (the ceiling)
    label_regex: str = ""  # group labels by this regex's first group (see clean_label); "" = labels as given
