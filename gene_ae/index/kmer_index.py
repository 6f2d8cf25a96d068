"""The exact k-mer half of hybrid search: canonical k-mer counts of segments in an inverted index, cosine.

Why: on dense collections (16S, outbreak genomes) retrieval is a precision problem, and exact k-mers find
a 20-30 %-diverged copy's source far more often than a small learned vector does (RESULTS.md); text search
pairs BM25 with dense retrievers for the same reason. Rows are *segments*: whole records up to `segment`
bases, half-overlapping pieces of longer ones (so a query can hit the part of a genome it matches, and a
long subject does not dilute its own score). k follows the collection's lengths (`choose_k`): short k for
genes, where mutated copies keep few long k-mers, longer k for loci and genomes, where short k-mers recur
by chance. Counts are raw (TF-IDF weighting measured worse, `choose_k`). Numpy, scipy and the compiled loops.

Stored as postings, memory-mapped when searched: for each k-mer its segments in increasing order of where they are
stored, as nibble varints of their gaps with runs (gene_ae/index/postings.py), read only for the query's k-mers, so
search memory does not grow with the collection (a 10^6-gene index's postings stay on disk and in the page cache). A
segment holding a k-mer c times lists it c times (0.3 % of postings of genes at k = 10 have a count over 1). The
builder stores the segments, where that makes the postings smaller, in an order that makes relatives neighbours
(gene_ae/index/order.py: sorted by two MinHash values of their k-mers, then recursive graph bisection), so most gaps
are 1 and are written as runs (postings.c); searches still see the segments in their own order.
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
from gene_ae.index.compact import narrow, split_lengths, wide
from gene_ae.index.npzmap import MappedNpz
from gene_ae.index.order import minhash_keys, neighbour_order
from gene_ae.index.postings import Postings, RowLengths, transpose

if TYPE_CHECKING:
    from scipy import sparse

_CHUNK_BASES = 1 << 22  # segment bases counted per pass while building: bounds temporary memory
# A query's piece of a longer record (SILVA: an exact 300-base piece of a 1,975-base gene) ranked by cosine below its
# shorter relatives: a segment holding HELD of the query's k-mers (by the query's weights) scores at least that share
# over LONGER, as if its L2 norm were LONGER times the query's. HELD keeps chance out: a 30 % copy of a gene shares
# ~3 % of its 10-mers, and an 8 kb segment of a genome as many by chance, which a lift for any share put first.
# Chosen on the SILVA val split (LONGER 1.25, 1.5, 2 alike: one exact piece more, no query lost).
LONGER, HELD = 1.5, 0.5
# Consecutive query rows (a long query's half-overlapping pieces; a batch's queries) have their postings read in one
# gather of at most this many bytes (repeats counted) and READ_ROWS rows: each row read once, not once a piece.
READ_TOGETHER, READ_ROWS = 1 << 23, 256


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
        self._keys: list[np.ndarray] = []
        self._pending: list[np.ndarray] = []
        self._shares: np.ndarray | int = 0
        self._size = 0
        self.record_order: np.ndarray | None = None  # set by finish(): the records in the segments' stored order

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
        self._keys.append(minhash_keys(block))
        # the segments holding each k-mer, summed a block at a time (bincount of the whole matrix's int32 columns
        # would copy them as int64: 1.1 GB for SILVA's 100,000-gene val split's 134 million postings)
        self._shares = self._shares + np.bincount(block.indices, minlength=block.shape[1])
        block.data = block.data.astype(np.uint16 if block.data.max(initial=0) <= 0xFFFF else np.uint32)
        self._blocks.append(block)
        self._pending, self._size = [], 0

    def finish(self) -> KmerIndex:
        """The postings: the counts transposed (k-mers x segments), each k-mer's segments as gaps."""
        from scipy import sparse

        self._count()
        counts = sparse.vstack(self._blocks, format="csr")
        self._blocks = []
        order = neighbour_order(counts, self._shares, np.concatenate(self._keys, axis=1))
        self.record_order = records_in(np.asarray(self.owner, np.int64)[order])
        held = self._shares  # the segments holding each k-mer: the transpose's row lengths
        plain = Postings.size(*inverted(counts, None, held))  # rows are k-mers, each row's segments increasing
        # The same rows with each segment numbered where it is stored (order[i] stored at i), increasing: the
        # transpose of the segments' rows taken in stored order, with runs where they pay (not where neighbours share
        # few k-mers: the grown loci's 8 kb segments at k = 14, 1.17x). The counts are let go before the postings
        # are written: a 10^6-gene shard's 130 million are 780 MB.
        n = len(self.owner)
        rows = inverted(counts, order, held)
        runs = Postings.size(*rows, runs=True)
        if runs >= plain:  # the stored-order rows let go before the plain ones are made
            del rows
            order, runs, rows = None, plain, inverted(counts, None, held)
        del counts
        lists = Postings.encode(*rows, n, order, nibbles=runs)
        return KmerIndex(self.cfg, lists, self.owner, self.start, self.end, np.concatenate(self._scales))


def records_in(owners: np.ndarray) -> np.ndarray:
    """The records of segments listed in some order (their owners), each once, where its first segment is: the
    order `gene-ae embed` stores the sequences in, relatives side by side as the segments are stored."""
    _, first = np.unique(owners, return_index=True)
    return owners[np.sort(first)]


def inverted(
    counts: sparse.csr_matrix, order: np.ndarray | None = None, held: np.ndarray | None = None
) -> tuple[np.ndarray, ...]:
    """(indptr, indices, counts) of the segments' k-mer counts transposed (rows are k-mers, each row's segments
    increasing); with `order`, the segments taken in that order and numbered by their place in it (postings.c's
    transpose, `held` the segments holding each k-mer where known: 25.6 -> 9.8 s for a 10^6-gene shard's two
    transposes; scipy's where the counts are not 16-bit)."""
    got = transpose(counts.indptr, counts.indices, counts.data, counts.shape[1], order, held)
    if got is None:
        rows = (counts if order is None else counts[order]).T.tocsr()
        return rows.indptr, rows.indices, rows.data
    return got


class KmerIndex:
    """Segments' k-mer counts, searched by cosine through postings (for each k-mer, the segments holding it).

    `owner[i]`, `start[i]`, `end[i]`: the record a segment belongs to and its span in that record; `scale[i]`
    the float32 factor (1 / L2 norm, kmers.l2_scales) that normalises its counts. `lists`: every k-mer's
    postings (gene_ae/index/postings.py owns their format). On disk: kmers.npz holds everything but the
    postings' stream, a .npy file searched memory-mapped."""

    FILE, POSTINGS_FILE = "kmers.npz", "kmer_postings.npy"
    FILES = (FILE, POSTINGS_FILE)

    def __init__(self, cfg: KmerIndexConfig, lists: Postings, owner, start, end, scale, source: str = "k-mer index"):
        self.cfg, self.source, self.lists = cfg, source, lists
        self.owner, self.start, self.end = (np.asarray(a, dtype=np.int64) for a in (owner, start, end))
        self.scale = np.asarray(scale, dtype=np.float32)

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
        order = self.lists.order if self.lists.order is not None else np.zeros(0, np.int32)
        p = self.lists.pointers
        pointers = (p,) if isinstance(p, np.ndarray) else (p.short, p.long, p.at, p.used)
        parts = (self.lists.stream, *pointers, self.scale, self.owner, order)
        return int(sum(a.nbytes for a in parts) + 2 * self.owner.nbytes)

    def query_matrix(self, queries: Sequence[np.ndarray]) -> CountRows:
        """The queries' k-mer counts as this index counts them, each row of unit length (no scipy)."""
        c = self.cfg
        return kmer_count_rows(queries, c.k, buckets=c.buckets, scaled=c.scaled).l2()

    def postings(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(segments, entries per row) of these k-mers, concatenated in the order given; a segment holding a
        k-mer c times is listed c times."""
        return self.lists.segments(rows, self.source)

    def search_segments(
        self, queries: Sequence[np.ndarray], k: int, allowed: np.ndarray | None = None,
        counts: CountRows | None = None, wide: np.ndarray | None = None, k_wide: int = 0,
    ) -> tuple[np.ndarray, ...]:  # fmt: skip
        """(segment indices [q, k], scores [q, k]) best first; -1 where fewer than k segments share a k-mer.
        A score is the cosine of the counts, but a segment holding at least HELD of the query's k-mers (by the
        query's weights) scores at least that share over LONGER, as if its L2 norm were at most LONGER times the
        query's: a piece of a longer record ranks by what it shares, not below shorter relatives for the record's
        other bases (SILVA: an exact 300-base piece of a 1,975-base gene ranked 50th by cosine, under its 1,200-base
        relatives). Rows without a norm (`counts.norms`: thinned long-query pieces) are scored by plain cosine.
        `allowed`: a boolean mask over segments; the others are never returned. Each score is summed over one
        segment's postings alone, so it does not depend on what else the index (or shard) holds. `counts`:
        query_matrix(queries), made already (by another shard of the same k-mer settings). `wide` (a boolean mask
        over the queries) with `k_wide` > k: those rows' best k_wide segments too, from the same scores (the postings
        read once), as two more arrays [wide.sum(), k_wide]; their first k are the rows' k best."""
        q = self.query_matrix(queries) if counts is None else counts
        idx = np.full((len(queries), k), -1, dtype=np.int64)
        sims = np.zeros((len(queries), k), dtype=np.float32)
        widened = wide is not None and k_wide > k
        at_wide = np.cumsum(wide) - 1 if widened else None
        n_wide = int(np.count_nonzero(wide)) if widened else 0
        widx = np.full((n_wide, max(k_wide, 0)), -1, dtype=np.int64)
        wsims = np.zeros((n_wide, max(k_wide, 0)), dtype=np.float32)
        gathered, until = None, 0  # the rows up to `until` read in one gather (None: a row alone, read by itself)
        for row in range(len(queries)):
            lo, hi = q.indptr[row], q.indptr[row + 1]
            if row >= until:
                until = self._read_together(q, row)
                gathered = self.lists.gather(q.indices[lo : q.indptr[until]], self.source) if until > row + 1 else None
            summed = self.lists.accumulate(q.indices[lo:hi], q.data[lo:hi], self.source, gathered)
            scores = (summed * self.scale).astype(np.float32)
            norm = 0.0 if q.norms is None else float(q.norms[row])
            if norm > 0:  # the pieces of longer records holding most of the query, scored by the share they hold
                held = summed >= HELD * norm
                scores[held] = np.maximum(scores[held], summed[held] / (LONGER * norm))
            if allowed is not None:  # dropped before ranking: the top k among the allowed segments
                scores[~allowed] = 0
            shared = np.flatnonzero(scores > 0)  # in index order, so top_k's tie rule is by segment
            wider = widened and bool(wide[row])
            top, vals = top_k(scores[None, shared], k_wide if wider else k)
            found = shared[top[0]]
            if wider:  # top_k's ties go to the lower index at every width: its first k are the k best
                widx[at_wide[row], : found.size], wsims[at_wide[row], : found.size] = found, vals[0]
                found, vals = found[:k], vals[:, :k]
            idx[row, : found.size], sims[row, : found.size] = found, vals[0]
        return (idx, sims, widx, wsims) if widened else (idx, sims)

    def _read_together(self, q: CountRows, row: int) -> int:
        """The end of the run of rows from `row` whose postings are read in one gather: up to READ_TOGETHER bytes
        of them (counted with repeats), at least one row."""
        last = min(row + READ_ROWS, q.shape[0])
        lo, hi = int(q.indptr[row]), int(q.indptr[last])
        if hi == lo:
            return row + 1
        sizes = self.lists.row_bytes(q.indices[lo:hi].astype(np.int64), self.source)
        spent = np.cumsum(sizes)[np.maximum(q.indptr[row + 1 : last + 1] - lo - 1, 0)]  # by the end of each row
        return row + max(1, int(np.searchsorted(spent, READ_TOGETHER, side="right")))

    def save(self, directory: str | Path) -> Path:
        """kmers.npz (the settings, the segments, the row pointers) and the postings' stream."""
        d, c = Path(directory), self.cfg
        with open(d / f".{self.POSTINGS_FILE}.partial", "wb") as f:  # not over the file the stream may be mapped from
            np.save(f, np.asarray(self.lists.stream))
        os.replace(d / f".{self.POSTINGS_FILE}.partial", d / self.POSTINGS_FILE)
        # Not compressed: read back as views of the file (npzmap.py; unzipping the row pointers took 0.16 s of a
        # one-query search of 3 shards). Each row's length in a byte (compact.split_lengths) and the segments' columns
        # in the fewest bytes, widened to int64 on load; every 256th row's pointer (and the long rows before it)
        # beside them: a search finds its rows' pointers from those, never making the 2^20 (postings.RowLengths).
        order = {} if self.lists.order is None else {"order": self.lists.order}  # none: an index built before runs
        p = self.lists.pointers
        rows = RowLengths.of(*split_lengths(p)) if isinstance(p, np.ndarray) else p
        with open(d / f".{self.FILE}.partial", "wb") as f:  # not over the file a loaded index's arrays view
            np.savez(f, cfg=np.array([c.k, c.bucket_bits, c.scaled, c.segment]), owner=narrow(self.owner),
                     start=narrow(self.start), end=narrow(self.end), scale=self.scale, rows=rows.short,
                     long_rows=narrow(rows.long), row_at=narrow(rows.at), row_used=narrow(rows.used),
                     **order)  # fmt: skip
        os.replace(d / f".{self.FILE}.partial", d / self.FILE)
        return d / self.FILE

    @classmethod
    def load(cls, directory: str | Path) -> KmerIndex:
        """The index in `directory`, its postings' stream memory-mapped (read as searched, never whole)."""
        d = Path(directory)
        path = d / cls.FILE
        try:
            with MappedNpz(path) as z:  # stored, not zipped: its arrays are views of the file, not copies
                k, bits, scaled, segment = (int(x) for x in z["cfg"][:4])
                small = {n: wide(z[n], n) for n in ("owner", "start", "end")}
                small["scale"] = z["scale"]
                order = z["order"] if "order" in z.files else None
                if "ptr" in z.files:  # an index of format 7 or before: the row pointers themselves (uint32 or int64)
                    ptr = wide(z["ptr"], "row pointers")
                else:  # each row's pointer found as a search asks for it
                    blocks = [z[n] for n in ("row_at", "row_used") if n in z.files]  # format 9; else found
                    ptr = RowLengths.of(z["rows"], z["long_rows"], *blocks)
            cfg = KmerIndexConfig(k, bits, scaled, segment)
            sizes = {small[n].size for n in ("owner", "start", "end", "scale")}
            if len(sizes) != 1:
                raise ValueError("arrays of inconsistent sizes")
            n = sizes.pop()
            if order is not None and (order.dtype != np.int32 or order.shape != (n,) or n and not (
                    0 <= order.min() and order.max() < n)):  # fmt: skip
                raise ValueError(f"a segment order of {order.shape} {order.dtype} values for {n} segments")
            if isinstance(ptr, np.ndarray) and ptr[0] != 0:  # the others are checked as rows are read (postings.c)
                raise ValueError("row pointers out of order")
            path = d / cls.POSTINGS_FILE
            stream = np.load(path, mmap_mode="r")
            lists = Postings(stream, ptr, n, order)
            if lists.rows != n_columns(k, cfg.buckets):
                raise ValueError("arrays of inconsistent sizes")
            if stream.dtype != np.uint8 or stream.ndim != 1 or (lists.end + 1) // 2 != stream.size:
                raise ValueError(f"{stream.shape} {stream.dtype} values for {lists.end} nibbles of postings")
            return cls(cfg, lists, small["owner"], small["start"], small["end"], small["scale"], str(d))
        except (OSError, KeyError, ValueError, IndexError, EOFError) as exc:
            raise ValueError(f"{path}: not a readable k-mer index ({exc})") from None
