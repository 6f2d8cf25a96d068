"""The one numpy k-mer coder (gene_ae.kmers) against counting by hand, and its two users agreeing."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from gene_ae import baselines, sparse
from gene_ae.kmers import kmer_codes, reverse_complement_codes
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
    counts = sparse.count_matrix(seqs, sparse.SparseConfig(k=5)).toarray()
    norms = np.linalg.norm(counts, axis=1, keepdims=True)
    assert np.allclose(counts / np.maximum(norms, 1e-12), dense, atol=1e-6)
    assert counts.sum() == sum(sum(by_hand(decode(s), 5, True).values()) for s in seqs)
