"""The model's typed configuration (checked by gene_ae/core/settings.py like every section)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import ClassVar

from gene_ae.core.settings import check_fields, show_value
from gene_ae.model.features import ModelFeature, parse_features
from shard_tools.alphabet import TOKENS
from shard_tools.options import Range

POOLINGS = ("mean", "attention", "max")
CONFIG_FILE = "config.json"  # a checkpoint's run config (gene_ae/model/checkpoint.py)
# [model] keys renamed since checkpoints were first written: old config.json files (and old TOML) still load.
RENAMED = {"latent_dim": "vector_dim", "code_dim": "latent_channels"}


def load_sections(directory: str | Path) -> dict:
    """A checkpoint's config.json as written: the run config's sections as plain values (no torch needed). A file
    that is not a JSON object (cut short, overwritten) is a one-line error naming it."""
    path = Path(directory) / CONFIG_FILE
    try:
        sections = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: damaged checkpoint config, not JSON ({exc})") from None
    if not isinstance(sections, dict):
        raise ValueError(f"{path}: damaged checkpoint config, a JSON {type(sections).__name__} and not an object")
    model = sections.get("model")
    if isinstance(model, dict) and model.get("vector_bits") and "code_views" not in model:
        model["code_views"] = True  # written before stop 41, when a coded vector was trained coded on both sides
    return sections


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
    # 0: the search vector is float. 8: it is trained as an 8-bit code: each value of the unit vector rounded to a
    # multiple of 1/127 (straight-through gradients, as the latent's levels), vector_dim bytes a record (the index's
    # sq8 codec stores it on its own grid, 256 levels over +-vectors.SQ8_RANGE, not this one) (issue 33). 1: trained
    # as its signs (vector_dim bits a record, the eval's gene-ae@Nbit; docs/RESULTS.md, stops 34 and 41)
    vector_bits: int = 0
    # With vector_bits: whether the views (in training the queries of a search) are coded too. False: only what an
    # index stores is coded (the windows and their siblings, as records), the views stay float, as a search
    # compares a float query with the stored codes (vectors.build_signs, faiss's sq8): the asymmetric form the code
    # is used in; on a 16S val split its signs beat the symmetric form's by 0.04-0.09 recall@1 at every divergence
    # (docs/RESULTS.md, stop 41). True: both sides coded, as every vector_bits model before stop 41 was trained
    code_views: bool = False
    # 0: no product code. N: the search vector is trained as N one-byte codes (N sub-vectors, each the nearest of
    # 256 learned centroids: layers.ProductCode), the product-quantised code an index stores in N bytes (issue 33)
    vector_pq: int = 0
    latent_channels: int = 8  # latent values per coarse position: a window's latent is window/downsample x this
    # Each latent value is rounded to one of this many levels (finite scalar quantisation, straight-through
    # gradients), so the latent as stored is latent_channels x log2(levels) / downsample bits a base (2 for the
    # defaults, the size of the sequence itself; 0.98 per base on val windows, docs/RESULTS.md); 0 = float32
    latent_levels: int = 4
    window: int = 512  # longest window trained and decoded; must be divisible by downsample
    variational: bool = False  # the code is sampled (mu, logvar) in training, with a KL term
    pooling: str = "mean"  # "mean" | "attention" | "max"  (masked; the trunk branch only)
    vector_trunk: bool = False  # add the pooled conv + LSTM trunk to the search vector as one more branch
    # add the conv trunk's per-position features (before the LSTM), projected and summed over the sequence, to
    # the search vector: a branch whose weight starts at 0 (the vector starts equal to the bags') and is learned
    vector_conv: bool = False
    # learned fuzzy spaced seeds (model/seeds.py) as one more branch of the search vector: this many stride-1
    # conv filters over one-hot bases, each `seed_width` wide, caring about `seed_care` positions and firing when
    # `seed_need` match, on both strands, summed over the sequence, at a learned weight that starts at
    # seed_init_weight; 0 = no seed branch
    vector_seeds: int = 0
    seed_width: int = 12
    seed_care: int = 8
    seed_need: int = 6
    seed_init_weight: float = 1.0
    freeze_seeds: bool = False  # keep the seeds' filters at their random fuzzy seeds (centre and projection train)
    dropout: float = 0.0
    kmer_sizes: tuple[int, ...] = (5, 7)  # k-mer bag branches added to the search vector; () for conv-LSTM only
    canonical_kmers: bool = True  # count a k-mer and its reverse complement as one (strand-invariant)
    kmer_buckets: int = 1 << 16  # k-mer vocabularies larger than this are hashed into this many rows
    freeze_kmers: bool = False  # ablation: keep the k-mer vectors at their random initialisation
    kmer_init_std: float = 1.0  # bags are normalised, so this only sets how fast Adam's steps move them
    features: tuple[ModelFeature, ...] = ()  # the user's features in the vector or as a signal (model/features.py)

    OWN_CHECKS: ClassVar[tuple[str, ...]] = ("features",)

    LIMITS: ClassVar[dict[str, Range]] = {
        "vocab_size": Range(len(TOKENS)),  # every token of the shard alphabet has a row
        "embed_dim": Range(1),
        "channels": Range(8),  # and a multiple of 4
        "downsample": Range(1, 64),  # and a power of 2
        "lstm_hidden": Range(1),
        "lstm_layers": Range(1),
        "vector_dim": Range(1),
        "latent_channels": Range(1),
        "latent_levels": Range(0, 256),  # and not 1
        "vector_bits": Range(0, 8),  # 0 or 8
        "vector_pq": Range(0),  # and dividing vector_dim
        "window": Range(1),  # and a multiple of downsample
        "dropout": Range(0, 1, high_open=True),
        "kmer_sizes": Range(1, 15),  # each
        "kmer_buckets": Range(1),
        "kmer_init_std": Range(0, low_open=True),
        "vector_seeds": Range(0),
        "seed_width": Range(1, 64),
        "seed_care": Range(1),  # and at most seed_width
        "seed_need": Range(1),  # and at most seed_care
        "seed_init_weight": Range(0),
    }

    def __post_init__(self) -> None:
        check_fields(self, "model")
        self.features = parse_features(self.features)
        ds = self.downsample
        if ds & (ds - 1):
            raise ValueError(f"model.downsample: must be a power of 2 in [1, 64], got {ds}")
        if self.window % ds:
            raise ValueError(f"model.window: must be a multiple of model.downsample ({ds}), got {self.window}")
        if self.channels % 4:
            raise ValueError(f"model.channels: must be a multiple of 4 and >= 8, got {self.channels}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"model.pooling: must be one of {', '.join(POOLINGS)}, got {show_value(self.pooling)}")
        if not self.kmer_sizes and not (self.vector_trunk or self.vector_conv or self.vector_seeds):
            raise ValueError(
                "model.kmer_sizes: must name a k-mer bag unless model.vector_trunk, model.vector_conv or "
                "model.vector_seeds is set, got ()"
            )
        if self.seed_care > self.seed_width:
            raise ValueError(f"model.seed_care: at most model.seed_width ({self.seed_width}), got {self.seed_care}")
        if self.seed_need > self.seed_care:
            raise ValueError(f"model.seed_need: at most model.seed_care ({self.seed_care}), got {self.seed_need}")
        if self.vector_pq and (self.vector_dim % self.vector_pq or self.vector_bits):
            raise ValueError(f"model.vector_pq: {self.vector_pq} must divide vector_dim {self.vector_dim}, without "
                             "vector_bits")  # fmt: skip
        if self.vector_bits not in (0, 1, 8):
            raise ValueError(f"model.vector_bits: 0 (float), 1 (the stored sign bits) or 8 (the stored 8-bit code), "
                             f"got {self.vector_bits}")  # fmt: skip
        if self.latent_levels == 1:
            raise ValueError("model.latent_levels: 0 (float latent) or 2..256 levels, got 1")
        if self.latent_levels and self.variational:
            raise ValueError(
                "model.variational: a variational latent is continuous: give model.latent_levels=0 with it "
                f"(it is {self.latent_levels}: quantised)"
            )

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        """[model] from plain values (a checkpoint's config.json): renamed keys read by their new names, an
        unknown key a one-line error; checked as every section is."""
        if not isinstance(values, dict):
            raise ValueError(f"config section [model] must be a table of keys, got {values!r:.60}")
        known = {f.name for f in fields(cls)}
        out = {}
        for key, value in values.items():
            key = RENAMED.get(key, key)
            if key not in known:
                raise ValueError(f"unknown config key model.{key:.60} (known: {', '.join(sorted(known))})")
            out[key] = value
        return cls(**out)

    @property
    def n_scales(self) -> int:
        """Number of stride-2 conv blocks (and of upsampling blocks in the decoder)."""
        return int(math.log2(self.downsample))

    @property
    def n_branches(self) -> int:
        """Paths summed into the search vector: one per k-mer bag, plus the trunk's, the conv's, the seeds'."""
        return len(self.kmer_sizes) + int(self.vector_trunk) + int(self.vector_conv) + int(self.vector_seeds > 0)

    @property
    def vector_reach(self) -> int:
        """Bases the widest branch of the vector reads at one position (longest k-mer or seed width): pieces
        cut for embedding overlap by this less one."""
        return max((*self.kmer_sizes, self.seed_width if self.vector_seeds else 1))

    @property
    def latent_size(self) -> int:
        """Values in the latent of one full window."""
        return self.window // self.downsample * self.latent_channels

    @property
    def latent_bits_per_base(self) -> float:
        """Bits a base of the latent as stored: log2(levels) per value when quantised, float32 otherwise."""
        per_value = math.log2(self.latent_levels) if self.latent_levels else 32.0
        return self.latent_channels * per_value / self.downsample

    def kmer_rows(self, k: int) -> int:
        """Rows of the k-mer bag for k (the last is the padding row)."""
        return min(4**k, self.kmer_buckets) + 1
