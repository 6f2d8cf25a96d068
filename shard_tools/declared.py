"""The per-record features a user declares (--feature-column NAME[:numeric|categorical]) and their values typed
as every reader types them: a table column, a FASTA/FASTQ header `name=value` pair, a GenBank/EMBL source
qualifier."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shard_tools.text import control_char, printable

FEATURE_KINDS = ("numeric", "categorical")
FEATURE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
# A number as a table or header writes it: plain decimal or scientific, ASCII digits only (not `1_000` or `٣`).
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", re.ASCII)
# A feature value that means "no value" (compared case-insensitively, after stripping spaces): an empty cell,
# qualifier or header value, and the spellings of one that R, pandas, VCF/GFF and BLAST-style tables write.
MISSING = frozenset({"", "na", "n/a", "nan", "none", "null", ".", "-"})


@dataclass(frozen=True)
class DeclaredFeature:
    """A per-record feature the user declares: where it comes from depends on the format (a table column,
    a FASTA/FASTQ header `name=value` pair, a GenBank/EMBL source qualifier); numeric values are floats."""

    name: str
    kind: str = "categorical"  # numeric | categorical


def parse_feature_column(text: str) -> DeclaredFeature:
    """`NAME[:numeric|categorical]` (the --feature-column flag), categorical by default."""
    name, _, kind = text.partition(":")
    name, kind = name.strip(), (kind.strip() or "categorical")
    # A name a --where filter can write: letters, digits, '_' and '.', not starting with a digit, not a keyword.
    if not FEATURE_NAME.fullmatch(name) or name in ("and", "or", "not", "in"):
        raise ValueError(
            f"--feature-column: want NAME[:numeric|categorical] with NAME of letters, digits, '_' and '.' "
            f"(not starting with a digit, not and/or/not/in), got {text!r}"
        )
    if kind not in FEATURE_KINDS:
        raise ValueError(f"--feature-column {text}: kind must be numeric or categorical, got {kind!r}")
    return DeclaredFeature(name, kind)


def type_values(features: Sequence[DeclaredFeature], values: Mapping[str, str]) -> dict[str, float | str | None] | str:
    """Each declared feature's value from the record's raw text (`values`: a table row, a header's pairs, a
    source feature's qualifiers): None when missing (MISSING), a float when numeric, else the text; or the
    message saying which value is refused."""
    typed: dict[str, float | str | None] = {}
    for f in features:
        raw = values.get(f.name)
        text = raw.strip() if raw is not None else ""
        if text.lower() in MISSING:
            typed[f.name] = None
        elif f.kind == "categorical":
            if (bad := control_char(text)) is not None:
                return f"control character {bad!r} in feature {f.name!r}"
            typed[f.name] = text
        else:
            number = float(text) if _NUMBER.fullmatch(text) else math.nan
            if not math.isfinite(number):
                return f"feature {f.name!r} is declared numeric but holds {printable(text)[:60]!r}"
            typed[f.name] = number
    return typed
