"""What every benchmark's report shares: the machine line at its head, and where its table goes."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def machine() -> str:
    """The host, its visible CPUs and Python: numbers mean something only beside these."""
    return f"{platform.node() or 'host'}, {os.cpu_count()} CPUs visible, Python {platform.python_version()}"


def emit(text: str, out: str | Path | None) -> int:
    """Print the report and, given --out, write it there too; the exit status of a finished benchmark."""
    print(text)
    if out:
        Path(out).write_text(text)
    return 0
