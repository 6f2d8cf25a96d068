"""The model's typed configuration: sizes of the trunk, the latent and the search vector."""

from __future__ import annotations

import math
from dataclasses import dataclass

POOLINGS = ("mean", "attention", "max")


@dataclass
class ModelConfig:
    vocab_size: int = 8
    embed_dim: int = 64
    channels: int = 192  # conv width
    downsample: int = 8  # total stride of the encoder conv stack; power of 2; 1..64
    lstm_hidden: int = 192
    lstm_layers: int = 1
    bidirectional: bool = True
    vector_dim: int = 512  # size of the search vector
    latent_channels: int = 8  # latent values per coarse position: a window's latent is window/downsample x this
    window: int = 512  # longest window trained and decoded; must be divisible by downsample
    variational: bool = False  # the code is sampled (mu, logvar) in training, with a KL term
    pooling: str = "mean"  # "mean" | "attention" | "max"  (masked; the trunk branch only)
    vector_trunk: bool = False  # add the pooled conv + LSTM trunk to the search vector as one more branch
    dropout: float = 0.0
    kmer_sizes: tuple[int, ...] = (5, 7)  # k-mer bag branches added to the search vector; () for conv-LSTM only
    canonical_kmers: bool = True  # count a k-mer and its reverse complement as one (strand-invariant)
    kmer_buckets: int = 1 << 16  # k-mer vocabularies larger than this are hashed into this many rows
    freeze_kmers: bool = False  # ablation: keep the k-mer vectors at their random initialisation
    kmer_init_std: float = 1.0  # bags are normalised, so this only sets how fast Adam's steps move them

    def __post_init__(self) -> None:
        ds = self.downsample
        if not (1 <= ds <= 64 and ds & (ds - 1) == 0):
            raise ValueError(f"downsample must be a power of 2 in 1..64, got {ds}")
        if self.window < 1 or self.window % ds:
            raise ValueError(f"window ({self.window}) must be a positive multiple of downsample ({ds})")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        self.kmer_sizes = tuple(int(k) for k in self.kmer_sizes)
        if any(not 1 <= k <= 15 for k in self.kmer_sizes):
            raise ValueError(f"kmer_sizes must be in 1..15, got {self.kmer_sizes}")
        if self.channels < 8 or self.channels % 4:
            raise ValueError(f"channels must be a multiple of 4 and at least 8, got {self.channels}")
        if self.latent_channels < 1 or self.vector_dim < 1 or self.kmer_buckets < 1:
            raise ValueError("latent_channels, vector_dim and kmer_buckets must be positive")
        if not self.kmer_sizes and not self.vector_trunk:
            raise ValueError("the search vector needs a branch: give kmer_sizes or set vector_trunk")

    @property
    def n_scales(self) -> int:
        """Number of stride-2 conv blocks (and of upsampling blocks in the decoder)."""
        return int(math.log2(self.downsample))

    @property
    def n_branches(self) -> int:
        """Paths summed into the search vector: one per k-mer bag, plus the trunk's."""
        return len(self.kmer_sizes) + int(self.vector_trunk)

    @property
    def latent_size(self) -> int:
        """Values in the latent of one full window."""
        return self.window // self.downsample * self.latent_channels

    def kmer_rows(self, k: int) -> int:
        """Rows of the k-mer bag for k (the last is the padding row)."""
        return min(4**k, self.kmer_buckets) + 1
