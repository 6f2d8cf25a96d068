"""The one numpy k-mer coder (gene_ae.core.kmers) against counting by hand, and its two users agreeing."""

from __future__ import annotations

import subprocess
import sys
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


def test_the_c_bag_ids_are_the_models() -> None:
    """kmers.kmer_id_row (the Encoder's ids on the CPU) against bags.kmer_ids (torch, training's): pads, specials
    and N in the row, rows shorter than k, canonical or not, every k-mer its own id or hashed into the bag."""
    import torch

    from gene_ae.core.kmers import kmer_id_row
    from gene_ae.model.bags import kmer_ids

    rng = np.random.default_rng(4)
    rows = [rng.integers(0, 8, n).astype(np.uint8) for n in (0, 4, 9, 600)]
    rows.append(rng.integers(3, 7, 3000).astype(np.uint8))  # bases only: every k-mer real
    for tokens in rows:
        for k, canonical, buckets in [(5, True, 1024), (7, True, 16384), (10, False, 4**10), (8, True, 4**8 - 1)]:
            want = kmer_ids(torch.from_numpy(tokens.astype(np.int64))[None], k, canonical, buckets)[0].numpy()
            assert kmer_id_row(tokens, k, canonical, buckets).tolist() == want.tolist(), (tokens.size, k)


def test_one_top_k_breaks_ties_by_the_lower_index_also_at_the_cut() -> None:
    scores = np.array([[1.0, 3.0, 3.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    idx, vals = top_k(scores, 2)
    assert idx.tolist() == [[1, 2], [0, 1]] and vals.tolist() == [[3.0, 3.0], [0.0, 0.0]]
    assert top_k(scores, 9)[0].tolist() == [[1, 2, 4, 3, 0], [0, 1, 2, 3, 4]]


def test_counting_a_long_sequence_holds_its_distinct_kmers_not_every_kmer() -> None:
    """A 256 Mb query (a decompressed bomb under --max-length) took 2 GB for its k-mer counts and then failed in
    np.unique: every piece's codes were kept until the end. kmers.c sorts a long row's k-mers a piece at a time and
    merges each into the row's distinct ones: a 30 Mb repetitive row (15 distinct 10-mers a strand) costs its piece
    buffers and the room for 4^10 columns, not 4 bytes a base (120 MB). Peak memory of a process of its own, as the
    operating system counts it (the C buffers are not Python's to trace)."""
    script = """
import resource, numpy as np
from gene_ae.core import kmers
from shard_tools.alphabet import encode
seq = np.tile(encode("ACGGTCATTGCAAGT"), 2_000_000)
kmers.kmer_count_rows([seq[:100]], 10)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rows = kmers.kmer_count_rows([seq, seq[:5000]], 10)
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(grown, int(rows.data[: rows.indptr[1]].astype(np.int64).sum()), int(rows.indptr[1]))
print(" ".join(f"{c}:{int(n)}" for c, n in zip(rows.indices[rows.indptr[1]:], rows.data[rows.indptr[1]:])))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split("\n")
    grown_kib, total, distinct = map(int, out[0].split())
    assert grown_kib < 40 << 10, f"{grown_kib / 1024:.1f} MiB"
    assert total == 30_000_000 - 10 + 1 and distinct <= 30
    want = by_hand(("ACGGTCATTGCAAGT" * 400)[:5000], 10, True)  # the second row: the first 5,000 bases
    got = {int(c): int(n) for c, n in (w.split(":") for w in out[1].split())}
    assert got == dict(want)


def test_the_c_counts_are_the_numpy_definition() -> None:
    """kmers.c's counts, column for column, against kmer_codes and the hash's bucket and sample (kmers.py): Ns,
    rows shorter than k, canonical or not, every column or hashed ones, sampled or not, and a row past the C side's
    sorting piece (2^20 k-mers) whose pieces it merges."""
    from gene_ae.core.kmers import hash_kept, kmer_count_rows

    rng = np.random.default_rng(3)

    def row(n: int) -> np.ndarray:
        s = rng.integers(3, 7, n).astype(np.uint8)
        s[rng.random(n) < 0.002] = 7  # N
        return s

    cases = [([row(n) for n in rng.integers(0, 3000, 60)] + [row(5), row(0)], 10, True, None, 1),
             ([row(n) for n in rng.integers(0, 400, 40)], 6, False, None, 1),
             ([row(n) for n in rng.integers(8000, 9000, 8)], 14, True, 1 << 22, 1),
             ([row(n) for n in rng.integers(8000, 9000, 8)], 14, True, 1 << 22, 5),
             ([row(1_300_000)], 12, True, 1 << 16, 1)]  # fmt: skip
    for rows_in, k, canonical, buckets, scaled in cases:
        got = kmer_count_rows(rows_in, k, canonical, buckets, scaled)
        for r, tokens in enumerate(rows_in):
            codes, valid = kmer_codes(tokens, k, canonical)
            codes = codes[valid]
            if scaled > 1:
                codes = codes[hash_kept(codes, scaled)]
            cols = codes.astype(np.int64) if buckets is None or 4**k <= buckets else hash_bucket(codes, buckets)
            want_cols, want_n = np.unique(cols, return_counts=True)
            a, b = got.indptr[r], got.indptr[r + 1]
            assert got.indices[a:b].tolist() == want_cols.tolist(), (k, r)
            assert got.data[a:b].tolist() == want_n.tolist(), (k, r)
    with pytest.raises(ValueError, match="32-bit"):
        kmer_count_rows([row(20)], 16)
