"""Text a user wrote (ids, descriptions, labels, file names) that must not break a line, a column or a terminal.

The convention (docs/INPUTS.md): record ids, descriptions and table fields may not hold control characters
(Unicode category Cc: NUL, ESC and other C0/C1 codes, DEL, and tab or newline inside a field) nor line or
paragraph separators; such a record is refused with a one-line error. A FASTA/FASTQ id ends at the first
whitespace, so it never holds a tab; tabs inside a description become spaces. Messages that quote a file
name escape the same characters instead, so an error stays one line.
"""

from __future__ import annotations

import unicodedata

_BAD_CATEGORIES = ("Cc", "Zl", "Zp")


def control_char(text: str) -> str | None:
    """The first character that would break a TSV row, a JSON-lines reader or a terminal, else None."""
    if text.isprintable():  # fast path: printable text holds none of them
        return None
    return next((c for c in text if unicodedata.category(c) in _BAD_CATEGORIES), None)


def printable(text: str) -> str:
    """text with control characters and line separators escaped (\\n, \\x1b, \\u2028), for one-line messages."""
    if control_char(text) is None:
        return text
    return "".join(
        c.encode("unicode_escape").decode() if unicodedata.category(c) in _BAD_CATEGORIES else c for c in text
    )
