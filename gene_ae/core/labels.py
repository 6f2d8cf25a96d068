"""Labels of records: read from FASTA headers, and cleaned the way evaluation groups them."""

from __future__ import annotations

import re

_LABEL = re.compile(r"(?:^|[\s;])label=([^\s;]+)")
_GENUS = re.compile(r"tax=[^\s;]*?\bg:([^,;\s]+)")

MISSING_LABELS = frozenset({"", "unlabelled", "unlabeled", "unknown", "na", "n/a", "none", "nan"})


def clean_label(label: str | None, pattern: re.Pattern[str] | None = None) -> str | None:
    """A label as eval groups it: placeholders like `unlabelled` are missing, not a class of their own;
    with `pattern`, its first group (or whole match) names the group and a label it misses is missing."""
    if label is None or label.strip().lower() in MISSING_LABELS:
        return None
    if pattern is None:
        return label
    found = pattern.search(label)
    return (found.group(1) if found.groups() else found.group(0)) if found else None


def parse_label(header: str) -> str | None:
    """A label from a FASTA header: `label=VALUE`, else the genus of a `tax=...,g:GENUS` field."""
    found = _LABEL.search(header) or _GENUS.search(header)
    return found.group(1) if found else None
