"""The one definition of gene-ae's tokens, shared by shard_tools and gene_ae.

Kept free of torch so that sharding and reading need only numpy.
Token ids are part of the on-disk shard format: never renumber them.
"""

from __future__ import annotations

import numpy as np

PAD, BOS, EOS, A, C, G, T, N = range(8)
TOKENS: tuple[str, ...] = ("<pad>", "<bos>", "<eos>", "A", "C", "G", "T", "N")
VOCAB_SIZE = len(TOKENS)
BASE_TOKENS = (A, C, G, T)
FIRST_BASE = A  # tokens >= FIRST_BASE are real bases (A, C, G, T, N); the rest are specials

IUPAC_AMBIGUOUS = b"RYSWKMBDHV"
_INVALID = 255
_SKIP = b" \t\r\n\v\f0123456789"


def _build_tables() -> tuple[bytes, bytes]:
    encode = bytearray([_INVALID] * 256)
    for letter, token in zip(b"ACGTN", (A, C, G, T, N)):
        encode[letter] = encode[letter + 32] = token
    encode[ord("U")] = encode[ord("u")] = T  # RNA input reads as DNA
    for letter in IUPAC_AMBIGUOUS:
        encode[letter] = encode[letter + 32] = N
    decode = bytearray(b"?" * 256)
    for token, name in enumerate(TOKENS):
        decode[token] = ord(name) if len(name) == 1 else ord("?")
    return bytes(encode), bytes(decode)


_ENCODE, _DECODE = _build_tables()
_COMPLEMENT = np.arange(256, dtype=np.uint8)
_COMPLEMENT[[A, C, G, T]] = [T, G, C, A]


class InvalidSequenceError(ValueError):
    """A sequence holds a character that is not a nucleotide or IUPAC code."""

    def __init__(self, char: str, position: int):
        self.char = char
        self.position = position
        super().__init__(f"non-nucleotide character {char!r} at sequence position {position + 1}")


def encode(seq: str | bytes) -> np.ndarray:
    """Normalise and tokenise: upper case, IUPAC codes to N, whitespace and digits dropped."""
    raw = seq.encode("latin-1", "replace") if isinstance(seq, str) else bytes(seq)
    tokens = raw.translate(_ENCODE, _SKIP)
    bad = tokens.find(_INVALID)
    if bad >= 0:
        cleaned = raw.translate(None, _SKIP)
        raise InvalidSequenceError(chr(cleaned[bad]), bad)
    return np.frombuffer(tokens, dtype=np.uint8)


def decode(tokens: np.ndarray | bytes) -> str:
    """Tokens to letters; specials decode as '?' so lengths are preserved."""
    return bytes(np.asarray(tokens, dtype=np.uint8).tobytes()).translate(_DECODE).decode("ascii")


def normalise(seq: str | bytes) -> str:
    """The sequence exactly as gene-ae stores it (upper case ACGTN)."""
    return decode(encode(seq))


def reverse_complement(tokens: np.ndarray) -> np.ndarray:
    """Reverse complement of a token array; N and specials map to themselves."""
    return _COMPLEMENT[np.asarray(tokens, dtype=np.uint8)[::-1]]
