"""shard_tools.alphabet: the token ids are on-disk format, so they are pinned; the rest are round-trip properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shared import examples

from shard_tools import alphabet
from shard_tools.alphabet import InvalidSequenceError, decode, encode, normalise, reverse_complement

IUPAC = "RYSWKMBDHV"
SKIPPED = " \t\r\n\v\f0123456789"
bases = st.text(alphabet="ACGTN", max_size=300)
nucleotide_text = st.text(alphabet="ACGTNacgtnUu" + IUPAC + IUPAC.lower() + SKIPPED, max_size=300)
token_arrays = st.lists(st.integers(0, 255), max_size=300).map(lambda v: np.array(v, dtype=np.uint8))
base_arrays = st.lists(st.sampled_from([alphabet.A, alphabet.C, alphabet.G, alphabet.T, alphabet.N]), max_size=300).map(
    lambda v: np.array(v, dtype=np.uint8)
)


def reference_normalise(text: str) -> str:
    """Independent statement of the rules: drop whitespace/digits, upper case, U -> T, IUPAC -> N."""
    out = []
    for ch in text:
        if ch in SKIPPED:
            continue
        up = ch.upper()
        out.append("T" if up == "U" else "N" if up in IUPAC else up)
    return "".join(out)


def test_token_ids_are_pinned() -> None:
    assert alphabet.TOKENS == ("<pad>", "<bos>", "<eos>", "A", "C", "G", "T", "N")
    assert (alphabet.PAD, alphabet.BOS, alphabet.EOS) == (0, 1, 2)
    assert (alphabet.A, alphabet.C, alphabet.G, alphabet.T, alphabet.N) == (3, 4, 5, 6, 7)
    assert alphabet.VOCAB_SIZE == 8
    assert alphabet.FIRST_BASE == alphabet.A


def test_encode_known_values() -> None:
    tokens = encode("ACGTN")
    assert tokens.dtype == np.uint8
    assert tokens.tolist() == [3, 4, 5, 6, 7]
    assert encode(b"acgu").tolist() == [3, 4, 5, 6]
    assert encode("").size == 0
    assert encode("  12\r\n").size == 0


def test_normalise_examples() -> None:
    assert normalise("acgtn") == "ACGTN"
    assert normalise("ACGU") == "ACGT"
    assert normalise(IUPAC + IUPAC.lower()) == "N" * 20
    assert normalise("  1 acgtn 61\r\nGG\t") == "ACGTNGG"  # GenBank-style numbered lines


def test_decode_specials_keep_length() -> None:
    assert decode(np.array([alphabet.PAD, alphabet.BOS, alphabet.EOS, alphabet.A], np.uint8)) == "???A"


def test_reverse_complement_examples() -> None:
    assert decode(reverse_complement(encode("AACGTN"))) == "NACGTT"
    assert reverse_complement(encode("")).size == 0
    specials = np.array([alphabet.PAD, alphabet.BOS, alphabet.EOS], np.uint8)
    assert reverse_complement(specials).tolist() == specials[::-1].tolist()


@pytest.mark.parametrize(
    ("text", "char", "position"),
    [("ACGTX", "X", 5), ("ac gt\nE", "E", 5), ("12 ACG*", "*", 4), ("ACGT日", "?", 5), ("é", "é", 1)],
)
def test_invalid_character_reports_char_and_position(text: str, char: str, position: int) -> None:
    with pytest.raises(InvalidSequenceError) as info:
        encode(text)
    assert info.value.char == char
    assert info.value.position + 1 == position
    assert f"position {position}" in str(info.value)


@settings(max_examples=examples(200), deadline=None)
@given(bases)
def test_encode_decode_round_trip(seq: str) -> None:
    tokens = encode(seq)
    assert tokens.size == len(seq)
    assert decode(tokens) == seq
    assert np.array_equal(encode(decode(tokens)), tokens)


@settings(max_examples=examples(200), deadline=None)
@given(nucleotide_text)
def test_normalise_lower_case_iupac_and_whitespace(text: str) -> None:
    expected = reference_normalise(text)
    assert normalise(text) == expected
    assert normalise(text.encode()) == expected
    assert normalise(text.swapcase()) == expected
    assert normalise(expected) == expected  # idempotent
    assert set(expected) <= set("ACGTN")


@settings(max_examples=examples(200), deadline=None)
@given(token_arrays)
def test_reverse_complement_twice_is_identity(tokens: np.ndarray) -> None:
    once = reverse_complement(tokens)
    assert once.dtype == np.uint8 and once.shape == tokens.shape
    assert np.array_equal(reverse_complement(once), tokens)


@settings(max_examples=examples(200), deadline=None)
@given(base_arrays)
def test_reverse_complement_matches_string_rule(tokens: np.ndarray) -> None:
    expected = decode(tokens).translate(str.maketrans("ACGTN", "TGCAN"))[::-1]
    assert decode(reverse_complement(tokens)) == expected
    # N and the base composition are preserved, A<->T and C<->G counts swap
    rc = reverse_complement(tokens)
    assert (rc == alphabet.N).sum() == (tokens == alphabet.N).sum()
    assert (rc == alphabet.A).sum() == (tokens == alphabet.T).sum()
    assert (rc == alphabet.C).sum() == (tokens == alphabet.G).sum()


@settings(max_examples=examples(200), deadline=None)
@given(nucleotide_text, st.characters(blacklist_characters="ACGTNUacgtnu" + IUPAC + IUPAC.lower() + SKIPPED))
def test_any_other_character_is_rejected(prefix: str, bad: str) -> None:
    with pytest.raises(InvalidSequenceError) as info:
        encode(prefix + bad)
    position = len(reference_normalise(prefix))
    assert info.value.position == position
    latin = bad.encode("latin-1", "replace").decode("latin-1")
    assert info.value.char == latin
