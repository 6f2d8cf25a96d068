"""Work over items on a few threads, in the items' order: what `gene-ae search --threads` runs queries (and a query
genome's contigs) on. Why threads, not processes: a query's heavy steps (postings, chaining, edlib, parasail) are C
that releases Python's lock, and the index stays shared, memory-mapped, instead of opened once a process."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T, R = TypeVar("T"), TypeVar("R")


def in_threads(work: Callable[[T], R], items: Sequence[T], threads: int) -> list[R]:
    """[work(item) for item in items], `threads` at a time, in the items' order. On an error or Ctrl-C, items not
    started never start; the first error is raised."""
    if threads <= 1 or len(items) <= 1:
        return [work(x) for x in items]
    pool = ThreadPoolExecutor(min(threads, len(items)), thread_name_prefix="gene-ae")
    try:
        return list(pool.map(work, items))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
