"""Chains of a long query's k-mer matches (gene_ae/search/chain.py, chain.c): where a query matches a subject, on
which strand, over which spans, how closely; several regions of one subject each found."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gene_ae.core.mutate import mutate
from gene_ae.core.records import iter_input
from gene_ae.search.align import identity
from gene_ae.search.chain import Chain, ChainConfig, QueryChains, best_regions, chain_path
from gene_ae.search.stats import DEL, INS, MATCH, MISMATCH, runs
from shard_tools.alphabet import FIRST_BASE, reverse_complement


@pytest.fixture(scope="module")
def lam(data_dir: Path) -> np.ndarray:
    return next(iter_input(data_dir / "viruses" / "lambda_phage.fa")).tokens


@pytest.mark.parametrize("strand", ["+", "-"])
def test_an_exact_piece_is_one_chain_with_its_spans_and_strand(lam, strand) -> None:
    piece = lam[10_000:30_000]
    query = piece if strand == "+" else reverse_complement(piece)
    with QueryChains(query) as table:
        best, *rest = table.regions(lam)
    assert (best.strand, best.query_start, best.query_end) == (strand, 0, 20_000)
    assert (best.subject_start, best.subject_end) == (10_000, 30_000)
    assert best.anchors == 20_000 - 13 + 1 and best.identity(13) == 1.0
    assert all(ch.score < best.score / 10 for ch in rest)


@pytest.mark.parametrize("divergence", [0.05, 0.1, 0.2])
def test_the_anchors_density_estimates_the_regions_identity(lam, divergence) -> None:
    """The estimate is within 0.04 of the edit identity of the same region (mutations are substitutions and
    indels, so no k-mer formula is exact)."""
    rng = np.random.default_rng(int(divergence * 100))
    query = mutate(lam[5_000:25_000], divergence, rng)
    with QueryChains(query) as table:
        best = table.regions(lam)[0]
    aligned = identity(query[best.query_start : best.query_end], lam[best.subject_start : best.subject_end], 10**6)
    assert abs(best.identity(13) - aligned) < 0.04, (best, aligned)
    assert abs(best.subject_start - 5_000) < 200 and abs(best.subject_end - 25_000) < 200


def test_a_subject_holding_two_parts_of_the_query_gives_two_regions(lam) -> None:
    """Parts laid out in another order in the subject (and one reversed): two chains, each with its spans."""
    query = np.concatenate([lam[0:8_000], lam[20_000:28_000]])
    subject = np.concatenate([lam[20_000:28_000], reverse_complement(lam[0:8_000])])
    with QueryChains(query) as table:
        regions = best_regions(table.regions(subject), query.size, 13)
    (s1, a), (s2, b) = regions[:2]
    found = sorted([a, b], key=lambda ch: ch.query_start)
    assert [(c.strand, c.query_start, c.query_end, c.subject_start, c.subject_end) for c in found] == [
        ("-", 0, 8_000, 8_000, 16_000),
        ("+", 8_000, 16_000, 0, 8_000),
    ]
    assert s1 == pytest.approx(0.5, abs=0.01) and s2 == pytest.approx(0.5, abs=0.01)


def test_unrelated_sequences_and_runs_of_n_give_no_chain(lam) -> None:
    rng = np.random.default_rng(3)
    other = rng.integers(FIRST_BASE, FIRST_BASE + 4, size=30_000).astype(np.uint8)
    with QueryChains(other) as table:
        assert table.regions(lam) == []
        assert table.regions(np.full(5_000, FIRST_BASE + 4, np.uint8)) == []  # N only: no k-mer at all


def test_a_region_inside_a_better_one_is_that_region_again() -> None:
    outer = Chain("+", 0, 10_000, 0, 10_000, 9_000, 9_000)
    inner = Chain("+", 2_000, 6_000, 50_000, 54_000, 3_000, 3_000)
    apart = Chain("+", 9_000, 14_000, 60_000, 65_000, 4_000, 4_000)
    kept = [ch for _, ch in best_regions([outer, inner, apart], 14_000, 13)]
    assert kept == [outer, apart]


def test_a_closed_table_and_a_bad_k_are_refused(lam) -> None:
    table = QueryChains(lam[:5_000])
    table.close()
    with pytest.raises(ValueError, match="closed"):
        table.regions(lam)
    with pytest.raises(ValueError, match="k must be in 1..15"):
        QueryChains(lam, ChainConfig(k=16))


def test_a_chain_path_is_an_alignment_of_its_spans(lam) -> None:
    """The path built from a chain's anchors (runs of matches, gaps aligned between them) spans exactly the
    chain's query and subject spans, and its matches are matches: read back by stats.runs, which parses an
    extended CIGAR in numpy and refuses what is not one."""
    rng = np.random.default_rng(11)
    query = reverse_complement(mutate(lam[3_000:23_000], 0.15, rng))
    with QueryChains(query) as table:
        (chain, anchors), *_ = table.anchored(lam)
    oriented = reverse_complement(query)  # a minus chain's anchors are on the query's reverse complement
    assert chain.strand == "-" and anchors.shape == (chain.anchors, 2)
    lengths, kinds = runs(chain_path(oriented, lam, anchors, 13))
    q0, s0 = int(anchors[0, 0]), int(anchors[0, 1])
    assert q0 == query.size - chain.query_end and s0 == chain.subject_start
    used_q = int(lengths[np.isin(kinds, [MATCH, MISMATCH, INS])].sum())
    used_s = int(lengths[np.isin(kinds, [MATCH, MISMATCH, DEL])].sum())
    assert (used_q, used_s) == (chain.query_end - chain.query_start, chain.subject_end - chain.subject_start)
    qi, si = q0, s0
    for n, kind in zip(lengths.tolist(), kinds.tolist()):
        if kind == MATCH:
            assert (oriented[qi : qi + n] == lam[si : si + n]).all()
        qi += n if kind != DEL else 0
        si += n if kind != INS else 0
    for bad in ("3=2Q", "=3", "3=4", "3=="):
        with pytest.raises(ValueError, match="not an extended CIGAR"):
            runs(bad)


def test_a_chain_path_skips_anchors_that_cross_its_run_and_resumes_past_them() -> None:
    """Anchors taken a group at a time (a diagonal's overlapping anchors): a group whose first anchors start inside
    the current run on another diagonal (an inserted base right after it) is entered at its first anchor past the
    run's end, as the walk anchor by anchor enters it."""
    subject = np.array([FIRST_BASE + i % 4 for i in (0, 1, 2, 3, 1, 0, 3, 2, 2, 0, 1, 3, 0, 2)], np.uint8)
    query = np.concatenate([subject[:8], [FIRST_BASE], subject[8:]]).astype(np.uint8)  # one base inserted at 8
    anchors = np.array([[0, 0], [2, 2], [4, 4], [6, 5], [7, 6], [9, 8]])  # k 4: run 0-8, then (6,5) and (7,6) cross
    assert chain_path(query, subject, anchors, 4) == "8=1I4="
    assert chain_path(query, subject, anchors[[0, 1, 2, 5]], 4) == "8=1I4="  # the same without the crossing ones
    assert chain_path(query, subject, anchors[:3], 4, (0, 13, 0, 12)) == "8="  # the end's diagonal is not the run's
    assert chain_path(query, subject, anchors[:3], 4, (0, 12, 0, 12)) == "12="  # it is: the run reaches it
    assert chain_path(query, subject, anchors[:0], 4) == ""


@pytest.mark.parametrize("big", [False, True])
def test_a_chain_paths_gaps_are_edlibs_own_paths(big) -> None:
    """chain.c aligns a gap between anchors itself (Myers' bit-vector distances, traced back as edlib traces): the
    path is edlib's NW path to the byte (which of several equal paths, = and X counted as edlib counts them), on
    related and unrelated gaps, N bases included; a gap of a table over chain.EDLIB_TABLE bytes (`big`: 1,400-2,500
    bases, some past edlib's 2^20 where it splits by Hirschberg's method) is left to edlib itself. A traceback
    preferring the diagonal, or D before I, fails this."""
    import edlib

    rng, k, differ = np.random.default_rng(7 if big else 3), 13, 0
    for _ in range(12 if big else 150):
        m = int(rng.integers(1400, 2500) if big else rng.integers(1, 300))
        n = max(1, int(m * rng.uniform(0.6, 1.4)))
        q = (FIRST_BASE + rng.integers(0, 5 if rng.random() < 0.2 else 4, m)).astype(np.uint8)
        s = np.resize(q, n).copy()  # a relative: the query's bases, changed at random
        changed = rng.random(n) < rng.uniform(0.0, 0.6)
        s[changed] = FIRST_BASE + rng.integers(0, 4, int(changed.sum()))
        left, right = ((FIRST_BASE + rng.integers(0, 4, k)).astype(np.uint8) for _ in range(2))
        query, subject = np.concatenate([left, q, right]), np.concatenate([left, s, right])
        got = chain_path(query, subject, np.array([[0, 0], [k + m, k + n]]), k)
        want = f"{k}=" + edlib.align(q.tobytes(), s.tobytes(), mode="NW", task="path")["cigar"] + f"{k}="
        differ += got != want
    assert differ == 0


def _reference_chains(query: np.ndarray, subject: np.ndarray, c: ChainConfig) -> list:
    """chain.c's chains, written plainly (every anchor looks back over its h predecessors): (chain row, anchors)."""
    from math import floor, log2

    def kmers(s: np.ndarray):
        for i in range(s.size - c.k + 1):
            w = s[i : i + c.k].astype(np.int64) - FIRST_BASE
            if (w < 0).any() or (w > 3).any():
                continue
            fwd = int(sum(int(b) << 2 * (c.k - 1 - j) for j, b in enumerate(w)))
            rev = int(sum(int(3 - b) << 2 * j for j, b in enumerate(w)))
            yield i, min(fwd, rev), int(rev < fwd)

    table: dict[int, list] = {}
    for pos, code, orient in kmers(query):
        table.setdefault(code, []).append((pos, orient))
    anchors: list[list] = [[], []]
    for pos, code, orient in kmers(subject):
        for qpos, q_orient in table.get(code, []) if len(table.get(code, [])) <= c.max_occ else []:
            minus = int(q_orient != orient)
            anchors[minus].append((query.size - qpos - c.k if minus else qpos, pos))
    rows, scale = [], 65536  # chain.c's fixed point: a base is 65536
    for strand, a in enumerate(anchors):
        f, prev = [c.k * scale] * len(a), [-1] * len(a)
        for i in range(len(a)):
            seen = 0
            for j in range(i - 1, -1, -1):
                if seen >= c.lookback:
                    break
                sd, qd = a[i][1] - a[j][1], a[i][0] - a[j][0]
                if sd > c.max_gap:
                    break
                if sd == 0:
                    continue
                seen += 1
                drift = abs(qd - sd)
                if qd <= 0 or qd > c.max_gap or drift > c.band:
                    continue
                cost = int(floor(scale * (0.01 * c.k * drift + 0.5 * log2(drift)) + 0.5)) if drift else 0
                sc = f[j] + min(qd, sd, c.k) * scale - cost
                if sc > f[i]:
                    f[i], prev[i] = sc, j
        used = [False] * len(a)
        for end in sorted(range(len(a)), key=lambda i: (-(f[i] // (scale // 4)), i)):
            if used[end] or len(rows) >= c.max_chains:
                continue
            path, i = [], end
            while i >= 0 and not used[i]:
                used[i] = True
                path.append(i)
                i = prev[i]
            score = (f[end] - (f[i] if i >= 0 else 0)) / scale
            if score >= c.min_score:
                q0, q1, s0, s1 = a[path[-1]][0], a[end][0] + c.k, a[path[-1]][1], a[end][1] + c.k
                if strand:
                    q0, q1 = query.size - q1, query.size - q0
                chain = Chain("-" if strand else "+", q0, q1, s0, s1, int(score), len(path))
                rows.append((chain, [a[p] for p in reversed(path)]))
    return sorted(rows, key=lambda x: -x[0].score)


@pytest.mark.parametrize("case", ["relative", "repeats", "minus strand"])
def test_chains_are_those_of_the_plain_dynamic_programming(case: str) -> None:
    """chain.c takes the next k-mer of an exact match straight after the one before (no look back) unless the query
    base before matched another subject base too: its chains and anchors must be exactly what every anchor looking
    back over its h predecessors gives, on a close relative (most anchors taken that way) and where the subject
    holds a tandem repeat more times than the query (there the look back finds a better predecessor in another
    copy: without that exception, these chains came out otherwise)."""
    rng = np.random.default_rng(35 if case == "repeats" else 5)
    bases = lambda n: rng.integers(FIRST_BASE, FIRST_BASE + 4, n).astype(np.uint8)  # noqa: E731
    if case == "repeats":
        unit = bases(int(rng.integers(15, 60)))
        source = np.concatenate([bases(200), np.tile(unit, int(rng.integers(2, 6))), bases(200)])
        query = mutate(source, 0.05, rng)
        subject = mutate(np.concatenate([source[:300], source[200:]]), 0.05, rng)
    else:
        source = bases(2500)
        query, subject = mutate(source, 0.08, rng), mutate(source, 0.03, rng)
    if case == "minus strand":
        subject = reverse_complement(subject)
    cfg = ChainConfig(k=11, max_occ=16, lookback=20, min_score=30.0)
    with QueryChains(query, cfg) as table:
        got = [(ch, [tuple(p) for p in pairs.tolist()]) for ch, pairs in table.anchored(subject)]
    want = _reference_chains(query, subject, cfg)
    assert got == want and got and sum(ch.anchors for ch, _ in got) > 30


def test_a_chain_path_refuses_anchors_or_ends_outside_its_sequences() -> None:
    """chain.c reads the bases anchors and ends name without the sequences' lengths: the wrapper checks them."""
    seq = np.full(40, FIRST_BASE, np.uint8)
    with pytest.raises(ValueError, match="anchors outside"):
        chain_path(seq, seq[:20], np.array([[0, 0], [30, 10]]), 13)
    with pytest.raises(ValueError, match="ends"):
        chain_path(seq, seq, np.array([[0, 0], [20, 20]]), 13, (0, 41, 0, 40))
    assert chain_path(seq, seq, np.array([[0, 0], [20, 20]]), 13, (0, 40, 0, 40)) == "13=7=20="  # the gap its own


def _band_counts_by_definition(query: np.ndarray, subject: np.ndarray, k: int, band: int) -> int:
    """The most k-mer matches on one band of `band` adjacent diagonals of one strand, from every pair of positions
    (odd k: no k-mer is its own reverse complement, so each match has one strand)."""

    def codes(s: np.ndarray) -> list[bytes]:
        return [s[i : i + k].tobytes() for i in range(s.size - k + 1)]

    fwd, rev, subj = codes(query), codes(reverse_complement(query)), codes(subject)
    best = 0
    for strand in (fwd, rev):
        diagonals = np.array([j - i for j, c in enumerate(subj) for i, d in enumerate(strand) if c == d], np.int64)
        for d in diagonals:
            best = max(best, int(np.count_nonzero((diagonals >= d) & (diagonals < d + band))))
    return best


@pytest.mark.parametrize("seed", range(4))
def test_band_counts_are_the_most_matches_on_one_band_of_diagonals(seed) -> None:
    """QueryChains.band_counts (a remote gene query's deep pool, gene_ae/search/depth.py) against its definition, on
    random shapes: copies mutated on either strand, unrelated subjects, an empty one."""
    rng = np.random.default_rng(seed)
    query = rng.integers(FIRST_BASE, FIRST_BASE + 4, int(rng.integers(60, 200))).astype(np.uint8)
    subjects = [mutate(query, 0.15, rng), reverse_complement(mutate(query, 0.2, rng)),
                rng.integers(FIRST_BASE, FIRST_BASE + 4, 150).astype(np.uint8), np.zeros(0, np.uint8),
                np.concatenate([mutate(query, 0.1, rng), query[:50]])]  # fmt: skip
    for k, band in [(5, 8), (7, 16), (7, 1)]:
        with QueryChains(query, ChainConfig(k=k)) as table:
            got = table.band_counts(subjects, band)
        want = [_band_counts_by_definition(query, s, k, band) for s in subjects]
        assert got.tolist() == want, (k, band)
    assert got[0] > got[2] and got[1] > got[2]  # a copy on either strand matches on its diagonal


@pytest.mark.parametrize("seed", range(3))
def test_a_co_linear_copy_outcounts_one_holding_more_of_its_kmers_out_of_order(seed) -> None:
    """What the deep pool relies on: the source of a 30 % copy shares few of its 10-mers, but on one diagonal; the
    copy's own 10-base pieces shuffled share more of them (one in ten, against ~3 %), on scattered diagonals."""
    rng = np.random.default_rng(seed)
    source = rng.integers(FIRST_BASE, FIRST_BASE + 4, 1500).astype(np.uint8)
    query = mutate(source, 0.3, rng)
    pieces = np.array_split(query, query.size // 10)
    shuffled = np.concatenate([pieces[i] for i in rng.permutation(len(pieces))])
    with QueryChains(query, ChainConfig(k=8)) as table:
        copy, decoy = table.band_counts([source, shuffled], 64).tolist()
    assert copy > 1.3 * decoy
