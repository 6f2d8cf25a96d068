"""The k-mer index on disk: small integer counts and 16-bit gaps, read back to the very same float32 values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

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


def test_row_blocks_cover_every_row_once():
    indptr = np.array([0, 0, 5, 5, 6, 20, 21, 21])
    blocks = row_blocks(indptr, 4)
    assert [a for a, _ in blocks] == [0] + [b for _, b in blocks[:-1]] and blocks[-1][1] == 7
    assert all(b - a == 1 or indptr[b] - indptr[a] <= 2 * 4 for a, b in blocks) and len(blocks) > 2
    assert row_blocks(indptr, 100) == [(0, 7)]
    assert row_blocks(np.array([0, 0, 0]), 4) == [(0, 2)]


@pytest.mark.parametrize("block", [0, 1000])  # 0: the default, one block; 1000: many blocks of rows
def test_saved_index_loads_bit_identical_and_smaller(tmp_path, monkeypatch, block):
    if block:
        monkeypatch.setattr(kmer_index, "_BLOCK_ENTRIES", block)
    rng = np.random.default_rng(0)
    seqs = [rng.integers(3, 8, size=n).astype(np.uint8) for n in rng.integers(20, 3000, size=200)]
    seqs.append(np.full(2000, 3, np.uint8))  # one k-mer counted 1,991 times: 16-bit counts
    idx = KmerIndex.build(seqs, KmerIndexConfig())
    path = idx.save(tmp_path)
    again = KmerIndex.load(tmp_path)
    for name in ("data", "indices", "indptr"):
        np.testing.assert_array_equal(getattr(again.inverted, name), getattr(idx.inverted, name))
    assert path.stat().st_size < 0.5 * (idx.inverted.data.nbytes + idx.inverted.indices.nbytes)
    queries = [seqs[3], seqs[50][100:900]]
    for a, b in zip(again.search_segments(queries, 5), idx.search_segments(queries, 5)):
        np.testing.assert_array_equal(a, b)


def test_an_index_without_scales_saves_its_float_values(tmp_path):
    idx = KmerIndex.build([np.arange(3, 7, dtype=np.uint8).repeat(50)], KmerIndexConfig(k=5))
    idx.scale = None
    KmerIndex.save(idx, tmp_path)
    np.testing.assert_array_equal(KmerIndex.load(tmp_path).inverted.data, idx.inverted.data)
