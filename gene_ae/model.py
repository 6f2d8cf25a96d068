"""The gene-ae conv + LSTM autoencoder and its losses, in one file.

encoder: tokens -> embedding -> strided conv blocks (length / downsample) -> (Bi)LSTM -> h [B, T, H]
   latent ("code"): a linear map of h at every coarse position, [B, T, code_dim]: a fixed-size bottleneck
            (window / downsample x code_dim values, 512 for the defaults) that keeps position
   vector:  the search vector [B, latent_dim], a sum over "paths": each learned canonical k-mer bag (and,
            with vector_trunk, the pooled h) is summed over the sequence and L2-normalised
decoder: code -> coarse convs -> transposed-conv upsampling -> conv -> logits over the alphabet

The decoder sees only the code (no teacher forcing, nothing autoregressive), so everything it
reconstructs must pass through the latent. A latent pooled over the whole window cannot hold a
window's bases: a decoder fed one would learn base composition only (the failure this project was
started to fix). A bottleneck that keeps position can; the search vector, which must ignore where a
mutation shifted things, is a pooled summary.

The search vector's paths are sums over positions ("parts"), so a long sequence's vector is its
windows' parts added up and then normalised per path: exactly what one pass over the whole sequence
would give, whatever its length (a mean of per-window vectors let the short-k path drown the long-k
one on genomes). By default the pooled LSTM trunk stays out of the vector: on the val split it added
nothing to the bags (and cost recall at 30 % and on genome clades), and without it embedding skips the
LSTM (docs/RESULTS.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from shard_tools.alphabet import FIRST_BASE, PAD

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
    latent_dim: int = 512  # size of the search vector
    code_dim: int = 8  # latent values per coarse position: the latent of a window is window/downsample x code_dim
    window: int = 512  # longest window trained and decoded; must be divisible by downsample
    variational: bool = False  # the code is sampled (mu, logvar) in training, with a KL term
    pooling: str = "mean"  # "mean" | "attention" | "max"  (masked; the trunk path only)
    vector_trunk: bool = False  # add the pooled conv + LSTM trunk to the search vector as one more path
    dropout: float = 0.0
    kmer_sizes: tuple[int, ...] = (5, 7)  # k-mer bag paths added to the search vector; () for conv-LSTM only
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
        if self.code_dim < 1 or self.latent_dim < 1 or self.kmer_buckets < 1:
            raise ValueError("code_dim, latent_dim and kmer_buckets must be positive")
        if not self.kmer_sizes and not self.vector_trunk:
            raise ValueError("the search vector needs a path: give kmer_sizes or set vector_trunk")

    @property
    def n_scales(self) -> int:
        """Number of stride-2 conv blocks (and of upsampling blocks in the decoder)."""
        return int(math.log2(self.downsample))

    @property
    def n_paths(self) -> int:
        """Paths summed into the search vector: one per k-mer bag, plus the trunk's."""
        return len(self.kmer_sizes) + int(self.vector_trunk)

    @property
    def code_size(self) -> int:
        """Values in the latent of one full window."""
        return self.window // self.downsample * self.code_dim

    def kmer_rows(self, k: int) -> int:
        """Rows of the k-mer bag for k (the last is the padding row)."""
        return min(4**k, self.kmer_buckets) + 1


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over channels of a [B, C, L] tensor: per position, so padding never shifts statistics."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class DownBlock(nn.Module):
    """Halve the length: strided conv -> norm -> GELU, plus an average-pooled skip."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel_size=5, stride=2, padding=2)
        self.norm = ChannelNorm(c_out)
        self.skip = nn.Conv1d(c_in, c_out, kernel_size=1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.norm(self.conv(x)))
        h = h + self.skip(F.avg_pool1d(x, 2))
        return h * mask.unsqueeze(1).to(h.dtype)  # padding stays exactly zero for the next conv


class UpBlock(nn.Module):
    """Double the length: transposed conv -> norm -> GELU, plus a nearest-upsampled skip."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.ConvTranspose1d(c_in, c_out, kernel_size=4, stride=2, padding=1)
        self.norm = ChannelNorm(c_out)
        self.skip = nn.Conv1d(c_in, c_out, kernel_size=1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.norm(self.conv(x)))
        return h + self.skip(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class ResBlock(nn.Module):
    """Same length: conv -> norm -> GELU, added to its input."""

    def __init__(self, c: int, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv1d(c, c, kernel_size, padding=kernel_size // 2)
        self.norm = ChannelNorm(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.gelu(self.norm(self.conv(x)))


def _run_lstm(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Run an LSTM on [B, T, C]; with lengths, pack so padding never enters the recurrence."""
    x = x.to(lstm.weight_ih_l0.dtype)  # conv outputs may be bf16 under autocast; autocast recasts if it can
    if lengths is not None:
        lengths = lengths.cpu()
    if lengths is None or bool((lengths == x.shape[1]).all()):  # no padding: skip the packing copies
        return lstm(x)[0]
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, _ = lstm(packed)
    return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]


@dataclass
class Encoded:
    """What the encoder gives: the search vector, and the latent code the decoder reads."""

    vector: torch.Tensor  # [B, latent_dim], not normalised
    parts: torch.Tensor  # [B, n_paths, latent_dim]: each path summed over positions (model.combine -> vector)
    code: torch.Tensor  # [B, T, code_dim], T = ceil(L / downsample); zero past each sequence's end
    code_logvar: torch.Tensor | None  # [B, T, code_dim] when variational


class GeneAE(nn.Module):
    """Conv + LSTM autoencoder: a positional latent that reconstructs, and a pooled search vector."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        c, dirs = cfg.channels, 2 if cfg.bidirectional else 1
        lstm_dropout = cfg.dropout if cfg.lstm_layers > 1 else 0.0

        # Encoder trunk. Widths double with each halving of length (floor 64) up to `channels`: the
        # full-resolution blocks are the expensive ones and carry little information per position.
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embed_dim, padding_idx=PAD)
        floor = min(c, 64)
        enc_widths = [cfg.embed_dim] + [max(c >> (cfg.n_scales - 1 - i), floor) for i in range(cfg.n_scales)]
        self.down = nn.ModuleList(DownBlock(enc_widths[i], enc_widths[i + 1]) for i in range(cfg.n_scales))
        self.enc_lstm = nn.LSTM(
            enc_widths[-1], cfg.lstm_hidden, cfg.lstm_layers, batch_first=True,
            bidirectional=cfg.bidirectional, dropout=lstm_dropout,
        )  # fmt: skip
        enc_out = cfg.lstm_hidden * dirs
        self.drop = nn.Dropout(cfg.dropout)

        # The latent: per coarse position, from the trunk and from a skip of the local conv features
        # (the LSTM mixes the whole window; the skip keeps which bases sit here).
        self.to_code = nn.Linear(enc_out + enc_widths[-1], cfg.code_dim)
        self.to_code_logvar = nn.Linear(enc_out + enc_widths[-1], cfg.code_dim) if cfg.variational else None

        # The search vector: k-mer bags (+ the pooled trunk). A sum of random k-mer vectors is, at
        # initialisation, a random projection of the k-mer profile (as good as a hashed k-mer sketch);
        # training reshapes it. Parameters exist only for paths in use: DDP refuses unused ones.
        self.attn = nn.Linear(enc_out, 1) if cfg.vector_trunk and cfg.pooling == "attention" else None
        self.to_vector = nn.Linear(enc_out, cfg.latent_dim, bias=False) if cfg.vector_trunk else None
        self.kmer_bags = nn.ModuleList(
            nn.EmbeddingBag(cfg.kmer_rows(k), cfg.latent_dim, mode="sum", padding_idx=cfg.kmer_rows(k) - 1)
            for k in cfg.kmer_sizes
        )
        for bag in self.kmer_bags:
            nn.init.normal_(bag.weight, std=cfg.kmer_init_std)
            with torch.no_grad():
                bag.weight[-1].zero_()
            bag.weight.requires_grad_(not cfg.freeze_kmers)

        # Decoder: code -> coarse features -> upsampling (widths halve, floor 64) -> local conv -> logits.
        self.from_code = nn.Conv1d(cfg.code_dim, c, kernel_size=3, padding=1)
        self.coarse = nn.Sequential(ResBlock(c), ResBlock(c))
        widths = [c] + [max(c >> (i + 1), floor) for i in range(cfg.n_scales)]
        self.up = nn.ModuleList(UpBlock(widths[i], widths[i + 1]) for i in range(cfg.n_scales))
        self.fine = ResBlock(widths[-1], kernel_size=5)
        self.to_logits = nn.Conv1d(widths[-1], cfg.vocab_size, kernel_size=1)

    def encode(self, tokens: torch.Tensor, mask: torch.Tensor) -> Encoded:
        """tokens, mask [B, L] (right-padded, any L) -> the search vector and the latent code."""
        tokens, mask = self._pad(tokens, mask)
        m = mask.float()
        x = self.embedding(tokens).transpose(1, 2) * m.unsqueeze(1)  # [B, E, L]
        for block in self.down:
            m = F.max_pool1d(m.unsqueeze(1), 2).squeeze(1)  # valid if any input position is valid
            x = block(x, m)
        lengths = m.sum(1).long().clamp(min=1)  # an all-padding row still gets one (zero) step
        local = x.transpose(1, 2)  # [B, T, C]
        h = _run_lstm(self.enc_lstm, self.drop(local), lengths)  # [B, T, H]
        valid = (m > 0).unsqueeze(-1)
        both = torch.cat([h, local.to(h.dtype)], -1)
        code = self.to_code(both) * valid
        logvar = self.to_code_logvar(both) * valid if self.to_code_logvar is not None else None
        parts = self._parts(tokens.masked_fill(~mask, PAD), h, valid)
        return Encoded(self.combine(parts), parts, code, logvar)

    def vector_parts(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The search vector's parts [B, n_paths, latent_dim] alone. Without the trunk path this skips the
        conv + LSTM entirely (the fast path of embedding), and any length works, not only a window."""
        if self.cfg.vector_trunk:
            return self.encode(tokens, mask).parts
        tokens, mask = self._pad(tokens, mask)
        return self._parts(tokens.masked_fill(~mask, PAD), None, None)

    def search_vector(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The (unnormalised) search vector of each row: model.combine of vector_parts."""
        return self.combine(self.vector_parts(tokens, mask))

    @staticmethod
    def combine(parts: torch.Tensor) -> torch.Tensor:
        """[..., n_paths, D] per-path sums -> [..., D]: each path L2-normalised, then summed.

        Normalising after pooling keeps every path's weight the same at any sequence length. The weights
        are equal and fixed: learned ones drifted to the 5-mer path (1.4 : 0.5 after 540 steps), which
        finds far copies of genes but blurs the few differences between genomes of one clade (val split,
        docs/RESULTS.md)."""
        return F.normalize(parts.float(), dim=-1).sum(-2)

    def _pad(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        extra = -tokens.shape[1] % self.cfg.downsample  # a multiple of downsample: every scale halves exactly
        if extra:
            tokens = F.pad(tokens, (0, extra), value=PAD)
            mask = F.pad(mask, (0, extra), value=False)
        return tokens, mask

    def _parts(self, tokens: torch.Tensor, h: torch.Tensor | None, valid: torch.Tensor | None) -> torch.Tensor:
        parts = [
            _bag_sum(bag, kmer_ids(tokens, k, self.cfg.canonical_kmers, self.cfg.kmer_rows(k) - 1))
            for k, bag in zip(self.cfg.kmer_sizes, self.kmer_bags)
        ]
        if self.to_vector is not None:
            assert h is not None and valid is not None
            parts.append(self.to_vector(self.drop(self._pool(h, valid))).float() * valid.sum(1).float())
        return torch.stack(parts, 1)

    def _pool(self, h: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Masked pooling of the trunk; the caller weights it by length, so windows add up like sums."""
        if self.cfg.pooling == "mean":
            return (h * valid).sum(1) / valid.sum(1).clamp(min=1)
        if self.cfg.pooling == "max":
            pooled = h.masked_fill(~valid, torch.finfo(h.dtype).min).amax(1)
            return pooled.masked_fill(~valid.any(1), 0.0)  # an all-padding row pools to zero, not -huge
        scores = self.attn(h).float().masked_fill(~valid, torch.finfo(torch.float32).min)
        return (torch.softmax(scores, dim=1).to(h.dtype) * h).sum(1)

    def decode(self, code: torch.Tensor, length: int) -> torch.Tensor:
        """code [B, T, code_dim] -> logits [B, length, vocab], length <= T x downsample."""
        if not 0 < length <= code.shape[1] * self.cfg.downsample:
            raise ValueError(f"decode length must be in 1..{code.shape[1] * self.cfg.downsample}, got {length}")
        x = self.coarse(F.gelu(self.from_code(code.transpose(1, 2))))
        for block in self.up:
            x = block(x)
        return self.to_logits(self.fine(x))[:, :, :length].transpose(1, 2)

    def forward(
        self, tokens: torch.Tensor, mask: torch.Tensor, others: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor | None]:
        """Encode, sample the code when variational and training, decode to the input's length. `others`
        (more token rows, e.g. views) get only their search vectors, as out["others"]: one forward call,
        so DDP sees every use of the parameters."""
        enc = self.encode(tokens, mask)
        z = enc.code
        if enc.code_logvar is not None and self.training:
            z = z + torch.randn_like(z) * torch.exp(0.5 * enc.code_logvar)
        logits = self.decode(z, tokens.shape[1])
        extra = self.search_vector(others, others != PAD) if others is not None else None
        return {
            "logits": logits, "vector": enc.vector, "others": extra, "code": enc.code, "z": z,
            "logvar": enc.code_logvar,
        }  # fmt: skip

    def embed(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The search vector, L2-normalised, computed in eval mode (no dropout, no sampling)."""
        was_training = self.training
        self.eval()
        try:
            vector = self.search_vector(tokens, mask)
        finally:
            self.train(was_training)
        return F.normalize(vector.float(), dim=-1)


def _bag_sum(bag: nn.EmbeddingBag, ids: torch.Tensor) -> torch.Tensor:
    """Sum of the k-mer vectors of each row. Long rows are counted first and multiplied (one dense matmul
    instead of a gather per k-mer: 3.5x faster at 4 kb, more beyond); both give the same sums."""
    rows = bag.weight.shape[0]
    if 3 * ids.shape[1] < rows:  # measured crossover: gathers win below about a third of the rows
        return bag(ids).float()
    counts = torch.zeros(ids.shape[0], rows, dtype=bag.weight.dtype, device=ids.device)
    counts.scatter_add_(1, ids, torch.ones_like(ids, dtype=counts.dtype))
    return (counts[:, :-1] @ bag.weight[:-1]).float()  # the last row is padding


def kmer_ids(tokens: torch.Tensor, k: int, canonical: bool = True, buckets: int | None = None) -> torch.Tensor:
    """[B, L] tokens -> [B, max(L-k+1, 1)] k-mer ids in [0, buckets); k-mers touching N or padding get the pad
    id `buckets`. Vocabularies larger than `buckets` (default 4**k: none) are hashed into it.

    Built from k shifted slices (no [B, L, k] unfold): this runs once per base embedded, so it sets the
    embedding speed."""
    buckets = buckets or 4**k
    pad_id = buckets
    if tokens.shape[1] < k:
        return torch.full((tokens.shape[0], 1), pad_id, dtype=torch.long, device=tokens.device)
    n = tokens.shape[1] - k + 1
    codes = (tokens.to(torch.int32) - FIRST_BASE).clamp(0, 3)
    ids = torch.zeros(tokens.shape[0], n, dtype=torch.int32, device=tokens.device)
    for j in range(k):
        ids.mul_(4).add_(codes[:, j : j + n])
    if canonical:
        rc = torch.zeros_like(ids)
        for j in range(k - 1, -1, -1):
            rc.mul_(4).add_(3 - codes[:, j : j + n])
        ids = torch.minimum(ids, rc)
    ids = ids.long()
    if buckets < 4**k:
        ids = (ids * 2654435761) % buckets  # multiplicative hash: neighbouring ids land far apart
    not_base = ((tokens < FIRST_BASE) | (tokens >= FIRST_BASE + 4)).to(torch.int32)
    bad = F.pad(not_base.cumsum(1), (1, 0))  # bad[:, i] = non-bases before position i
    return ids.masked_fill((bad[:, k : k + n] - bad[:, :n]) > 0, pad_id)


def reconstruction_counts(
    logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(cross-entropy in nats summed, correct bases, real bases) over real bases only: padding and
    specials never count. The one reconstruction metric: training's loss and evaluation both use it."""
    valid = mask & (tokens >= FIRST_BASE)
    target = tokens.long().masked_fill(~valid, -100)
    flat = logits.float().reshape(-1, logits.shape[-1])
    nats = F.cross_entropy(flat, target.reshape(-1), ignore_index=-100, reduction="sum")
    correct = ((logits.argmax(-1) == tokens) & valid).sum()
    return nats, correct, valid.sum()


def reconstruction_loss(
    logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy (nats) and accuracy over real bases only."""
    nats, correct, count = reconstruction_counts(logits, tokens, mask)
    count = count.clamp(min=1)
    return nats / count, correct / count


def kl_loss(mu: torch.Tensor, logvar: torch.Tensor, free_bits: float = 0.0) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)), summed over dims and averaged over the batch; each dim's batch-mean KL is
    clamped below at free_bits (nats) so the encoder is not pushed to collapse unused dims to the prior."""
    mu, logvar = mu.float(), logvar.float()
    per_dim = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean(0)
    return per_dim.clamp(min=free_bits).sum()


def info_nce(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1, negatives: torch.Tensor | None = None
) -> torch.Tensor:
    """Symmetric InfoNCE: z1[i] and z2[i] are two views of one sequence; other rows are negatives, and so
    are `negatives` [Q, D] (vectors of earlier batches, MoCo's queue: a batch of 32 alone gives the loss
    little to push against). contrastive_loss without siblings."""
    return contrastive_loss(z1, z2, temperature, None, negatives)


def contrastive_loss(
    anchor: torch.Tensor,
    view: torch.Tensor,
    temperature: float = 0.1,
    sibling: torch.Tensor | None = None,
    negatives: torch.Tensor | None = None,
) -> torch.Tensor:
    """InfoNCE between windows and their views, with each window's sibling as a hard negative.

    A sibling is the window mutated a little (a near-identical relative, as genomes of one clade are).
    The view was mutated from the window, not from the sibling, so the window must rank above every
    sibling for the view: this trains the vector to keep the small differences that tell relatives
    apart, where views alone train only invariance ("all of these are the same"). `negatives` [Q, D]
    are extra keys for both directions.
    """
    a, v = F.normalize(anchor.float(), dim=-1), F.normalize(view.float(), dim=-1)
    extra = [F.normalize(negatives.float(), dim=-1)] if negatives is not None and negatives.numel() else []
    hard = [F.normalize(sibling.float(), dim=-1)] if sibling is not None else []
    labels = torch.arange(a.shape[0], device=a.device)
    to_windows = F.cross_entropy(v @ torch.cat([a, *hard, *extra]).T / temperature, labels)
    to_views = F.cross_entropy(a @ torch.cat([v, *extra]).T / temperature, labels)
    return 0.5 * (to_windows + to_views)


class NegativeQueue:
    """The newest `size` search vectors of earlier batches (detached), as extra InfoNCE negatives."""

    def __init__(self, size: int):
        self.size = size
        self.items: torch.Tensor | None = None

    def get(self) -> torch.Tensor | None:
        return self.items

    def push(self, vectors: torch.Tensor) -> None:
        if self.size <= 0:
            return
        new = F.normalize(vectors.detach().float(), dim=-1)
        self.items = new[-self.size :] if self.items is None else torch.cat([new, self.items])[: self.size]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
