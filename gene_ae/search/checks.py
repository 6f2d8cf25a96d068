"""Checks before a search: the model is the index's own (its vectors of stored records come back), and every
query has a k-mer to search with."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gene_ae.core.embedding import Embed
from gene_ae.index.directory import IndexDir
from shard_tools.alphabet import FIRST_BASE

SAME_MODEL_COSINE = 0.99  # a model re-embedding stored records must give the index's vectors back this closely
PROVENANCE_RECORDS = 4  # the shortest records re-embedded for the check (cheap whatever the collection)
CHECK_PIECE = 1 << 22  # bases a query is checked by at a time: a few bytes a base of them, whatever its length


def model_agreement(opened: IndexDir, embed: Embed) -> float:
    """The lowest cosine between the index's vectors of a few stored records and `embed`'s vectors of the
    same records: 1.0 for the model that built the index, far lower for another model or one whose weights
    went NaN (then -1.0). 1.0 when the index holds no sequences to re-embed."""
    if opened.sequences is None or not opened.meta.entries:
        return 1.0
    lengths = opened.lengths
    rows = np.sort(np.argsort(lengths, kind="stable")[:PROVENANCE_RECORDS])
    stored = opened.record_vectors(rows)
    pieces = [opened.sequences[int(r)] for r in rows]
    cols = opened.features
    given = {"features": {n: [cols.value(n, int(r)) for r in rows] for n in cols.kinds}} if cols.kinds else {}
    fresh = np.asarray(embed(pieces, **given), dtype=np.float32)
    if not np.isfinite(fresh).all():
        return -1.0
    again = opened.as_stored(fresh)  # through the codec, as `stored` went: equal codes for the same model
    norms = np.linalg.norm(stored, axis=1) * np.linalg.norm(again, axis=1)
    return float(np.min(np.einsum("ij,ij->i", stored, again) / np.maximum(norms, 1e-12)))


def check_queries(opened: IndexDir, queries: Sequence, source: str) -> None:
    """Refuse a query with no k-mer of real bases (shorter than k, or all N): every list would answer it
    by chance. k is the index's exact k-mer size (or the model window's smallest scale without one)."""
    k = opened.kmers.cfg.k if opened.kmers is not None else 8
    for q in queries:
        if not has_real_kmer(q.tokens, k):
            real = sum(int(_real(q.tokens[i : i + CHECK_PIECE]).sum()) for i in range(0, q.tokens.size, CHECK_PIECE))
            raise ValueError(
                f"{source}: record {q.id!r}: no {k} consecutive A/C/G/T bases ({q.tokens.size:,} bases, {real:,} "
                "of them A/C/G/T): too short or too many N to search"
            )


def _real(tokens: np.ndarray) -> np.ndarray:
    return (tokens >= FIRST_BASE) & (tokens < FIRST_BASE + 4)


def has_real_kmer(tokens: np.ndarray, k: int) -> bool:
    """Whether the tokens hold k consecutive A/C/G/T bases, looked for a piece at a time (pieces overlapping by
    k - 1), so that the check of a query of hundreds of megabases takes memory of one piece, not of its k-mers."""
    for start in range(0, max(tokens.size - k + 1, 0), CHECK_PIECE):
        piece = _real(tokens[start : start + CHECK_PIECE + k - 1])
        gaps = np.flatnonzero(~piece)  # positions that are not a base; a run of k bases lies between two of them
        edges = np.concatenate(([-1], gaps, [piece.size]))
        if np.diff(edges).max() > k:
            return True
    return False
