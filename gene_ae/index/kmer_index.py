"""The exact k-mer half of hybrid search: canonical k-mer counts of segments in an inverted index, cosine.

Why: on dense collections (16S, outbreak genomes) retrieval is a precision problem, and exact k-mers find
a 20-30 %-diverged copy's source far more often than a small learned vector does (RESULTS.md); text search
pairs BM25 with dense retrievers for the same reason. Rows are *segments*: whole records up to `segment`
bases, half-overlapping pieces of longer ones (so a query can hit the part of a genome it matches, and a
long subject does not dilute its own score). k follows the collection's lengths (`choose_k`): short k for
genes, where mutated copies keep few long k-mers, longer k for loci and genomes, where short k-mers recur
by chance. Counts are raw (TF-IDF weighting measured worse, `choose_k`). Numpy and scipy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import zstandard
from scipy import sparse

from gene_ae.core.kmers import kmer_counts, l2_rows, l2_scales
from gene_ae.core.topk import top_k
from gene_ae.core.windows import window_starts

_CHUNK_BASES = 1 << 22  # segment bases counted per pass while building: bounds temporary memory
_GAP_MAX = (1 << 16) - 1  # gaps between a k-mer's segments are stored in 16 bits; larger ones apart
_ZSTD_LEVEL = 3
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
    segment most 10-mers of the 4**10 recur by chance; 14-mers (hashed to 2**22 buckets) do not."""
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
        if block.data.max(initial=0) <= np.iinfo(np.uint16).max:
            block.data = block.data.astype(np.uint16)
        self._blocks.append(block)
        self._pending, self._size = [], 0

    def finish(self) -> KmerIndex:
        """The inverted index: counts transposed (k-mers x segments), each value count x its segment's scale,
        the float32 values l2_rows gives."""
        self._count()
        counts = sparse.vstack(self._blocks, format="csr")
        self._blocks = []
        scale = np.concatenate(self._scales)
        inverted = counts.T.tocsr()
        del counts
        data = inverted.data.astype(np.float32)
        data *= scale[inverted.indices]
        inverted = sparse.csr_matrix((data, inverted.indices, inverted.indptr), shape=inverted.shape)
        return KmerIndex(self.cfg, inverted, self.owner, self.start, self.end, scale)


class KmerIndex:
    """Segments' normalised k-mer counts, searched by cosine through the inverted index (k-mers x segments).

    `owner[i]`, `start[i]`, `end[i]`: the record a segment belongs to and its span in that record; `scale[i]`
    the float32 factor (1 / L2 norm, kmers.l2_scales) that normalised its counts, so that the file stores the
    small integer counts (sparse.npz: counts in 8 bits, each k-mer's segments as 16-bit gaps, zstd) and loading
    gives back the very same float32 values (count x scale, one rounding, as l2_rows)."""

    FILE = "sparse.npz"

    def __init__(self, cfg: KmerIndexConfig, inverted: sparse.csr_matrix, owner, start, end, scale=None):
        self.cfg, self.inverted = cfg, inverted
        self.owner, self.start, self.end = (np.asarray(a, dtype=np.int64) for a in (owner, start, end))
        self.scale = None if scale is None else np.asarray(scale, dtype=np.float32)

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
        m = self.inverted
        return int(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes + 3 * self.owner.nbytes)

    def query_matrix(self, queries: Sequence[np.ndarray]) -> sparse.csr_matrix:
        c = self.cfg
        return l2_rows(kmer_counts(queries, c.k, buckets=c.buckets, scaled=c.scaled))

    def search_segments(
        self, queries: Sequence[np.ndarray], k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(segment indices [q, k], cosine [q, k]) best first; -1 where fewer than k segments share a k-mer.
        `allowed`: a boolean mask over segments; the others are never returned."""
        scores = (self.query_matrix(queries) @ self.inverted).tocsr()
        if allowed is not None:  # dropped before ranking: the top k among the allowed segments
            scores.data[~allowed[scores.indices]] = 0
            scores.eliminate_zeros()
        scores.sort_indices()  # columns in index order, so top_k's tie rule is by segment
        idx = np.full((len(queries), k), -1, dtype=np.int64)
        sims = np.zeros((len(queries), k), dtype=np.float32)
        for row in range(scores.shape[0]):
            lo, hi = scores.indptr[row], scores.indptr[row + 1]
            top, vals = top_k(scores.data[None, lo:hi], k)
            idx[row, : top.shape[1]], sims[row, : top.shape[1]] = scores.indices[lo:hi][top[0]], vals[0]
        return idx, sims

    def save(self, directory: str | Path) -> Path:
        """sparse.npz: the counts (8 or 16 bits) and gaps (gene_ae.index.kmer_index.gaps), zstd-compressed,
        when the segment scales are known (an index from KmerIndexBuilder); else the float32 values."""
        path = Path(directory) / self.FILE
        m, c = self.inverted, self.cfg
        arrays = {"shape": np.array(m.shape), "owner": self.owner, "start": self.start, "end": self.end}
        if self.scale is None:
            arrays |= {"data": m.data, "indices": m.indices, "indptr": m.indptr}
        else:
            counts, small, far = [], [], []
            for a, b in row_blocks(m.indptr):  # temporaries of one block of rows at a time
                lo, hi = m.indptr[a], m.indptr[b]
                counts.append(np.rint(m.data[lo:hi] / self.scale[m.indices[lo:hi]]))  # exact: count x scale, rounded
                g, f = gaps(m.indices[lo:hi], m.indptr[a : b + 1] - lo)
                small.append(g), far.append(f)
            top = max((float(c.max(initial=0)) for c in counts), default=0.0)
            dtype = np.uint8 if top <= 0xFF else np.uint16 if top <= 0xFFFF else np.uint32
            arrays |= {"scale": self.scale, "far": np.concatenate([np.zeros(0, np.uint32), *far]),
                       "counts": _packed(np.concatenate([np.zeros(0, dtype), *(c.astype(dtype) for c in counts)])),
                       "gaps": _packed(np.concatenate([np.zeros(0, np.uint16), *small])),
                       "lengths": _packed(np.diff(m.indptr).astype(np.uint32))}  # fmt: skip
        np.savez(path, cfg=np.array([c.k, c.bucket_bits, c.scaled, c.segment]), **arrays)
        return path

    @classmethod
    def load(cls, directory: str | Path) -> KmerIndex:
        path = Path(directory) / cls.FILE
        try:
            z = np.load(path)
            k, bits, scaled, segment = (int(x) for x in z["cfg"][:4])
            shape, scale = tuple(int(x) for x in z["shape"]), None
            if "data" in z:  # float32 values (an index saved without its scales, or by an older gene-ae)
                data, indices, indptr = z["data"], z["indices"], z["indptr"]
            else:
                scale, far, small = z["scale"], z["far"], _unpacked(z["gaps"])
                indptr = np.concatenate([[0], np.cumsum(_unpacked(z["lengths"]), dtype=np.int64)])
                if indptr[-1] != small.size:
                    raise ValueError(f"{small.size} gaps for {indptr[-1]} entries")
                indices, data, used = np.empty(small.size, np.int32), _unpacked(z["counts"]).astype(np.float32), 0
                for a, b in row_blocks(indptr):  # temporaries of one block of rows at a time
                    lo, hi = indptr[a], indptr[b]
                    n_far = int(np.count_nonzero(small[lo:hi] == 0))
                    indices[lo:hi] = ungaps(small[lo:hi], far[used : used + n_far], indptr[a : b + 1] - lo)
                    data[lo:hi] *= scale[indices[lo:hi]]
                    used += n_far
            m = sparse.csr_matrix((data, indices, indptr), shape=shape)
            return cls(KmerIndexConfig(k, bits, scaled, segment), m, z["owner"], z["start"], z["end"], scale)
        except (OSError, KeyError, ValueError, IndexError, zstandard.ZstdError) as exc:
            raise ValueError(f"{path}: not a readable k-mer index ({exc})") from None


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
    """The int32 column indices `gaps` encoded: running sums of the gaps, restarted at every row."""
    g = small.astype(np.int64)
    g[g == 0] = far
    total = np.cumsum(g)
    before = np.concatenate([[0], total])[indptr[:-1]]  # the sum of the gaps of the rows before each row
    return (total - np.repeat(before, np.diff(indptr)) - 1).astype(np.int32)


def row_blocks(indptr: np.ndarray, entries: int | None = None) -> list[tuple[int, int]]:
    """(first row, end row) of consecutive blocks of rows holding about `entries` (default _BLOCK_ENTRIES)
    entries each (a longer row is a block alone), covering every row."""
    rows, entries = indptr.size - 1, entries or _BLOCK_ENTRIES
    cuts = np.searchsorted(indptr, np.arange(entries, int(indptr[-1]), entries), side="right") - 1
    bounds = np.unique(np.concatenate([[0], np.clip(cuts, 0, rows), [rows]]))
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))


def _packed(a: np.ndarray) -> np.ndarray:
    """An array as one zstd frame (bytes as uint8), its dtype in the frame's first 8 bytes."""
    head = np.dtype(a.dtype).str.encode().ljust(8)
    return np.frombuffer(head + zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(a.tobytes()), np.uint8)


def _unpacked(raw: np.ndarray) -> np.ndarray:
    data = raw.tobytes()
    return np.frombuffer(zstandard.ZstdDecompressor().decompress(data[8:]), np.dtype(data[:8].strip().decode()))
