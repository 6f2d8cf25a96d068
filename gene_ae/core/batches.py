"""Consecutive items grouped by the bases they hold: the one rule every batch, chunk and span group of a
collection is cut by (index/build.py's record batches and embedding chunks, the Encoder's span groups)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def by_bases(items: Iterable[T], size: Callable[[T], int], bases: int) -> Iterator[list[T]]:
    """`items` in order, in groups closed as soon as their sizes add up to `bases` (an item larger than that is
    a group alone; the last group may hold fewer). Lazy: a stream is read one group at a time."""
    group: list[T] = []
    total = 0
    for item in items:
        group.append(item)
        total += size(item)
        if total >= bases:
            yield group
            group, total = [], 0
    if group:
        yield group


def group_ends(sizes: list[int], bases: int) -> Iterator[int]:
    """The end (exclusive) of each group `by_bases` cuts a list of sizes into, for slicing parallel lists."""
    end = 0
    for group in by_bases(sizes, int, bases):
        end += len(group)
        yield end
