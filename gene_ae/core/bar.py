"""A progress bar in bases on stderr: the one every long step shows (the build's vectors, a long search)."""

from __future__ import annotations

import sys


def progress(desc: str, total: int | None = None):
    """A tqdm bar counting bases on stderr when it is a terminal (gone when closed); silent otherwise."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="bp", unit_scale=True, file=sys.stderr, leave=False,
                disable=not sys.stderr.isatty())  # fmt: skip
