"""Work over items on a few threads, in the items' order: what `gene-ae search --threads` runs queries (and a query
genome's contigs) on. Why threads, not processes: a query's heavy steps (postings, chaining, edlib, parasail) are C
that releases Python's lock, and the index stays shared, memory-mapped, instead of opened once a process.

Why not concurrent.futures: its pool waits for the items running when Ctrl-C comes (and joins its threads again
at exit), so an interrupted search of a genome held the terminal until its running contigs finished. Here the
threads are daemons: Ctrl-C returns at once, the items running are abandoned and their results never read."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

T, R = TypeVar("T"), TypeVar("R")


def in_threads(work: Callable[[T], R], items: Sequence[T], threads: int) -> list[R]:
    """[work(item) for item in items], `threads` at a time, in the items' order. On an error or Ctrl-C, items not
    started never start; the first error (by item) is raised once the running items are done, Ctrl-C at once."""
    n = len(items)
    if threads <= 1 or n <= 1:
        return [work(x) for x in items]
    results: list = [None] * n
    errors: dict[int, BaseException] = {}
    lock, stop = threading.Lock(), threading.Event()
    taken = iter(range(n))

    def run() -> None:
        while not stop.is_set():
            with lock:
                i = next(taken, None)
            if i is None:
                return
            try:
                results[i] = work(items[i])
            except BaseException as exc:  # raised in the caller's thread
                errors[i] = exc
                stop.set()

    pool = [threading.Thread(target=run, name=f"gene-ae-{t}", daemon=True) for t in range(min(threads, n))]
    for t in pool:
        t.start()
    try:
        for t in pool:
            while t.is_alive():  # a wait that Ctrl-C interrupts
                t.join(0.2)
    except BaseException:
        stop.set()  # nothing more starts; the running items finish unseen
        raise
    if errors:
        raise errors[min(errors)]
    return results
