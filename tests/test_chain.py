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
