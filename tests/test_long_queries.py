"""A query holding several stored records reports each of them (issue 32): records laid end to end, one of
them reverse-complemented, come back each with its own query coordinates and strand, best region first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from shared import tiny_index

from gene_ae.cli import main
from gene_ae.core.records import iter_input
from shard_tools.alphabet import FIRST_BASE, decode, reverse_complement


@pytest.fixture(scope="module")
def world(tmp_path_factory, data_dir: Path) -> dict:
    root = tmp_path_factory.mktemp("long")
    genes = [r for r in iter_input(data_dir / "rrna16s" / "16s_sample.fa.gz")][:80]
    (root / "subjects.fa").write_text("".join(f">s{i}\n{decode(g.tokens)}\n" for i, g in enumerate(genes)))
    return {"root": root, "index": tiny_index(root, root / "subjects.fa")[1], "genes": genes}


def _search(world, capsys, name: str, parts: list, k: int, columns: str, *extra: str) -> list[list[str]]:
    """`gene-ae search` of the parts laid end to end as one query: its BLAST-tabular rows."""
    query = world["root"] / name
    query.write_text(f">{name}\n" + decode(np.concatenate(parts)) + "\n")
    with pytest.raises(SystemExit) as done:
        main(["search", "--index", str(world["index"]), str(query), "-k", str(k), "--outfmt", f"6 {columns}", *extra])
    out = capsys.readouterr()
    assert done.value.code == 0, out.err
    return [line.split("\t") for line in out.out.splitlines()]


@pytest.mark.parametrize("extra", [(), ("--fast",)])
def test_records_laid_end_to_end_are_each_reported_with_their_region(world, capsys, extra) -> None:
    """... with --fast too: a long query chains its pieces' candidates whatever --rerank is."""
    picks = [3, 17, 29, 41, 55, 68, 74]
    parts = [world["genes"][i].tokens for i in picks]
    parts[2] = reverse_complement(parts[2])  # one on the minus strand
    starts = np.cumsum([0] + [p.size for p in parts])
    rows = _search(world, capsys, "cat.fa", parts, 10, "sseqid qstart qend sstrand pident", *extra)
    first = {r[0]: r for r in rows[: len(picks)]}  # each region's best hit before any other
    assert set(first) == {f"s{i}" for i in picks}
    for n, i in enumerate(picks):
        _, qstart, qend, strand, pident = first[f"s{i}"]
        assert (int(qstart) - 1, int(qend)) == (starts[n], starts[n + 1]) and float(pident) == 100.0
        assert strand == ("minus" if n == 2 else "plus")


@pytest.mark.parametrize("extra", [(), ("--fast",)])
def test_many_records_inside_a_long_query_among_other_bases_are_each_reported(world, capsys, extra) -> None:
    """30 stored records, 4 kb of unrelated bases between them (a 150 kb query, 146 pieces): each reported, at its
    place, though the pieces' candidates are far more than the 40 a gene query aligns (stop 30 reported 8 of 50
    in a 1 Mb query: only 40 candidates were examined)."""
    rng = np.random.default_rng(7)
    clean = [i for i, g in enumerate(world["genes"]) if (g.tokens < FIRST_BASE + 4).all()]  # an N matches nothing
    picks = sorted(rng.choice(clean, 30, replace=False).tolist())
    parts, spans, at = [], {}, 0
    for i in picks:
        filler = rng.integers(FIRST_BASE, FIRST_BASE + 4, 4_000).astype(np.uint8)
        gene = world["genes"][i].tokens
        parts += [filler, gene]
        spans[f"s{i}"] = (at + filler.size, at + filler.size + gene.size)
        at += filler.size + gene.size
    exact = {}
    for sseqid, qstart, qend, pident in _search(
        world, capsys, "many.fa", parts, 40, "sseqid qstart qend pident", *extra
    ):
        if float(pident) == 100.0:
            exact.setdefault(sseqid, (int(qstart) - 1, int(qend)))
    assert {s: exact.get(s) for s in spans} == spans


def test_a_long_query_chains_past_its_first_candidates_only_when_none_shares_a_region(world) -> None:
    """regions.chained with `deep`: the first `top` candidates unrelated (random bases), the query's source after
    them. Without deep the source is not chained (no identity); with deep it is, and ranks first; with a related
    candidate among the first, nothing past them is chained (the cost of a long query stays its pieces')."""
    from gene_ae.search.chain import QueryChains
    from gene_ae.search.hits import Hit
    from gene_ae.search.regions import chained

    rng = np.random.default_rng(3)
    genes = [g.tokens for g in world["genes"][:3]]
    query = np.concatenate(genes)  # a long query: three stored records end to end
    noise = [rng.integers(FIRST_BASE, FIRST_BASE + 4, 1_500).astype(np.uint8) for _ in range(5)]
    subjects = noise + genes
    hits = [Hit(i, 0.0) for i in range(len(subjects))]
    with QueryChains(query) as table:
        shallow = chained(table, hits, subjects.__getitem__, 5)
        assert all(h.identity is None for h in shallow)
        deep = chained(table, hits, subjects.__getitem__, 5, deep=8, enough=1)
        assert {h.subject for h in deep if h.identity is not None} == {5, 6, 7}
        chained_ones = {h.subject for h in deep if h.identity is not None}
        assert not chained_ones & {h.subject for h in deep if h.identity is None}  # each candidate once
        assert sorted(h.subject for h in deep if h.identity is None) == [0, 1, 2, 3, 4]
        partly = chained(table, hits, subjects.__getitem__, 5, deep=6, enough=1)  # deep stops short of the list
        assert {h.subject for h in partly if h.identity is not None} == {5}  # its regions (16S share pieces)
        assert sorted(h.subject for h in partly if h.identity is None) == [0, 1, 2, 3, 4, 6, 7]
        related_first = [hits[5]] + hits[:5] + hits[6:]
        near = chained(table, related_first, subjects.__getitem__, 5, deep=8, enough=1)
        assert {h.subject for h in near if h.identity is not None} == {5}


def test_a_long_query_chains_every_candidate_voted_near_the_best() -> None:
    """depth.long_first: max(the alignment pool, the pieces), and on to the last candidate voted within deep_flat of
    the best (a crowd of near-identical strains); at most n."""
    from gene_ae.search.depth import long_first
    from gene_ae.search.engine import SearchConfig
    from gene_ae.search.hits import Hit

    cfg = SearchConfig(deep_flat=0.7)
    falling = [Hit(i, s) for i, s in enumerate([9.0, 5.0] + [1.0] * 98)]
    assert long_first(falling, 40, 300, 3, cfg) == 40  # a family, then chance: the pool
    assert long_first(falling, 40, 300, 60, cfg) == 60  # one candidate a piece
    crowd = [Hit(i, s) for i, s in enumerate([9.0] * 80 + [8.0] * 40 + [1.0] * 30)]
    assert long_first(crowd, 40, 300, 3, cfg) == 120  # every one within 0.7 of the best
    assert long_first(crowd, 40, 100, 3, cfg) == 100  # at most n


def test_queries_searched_in_threads_get_the_hits_one_thread_gives(world, capsys) -> None:
    """--threads N searches N queries at once (their C steps release the GIL), or one query's shards and traces:
    every query's hits, in order, and the output file are what one thread gives, with the vector lists fused too,
    and the progress count still adds up to the query bases."""
    from gene_ae.core.mutate import mutate
    from gene_ae.search.engine import SearchConfig
    from gene_ae.search.searcher import Searcher

    rng = np.random.default_rng(11)
    genes = [g.tokens for g in world["genes"]]
    queries = [mutate(genes[i], d, rng) for i, d in zip(range(0, 60, 5), [0.1, 0.2, 0.3] * 4)]
    queries += [reverse_complement(genes[7]), np.concatenate(genes[20:24]), genes[33][200:500]]
    searcher, cfg = Searcher.open(world["index"]), SearchConfig()
    records = [type("Q", (), {"tokens": q})() for q in queries]
    told = []
    one = searcher.search(records, cfg)
    many = searcher.search(records, cfg, progress=told.append, threads=3)

    def rows(found: list) -> list:
        return [[(h.subject, h.score, h.identity, h.strand, h.query_start, h.query_end, h.subject_start,
                  h.subject_end, h.evalue, h.cigar, h.local.score if h.local else None) for h in hits]
                for hits in found]  # fmt: skip

    assert rows(many) == rows(one) and all(hits for hits in one)
    assert sum(told) == sum(q.size for q in queries)
    # one query alone: its threads take the shards, then trace its reported hits (a gene query's) side by side
    alone = [searcher.search([r], cfg, threads=3)[0] for r in records]
    assert rows(alone) == rows(one)
    fused = SearchConfig(sources=("dense", "windows", "sparse"))  # vectors too: embedded once, with every query
    assert rows(searcher.search(records, fused, threads=3)) == rows(searcher.search(records, fused))
    path = world["root"] / "threads.fa"
    path.write_text("".join(f">q{i}\n{decode(q)}\n" for i, q in enumerate(queries)))
    outs = []
    for threads in ("1", "2"):
        with pytest.raises(SystemExit) as done:
            main(["search", "--index", str(world["index"]), str(path), "--threads", threads, "--outfmt", "6"])
        out = capsys.readouterr()
        assert done.value.code == 0, out.err
        outs.append(out.out)
    assert outs[0] == outs[1] and len(outs[0].splitlines()) > len(queries)
