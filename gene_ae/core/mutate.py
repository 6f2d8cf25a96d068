"""The one mutation simulator: training makes positive views with it, evaluation makes query copies.

Numpy only, so data loaders and evaluation do not need torch. Everything is vectorised, because
evaluation mutates whole chromosomes (millions of bases) and loaders call it once per sample.
"""

from __future__ import annotations

import numpy as np

from shard_tools.alphabet import FIRST_BASE, N, reverse_complement

_A = FIRST_BASE  # A, C, G, T are the four consecutive tokens FIRST_BASE .. FIRST_BASE + 3


def mutate(
    tokens: np.ndarray,
    divergence: float,
    rng: np.random.Generator,
    indel_fraction: float = 0.2,
    max_indel: int = 3,
) -> np.ndarray:
    """A mutated copy of a token array with about `divergence` events per base.

    Each real base (token >= FIRST_BASE) independently carries an event with probability `divergence`.
    A fraction `1 - indel_fraction` of events are substitutions to a different base (N becomes a random
    A/C/G/T); the rest are, with equal odds, a deletion of 1..max_indel bases starting at the position
    or an insertion of 1..max_indel random bases just before it. Specials are never touched.
    The input array is not modified.
    """
    if not 0.0 <= divergence <= 1.0:
        raise ValueError(f"divergence must be in [0, 1], got {divergence}")
    if not 0.0 <= indel_fraction <= 1.0:
        raise ValueError(f"indel_fraction must be in [0, 1], got {indel_fraction}")
    if max_indel < 1:
        raise ValueError(f"max_indel must be at least 1, got {max_indel}")
    out = np.array(tokens, dtype=np.uint8, copy=True)
    n = out.size
    if n == 0 or divergence == 0.0:
        return out
    is_base = out >= FIRST_BASE
    events = np.flatnonzero((rng.random(n) < divergence) & is_base)
    kind = rng.random(events.size)  # < 1 - indel_fraction: substitution; else deletion or insertion
    indel = kind >= 1.0 - indel_fraction
    subs = events[~indel]
    is_del = rng.random(events.size) < 0.5
    dels = events[indel & is_del]
    ins = events[indel & ~is_del]

    # Substitutions: shift a base by 1..3 within A,C,G,T so it always changes; N gets any base.
    old = out[subs]
    shifted = (old.astype(np.int64) - _A + rng.integers(1, 4, subs.size)) % 4 + _A
    out[subs] = np.where(old == N, rng.integers(_A, _A + 4, subs.size), shifted)

    # Deletions: drop del_len consecutive bases from each start (specials survive).
    keep = np.ones(n, dtype=bool)
    if dels.size:
        del_len = rng.integers(1, max_indel + 1, dels.size)
        starts = np.repeat(dels, del_len)
        offsets = np.arange(starts.size) - np.repeat(np.cumsum(del_len) - del_len, del_len)
        gone = starts + offsets
        gone = gone[gone < n]
        keep[gone[is_base[gone]]] = False

    # Insertions: each kept or deleted input position i emits ins_len[i] random bases then itself (if kept).
    ins_len = np.zeros(n, dtype=np.int64)
    if ins.size:
        ins_len[ins] = rng.integers(1, max_indel + 1, ins.size)
    if not ins.size and keep.all():
        return out
    width = ins_len + keep
    end = np.cumsum(width)
    result = rng.integers(_A, _A + 4, int(end[-1]), dtype=np.uint8)
    result[(end - 1)[keep]] = out[keep]  # a kept token sits last in its slot, after its insertion
    return result


def random_view(
    tokens: np.ndarray,
    rng: np.random.Generator,
    max_divergence: float,
    rc_prob: float = 0.5,
    divergence: float | None = None,
) -> np.ndarray:
    """A positive view for contrastive training: mutate at a uniform divergence, maybe reverse-complement.

    The divergence is drawn from [0, max_divergence] (unless given) so the model sees near and far
    relatives alike; reverse complementing teaches it that both strands are the same molecule.
    """
    d = float(rng.uniform(0.0, max_divergence)) if divergence is None else divergence
    view = mutate(tokens, d, rng)
    if rng.random() < rc_prob:
        view = reverse_complement(view)
    return view
