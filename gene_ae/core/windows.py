"""Windows and padded batches: how any sequence becomes fixed-width model input.

The one tiling of long sequences (training's validation, the Encoder, `gene-ae embed --windows` and
reconstruction all use it) and the one padding of a batch. numpy only: the Encoder and the data
pipeline both import it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shard_tools.alphabet import PAD


def window_starts(n: int, window: int, stride: int | None = None) -> np.ndarray:
    """Start positions tiling n bases with windows `stride` apart; the last window ends at the sequence's end."""
    if window < 1 or (stride is not None and stride < 1):
        raise ValueError(f"window and stride must be positive, got {window} and {stride}")
    if n <= window:
        return np.array([0])
    starts = np.arange(0, n - window + 1, stride or window)
    return starts if starts[-1] == n - window else np.append(starts, n - window)


def tile(seqs: Sequence[np.ndarray], window: int, stride: int | None = None) -> list[tuple[int, int]]:
    """(sequence index, start) of every window of every sequence, sorted by window length so that
    batches of consecutive jobs pad little."""
    jobs = [(i, int(start)) for i, s in enumerate(seqs) for start in window_starts(s.size, window, stride)]
    return _by_length(jobs, seqs, window)


def cut_starts(n: int, every: int) -> range:
    """Starts of the pieces that cut n bases every `every` bases from 0 (no end-aligned last piece, so
    nothing is covered twice; [0] for an empty sequence). A caller that counts k-mers lets each piece run
    k - 1 bases on, so that every k-mer lies in exactly one piece."""
    return range(0, max(n, 1), every)


def cuts(seqs: Sequence[np.ndarray], every: int) -> list[tuple[int, int]]:
    """(sequence index, start) of every cut_starts piece of every sequence, sorted by piece length as
    tile's windows are."""
    return _by_length([(i, start) for i, s in enumerate(seqs) for start in cut_starts(s.size, every)], seqs, every)


def _by_length(jobs: list[tuple[int, int]], seqs: Sequence[np.ndarray], width: int) -> list[tuple[int, int]]:
    jobs.sort(key=lambda j: min(seqs[j[0]].size - j[1], width))
    return jobs


def pad_batch(seqs: Sequence[np.ndarray], multiple: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad with PAD to the longest (rounded up to `multiple`); returns tokens [n, width] and lengths."""
    lengths = np.array([s.size for s in seqs], dtype=np.int64)
    width = int(-(-lengths.max() // multiple) * multiple) if len(seqs) else 0
    out = np.full((len(seqs), width), PAD, dtype=np.uint8)
    for i, s in enumerate(seqs):
        out[i, : s.size] = s
    return out, lengths
