"""Which format a file holds: by its first bytes, then by its name (compression suffixes looked through)."""

from __future__ import annotations

from pathlib import Path

from shard_tools.record import InputError

FORMATS = ("fasta", "fastq", "genbank", "embl", "tsv", "csv")
_COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst")
_NAME_FORMATS = {".gb": "genbank", ".gbk": "genbank", ".gbff": "genbank", ".genbank": "genbank", ".embl": "embl"}


def _name_format(path: str | Path) -> str | None:
    name = Path(path).name.lower()
    for suffix in _COMPRESSED_SUFFIXES:
        name = name.removesuffix(suffix)
    return _NAME_FORMATS.get(Path(name).suffix)


def detect_format(path: str | Path, head: bytes) -> str:
    """Format from the first non-blank byte, falling back to the file name for tables."""
    stripped = head.lstrip()
    if b"\x00" in head:
        raise InputError(
            path, "binary content (NUL bytes); expected FASTA, FASTQ, GenBank, EMBL or a TSV/CSV table", line=1
        )
    if stripped.startswith(b">"):
        return "fasta"
    if stripped.startswith(b"@"):
        return "fastq"
    if stripped.startswith(b"LOCUS "):
        return "genbank"
    if stripped.startswith(b"ID   "):
        return "embl"
    if _name_format(path):
        return _name_format(path)  # type: ignore[return-value]
    first = stripped.split(b"\n", 1)[0]
    name = Path(path).name.lower()
    if b"\t" in first or any(s in name for s in (".tsv", ".txt", ".tab")):
        return "tsv"
    if b"," in first or ".csv" in name:
        return "csv"
    if not stripped:
        return "fasta"  # an empty file is an empty FASTA, reported as "no records"
    raise InputError(
        path,
        "cannot tell the format: expected '>' (FASTA), '@' (FASTQ), 'LOCUS' (GenBank), 'ID' (EMBL) or a table header",
        line=1,
    )
