"""What every benchmark's report shares: the machine line at its head, and where its table goes."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np


def machine() -> str:
    """The host, its visible CPUs and Python: numbers mean something only beside these."""
    return f"{platform.node() or 'host'}, {os.cpu_count()} CPUs visible, Python {platform.python_version()}"


def emit(text: str, out: str | Path | None) -> int:
    """Print the report and, given --out, write it there too; the exit status of a finished benchmark."""
    print(text)
    if out:
        Path(out).write_text(text)
    return 0


def recall_cells(r: dict) -> list[float]:
    """A mutation_retrieval method's recall@1 at each divergence, then its recall@100 at the last two."""
    return [*r["recall@1"], *r["recall@100"][-2:]]


def recall_head(first: str, divergences: tuple[float, ...]) -> str:
    """The header and rule of a table of recall_cells rows."""
    columns = [f"r@1 {d:g}" for d in divergences] + [f"r@100 {d:g}" for d in divergences[-2:]]
    return f"| {first} | " + " | ".join(columns) + " |\n" + "|---" * (len(columns) + 1) + "|"


def recall_row(name: str, runs: list) -> str:
    """A table row of recall_cells: one run's cells, or the mean of several with half their spread beside each."""
    mean = np.mean(runs, 0)
    if len(runs) == 1:
        return f"| {name} | " + " | ".join(f"{x:.3f}" for x in mean) + " |"
    spread = np.ptp(runs, 0)
    return f"| {name} | " + " | ".join(f"{m:.3f} ±{s / 2:.3f}" for m, s in zip(mean, spread)) + " |"
