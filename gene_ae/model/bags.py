"""Learned k-mer bags: canonical k-mer ids of token rows, and their summed embeddings.

Ids follow gene_ae.core.kmers (2 bits a base, first base most significant; hashed with its one hash when the
vocabulary is larger than the bag), in torch so that they run on the model's device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gene_ae.core.kmers import KMER_HASH_SIGNED
from shard_tools.alphabet import FIRST_BASE


def bag_sum(bag: nn.EmbeddingBag, ids: torch.Tensor) -> torch.Tensor:
    """Sum of the k-mer vectors of each row. Long rows are counted first and multiplied (one dense matmul
    instead of a gather per k-mer: 3.5x faster at 4 kb, more beyond); both give the same sums.

    Outside training the matmul runs in float64 and is rounded once to float32: a float32 matmul's rounding
    depends on the thread count and on the other rows of the batch (its kernel's blocking), so one query's
    vector differed by ~1e-7 between `gene-ae search` and a Serve replica, enough to reorder near-tied
    relatives at 10^6 genes; in float64 both round to the same float32 vector."""
    rows = bag.weight.shape[0]
    if 3 * ids.shape[1] < rows:  # measured crossover: gathers win below about a third of the rows
        return bag(ids).float()
    exact = torch.float32 if torch.is_grad_enabled() or ids.device.type == "mps" else torch.float64  # mps: no f64
    counts = torch.zeros(ids.shape[0], rows, dtype=exact, device=ids.device)
    counts.scatter_add_(1, ids, torch.ones_like(ids, dtype=exact))
    return (counts[:, :-1] @ bag.weight[:-1].to(exact)).float()  # the last row is padding


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
    if buckets < 4**k:  # gene_ae.core.kmers.hash_bucket: the hash's high 32 bits (int64 wraps like uint64)
        ids = ((ids * KMER_HASH_SIGNED) >> 32 & 0xFFFFFFFF) % buckets
    not_base = ((tokens < FIRST_BASE) | (tokens >= FIRST_BASE + 4)).to(torch.int32)
    bad = F.pad(not_base.cumsum(1), (1, 0))  # bad[:, i] = non-bases before position i
    return ids.masked_fill((bad[:, k : k + n] - bad[:, :n]) > 0, pad_id)
