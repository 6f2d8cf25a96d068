"""The exact k-mer half of hybrid search: canonical k-mer counts of segments in an inverted index, cosine.

Why: on dense collections (16S, outbreak genomes) retrieval is a precision problem, and exact k-mers find
a 20-30 %-diverged copy's source far more often than a small learned vector does (RESULTS.md); text search
pairs BM25 with dense retrievers for the same reason. Rows are *segments*: whole records up to `segment`
bases, half-overlapping pieces of longer ones (so a query can hit the part of a genome it matches, and a
long subject does not dilute its own score). k follows the collection's lengths (`choose_k`): short k for
genes, where mutated copies keep few long k-mers, longer k for loci and genomes, where short k-mers recur
by chance. Counts are raw (TF-IDF weighting measured worse, `choose_k`). Numpy and scipy only.

Stored as postings, memory-mapped when searched: for each k-mer its segments in increasing order, as 16-bit
gaps, read only for the query's k-mers, so search memory does not grow with the collection (a 10^6-gene
index's postings stay on disk and in the page cache). A k-mer's count in a segment is 1 but for 0.3 % of
postings (genes at k = 10): only those are stored, as (posting, count) pairs, so a posting costs 2 bytes
(it was 3 with a count byte each: 1.5 GiB of a 10^6-gene index).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gene_ae.core.kmers import CountRows, kmer_count_rows, kmer_counts, l2_scales, n_columns
from gene_ae.core.topk import top_k
from gene_ae.core.windows import window_starts

if TYPE_CHECKING:
    from scipy import sparse

_CHUNK_BASES = 1 << 22  # segment bases counted per pass while building: bounds temporary memory
_GAP_MAX = (1 << 16) - 1  # gaps between a k-mer's segments are stored in 16 bits; larger ones apart
_BLOCK_ENTRIES = 1 << 23  # entries encoded or decoded per pass when saving or loading: bounds temporary memory


@dataclass
class KmerIndexConfig:
    k: int = 0  # k-mer size; 0 = from the collection's median record length (choose_k)
    bucket_bits: int = 22  # k-mers with 4**k > 2**bucket_bits are hashed into 2**bucket_bits buckets
    scaled: int = 1  # keep about 1/scaled of the distinct k-mers (by hash, FracMinHash-style); 1 = all
    segment: int = 8192  # records longer than this are indexed as half-overlapping segments of this many bases

    @property
    def buckets(self) -> int:
        return 1 << self.bucket_bits


def choose_k(median_length: float) -> int:
    """k for a collection: 10 up to 20 kb records (genes, 16S), 14 beyond (loci, genomes).

    Chosen on the chimp genes (1,682, a set no report uses), 200 copies per divergence, raw counts:
    recall@10 at 30 % was 0.78 / 0.96 / 0.985 / 0.965 for k = 8 / 9 / 10 / 11, and TF-IDF weighting lost
    to raw counts at every k on 16S (0.83 vs 0.955 at k = 8). Longer records need longer k: in a 8 kb
    segment most 10-mers of the 4**10 recur by chance; 14-mers (hashed to 2**22 buckets) do not. Not the
    collection's size, though a query's k-mer has ~N / 4**k postings by chance that a search reads: at 10^6
    genes (benchmarks/scale_choices.py, 150 val queries a divergence) 11-mers lost recall@1 at 30 % (0.91
    against 0.95) for 15 % less time, and 12-mers lost more (0.92 against 0.98 on 50)."""
    return 10 if median_length <= 20_000 else 14


def segment_starts(n: int, segment: int) -> np.ndarray:
    """Starts of the index's segments of an n-base record: windows of `segment` bases, half overlapping."""
    return window_starts(n, segment, max(segment // 2, 1))


class KmerIndexBuilder:
    """Adds records one at a time (memory: the index being built plus one chunk), as `gene-ae embed` streams.

    `sample_lengths`: lengths of the first records, to pick k when cfg.k is 0."""

    def __init__(self, cfg: KmerIndexConfig, sample_lengths: Sequence[int] = ()):
        k = cfg.k or choose_k(float(np.median(sample_lengths)) if len(sample_lengths) else 0.0)
        self.cfg = replace(cfg, k=k)
        self.owner: list[int] = []
        self.start: list[int] = []
        self.end: list[int] = []
        self._blocks: list[sparse.csr_matrix] = []
        self._scales: list[np.ndarray] = []
        self._pending: list[np.ndarray] = []
        self._size = 0

    def add(self, record: int, tokens: np.ndarray) -> None:
        for a in segment_starts(int(tokens.size), self.cfg.segment):
            b = min(int(a) + self.cfg.segment, int(tokens.size))
            self._pending.append(tokens[a:b])
            self.owner.append(record), self.start.append(int(a)), self.end.append(b)
            self._size += b - int(a)
        if self._size >= _CHUNK_BASES:
            self._count()

    def _count(self) -> None:
        """Count the pending segments: their scales (whole rows, so the same as over the whole matrix) and
        their counts kept as 16-bit integers (exact; a quarter of the float32 values' and indices' 8 bytes)."""
        c = self.cfg
        block = kmer_counts(self._pending, c.k, buckets=c.buckets, scaled=c.scaled)
        self._scales.append(l2_scales(block))
        block.data = block.data.astype(np.uint16 if block.data.max(initial=0) <= 0xFFFF else np.uint32)
        self._blocks.append(block)
        self._pending, self._size = [], 0

    def finish(self) -> KmerIndex:
        """The postings: the counts transposed (k-mers x segments), each k-mer's segments as gaps."""
        from scipy import sparse

        self._count()
        counts = sparse.vstack(self._blocks, format="csr")
        self._blocks = []
        inverted = counts.T.tocsr()  # rows are k-mers, each row's segments in increasing order
        del counts
        return KmerIndex.of_inverted(self.cfg, inverted, self.owner, self.start, self.end, np.concatenate(self._scales))


class KmerIndex:
    """Segments' k-mer counts, searched by cosine through postings (for each k-mer, the segments holding it).

    `owner[i]`, `start[i]`, `end[i]`: the record a segment belongs to and its span in that record; `scale[i]`
    the float32 factor (1 / L2 norm, kmers.l2_scales) that normalises its counts. A k-mer `r`'s postings are
    entries indptr[r]:indptr[r + 1] of `gaps` (gene_ae.index.kmer_index.gaps; the gaps over 65,535 are
    far[far_ptr[r]:far_ptr[r + 1]]); the postings whose count is over 1 are `many_at` (increasing) with their
    counts in `many`. On disk: kmers.npz holds everything but the gaps, a .npy file searched memory-mapped."""

    FILE, GAPS_FILE = "kmers.npz", "kmer_gaps.npy"
    FILES = (FILE, GAPS_FILE)

    def __init__(self, cfg: KmerIndexConfig, postings: dict[str, np.ndarray], owner, start, end, scale,
                 source: str = "the k-mer index"):  # fmt: skip
        self.cfg, self.source = cfg, source
        self.indptr, self.gaps = postings["indptr"], postings["gaps"]
        self.far, self.far_ptr = postings["far"], postings["far_ptr"]
        self.many_at, self.many = postings["many_at"], postings["many"]
        self.many_ptr = np.searchsorted(self.many_at, self.indptr)  # each k-mer's first entry in many_at
        self.owner, self.start, self.end = (np.asarray(a, dtype=np.int64) for a in (owner, start, end))
        self.scale = np.asarray(scale, dtype=np.float32)

    @classmethod
    def of_inverted(cls, cfg: KmerIndexConfig, inverted: sparse.csr_matrix, owner, start, end, scale) -> KmerIndex:
        """From integer counts k-mers x segments (each row's columns sorted): gaps a block of rows at a time."""
        indptr = inverted.indptr.astype(np.int64)
        top = int(inverted.data.max(initial=0))
        small, far = np.empty(inverted.nnz, np.uint16), []
        for a, b in row_blocks(indptr):  # temporaries of one block of rows at a time
            lo, hi = indptr[a], indptr[b]
            small[lo:hi], f = gaps(inverted.indices[lo:hi], indptr[a : b + 1] - lo)
            far.append(f)
        many_at = np.flatnonzero(inverted.data > 1)
        many = inverted.data[many_at].astype(np.uint16 if top <= 0xFFFF else np.uint32)
        escapes = np.flatnonzero(small == 0)
        postings = {"indptr": indptr, "gaps": small, "far_ptr": np.searchsorted(escapes, indptr), "many": many,
                    "far": np.concatenate([np.zeros(0, np.uint32), *far]), "many_at": many_at}  # fmt: skip
        return cls(cfg, postings, owner, start, end, scale)

    @classmethod
    def build(cls, seqs: Sequence[np.ndarray], cfg: KmerIndexConfig | None = None) -> KmerIndex:
        """Index every record of `seqs` (long ones as segments); cfg.k = 0 picks k from the median length."""
        builder = KmerIndexBuilder(cfg or KmerIndexConfig(), [s.size for s in seqs])
        for r, s in enumerate(seqs):
            builder.add(r, s)
        return builder.finish()

    @property
    def n_segments(self) -> int:
        return int(self.owner.size)

    @property
    def nbytes(self) -> int:
        parts = (self.indptr, self.gaps, self.many_at, self.many, self.far, self.far_ptr, self.scale, self.owner)
        return int(sum(a.nbytes for a in parts) + 2 * self.owner.nbytes)

    def query_matrix(self, queries: Sequence[np.ndarray]) -> CountRows:
        """The queries' k-mer counts as this index counts them, each row of unit length (numpy only)."""
        c = self.cfg
        return kmer_count_rows(queries, c.k, buckets=c.buckets, scaled=c.scaled).l2()

    def postings(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(segments, counts, postings per row) of these k-mers, concatenated in the order given: only their
        entries are read (from the mapped files when loaded), in one gather."""
        rows = np.asarray(rows, dtype=np.int64)
        lo, hi = self.indptr[rows], self.indptr[rows + 1]
        small = self.gaps.view(np.ndarray)[_positions(lo, hi)]
        far = _slices(self.far, self.far_ptr[rows], self.far_ptr[rows + 1])
        if np.count_nonzero(small == 0) != far.size:
            raise ValueError(f"{self.source}: damaged k-mer postings (escapes do not match); rebuild the index")
        lens = hi - lo
        ends = np.cumsum(lens)
        counts = np.ones(small.size, dtype=self.many.dtype)
        m_lo, m_hi = self.many_ptr[rows], self.many_ptr[rows + 1]
        which = _positions(m_lo, m_hi)  # the counts over 1 among these rows: to their place in the output
        counts[self.many_at[which] + np.repeat(ends - lens - lo, m_hi - m_lo)] = self.many[which]
        segments = ungaps(small, far, np.concatenate([[0], ends]))
        last, first = ends[lens > 0] - 1, (ends - lens)[lens > 0]  # each row's segments increase: ends bound them
        if last.size and (int(segments[last].max()) >= self.n_segments or int(segments[first].min()) < 0):
            raise ValueError(f"{self.source}: damaged k-mer postings (segment out of range); rebuild the index")
        return segments, counts, lens

    def search_segments(
        self, queries: Sequence[np.ndarray], k: int, allowed: np.ndarray | None = None,
        counts: CountRows | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """(segment indices [q, k], cosine [q, k]) best first; -1 where fewer than k segments share a k-mer.
        `allowed`: a boolean mask over segments; the others are never returned. Each score is summed over one
        segment's postings alone, so it does not depend on what else the index (or shard) holds. `counts`:
        query_matrix(queries), made already (by another shard of the same k-mer settings)."""
        q = self.query_matrix(queries) if counts is None else counts
        idx = np.full((len(queries), k), -1, dtype=np.int64)
        sims = np.zeros((len(queries), k), dtype=np.float32)
        for row in range(len(queries)):
            lo, hi = q.indptr[row], q.indptr[row + 1]
            segments, counts, lens = self.postings(q.indices[lo:hi])
            weight = counts * np.repeat(q.data[lo:hi].astype(np.float64), lens)
            scores = (np.bincount(segments, weight, minlength=self.n_segments) * self.scale).astype(np.float32)
            if allowed is not None:  # dropped before ranking: the top k among the allowed segments
                scores[~allowed] = 0
            shared = np.flatnonzero(scores > 0)  # in index order, so top_k's tie rule is by segment
            top, vals = top_k(scores[None, shared], k)
            idx[row, : top.shape[1]], sims[row, : top.shape[1]] = shared[top[0]], vals[0]
        return idx, sims

    def save(self, directory: str | Path) -> Path:
        """kmers.npz (the settings, the segments, the row pointers, the far gaps, the counts over 1) and the gaps."""
        d, c = Path(directory), self.cfg
        with open(d / f".{self.GAPS_FILE}.partial", "wb") as f:  # not over the file the gaps may be mapped from
            np.save(f, np.asarray(self.gaps))
        os.replace(d / f".{self.GAPS_FILE}.partial", d / self.GAPS_FILE)
        # Not compressed: unzipping the row pointers took 0.16 s of a one-query search of 3 shards (they are stored
        # in 32 bits where they fit, so the file grows by ~8 MiB a shard, not 16).
        np.savez(d / self.FILE, cfg=np.array([c.k, c.bucket_bits, c.scaled, c.segment]), owner=self.owner,
                 start=self.start, end=self.end, scale=self.scale, indptr=_narrow(self.indptr),
                 far=np.asarray(self.far), far_ptr=_narrow(self.far_ptr), many_at=self.many_at,
                 many=self.many)  # fmt: skip
        return d / self.FILE

    @classmethod
    def load(cls, directory: str | Path) -> KmerIndex:
        """The index in `directory`, its posting arrays memory-mapped (read as searched, never whole)."""
        d = Path(directory)
        path = d / cls.FILE
        try:
            with np.load(path) as z:
                k, bits, scaled, segment = (int(x) for x in z["cfg"][:4])
                small = {n: z[n] for n in ("owner", "start", "end", "scale", "indptr", "far", "far_ptr", "many_at",
                                           "many")}  # fmt: skip
            cfg = KmerIndexConfig(k, bits, scaled, segment)
            for name in ("indptr", "far_ptr"):  # 32 bits on disk where they fit (_narrow)
                if small[name].dtype.kind not in "iu":
                    raise ValueError(f"{name} of type {small[name].dtype}")
                small[name] = small[name].astype(np.int64)
            indptr, far, far_ptr = small["indptr"], small["far"], small["far_ptr"]
            sizes = {small[n].size for n in ("owner", "start", "end", "scale")}
            if indptr.size != n_columns(k, cfg.buckets) + 1 or far_ptr.shape != indptr.shape or len(sizes) != 1:
                raise ValueError("arrays of inconsistent sizes")
            if indptr[0] != 0 or far_ptr[0] != 0 or far_ptr[-1] != far.size or (np.diff(indptr) < 0).any():
                raise ValueError("row pointers out of order")
            many_at, many = small["many_at"], small["many"]
            if many_at.dtype != np.int64 or many.dtype.str[1:] not in ("u2", "u4") or many_at.shape != many.shape:
                raise ValueError(f"counts of type {many.dtype} at {many_at.dtype} positions")
            if many_at.size and (many_at[0] < 0 or many_at[-1] >= indptr[-1] or (np.diff(many_at) <= 0).any()):
                raise ValueError("counts at positions out of order")
            postings = {"indptr": indptr, "far": far, "far_ptr": far_ptr, "many_at": many_at, "many": many}
            path = d / cls.GAPS_FILE
            postings["gaps"] = np.load(path, mmap_mode="r")
            if postings["gaps"].shape != (int(indptr[-1]),) or postings["gaps"].dtype.str[1:] != "u2":
                raise ValueError(f"{postings['gaps'].shape} {postings['gaps'].dtype} values for {indptr[-1]} postings")
            return cls(cfg, postings, small["owner"], small["start"], small["end"], small["scale"], str(d))
        except (OSError, KeyError, ValueError, IndexError, EOFError) as exc:
            raise ValueError(f"{path}: not a readable k-mer index ({exc})") from None


def _narrow(pointers: np.ndarray) -> np.ndarray:
    """Row pointers as uint32 when every one fits (a shard's postings do, up to 4 Gi), else as they are."""
    pointers = np.asarray(pointers)
    return pointers.astype(np.uint32) if pointers.size and int(pointers.max()) < 2**32 else pointers


def _positions(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The positions lo[i]..hi[i] - 1 of every i, concatenated: one gather of exactly those entries instead
    of a slice per k-mer (1,500 Python slices a query and shard cost more than the entries they read)."""
    lens = hi - lo
    at = np.repeat(lo - (np.cumsum(lens) - lens), lens)
    at += np.arange(at.size, dtype=np.int64)
    return at


def _slices(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """values[lo[i]:hi[i]] of every i, concatenated (read from a mapped file only where touched: a memmap's
    plain view, since a memmap object's own indexing costs 10x)."""
    return values.view(np.ndarray)[_positions(lo, hi)]


def gaps(indices: np.ndarray, indptr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(uint16 gaps, uint32 large gaps) of each row's sorted column indices: a row's first gap is its first
    index + 1, the others the difference to the one before (never 0); gaps over _GAP_MAX are stored as 0
    in the first array and in order in the second. A k-mer's segments, mostly a few hundred apart, cost 2
    bytes each instead of 4."""
    g = np.diff(indices.astype(np.int64), prepend=np.int64(-1))
    first = indptr[:-1][np.diff(indptr) > 0]
    g[first] = indices[first].astype(np.int64) + 1
    large = g > _GAP_MAX
    return np.where(large, 0, g).astype(np.uint16), g[large].astype(np.uint32)


def ungaps(small: np.ndarray, far: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """The int32 column indices `gaps` encoded: running sums of the gaps, restarted at every row (each row's
    first gap less the sum of the row before it, then one running sum)."""
    g = small.astype(np.int64)
    if far.size:
        g[g == 0] = far
    starts = indptr[:-1][np.diff(indptr) > 0]
    if starts.size > 1:
        g[starts[1:]] -= np.add.reduceat(g, starts)[:-1]  # the running sum so far is the row before's own
    np.cumsum(g, out=g)
    g -= 1
    return g.astype(np.int32)


def row_blocks(indptr: np.ndarray, entries: int | None = None) -> list[tuple[int, int]]:
    """(first row, end row) of consecutive blocks of rows holding about `entries` (default _BLOCK_ENTRIES)
    entries each (a longer row is a block alone), covering every row."""
    rows, entries = indptr.size - 1, entries or _BLOCK_ENTRIES
    cuts = np.searchsorted(indptr, np.arange(entries, int(indptr[-1]), entries), side="right") - 1
    bounds = np.unique(np.concatenate([[0], np.clip(cuts, 0, rows), [rows]]))
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))
