"""The one numpy k-mer coder (gene_ae.core.kmers) against counting by hand, and its two users agreeing."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from gene_ae.core.kmers import hash_bucket, kmer_codes, kmer_counts, reverse_complement_codes
from gene_ae.core.topk import top_k
from gene_ae.evaluate import baselines
from gene_ae.index import kmer_index as sparse
from shard_tools.alphabet import decode, encode

COMPLEMENT = str.maketrans("ACGT", "TGCA")


def code(word: str) -> int:
    value = 0
    for base in word:
        value = value * 4 + "ACGT".index(base)
    return value


def by_hand(seq: str, k: int, canonical: bool) -> Counter:
    counts: Counter = Counter()
    for i in range(len(seq) - k + 1):
        word = seq[i : i + k]
        if "N" in word:
            continue
        rc = word.translate(COMPLEMENT)[::-1]
        counts[code(min(word, rc) if canonical else word)] += 1
    return counts


@pytest.fixture(scope="module")
def seqs() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    lengths = [1, 6, 7, 8, 50, 1000, 2999]
    return [encode("".join(rng.choice(list("ACGTN"), p=[0.24] * 4 + [0.04], size=n))) for n in lengths]


@pytest.mark.parametrize("canonical", [True, False])
@pytest.mark.parametrize("k", [1, 3, 7, 12])
def test_kmer_codes_count_what_a_hand_count_counts(seqs, k: int, canonical: bool) -> None:
    for tokens in seqs:
        codes, valid = kmer_codes(tokens, k, canonical)
        assert codes.size == max(tokens.size - k + 1, 0)
        assert Counter(codes[valid].tolist()) == by_hand(decode(tokens), k, canonical)


def test_reverse_complement_codes() -> None:
    assert reverse_complement_codes(np.array([code("AACG")]), 4).tolist() == [code("CGTT")]
    assert kmer_codes(encode("AACG"), 4)[0].tolist() == [code("AACG")]  # smaller than CGTT
    assert kmer_codes(encode("CGTT"), 4)[0].tolist() == [code("AACG")]
    with pytest.raises(ValueError, match="k must be in 1..31"):
        kmer_codes(encode("ACGT"), 32)


def test_baselines_and_sparse_index_count_the_same_kmers(seqs) -> None:
    dense = baselines.kmer_profiles(seqs, 5, canonical=True)
    assert np.allclose(baselines.kmer_matrix(seqs, 5).toarray(), dense, atol=1e-6)
    index_rows = sparse.KmerIndex.build(seqs, sparse.KmerIndexConfig(k=5)).query_matrix(seqs).csr().toarray()
    assert np.allclose(index_rows, dense, atol=1e-6)
    counts = kmer_counts(seqs, 5)
    assert counts.sum() == sum(sum(by_hand(decode(s), 5, True).values()) for s in seqs)


def test_the_model_hashes_kmers_with_the_one_kmer_hash(seqs) -> None:
    """The bags' torch ids of a vocabulary larger than the bag equal gene_ae.core.kmers.hash_bucket's."""
    import torch

    from gene_ae.model.bags import kmer_ids

    tokens = seqs[-1][:300]
    ids = kmer_ids(torch.from_numpy(tokens.astype(np.int64))[None], 9, canonical=True, buckets=1000)[0].numpy()
    codes, valid = kmer_codes(tokens, 9)
    assert valid.sum() > 100
    assert (ids[valid] == hash_bucket(codes[valid], 1000)).all() and (ids[~valid] == 1000).all()


def test_one_top_k_breaks_ties_by_the_lower_index_also_at_the_cut() -> None:
    scores = np.array([[1.0, 3.0, 3.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    idx, vals = top_k(scores, 2)
    assert idx.tolist() == [[1, 2], [0, 1]] and vals.tolist() == [[3.0, 3.0], [0.0, 0.0]]
    assert top_k(scores, 9)[0].tolist() == [[1, 2, 4, 3, 0], [0, 1, 2, 3, 4]]


def test_counting_a_long_sequence_holds_its_distinct_kmers_not_every_kmer(monkeypatch) -> None:
    """A 256 Mb query (a decompressed bomb under --max-length) took 2 GB for its k-mer counts and then failed in
    np.unique: every piece's codes were kept until the end. Now each piece is summed as it comes, so a repetitive
    sequence costs its few distinct k-mers; pieces are made small here so that a short sequence shows it."""
    import tracemalloc

    from gene_ae.core import kmers

    monkeypatch.setattr(kmers, "_PIECE", 1 << 14)
    seq = np.tile(encode("ACGGTCATTGCAAGT"), 200_000)  # 3 Mb, 15 distinct 10-mers a strand
    tracemalloc.start()
    try:
        rows = kmers.kmer_count_rows([seq, seq[:5000]], 10)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak / 2**20:.1f} MiB"  # every code kept: 24 MiB of keys alone
    want = by_hand(decode(seq[:5000]), 10, True)
    got = dict(zip(rows.indices[rows.indptr[1] : rows.indptr[2]].tolist(), rows.data[rows.indptr[1] :].tolist()))
    assert got == {c: float(n) for c, n in want.items()}
    assert rows.data[: rows.indptr[1]].sum() == seq.size - 10 + 1
