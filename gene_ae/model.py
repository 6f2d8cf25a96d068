"""The gene-ae conv + LSTM autoencoder, its losses, and whole-genome embedding, in one file.

encoder: tokens -> embedding -> strided conv blocks (length / downsample) -> (Bi)LSTM -> masked pooling
         -> mu (and logvar when variational)
decoder: z -> per-position linear layout at length window / downsample -> transposed-conv upsampling
         -> (Bi)LSTM -> logits over the alphabet

The decoder sees only z (no teacher forcing), so everything it reconstructs must pass through the
latent: that is what makes z a useful search vector.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
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
    latent_dim: int = 512
    window: int = 512  # decoder output length = max training window; must be divisible by downsample
    variational: bool = False
    pooling: str = "mean"  # "mean" | "attention" | "max"  (masked)
    dropout: float = 0.0
    kmer_sizes: tuple[int, ...] = (3, 4, 5)  # k-mer bag paths added to the latent; () for conv-LSTM only
    canonical_kmers: bool = True  # count a k-mer and its reverse complement as one (strand-invariant)

    def __post_init__(self) -> None:
        ds = self.downsample
        if not (1 <= ds <= 64 and ds & (ds - 1) == 0):
            raise ValueError(f"downsample must be a power of 2 in 1..64, got {ds}")
        if self.window < 1 or self.window % ds:
            raise ValueError(f"window ({self.window}) must be a positive multiple of downsample ({ds})")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        self.kmer_sizes = tuple(int(k) for k in self.kmer_sizes)
        if any(not 1 <= k <= 9 for k in self.kmer_sizes):
            raise ValueError(f"kmer_sizes must be in 1..9, got {self.kmer_sizes}")
        if self.channels < 8 or self.channels % 4:
            raise ValueError(f"channels must be a multiple of 4 and at least 8, got {self.channels}")

    @property
    def n_scales(self) -> int:
        """Number of stride-2 conv blocks (and of upsampling blocks in the decoder)."""
        return int(math.log2(self.downsample))


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


class GeneAE(nn.Module):
    """Conv + LSTM autoencoder whose pooled latent is the sequence's search vector."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        c, dirs = cfg.channels, 2 if cfg.bidirectional else 1
        lstm_dropout = cfg.dropout if cfg.lstm_layers > 1 else 0.0

        # Encoder.
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embed_dim, padding_idx=PAD)
        # Widths double with each halving of length (floor 64) up to `channels`: the full-resolution
        # blocks are the expensive ones and carry little information per position (2 bits per base).
        floor = min(c, 64)
        enc_widths = [cfg.embed_dim] + [max(c >> (cfg.n_scales - 1 - i), floor) for i in range(cfg.n_scales)]
        self.down = nn.ModuleList(DownBlock(enc_widths[i], enc_widths[i + 1]) for i in range(cfg.n_scales))
        enc_in = enc_widths[-1]
        self.enc_lstm = nn.LSTM(
            enc_in, cfg.lstm_hidden, cfg.lstm_layers, batch_first=True,
            bidirectional=cfg.bidirectional, dropout=lstm_dropout,
        )  # fmt: skip
        enc_out = cfg.lstm_hidden * dirs
        self.attn = nn.Linear(enc_out, 1) if cfg.pooling == "attention" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.to_mu = nn.Linear(enc_out, cfg.latent_dim)
        # k-mer bags: a mean of learned k-mer vectors is, at initialisation, a random projection of the
        # k-mer profile (so the latent starts as good as a k-mer sketch) and training reshapes it. The
        # conv-LSTM path starts small and adds what counting cannot see.
        self.kmer_bags = nn.ModuleList(
            nn.EmbeddingBag(4**k + 1, cfg.latent_dim, mode="mean", padding_idx=4**k) for k in cfg.kmer_sizes
        )
        for bag in self.kmer_bags:
            nn.init.normal_(bag.weight)
            with torch.no_grad():
                bag.weight[-1].zero_()
        # No empty parameter when there are no bags: DDP refuses parameters that never get a gradient.
        self.kmer_scale = nn.Parameter(torch.ones(len(cfg.kmer_sizes))) if cfg.kmer_sizes else None
        if cfg.kmer_sizes:
            with torch.no_grad():
                self.to_mu.weight.mul_(0.1)
                self.to_mu.bias.zero_()
        self.to_logvar = nn.Linear(enc_out, cfg.latent_dim) if cfg.variational else None

        # Decoder. The layout is factorised (z -> a few features per coarse position -> 1x1 conv to full
        # width): a dense z -> channels x positions map would hold most of the model's parameters.
        # Widths halve at each upsampling (floor 64), mirroring the encoder.
        self.n_coarse = cfg.window // cfg.downsample
        self.layout_dim = c // 4
        self.layout = nn.Linear(cfg.latent_dim, self.layout_dim * self.n_coarse)
        self.layout_proj = nn.Conv1d(self.layout_dim, c, kernel_size=1)
        widths = [c] + [max(c >> (i + 1), floor) for i in range(cfg.n_scales)]
        self.up = nn.ModuleList(UpBlock(widths[i], widths[i + 1]) for i in range(cfg.n_scales))
        self.dec_lstm = nn.LSTM(
            widths[-1], widths[-1] // 2, cfg.lstm_layers, batch_first=True,
            bidirectional=cfg.bidirectional, dropout=lstm_dropout,
        )  # fmt: skip
        self.to_logits = nn.Linear(widths[-1] // 2 * dirs, cfg.vocab_size)

    def encode(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """tokens, mask [B, L] (right-padded, any L) -> mu [B, D], logvar [B, D] or None."""
        ds = self.cfg.downsample
        extra = -tokens.shape[1] % ds  # pad to a multiple of downsample so every scale halves exactly
        if extra:
            tokens = F.pad(tokens, (0, extra), value=PAD)
            mask = F.pad(mask, (0, extra), value=False)
        m = mask.float()
        x = self.embedding(tokens).transpose(1, 2) * m.unsqueeze(1)  # [B, E, L]
        for block in self.down:
            m = F.max_pool1d(m.unsqueeze(1), 2).squeeze(1)  # valid if any input position is valid
            x = block(x, m)
        lengths = m.sum(1).long().clamp(min=1)  # an all-padding row still gets one (zero) step
        h = _run_lstm(self.enc_lstm, self.drop(x.transpose(1, 2)), lengths)  # [B, T, H]
        valid = (m > 0).unsqueeze(-1)
        if self.cfg.pooling == "mean":
            pooled = (h * valid).sum(1) / valid.sum(1).clamp(min=1)
        elif self.cfg.pooling == "max":
            pooled = h.masked_fill(~valid, torch.finfo(h.dtype).min).amax(1)
            pooled = pooled.masked_fill(~valid.any(1), 0.0)  # an all-padding row pools to zero, not -huge
        else:
            scores = self.attn(h).float().masked_fill(~valid, torch.finfo(torch.float32).min)
            pooled = (torch.softmax(scores, dim=1).to(h.dtype) * h).sum(1)
        pooled = self.drop(pooled)
        logvar = self.to_logvar(pooled) if self.to_logvar is not None else None
        mu = self.to_mu(pooled)
        tokens = tokens.masked_fill(~mask, PAD)  # masked-out content must not reach the k-mer bags
        for k, bag, scale in zip(self.cfg.kmer_sizes, self.kmer_bags, self.kmer_scale if self.kmer_bags else ()):
            mu = mu + scale * F.normalize(bag(kmer_ids(tokens, k, self.cfg.canonical_kmers)).float(), dim=-1)
        return mu, logvar

    def decode(self, z: torch.Tensor, length: int) -> torch.Tensor:
        """z [B, D] -> logits [B, length, vocab]; always decodes the full window so a position's logits
        do not depend on the requested length."""
        if not 0 < length <= self.cfg.window:
            raise ValueError(f"decode length must be in 1..{self.cfg.window}, got {length}")
        x = self.layout(z).view(z.shape[0], self.layout_dim, self.n_coarse)
        x = self.layout_proj(F.gelu(x))
        for block in self.up:
            x = block(x)
        h = _run_lstm(self.dec_lstm, x.transpose(1, 2))
        return self.to_logits(h[:, :length])

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """Encode, sample z when variational and training, decode to the input's length."""
        mu, logvar = self.encode(tokens, mask)
        z = mu
        if logvar is not None and self.training:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return {"logits": self.decode(z, tokens.shape[1]), "z": z, "mu": mu, "logvar": logvar}

    def embed(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The search vector: L2-normalised mu, computed in eval mode (no dropout, no sampling)."""
        was_training = self.training
        self.eval()
        try:
            mu, _ = self.encode(tokens, mask)
        finally:
            self.train(was_training)
        return F.normalize(mu.float(), dim=-1)


def kmer_ids(tokens: torch.Tensor, k: int, canonical: bool = True) -> torch.Tensor:
    """[B, L] tokens -> [B, max(L-k+1, 1)] k-mer ids; k-mers touching N or padding get the pad id 4**k."""
    pad_id = 4**k
    if tokens.shape[1] < k:
        return torch.full((tokens.shape[0], 1), pad_id, dtype=torch.long, device=tokens.device)
    codes = (tokens.long() - FIRST_BASE).clamp(0, 3)
    is_base = (tokens >= FIRST_BASE) & (tokens < FIRST_BASE + 4)
    windows = codes.unfold(1, k, 1)  # [B, L-k+1, k]
    place = 4 ** torch.arange(k - 1, -1, -1, device=tokens.device)
    ids = (windows * place).sum(-1)
    if canonical:
        ids = torch.minimum(ids, ((3 - windows).flip(-1) * place).sum(-1))
    return ids.masked_fill(~is_base.unfold(1, k, 1).all(-1), pad_id)


def reconstruction_loss(
    logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy (nats) and accuracy over real bases only; padding and specials are ignored."""
    valid = mask & (tokens >= FIRST_BASE)
    target = tokens.long().masked_fill(~valid, -100)
    flat = logits.float().reshape(-1, logits.shape[-1])
    count = valid.sum().clamp(min=1)
    loss = F.cross_entropy(flat, target.reshape(-1), ignore_index=-100, reduction="sum") / count
    correct = (logits.argmax(-1) == tokens) & valid
    return loss, correct.sum() / count


def kl_loss(mu: torch.Tensor, logvar: torch.Tensor, free_bits: float = 0.0) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)), summed over dims and averaged over the batch; each dim's batch-mean KL is
    clamped below at free_bits (nats) so the encoder is not pushed to collapse unused dims to the prior."""
    mu, logvar = mu.float(), logvar.float()
    per_dim = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean(0)
    return per_dim.clamp(min=free_bits).sum()


def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Symmetric InfoNCE: z1[i] and z2[i] are two views of one sequence; other rows are negatives."""
    z1, z2 = F.normalize(z1.float(), dim=-1), F.normalize(z2.float(), dim=-1)
    logits = z1 @ z2.T / temperature
    labels = torch.arange(z1.shape[0], device=z1.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def window_starts(n: int, window: int, stride: int | None = None) -> np.ndarray:
    """Start positions tiling n bases with windows `stride` apart; the last window ends at the sequence's end."""
    if n <= window:
        return np.array([0])
    starts = np.arange(0, n - window + 1, stride or window)
    return starts if starts[-1] == n - window else np.append(starts, n - window)


@torch.no_grad()
def embed_long(
    model: GeneAE,
    tokens: np.ndarray,
    window: int,
    stride: int | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Embed a sequence of any length (a whole chromosome): tile windows, encode them a batch at a time,
    average their mu weighted by window length, L2-normalise. Memory grows only with the token array."""
    tokens = np.asarray(tokens, dtype=np.uint8)
    n = tokens.size
    if n == 0:
        raise ValueError("cannot embed an empty sequence")
    stride = stride or window
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be positive, got {window} and {stride}")
    starts, width = window_starts(n, window, stride), min(n, window)
    offsets = np.arange(width)
    was_training = model.training
    model.eval()
    try:
        total = None
        for i in range(0, starts.size, batch_size):
            batch = tokens[starts[i : i + batch_size, None] + offsets]  # [b, width], a copy of b windows only
            x = torch.from_numpy(batch).to(device=device, dtype=torch.long)
            mu, _ = model.encode(x, torch.ones_like(x, dtype=torch.bool))
            s = mu.float().sum(0) * width
            total = s if total is None else total + s
    finally:
        model.train(was_training)
    return F.normalize(total / (starts.size * width), dim=0).cpu().numpy().astype(np.float32)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
