"""One input record as every reader makes it, and the error that names the file, the line and the record."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shard_tools.alphabet import InvalidSequenceError, encode
from shard_tools.declared import DeclaredFeature, type_values
from shard_tools.text import control_char, printable

STDIN = "-"
STDIN_NAME = "<stdin>"
# A GenBank/EMBL or table line may hold this many characters beyond --max-length (a sequence line's spaces and
# coordinates, a table row's other columns); a longer one is refused unread (over_long_line).
LINE_SLACK = 1 << 20


def display_name(path: str | Path) -> str:
    """The name an error message shows: `<stdin>` for '-', control characters escaped."""
    return STDIN_NAME if str(path) == STDIN else printable(str(path))


class InputError(ValueError):
    """Bad input, with enough context (file, line, record) for a one-line message."""

    def __init__(self, path: str | Path, message: str, line: int | None = None, record: str | None = None):
        where = display_name(path) + (f":{line}" if line is not None else "")
        what = f"record {record!r}: " if record is not None else ""
        super().__init__(f"{where}: {what}{message}")
        self.path, self.line, self.record = display_name(path), line, record


def over_long_line(path: str | Path, cap: int, line: int, hint: str) -> InputError:
    """The error for a line over `cap` characters (--max-length + LINE_SLACK), not read into memory."""
    return InputError(path, f"a line longer than {cap:,} characters (--max-length + 1 MiB): not read into memory; "
                      f"{hint}", line=line)  # fmt: skip


@dataclass
class Record:
    """One normalised input sequence; `fields` carries labels and other table columns, `features` the declared
    features (ReaderConfig.features), typed, None where the record has no value."""

    id: str
    description: str
    tokens: np.ndarray
    source: str
    line: int
    fields: dict[str, str] = field(default_factory=dict)
    features: dict[str, float | str | None] = field(default_factory=dict)


def make_record(
    path: str,
    rid: str,
    desc: str,
    seq: bytes | str,
    line: int,
    fields: dict | None = None,
    features: tuple[DeclaredFeature, ...] = (),
    values: dict[str, str] | None = None,
) -> Record | InputError:
    """A Record, or the InputError saying what is wrong with it. `values`: the raw text of each feature the
    record holds (a table row, a header's pairs, a source feature's qualifiers), typed here for `features`."""
    if not rid:
        return InputError(path, "empty record id", line=line, record=rid)
    if not (rid.isprintable() and desc.isprintable()) or fields:  # printable text holds no control character
        texts = {"id": rid, "description": desc, **{f"column {k!r}": v for k, v in (fields or {}).items()}}
        for what, text in texts.items():
            bad = control_char(text)
            if bad is not None:
                hint = " (CR, old Mac line endings? convert: tr '\\r' '\\n' < IN > OUT)" if bad == "\r" else ""
                message = f"control character {bad!r} in the {what}; refused{hint}"
                return InputError(path, message, line=line, record=rid)
    try:
        tokens = encode(seq)
    except InvalidSequenceError as exc:
        return InputError(path, f"{exc} (not DNA; protein or binary input?)", line=line, record=rid)
    if tokens.size == 0:
        return InputError(path, "no sequence", line=line, record=rid)
    typed = type_values(features, values or {})
    if isinstance(typed, str):
        return InputError(path, typed, line=line, record=rid)
    return Record(rid, desc, tokens, path, line, fields or {}, typed)
