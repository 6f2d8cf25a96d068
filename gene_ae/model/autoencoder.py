"""GeneAE, the conv + LSTM autoencoder: trunk, latent, decoder and the search vector (blocks: model/layers.py,
k-mer bags: model/bags.py, losses: model/losses.py).

encoder: tokens -> embedding -> strided conv blocks (length / downsample) -> (Bi)LSTM -> h [B, T, H]
   latent ("code"): a linear map of h at every coarse position, [B, T, latent_channels]: a fixed-size bottleneck
            (window / downsample x latent_channels values, 512 for the defaults) that keeps position; with
            latent_levels each value is rounded to one of that many levels (layers.quantise), so the latent as
            stored is latent_channels x log2(levels) / downsample bits a base (ModelConfig.latent_bits_per_base)
   vector:  the search vector [B, vector_dim], a sum over "branches": each learned canonical k-mer bag (and,
            with vector_trunk, the pooled h; with vector_conv, the conv features before the LSTM, ReLU-projected
            and summed, at a learned weight that starts at 0; with vector_seeds, a stride-1 conv of learned fuzzy
            spaced seeds over the bases, model/seeds.py, at a learned weight) is summed over the sequence and
            L2-normalised
decoder: code -> coarse convs -> transposed-conv upsampling -> conv -> logits over the alphabet

The decoder sees only the code (no teacher forcing, nothing autoregressive), so everything it
reconstructs must pass through the latent. A latent pooled over the whole window cannot hold a
window's bases: a decoder fed one would learn base composition only (the failure this project was
started to fix). A bottleneck that keeps position can; the search vector, which must ignore where a
mutation shifted things, is a pooled summary.

The search vector's branches are sums over positions ("branch sums"), so a long sequence's vector is its
windows' sums added up and then normalised per branch: exactly what one pass over the whole sequence
would give, whatever its length (a mean of per-window vectors let the short-k branch drown the long-k
one on genomes). By default the pooled LSTM trunk stays out of the vector: on the val split it added
nothing to the bags (and cost recall at 30 % and on genome clades), and without it embedding skips the
LSTM (docs/RESULTS.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gene_ae.model.bags import bag_sum, kmer_ids
from gene_ae.model.config import ModelConfig
from gene_ae.model.feature_encoder import FeatureEncoder
from gene_ae.model.features import vector_features
from gene_ae.model.layers import DownBlock, ProductCode, ResBlock, UpBlock, int_code, quantise, run_lstm
from gene_ae.model.seeds import SeedBranch
from shard_tools.alphabet import PAD


@dataclass
class Encoded:
    """What the encoder gives: the search vector, and the latent code the decoder reads."""

    vector: torch.Tensor  # [B, vector_dim], not normalised
    sums: torch.Tensor  # [B, n_branches, vector_dim]: each branch summed over positions (model.combine -> vector)
    code: torch.Tensor  # [B, T, latent_channels], T = ceil(L / downsample); zero past each sequence's end
    code_logvar: torch.Tensor | None  # [B, T, latent_channels] when variational


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
        self.to_code = nn.Linear(enc_out + enc_widths[-1], cfg.latent_channels)
        self.to_code_logvar = nn.Linear(enc_out + enc_widths[-1], cfg.latent_channels) if cfg.variational else None

        # The search vector: k-mer bags (+ the pooled trunk). A sum of random k-mer vectors is, at
        # initialisation, a random projection of the k-mer profile (as good as a hashed k-mer sketch);
        # training reshapes it. Parameters exist only for branches in use: DDP refuses unused ones.
        self.attn = nn.Linear(enc_out, 1) if cfg.vector_trunk and cfg.pooling == "attention" else None
        self.to_vector = nn.Linear(enc_out, cfg.vector_dim, bias=False) if cfg.vector_trunk else None
        # The conv branch: each coarse position's trunk features -> ReLU features of the vector's size, summed
        # over the sequence (a learned, mismatch-tolerant bag of the local contexts the convs see). Its weight
        # in the vector starts at 0, so training starts from the bags' vector and the branch must earn a place.
        self.conv_to_vector = nn.Linear(enc_widths[-1], cfg.vector_dim) if cfg.vector_conv else None
        self.conv_weight = nn.Parameter(torch.zeros(())) if cfg.vector_conv else None
        # The seed branch (model/seeds.py): a stride-1 conv over one-hot bases whose filters start as random fuzzy
        # spaced seeds, the conv layer that sees every base at every offset (the strided trunk sees each in one
        # of `downsample` frames, so an indel moves every later context to another frame).
        self.seeds = (
            SeedBranch(cfg.vector_seeds, cfg.seed_width, cfg.seed_care, cfg.seed_need, cfg.vector_dim)
            if cfg.vector_seeds
            else None
        )
        self.seed_weight = nn.Parameter(torch.tensor(float(cfg.seed_init_weight))) if cfg.vector_seeds else None
        if self.seeds is not None:
            self.seeds.weight.requires_grad_(not cfg.freeze_seeds)
            self.seeds.bias.requires_grad_(not cfg.freeze_seeds)
        self.kmer_bags = nn.ModuleList(
            nn.EmbeddingBag(cfg.kmer_rows(k), cfg.vector_dim, mode="sum", padding_idx=cfg.kmer_rows(k) - 1)
            for k in cfg.kmer_sizes
        )
        for bag in self.kmer_bags:
            nn.init.normal_(bag.weight, std=cfg.kmer_init_std)
            with torch.no_grad():
                bag.weight[-1].zero_()
            bag.weight.requires_grad_(not cfg.freeze_kmers)

        # The user's vector features (model/features.py): their part is added to the combined branches.
        self.feature_encoder = FeatureEncoder(cfg.features, cfg.vector_dim) if vector_features(cfg.features) else None
        self.product_code = ProductCode(cfg.vector_dim, cfg.vector_pq) if cfg.vector_pq else None

        # Decoder: code -> coarse features -> upsampling (widths halve, floor 64) -> local conv -> logits.
        self.from_code = nn.Conv1d(cfg.latent_channels, c, kernel_size=3, padding=1)
        self.coarse = nn.Sequential(ResBlock(c), ResBlock(c))
        widths = [c] + [max(c >> (i + 1), floor) for i in range(cfg.n_scales)]
        self.up = nn.ModuleList(UpBlock(widths[i], widths[i + 1]) for i in range(cfg.n_scales))
        self.fine = ResBlock(widths[-1], kernel_size=5)
        self.to_logits = nn.Conv1d(widths[-1], cfg.vocab_size, kernel_size=1)

    def encode(self, tokens: torch.Tensor, mask: torch.Tensor) -> Encoded:
        """tokens, mask [B, L] (right-padded, any L) -> the search vector and the latent code."""
        tokens, mask = self._pad(tokens, mask)
        local, m = self._convs(tokens, mask)
        lengths = m.sum(1).long().clamp(min=1)  # an all-padding row still gets one (zero) step
        h = run_lstm(self.enc_lstm, self.drop(local), lengths)  # [B, T, H]
        valid = (m > 0).unsqueeze(-1)
        both = torch.cat([h, local.to(h.dtype)], -1)
        code = self.to_code(both)
        if self.cfg.latent_levels:
            code = quantise(code, self.cfg.latent_levels)
        code = code * valid
        logvar = self.to_code_logvar(both) * valid if self.to_code_logvar is not None else None
        sums = self._branch_sums(tokens.masked_fill(~mask, PAD), h, local, valid)
        return Encoded(self.combine(sums), sums, code, logvar)

    def _convs(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The conv trunk: (features [B, T, C] at every coarse position, validity [B, T] as 0/1)."""
        m = mask.float()
        x = self.embedding(tokens).transpose(1, 2) * m.unsqueeze(1)  # [B, E, L]
        for block in self.down:
            m = F.max_pool1d(m.unsqueeze(1), 2).squeeze(1)  # valid if any input position is valid
            x = block(x, m)
        return x.transpose(1, 2), m

    def branch_sums(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The search vector's sums [B, n_branches, vector_dim] alone. Without the LSTM branch this skips the
        LSTM (and, without the conv branch, the convs too: the fast branch of embedding), and any length
        works, not only a window."""
        if self.cfg.vector_trunk:
            return self.encode(tokens, mask).sums
        tokens, mask = self._pad(tokens, mask)
        local, valid = None, None
        if self.conv_to_vector is not None:
            local, m = self._convs(tokens, mask)
            valid = (m > 0).unsqueeze(-1)
        return self._branch_sums(tokens.masked_fill(~mask, PAD), None, local, valid)

    def search_vector(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The (unnormalised) search vector of each row: model.combine of branch_sums."""
        return self.combine(self.branch_sums(tokens, mask))

    def combine(self, sums: torch.Tensor, learned_weight: float | None = None) -> torch.Tensor:
        """[..., n_branches, D] per-branch sums -> [..., D]: each branch L2-normalised, then summed.

        Normalising after pooling keeps every branch's weight the same at any sequence length. The bags'
        weights are equal and fixed: learned ones drifted to the 5-mer branch (1.4 : 0.5 after 540 steps),
        which finds far copies of genes but blurs the few differences between genomes of one clade (val
        split, docs/RESULTS.md). The conv and seed branches (the last ones, in that order) have learned
        weights; `learned_weight` overrides them (0: the same checkpoint's vector without them, the ablation)."""
        parts = F.normalize(sums.float(), dim=-1)
        learned = [w for w in (self.conv_weight, self.seed_weight) if w is not None]
        n = len(learned)
        vector = parts[..., : parts.shape[-2] - n, :].sum(-2)
        for i, weight in enumerate(learned):
            w = weight.float() if learned_weight is None else torch.tensor(float(learned_weight))
            vector = vector + w * parts[..., parts.shape[-2] - n + i, :]
        return vector

    def _pad(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        extra = -tokens.shape[1] % self.cfg.downsample  # a multiple of downsample: every scale halves exactly
        if extra:
            tokens = F.pad(tokens, (0, extra), value=PAD)
            mask = F.pad(mask, (0, extra), value=False)
        return tokens, mask

    def _branch_sums(
        self, tokens: torch.Tensor, h: torch.Tensor | None, local: torch.Tensor | None, valid: torch.Tensor | None
    ) -> torch.Tensor:
        sums = [
            bag_sum(bag, kmer_ids(tokens, k, self.cfg.canonical_kmers, self.cfg.kmer_rows(k) - 1))
            for k, bag in zip(self.cfg.kmer_sizes, self.kmer_bags)
        ]
        if self.to_vector is not None:
            assert h is not None and valid is not None
            sums.append(self.to_vector(self.drop(self._pool(h, valid))).float() * valid.sum(1).float())
        if self.conv_to_vector is not None:
            assert local is not None and valid is not None
            sums.append((F.relu(self.conv_to_vector(local)) * valid).float().sum(1))
        if self.seeds is not None:
            sums.append(self.seeds(tokens).float())
        return torch.stack(sums, 1)

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
        """code [B, T, latent_channels] -> logits [B, length, vocab], length <= T x downsample."""
        if not 0 < length <= code.shape[1] * self.cfg.downsample:
            raise ValueError(f"decode length must be in 1..{code.shape[1] * self.cfg.downsample}, got {length}")
        x = self.coarse(F.gelu(self.from_code(code.transpose(1, 2))))
        for block in self.up:
            x = block(x)
        return self.to_logits(self.fine(x))[:, :, :length].transpose(1, 2)

    def forward(
        self,
        tokens: torch.Tensor,
        mask: torch.Tensor,
        others: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        queries: int = 0,
    ) -> dict[str, torch.Tensor | None]:
        """Encode, sample the code when variational and training, decode to the input's length. `others`
        (more token rows, e.g. views) get only their search vectors, as out["others"]: one forward call,
        so DDP sees every use of the parameters. `features` [B, F] (features.codes of each row's record)
        feed the vector features; others share their row's. `queries`: the first this many rows of `others` are
        a search's queries, left float under vector_bits when model.code_views is false."""
        enc = self.encode(tokens, mask)
        z = enc.code
        if enc.code_logvar is not None and self.training:
            z = z + torch.randn_like(z) * torch.exp(0.5 * enc.code_logvar)
        logits = self.decode(z, tokens.shape[1])
        vector = enc.vector
        extra = self.search_vector(others, others != PAD) if others is not None else None
        if self.feature_encoder is not None:
            if features is None:
                raise ValueError("this model's vector needs its features (model.features); none were given")
            part = self.feature_encoder(features)
            vector = vector + part
            extra = extra + part.repeat(len(extra) // len(part), 1) if extra is not None else None
        vq_loss = None
        if self.cfg.vector_bits:  # trained as stored (ModelConfig.vector_bits)
            vector = int_code(vector, self.cfg.vector_bits)
            if extra is not None:
                kept = 0 if self.cfg.code_views else queries
                extra = torch.cat([extra[:kept], int_code(extra[kept:], self.cfg.vector_bits)])
        if self.product_code is not None:  # trained as the product code stored (ModelConfig.vector_pq)
            both = torch.cat([vector, extra]) if extra is not None else vector
            coded, vq_loss = self.product_code(both)
            vector, extra = (coded[: len(vector)], coded[len(vector) :] if extra is not None else None)
        return {
            "logits": logits, "vector": vector, "others": extra, "code": enc.code, "z": z,
            "logvar": enc.code_logvar, "vq_loss": vq_loss,
        }  # fmt: skip

    def embed(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The search vector, L2-normalised, computed in eval mode (no dropout, no sampling)."""
        was_training = self.training
        self.eval()
        try:
            vector = self.search_vector(tokens, mask)
        finally:
            self.train(was_training)
        return F.normalize(self.stored(vector), dim=-1)

    def stored(self, vector: torch.Tensor) -> torch.Tensor:
        """The vector as the model was trained to store it: its 8-bit or product code when it has one. Trained with
        float views (model.code_views false), the vector stays float: a query is compared float, and a record is
        coded by the index's codec (vectors.build_signs' signs are int_code's at 1 bit)."""
        if self.cfg.vector_bits and self.cfg.code_views:
            return int_code(vector, self.cfg.vector_bits)
        if self.product_code is not None:
            return self.product_code(vector)[0]
        return vector.float()


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
