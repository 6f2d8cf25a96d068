"""The k-mer index on disk: 16-bit gaps and the counts over 1 apart, searched memory-mapped, as cosine."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from gene_ae.core.kmers import kmer_counts, l2_rows
from gene_ae.index import kmer_index
from gene_ae.index.kmer_index import KmerIndex, KmerIndexConfig, gaps, row_blocks, ungaps


def test_gaps_round_trip_with_empty_rows_and_large_gaps():
    m = sparse.csr_matrix(
        (np.ones(6, np.float32), np.array([0, 70_000, 200_000, 5, 65_535, 65_536]), np.array([0, 3, 3, 4, 6, 6])),
        shape=(5, 300_000),
    )
    small, far = gaps(m.indices, m.indptr)
    assert small.dtype == np.uint16 and far.tolist() == [70_000, 130_000, 65_536]
    np.testing.assert_array_equal(ungaps(small, far, m.indptr), m.indices)


@pytest.mark.parametrize("seed", range(5))
def test_gaps_round_trip_on_random_rows(seed):
    """Random rows (empty ones, far gaps, a first gap over 65,535) decode to their indices, whole or in parts."""
    rng = np.random.default_rng(seed)
    lengths = rng.choice([0, 0, 1, 3, 40], size=60)
    rows = [np.sort(rng.choice(300_000, size=n, replace=False)) for n in lengths]
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = np.concatenate([np.zeros(0, np.int64), *rows])
    small, far = gaps(indices, indptr)
    np.testing.assert_array_equal(ungaps(small, far, indptr), indices)


def test_row_blocks_cover_every_row_once():
    indptr = np.array([0, 0, 5, 5, 6, 20, 21, 21])
    blocks = row_blocks(indptr, 4)
    assert [a for a, _ in blocks] == [0] + [b for _, b in blocks[:-1]] and blocks[-1][1] == 7
    assert all(b - a == 1 or indptr[b] - indptr[a] <= 2 * 4 for a, b in blocks) and len(blocks) > 2
    assert row_blocks(indptr, 100) == [(0, 7)]
    assert row_blocks(np.array([0, 0, 0]), 4) == [(0, 2)]


@pytest.mark.parametrize("block", [0, 1000])  # 0: the default, one block; 1000: many blocks of rows
def test_postings_load_mapped_and_search_as_the_cosine_of_counts(tmp_path, monkeypatch, block):
    if block:
        monkeypatch.setattr(kmer_index, "_BLOCK_ENTRIES", block)
    rng = np.random.default_rng(0)
    seqs = [rng.integers(3, 8, size=n).astype(np.uint8) for n in rng.integers(20, 3000, size=200)]
    seqs.append(np.full(2000, 3, np.uint8))  # one k-mer counted 1,991 times: 16-bit counts
    idx = KmerIndex.build(seqs, KmerIndexConfig())
    idx.save(tmp_path)
    again = KmerIndex.load(tmp_path)
    assert isinstance(again.gaps, np.memmap) and again.gaps.dtype == np.uint16  # 2 bytes a posting
    assert again.many.dtype == np.uint16 and again.many.max() == 1991 and 0 < again.many.size < again.gaps.size // 10
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


def test_far_gaps_round_trip_through_the_postings(tmp_path):
    """Segments over 65,535 apart (a k-mer in two records of a large collection) go through the far gaps."""
    n = 70_000
    indptr = np.array([0, 2, 2] + [3] * 14)  # the 16 2-mers: three hold segments
    inverted = sparse.csr_matrix((np.array([1, 2, 1], np.uint16), np.array([5, 69_999, 3]), indptr), shape=(16, n))
    idx = KmerIndex.of_inverted(KmerIndexConfig(k=2), inverted, np.arange(n), np.zeros(n), np.ones(n), np.ones(n))
    assert idx.far.tolist() == [69_994] and idx.far_ptr.tolist() == [0] + [1] * 16
    assert idx.many_at.tolist() == [1] and idx.many.tolist() == [2]  # the one count over 1, apart
    idx.save(tmp_path)
    again = KmerIndex.load(tmp_path)
    segments, counts, lens = again.postings(np.array([2, 0, 1]))
    assert segments.tolist() == [3, 5, 69_999] and counts.tolist() == [1, 1, 2] and lens.tolist() == [1, 2, 0]
    segments, counts, lens = again.postings(np.array([0, 2, 0]))  # a row twice: its count at each place
    assert segments.tolist() == [5, 69_999, 3, 5, 69_999] and counts.tolist() == [1, 2, 1, 1, 2]


def test_saving_over_its_own_mapped_files_keeps_them(tmp_path):
    seqs = [np.random.default_rng(1).integers(3, 7, size=2000).astype(np.uint8)]
    KmerIndex.build(seqs, KmerIndexConfig()).save(tmp_path)
    again = KmerIndex.load(tmp_path)
    again.save(tmp_path)  # its postings are mapped from these very files
    found, _ = KmerIndex.load(tmp_path).search_segments(seqs, 1)
    assert found[0, 0] == 0


@pytest.mark.parametrize("damage", ["dtype", "pointers", "counts", "count positions"])
def test_postings_of_another_type_or_out_of_order_are_refused_on_load(tmp_path, damage):
    seq = np.concatenate([np.arange(3, 7, dtype=np.uint8).repeat(300), np.tile(np.arange(3, 7, dtype=np.uint8), 30)])
    KmerIndex.build([seq], KmerIndexConfig()).save(tmp_path)
    z = dict(np.load(tmp_path / KmerIndex.FILE))
    assert z["many_at"].size > 2
    if damage == "dtype":
        np.save(tmp_path / KmerIndex.GAPS_FILE, np.load(tmp_path / KmerIndex.GAPS_FILE).astype(np.float32))
    elif damage == "pointers":
        z["indptr"] = z["indptr"][::-1].copy()
    elif damage == "counts":
        z["many"] = z["many"].astype(np.float64)
    else:
        z["many_at"] = z["many_at"][::-1].copy()
    np.savez(tmp_path / KmerIndex.FILE, **z)
    with pytest.raises(ValueError, match="not a readable k-mer index"):
        KmerIndex.load(tmp_path)
