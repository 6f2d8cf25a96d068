"""Encoder batching: windows of many sequences batched together equal embedding each one alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from shared import tiny_model

from gene_ae.model.encoder import Encoder, validate


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return tiny_model()[1]


def test_batched_windows_equal_per_sequence_tiling(encoder):
    rng = np.random.default_rng(0)
    seqs = [rng.integers(3, 7, size=n).astype(np.uint8) for n in (50, 256, 300, 1000, 5000, 17)]
    batched = encoder.embed_tokens(seqs, batch_size=7)
    alone = np.concatenate([encoder.embed_tokens([s], batch_size=1) for s in seqs])
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    assert np.allclose(encoder.embed_tokens(seqs[::-1], batch_size=3)[::-1], batched, atol=1e-5)


def test_vectors_are_bit_identical_whatever_the_threads_and_the_batch(encoder):
    """A query's vector must not depend on how it was batched or on the thread count (the CLI batches, a Serve
    replica embeds one query on one thread): near-tied relatives would otherwise rank differently."""
    rng = np.random.default_rng(1)
    seqs = [rng.integers(3, 7, size=n).astype(np.uint8) for n in (1500, 900, 3000, 1400, 2200)]
    before = torch.get_num_threads()
    try:
        runs = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            runs.append(encoder.embed_tokens(seqs, batch_size=64))
        alone = np.concatenate([encoder.embed_tokens([q], batch_size=64) for q in seqs])
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(runs[0], runs[1]) and np.array_equal(alone, runs[1])


def test_validate_names_the_bad_row():
    with pytest.raises(ValueError, match=r"row 2: non-nucleotide character 'E'"):
        validate(["ACGT", "acgtn", "ACEGT"])
    with pytest.raises(ValueError, match="row 0: empty sequence"):
        validate(["  \n"])
    with pytest.raises(ValueError, match="row 1: expected a DNA string"):
        validate(["ACGT", 5])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="row 1: digit '1' at position 5: a sequence is letters only"):
        validate(["ACGT", "ACGT1234ACGT"])  # refused, not read as ACGTACGT (issue 34)
    with pytest.raises(ValueError, match=r"row 0: no A, C, G or T base \(12 N\)"):
        validate(["NNNNNNNNNNNN"])
    assert [t.size for t in validate(["acgt nnnn", "ACGT\nRYAC"])] == [8, 8]  # spaces, case, IUPAC codes as before


def test_embed_spans_equals_embedding_each_piece(encoder):
    """Record and window vectors from one pass over each sequence (Encoder.embed_spans) are the vectors of
    the pieces embedded one by one: cuts of long spans, N, spans shorter than k, owners in any order."""
    rng = np.random.default_rng(1)
    seqs = [rng.integers(3, 8, size=n).astype(np.uint8) for n in (50, 256, 300, 1000, 5000, 17, 3, 40_000)]
    spans = [(i, 0, s.size) for i, s in enumerate(seqs)]
    spans += [(3, 100, 356), (7, 0, 256), (7, 39_000, 40_000), (4, 4000, 4256), (6, 0, 3), (0, 2, 9), (7, 5, 33_000)]
    spans = np.array([spans[i] for i in rng.permutation(len(spans))])
    alone = encoder.embed_tokens([seqs[o][a:b] for o, a, b in spans])
    np.testing.assert_allclose(encoder.embed_spans(seqs, spans), alone, atol=1e-5)


def test_embed_spans_never_counts_the_padding_row():
    """A checkpoint whose bags' padding rows are not zero embeds spans as embed_tokens does (padding excluded)."""
    cfg, enc = tiny_model(256, 64)
    with torch.no_grad():
        for bag in enc.model.kmer_bags:
            bag.weight[-1] = 1.0
    seqs = [np.array([3, 4, 7, 5, 6, 3, 4, 5, 6, 6, 5, 4, 3, 7, 7, 3, 4, 5, 6, 3], np.uint8)]
    spans = np.array([(0, 0, 20), (0, 1, 12)])
    alone = enc.embed_tokens([seqs[0][a:b] for _, a, b in spans])
    np.testing.assert_allclose(enc.embed_spans(seqs, spans), alone, atol=1e-5)
