"""The conv and LSTM building blocks of the encoder trunk and the decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


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


def run_lstm(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Run an LSTM on [B, T, C]; with lengths, pack so padding never enters the recurrence."""
    x = x.to(lstm.weight_ih_l0.dtype)  # conv outputs may be bf16 under autocast; autocast recasts if it can
    if lengths is not None:
        lengths = lengths.cpu()
    if lengths is None or bool((lengths == x.shape[1]).all()):  # no padding: skip the packing copies
        return lstm(x)[0]
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, _ = lstm(packed)
    return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]


def quantise(z: torch.Tensor, levels: int) -> torch.Tensor:
    """Finite scalar quantisation (Mentzer et al. 2023): each value bounded by tanh and rounded to one of
    `levels` evenly spaced values in [-1, 1], with straight-through gradients. The decoder then reads exactly
    what `latent_ids` stores, log2(levels) bits a value; no codebook to collapse."""
    bounded = torch.tanh(z)
    half = (levels - 1) / 2
    rounded = torch.round((bounded + 1) * half) / half - 1
    return bounded + (rounded - bounded).detach()


def latent_ids(code: torch.Tensor, levels: int) -> torch.Tensor:
    """The integer level (0 .. levels - 1) of each value of a quantised code: what is stored."""
    half = (levels - 1) / 2
    return torch.round((code.float() + 1) * half).clamp(0, levels - 1).to(torch.uint8)


def code_of_ids(ids: torch.Tensor, levels: int) -> torch.Tensor:
    """The code values of stored levels (the inverse of latent_ids)."""
    half = (levels - 1) / 2
    return ids.float() / half - 1


def int_code(v: torch.Tensor, bits: int) -> torch.Tensor:
    """A unit vector as the signed `bits`-bit code it is stored as (each value a multiple of 1 / (2^(bits-1) - 1);
    at 1 bit its sign, scaled to unit length), with straight-through gradients: the training sees the rounding
    the index applies."""
    unit = F.normalize(v.float(), dim=-1)
    if bits == 1:
        signs = torch.where(unit >= 0, 1.0, -1.0) / unit.shape[-1] ** 0.5
        return unit + (signs - unit).detach()
    scale = float(2 ** (bits - 1) - 1)
    rounded = torch.round(unit * scale).clamp(-scale, scale) / scale
    return unit + (rounded - unit).detach()


class ProductCode(nn.Module):
    """A unit vector as `parts` sub-vectors each replaced by the nearest of 256 learned centroids (one byte each:
    `parts` bytes a record), with straight-through gradients, the centroids and the commitment trained by the
    VQ-VAE loss (van den Oord et al. 2017) that `loss` returns: the product-quantised code the index would store,
    in the training loop. The centroids start from the first batch's sub-vectors."""

    def __init__(self, dim: int, parts: int):
        super().__init__()
        if dim % parts:
            raise ValueError(f"a {dim}-value vector cannot be cut into {parts} equal parts")
        self.parts, self.width = parts, dim // parts
        self.centroids = nn.Parameter(torch.zeros(parts, 256, self.width))
        self.register_buffer("started", torch.zeros((), dtype=torch.bool))

    def forward(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the coded unit vector, the VQ loss) of vectors [B, dim]."""
        unit = F.normalize(v.float(), dim=-1)
        sub = unit.view(-1, self.parts, self.width)  # [B, M, w]
        if self.training and not bool(self.started):
            with torch.no_grad():
                pick = torch.randint(0, sub.shape[0], (256,), device=sub.device)
                self.centroids.copy_(sub[pick].transpose(0, 1) + 1e-3 * torch.randn_like(self.centroids))
                self.started.fill_(True)
        dist = torch.cdist(sub.transpose(0, 1), self.centroids)  # [M, B, 256]
        nearest = dist.argmin(-1)  # [M, B]
        coded = torch.gather(self.centroids, 1, nearest.unsqueeze(-1).expand(-1, -1, self.width)).transpose(0, 1)
        loss = F.mse_loss(coded, sub.detach()) + 0.25 * F.mse_loss(sub, coded.detach())
        out = (sub + (coded - sub).detach()).reshape(unit.shape)
        return out, loss
