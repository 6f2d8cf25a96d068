"""How far a search is, in query bases: what a progress line on a terminal counts (gene_ae/cli/search.py).

Why in bases: one long query (a genome) is most of a search's time, so a count of queries done would stand still
for minutes; a query's bases are handed out as its steps finish (its candidates chained, its regions traced).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

Progress = Callable[[int], object]  # told the query bases newly done (a tqdm bar's update)


@dataclass
class Share:
    """One query's bases for `tell`: `at(f)` reports those up to the share f of the query not reported yet, so
    the bases told add up to the query's length once `at(1.0)` is called."""

    bases: int
    tell: Progress | None = None
    told: int = 0

    def at(self, fraction: float) -> None:
        if self.tell is None:
            return
        upto = int(self.bases * min(max(fraction, 0.0), 1.0))
        if upto > self.told:
            self.tell(upto - self.told)
            self.told = upto

    def within(self, low: float, high: float) -> Callable[[float], None]:
        """f -> at(low + f (high - low)): a step that is the share [low, high] of the query's work."""
        return partial(_scaled, self, low, high)


def _scaled(share: Share, low: float, high: float, fraction: float) -> None:
    share.at(low + fraction * (high - low))


def locked(tell: Progress | None) -> Progress | None:
    """`tell` for several threads at once (a tqdm bar's count is not safe from two): one at a time."""
    if tell is None:
        return None
    lock = threading.Lock()

    def told(bases: int) -> None:
        with lock:
            tell(bases)

    return told
