"""The k-mer index on disk: nibble-varint postings (a count as repeats), searched memory-mapped, as cosine."""

from __future__ import annotations

import numpy as np
import pytest

from gene_ae.core.kmers import kmer_counts, l2_rows
from gene_ae.index.kmer_index import KmerIndex, KmerIndexConfig
from gene_ae.index.postings import Postings


def _reference_decode(stream: np.ndarray, ptr: np.ndarray, row: int) -> list[int]:
    """The format as postings.c documents it, read in Python: nibble i is byte i // 2's high half when i is
    even; 3-bit groups most significant first, high bit set while another follows; gaps summed from 0."""
    out, segment, v = [], 0, 0
    for i in range(int(ptr[row]), int(ptr[row + 1])):
        x = (int(stream[i // 2]) >> (4 if i % 2 == 0 else 0)) & 15
        v = (v << 3) | (x & 7)
        if not x & 8:
            segment += v
            out.append(segment)
            v = 0
    return out


@pytest.mark.parametrize("seed", range(5))
def test_postings_round_trip_on_random_rows_with_counts(seed):
    """Random rows (empty ones, gaps of every size, segment 0 first, counts over 1) decode as written, in C and
    by the documented layout read in Python; a count c lists its segment c times."""
    rng = np.random.default_rng(seed)
    lengths = rng.choice([0, 0, 1, 3, 40], size=60)
    rows = [np.sort(rng.choice(3_000_000, size=n, replace=False)) for n in lengths]
    rows[1] = np.array([0, 1, 2, 9, 64, 2_999_999])  # the first segment 0; gaps of 1, 7, 55 and over 2^21
    lengths[1] = rows[1].size
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = np.concatenate([np.zeros(0, np.int64), *rows])
    counts = np.where(rng.random(indices.size) < 0.1, rng.integers(2, 300, indices.size), 1)
    lists = Postings.encode(indptr, indices, counts, 3_000_000)
    expected = [np.repeat(indices[a:b], counts[a:b]) for a, b in zip(indptr[:-1], indptr[1:])]
    order = rng.permutation(60)
    segments, lens = lists.segments(order, "test")
    np.testing.assert_array_equal(segments, np.concatenate([expected[r] for r in order]))
    assert lens.tolist() == [expected[r].size for r in order]
    for r in range(60):
        assert _reference_decode(lists.stream, lists.ptr, r) == expected[r].tolist()
    weights = rng.random(60)
    summed = lists.accumulate(np.arange(60), weights, "test")
    touched = np.unique(indices)
    want_t = np.array([sum(weights[r] * np.count_nonzero(expected[r] == t) for r in range(60)) for t in touched])
    np.testing.assert_allclose(summed[touched], want_t)
    assert summed.sum() == pytest.approx(want_t.sum())


def test_postings_that_do_not_increase_are_refused():
    with pytest.raises(ValueError, match="do not increase"):
        Postings.encode(np.array([0, 2]), np.array([5, 5]), np.array([1, 1]), 10)


def test_gaps_of_one_cost_half_a_byte():
    """Neighbouring records share k-mers (40 % of gaps are 1 on SILVA): such a row costs a nibble a posting."""
    lists = Postings.encode(np.array([0, 1000]), np.arange(1000), np.ones(1000), 1000)
    assert lists.stream.nbytes == 500


def test_postings_load_mapped_and_search_as_the_cosine_of_counts(tmp_path):
    rng = np.random.default_rng(0)
    seqs = [rng.integers(3, 8, size=n).astype(np.uint8) for n in rng.integers(20, 3000, size=200)]
    seqs.append(np.full(2000, 3, np.uint8))  # one k-mer counted 1,991 times
    idx = KmerIndex.build(seqs, KmerIndexConfig())
    idx.save(tmp_path)
    again = KmerIndex.load(tmp_path)
    assert isinstance(again.lists.stream, np.memmap) and again.lists.stream.dtype == np.uint8
    queries = [seqs[3], seqs[50][100:900], seqs[-1]]
    found, sims = again.search_segments(queries, 5)
    for a, b in zip((found, sims), idx.search_segments(queries, 5)):
        np.testing.assert_array_equal(a, b)
    # the same scores as cosine over the whole count matrix (scipy), the definition
    counts = kmer_counts(seqs, again.cfg.k, buckets=again.cfg.buckets)
    cosine = (l2_rows(kmer_counts(queries, again.cfg.k, buckets=again.cfg.buckets)) @ l2_rows(counts).T).toarray()
    hit = found >= 0  # the poly-A record shares its one k-mer with no other
    np.testing.assert_allclose(sims[hit], np.take_along_axis(cosine, found, 1)[hit], rtol=1e-5)
    assert (found[:, 0] == [3, 50, 200]).all() and hit.sum() == 11 and (sims[~hit] == 0).all()
    allowed = np.ones(len(seqs), bool)
    allowed[[3, 50]] = False
    masked, _ = again.search_segments(queries, 5, allowed)
    assert not np.isin(masked, [3, 50]).any() and masked[2, 0] == 200


def test_saving_over_its_own_mapped_files_keeps_them(tmp_path):
    seqs = [np.random.default_rng(1).integers(3, 7, size=2000).astype(np.uint8)]
    KmerIndex.build(seqs, KmerIndexConfig()).save(tmp_path)
    again = KmerIndex.load(tmp_path)
    again.save(tmp_path)  # its postings are mapped from these very files
    found, _ = KmerIndex.load(tmp_path).search_segments(seqs, 1)
    assert found[0, 0] == 0


@pytest.mark.parametrize("damage", ["dtype", "pointers", "pointer type", "length"])
def test_postings_of_another_type_or_out_of_order_are_refused_on_load(tmp_path, damage):
    seq = np.concatenate([np.arange(3, 7, dtype=np.uint8).repeat(300), np.tile(np.arange(3, 7, dtype=np.uint8), 30)])
    KmerIndex.build([seq], KmerIndexConfig()).save(tmp_path)
    z = dict(np.load(tmp_path / KmerIndex.FILE))
    stream = np.load(tmp_path / KmerIndex.POSTINGS_FILE)
    if damage == "dtype":
        np.save(tmp_path / KmerIndex.POSTINGS_FILE, stream.astype(np.float32))
    elif damage == "pointers":
        z["ptr"] = z["ptr"][::-1].copy()
    elif damage == "pointer type":
        z["ptr"] = z["ptr"].astype(np.float64)
    else:
        np.save(tmp_path / KmerIndex.POSTINGS_FILE, stream[:-1])
    np.savez(tmp_path / KmerIndex.FILE, **z)
    with pytest.raises(ValueError, match="not a readable k-mer index"):
        KmerIndex.load(tmp_path)


def test_row_pointers_out_of_order_are_refused_by_the_search_that_reads_them(tmp_path):
    """Only the first pointer is checked on load (a pass over every pointer cost 11 ms an open at 10^5 genes): a
    row whose pointers are out of order or past the stream is refused when a search reads it."""
    seq = np.random.default_rng(2).integers(3, 7, size=3000).astype(np.uint8)
    KmerIndex.build([seq], KmerIndexConfig()).save(tmp_path)
    z = dict(np.load(tmp_path / KmerIndex.FILE))
    ptr = z["ptr"].astype(np.int64)
    row = int(np.flatnonzero(np.diff(ptr) > 0)[0])  # a row holding postings: its end pointer now before its start
    ptr[row + 1] = ptr[row] - 1 if ptr[row] > 0 else ptr[-1] + 10
    z["ptr"] = ptr
    np.savez(tmp_path / KmerIndex.FILE, **z)
    damaged = KmerIndex.load(tmp_path)
    with pytest.raises(ValueError, match="damaged k-mer postings"):
        damaged.search_segments([seq], 1)
