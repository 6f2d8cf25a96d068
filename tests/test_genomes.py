"""A genome against genomes (issue 32): `gene-ae search --outfmt ani` takes every record of the query file as one
genome and ranks the index's genomes by ANI and aligned fractions, as an alignment of each pair would.

The genome is real: the first 90 kb of the S. aureus N315 chromosome (its genes in their own order) in 3 contigs.
Its relatives are copies mutated at 2, 5 and 8 % (substitutions and 1-3 base indels), each cut into 2 contigs at
another place, so every relative is a subject genome of 2 records (grouped by a header feature); the 5 % one has a
third contig, a second copy of 10 kb of the genome, so two of its regions cover the same query bases. The others are
phage lambda, a SARS-CoV-2 genome, and 60 kb from elsewhere on the chromosome with 5 kb of the genome inside (one
gene's worth shared, exactly).
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from shared import one_line_error, tiny_model

from gene_ae.cli import main
from gene_ae.core.mutate import mutate
from gene_ae.core.records import iter_input
from gene_ae.model.checkpoint import save as save_checkpoint
from gene_ae.search.engine import SearchConfig
from gene_ae.search.genomes import GenomeConfig
from gene_ae.search.searcher import Searcher
from shard_tools.alphabet import decode

CONTIGS = (0, 40_000, 70_000, 90_000)  # the query genome's contigs, on the chromosome
RELATED = {"m2": 0.02, "m5": 0.05, "m8": 0.08}
UNRELATED = ("lambda", "sarscov2")
SHARED = (10_000, 15_000)  # the part of the genome inside "saureus_far"


@pytest.fixture(scope="module")
def world(tmp_path_factory, data_dir: Path) -> dict:
    root = tmp_path_factory.mktemp("genomes")
    chromosome = next(iter(iter_input(data_dir / "bacteria" / "saureus_n315_first300kb.fasta.gz"))).tokens
    genome = chromosome[: CONTIGS[-1]]
    (root / "genome.fa").write_text(
        "".join(f">c{i}\n{decode(genome[a:b])}\n" for i, (a, b) in enumerate(zip(CONTIGS[:-1], CONTIGS[1:])))
    )
    rng = np.random.default_rng(32)
    relatives, records = {}, []
    for name, divergence in RELATED.items():
        copy = mutate(genome, divergence, rng)
        relatives[name] = copy
        records += [(f"{name}_a", name, copy[:55_000]), (f"{name}_b", name, copy[55_000:])]
    records.append(("m5_dup", "m5", mutate(genome[60_000:70_000], RELATED["m5"], rng)))
    lam = "".join((data_dir / "viruses" / "lambda_phage.fa").read_text().splitlines()[1:])
    cov = decode(next(iter(iter_input(data_dir / "viruses" / "sarscov2_sample.fasta.gz"))).tokens)
    records += [("lambda", "lambda", lam), ("sarscov2", "sarscov2", cov)]
    far = np.concatenate([chromosome[200_000:230_000], genome[slice(*SHARED)], chromosome[230_000:260_000]])
    records += [("saureus_far", "saureus_far", far)]
    text = "".join(f">{rid} assembly={group}\n{s if isinstance(s, str) else decode(s)}\n" for rid, group, s in records)
    (root / "subjects.fa").write_text(text)
    cfg, encoder = tiny_model()
    ckpt = save_checkpoint(root / "ckpt", cfg, encoder.model)
    index = root / "index"
    with pytest.raises(SystemExit) as done:
        main(["embed", "--model", str(ckpt), "--input", str(root / "subjects.fa"), "--out", str(index),
              "--feature-column", "assembly"])  # fmt: skip
    assert done.value.code == 0
    return {"root": root, "index": index, "genome": genome, "relatives": relatives}


def aligned_identity(a: np.ndarray, b: np.ndarray) -> float:
    """The independent check: matching columns / alignment columns of edlib's global alignment of the pair."""
    import edlib

    cigar = edlib.align(decode(a), decode(b), mode="NW", task="path")["cigar"]
    ops = [(int(n), op) for n, op in re.findall(r"(\d+)([=XID])", cigar)]
    return sum(n for n, op in ops if op == "=") / sum(n for n, _ in ops)


def ani_rows(world, capsys, *args: str) -> tuple[list[dict[str, str]], str]:
    """`gene-ae search --outfmt ani` of the genome: its rows, and what it wrote to stderr."""
    with pytest.raises(SystemExit) as done:
        main(["search", "--index", str(world["index"]), str(world["root"] / "genome.fa"), "--outfmt", "ani", *args])
    out = capsys.readouterr()
    assert done.value.code == 0, out.err
    header, *rows = [line.split("\t") for line in out.out.splitlines()]
    assert header == ["query_genome", "subject_genome", "ani", "query_af", "subject_af", "aligned_bases", "regions"]
    return [dict(zip(header, r)) for r in rows], out.err


def test_relatives_rank_by_the_identity_of_an_alignment_of_each_pair(world, capsys) -> None:
    rows, _ = ani_rows(world, capsys, "--subject-genome", "assembly")
    assert [r["subject_genome"] for r in rows] == list(RELATED), rows  # the others are below --min-af: absent
    for r in rows:
        direct = 100 * aligned_identity(world["genome"], world["relatives"][r["subject_genome"]])
        assert abs(float(r["ani"]) - direct) < 1.0, (r, direct)  # issue 32: within 1 point of the pair's alignment
        assert 98 < float(r["query_af"]) <= 100 and float(r["subject_af"]) > 98, r  # m5's second copy counted once
        assert r["query_genome"].endswith("genome.fa") and int(r["aligned_bases"]) > 0.98 * CONTIGS[-1], r
        assert int(r["regions"]) >= 4, r  # 3 query contigs on 2 subject contigs cut elsewhere: at least 4 pieces


def test_the_contigs_searched_in_threads_give_the_rows_of_one_sum_over_them(world, capsys) -> None:
    """--threads N answers N contigs of the query genome at once, each into its own sums, added in contig order:
    every row (ANI, aligned fractions, bases, regions) is what summing the contigs one after another into one
    tally gives, and what the command prints with one thread."""
    from gene_ae.search import engine, genomes

    searcher, cfg = Searcher.open(world["index"]), SearchConfig(k=10)
    contigs = list(iter_input(world["root"] / "genome.fa"))
    genome_cfg = GenomeConfig(min_af=0.0, subject_feature="assembly")
    threaded = searcher.genome("g", contigs, cfg, genome_cfg, threads=3)
    subjects = genomes.Subjects.of(searcher.collection, "assembly")
    tallies: dict = {}
    for c in contigs:  # the sum as it was made before threads: one tally, one contig after another
        genomes.add_contig(tallies, engine.each_region(searcher.collection, c.tokens, None, cfg), subjects)
    assert threaded == genomes.ranked("g", tallies, CONTIGS[-1], subjects, genome_cfg) and len(threaded) > 3
    one, _ = ani_rows(world, capsys, "--subject-genome", "assembly", "--min-af", "0", "--threads", "1")
    many, _ = ani_rows(world, capsys, "--subject-genome", "assembly", "--min-af", "0", "--threads", "3")
    assert many == one


def test_a_shared_gene_is_identical_but_aligns_little_and_the_unrelated_nothing(world) -> None:
    searcher = Searcher.open(world["index"])
    contigs = list(iter_input(world["root"] / "genome.fa"))
    rows = searcher.genome("g", contigs, SearchConfig(), GenomeConfig(top=100, min_af=0.0, subject_feature="assembly"))
    got = {r.subject: r for r in rows}
    assert set(RELATED) | {"saureus_far"} <= got.keys(), rows
    far, shared = got["saureus_far"], SHARED[1] - SHARED[0]
    assert far.ani > 0.99 and far.aligned_bases == pytest.approx(shared, abs=50), far
    assert far.query_af == pytest.approx(shared / CONTIGS[-1], abs=0.01) and far.subject_af < 0.1, far
    assert [r.subject for r in rows][:4] == ["saureus_far", *RELATED], rows  # by ANI alone: what --min-af is for
    for name in UNRELATED:
        if name in got:
            assert max(got[name].query_af, got[name].subject_af) < 0.02, got[name]


def test_each_record_is_a_subject_genome_by_default(world, capsys) -> None:
    rows = {r["subject_genome"]: r for r in ani_rows(world, capsys, "-k", "20")[0]}
    for name in RELATED:
        for part, share in (("_a", 55_000 / CONTIGS[-1]), ("_b", 35_000 / CONTIGS[-1])):
            r = rows[name + part]
            assert float(r["subject_af"]) > 98 and abs(float(r["query_af"]) - 100 * share) < 2, r


def test_a_long_query_shows_its_progress_on_a_terminal_only(world, capsys, terminal, monkeypatch) -> None:
    import gene_ae.cli.search as search_cli
    from gene_ae.core import bar as bars

    monkeypatch.setattr(search_cli, "PROGRESS_BASES", 10_000)  # the 90 kb genome (40 kb contigs) counts as long here
    made = bars.progress

    def eager(desc: str, total: int | None = None):  # drawn at every step: this search ends within tqdm's 0.1 s
        bar = made(desc, total)
        bar.mininterval, bar.miniters, bar.dynamic_miniters = 0, 0, False
        return bar

    monkeypatch.setattr(bars, "progress", eager)
    quiet, err = ani_rows(world, capsys, "--subject-genome", "assembly")
    assert err == ""  # stderr not a terminal: nothing on it
    tty, sent = terminal
    monkeypatch.setattr(sys, "stderr", tty)  # here, not in the fixture: pytest sets its own between phases
    shown_rows, _ = ani_rows(world, capsys, "--subject-genome", "assembly")
    shown = settled(sent)
    with pytest.raises(SystemExit) as done:  # a plain search of long queries (each contig one): a line too
        main(["search", "--index", str(world["index"]), str(world["root"] / "genome.fa"), "-k", "3"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("query_id\t")
    plain = settled(sent)[len(shown) :]
    monkeypatch.setattr(search_cli, "PROGRESS_BASES", 10**9)  # now too short for a line
    ani_rows(world, capsys, "--subject-genome", "assembly")
    short = settled(sent)[len(shown) + len(plain) :]
    monkeypatch.undo()
    assert shown_rows == quiet  # the same answer, the line on stderr only
    assert "search:" in shown and "/90.0k [" in shown and "bp/s" in shown, shown  # bases done / the genome's
    assert shown.count("search:") >= 2 and shown.endswith("\r") and "\n" not in shown, shown  # in place, cleared
    assert "search:" in plain and plain.endswith("\r") and "\n" not in plain, plain
    assert short == "", short


def settled(sent) -> str:
    """What the terminal was sent, once the reader has taken the last bytes."""
    time.sleep(0.3)
    return sent()


def test_subject_genomes_by_a_feature_the_index_lacks_or_without_ani_are_one_line_errors(world, cli) -> None:
    index, genome = world["index"], world["root"] / "genome.fa"
    code, out, err = cli("gene-ae", "search", "--index", index, genome, "--outfmt", "ani", "--subject-genome", "strain")
    one_line_error(err, "'strain'", "assembly", rc=code, prefix="gene-ae search: error: ")
    assert out == ""
    code, out, err = cli("gene-ae", "search", "--index", index, genome, "--subject-genome", "assembly")
    one_line_error(err, "--outfmt ani", rc=code, prefix="gene-ae search: error: ")
    code, out, err = cli("gene-ae", "search", "--index", index, genome, "--min-af", "0.5")
    one_line_error(err, "--min-af", "--outfmt ani", rc=code, prefix="gene-ae search: error: ")


def test_an_indel_of_kilobases_is_unaligned_sequence_not_ani_columns() -> None:
    """Real genomes of one species differ by kilobase indels (mpox clades: 1-2 kb); counted as gap columns they took
    0.2-1.0 points off each pair's ANI against minimap2's alignment. Over LONG_GAP bases an indel is not counted;
    a short one is (BLAST's pident), whether or not part of the region is already taken by a better one."""
    from gene_ae.search.genomes import LONG_GAP, fresh
    from gene_ae.search.stats import DEL, INS, MATCH, MISMATCH, Region

    def region(runs: list[tuple[int, int]]) -> Region:
        lengths, kinds = (np.array(x, dtype=np.int64) for x in zip(*runs))
        query = int(lengths[kinds != DEL].sum())
        matches = int(lengths[kinds == MATCH].sum())
        gaps = int(lengths[(kinds == INS) | (kinds == DEL)].sum())
        return Region(0, query, 0, int(lengths[kinds != INS].sum()), int(lengths.sum()), matches,
                      int(lengths[kinds == MISMATCH].sum()), 2, gaps, 0, lengths, kinds)  # fmt: skip

    long = region([(400, MATCH), (2_000, DEL), (10, MISMATCH), (3, INS), (587, MATCH)])
    assert fresh(long, "+", []) == (987, 1_000, 1_000)  # 987 matches over 1,000 columns: 98.7 %, not 32.9 %
    assert fresh(long, "+", [(900, 2_000)]) == (887, 900, 900)  # the same rule where part is taken
    short = region([(400, MATCH), (LONG_GAP, DEL), (600, MATCH)])
    assert fresh(short, "+", []) == (1_000, 1_000 + LONG_GAP, 1_000)
