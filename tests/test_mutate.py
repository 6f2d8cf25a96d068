"""Unit tests for the mutation simulator: event rates, what is never touched, and speed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shared import examples

from gene_ae.core.mutate import mutate, random_view
from shard_tools import alphabet


def random_bases(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(alphabet.A, alphabet.T + 1, n, dtype=np.uint8)


@pytest.mark.parametrize("divergence", [0.01, 0.05, 0.1, 0.3])
def test_substitution_rate_matches_divergence(divergence: float) -> None:
    seq = random_bases(10_000)
    rates = []
    for seed in range(5):
        out = mutate(seq, divergence, np.random.default_rng(seed), indel_fraction=0.0)
        assert out.shape == seq.shape and out.dtype == np.uint8
        rates.append(np.mean(out != seq))
    assert abs(np.mean(rates) - divergence) < 0.02
    assert np.isin(out, alphabet.BASE_TOKENS).all()


def test_substitution_always_changes_the_base() -> None:
    seq = random_bases(2_000)
    out = mutate(seq, 1.0, np.random.default_rng(1), indel_fraction=0.0)
    assert (out != seq).all()
    n_out = mutate(np.full(500, alphabet.N, np.uint8), 1.0, np.random.default_rng(2), indel_fraction=0.0)
    assert np.isin(n_out, alphabet.BASE_TOKENS).all()


def test_input_is_not_modified_and_output_is_new() -> None:
    seq = random_bases(5_000)
    before = seq.copy()
    out = mutate(seq, 0.3, np.random.default_rng(0))
    assert np.array_equal(seq, before) and not np.array_equal(out, seq)
    same = mutate(seq, 0.0, np.random.default_rng(0))
    assert np.array_equal(same, seq) and not np.shares_memory(same, seq)


@pytest.mark.parametrize("divergence", [0.02, 0.1])
def test_indels_change_length_and_edit_distance_tracks_divergence(divergence: float) -> None:
    edlib = pytest.importorskip("edlib")
    seq = random_bases(10_000, seed=3)
    out = mutate(seq, divergence, np.random.default_rng(4), indel_fraction=1.0, max_indel=3)
    assert out.size != seq.size
    assert np.isin(out, alphabet.BASE_TOKENS).all()
    # Each event is an indel of mean length 2; random bases make some coincide, so allow 25 %.
    edits = edlib.align(alphabet.decode(seq), alphabet.decode(out), task="distance")["editDistance"]
    assert abs(edits / seq.size - 2 * divergence) < 0.25 * 2 * divergence
    # Default mix: most events are substitutions, so length moves little.
    mixed = mutate(seq, divergence, np.random.default_rng(5))
    assert abs(mixed.size - seq.size) < 0.2 * divergence * seq.size


def test_specials_are_never_touched() -> None:
    seq = np.concatenate([[alphabet.BOS], random_bases(300), [alphabet.EOS], np.zeros(20, np.uint8)])
    for seed in range(10):
        out = mutate(seq, 0.5, np.random.default_rng(seed), indel_fraction=0.5)
        assert np.array_equal(out[out < alphabet.FIRST_BASE], seq[seq < alphabet.FIRST_BASE])
        assert out[0] == alphabet.BOS and (out[-20:] == alphabet.PAD).all()


def test_bad_arguments_raise() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="divergence"):
        mutate(random_bases(10), 1.5, rng)
    with pytest.raises(ValueError, match="indel_fraction"):
        mutate(random_bases(10), 0.1, rng, indel_fraction=-0.1)
    with pytest.raises(ValueError, match="max_indel"):
        mutate(random_bases(10), 0.1, rng, max_indel=0)


def test_random_view() -> None:
    seq = random_bases(1_000)
    rc = random_view(seq, np.random.default_rng(0), max_divergence=0.0, rc_prob=1.0)
    assert np.array_equal(rc, alphabet.reverse_complement(seq))
    same = random_view(seq, np.random.default_rng(0), max_divergence=0.0, rc_prob=0.0)
    assert np.array_equal(same, seq)
    views = [random_view(seq, np.random.default_rng(s), max_divergence=0.2, rc_prob=0.0) for s in range(20)]
    assert any(not np.array_equal(v, seq) for v in views)


def test_five_megabases_in_one_vectorised_call() -> None:
    """A genome-sized input keeps its length within 1 % (indels balance); its speed (about 0.3 s on one core)
    is not asserted here: timing belongs in benchmarks, not in tests."""
    seq = random_bases(5_000_000)
    out = mutate(seq, 0.1, np.random.default_rng(0))
    assert abs(out.size - seq.size) < 0.01 * seq.size
    assert not np.array_equal(out[:1000], seq[:1000])


@settings(max_examples=examples(50), deadline=None)
@given(
    tokens=st.lists(st.integers(0, alphabet.VOCAB_SIZE - 1), max_size=200),
    divergence=st.floats(0.0, 1.0),
    indel_fraction=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_properties(tokens: list[int], divergence: float, indel_fraction: float, seed: int) -> None:
    seq = np.array(tokens, dtype=np.uint8)
    out = mutate(seq, divergence, np.random.default_rng(seed), indel_fraction=indel_fraction)
    assert out.dtype == np.uint8 and (out < alphabet.VOCAB_SIZE).all()
    assert np.array_equal(out[out < alphabet.FIRST_BASE], seq[seq < alphabet.FIRST_BASE])
    if indel_fraction == 0.0:
        assert out.size == seq.size
