"""BLAST users switch without friction (issue 35): gene-ae's BLAST tabular columns agree with blastn's on the
same query / subject pairs, SAM is read by samtools, PAF has minimap2's columns, both strands as BLAST writes them.

Real 16S genes (data/rrna16s), 10 %-mutated copies as queries; blastn and samtools are Debian's (.ci/run installs
them). The agreement is measured by benchmarks/blast_agreement.py's own comparison, against issue 35's targets.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from shared import REPO, tiny_index

from gene_ae.cli import main
from gene_ae.core.mutate import mutate
from gene_ae.core.records import iter_input
from shard_tools.alphabet import decode, reverse_complement

sys.path.insert(0, str(REPO / "benchmarks"))
import blast_agreement  # noqa: E402

N_SUBJECTS, N_QUERIES = 60, 24


@pytest.fixture(scope="module")
def world(tmp_path_factory, data_dir: Path) -> dict:
    root = tmp_path_factory.mktemp("blast")
    genes = [r for r in iter_input(data_dir / "rrna16s" / "16s_sample.fa.gz")][:N_SUBJECTS]
    (root / "subjects.fa").write_text("".join(f">s{i}\n{decode(g.tokens)}\n" for i, g in enumerate(genes)))
    rng = np.random.default_rng(7)
    picks = rng.choice(len(genes), N_QUERIES, replace=False)
    copies = [mutate(genes[i].tokens, 0.1, rng) for i in picks]
    copies[1] = reverse_complement(copies[1])  # one on the minus strand
    (root / "q.fa").write_text("".join(f">q{j}\n{decode(c)}\n" for j, c in enumerate(copies)))
    _, index = tiny_index(root, root / "subjects.fa")
    truth = {f"q{j}": f"s{i}" for j, i in enumerate(picks)}
    return {"root": root, "index": index, "truth": truth, "genes": genes}


def gene_ae(capsys, *args: object) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return done.value.code, out.out, out.err


def _needs(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (Debian's package; .ci/run installs it)")


def test_blast6_agrees_with_blastn_on_the_same_pairs(world, capsys) -> None:
    _needs("blastn")
    root = world["root"]
    code, ours, err = gene_ae(capsys, "search", "--index", world["index"], root / "q.fa", "-k", "3", "--outfmt", "6")
    assert code == 0, err
    subprocess.run(["makeblastdb", "-in", root / "subjects.fa", "-dbtype", "nucl", "-out", root / "db"], check=True,
                   capture_output=True)  # fmt: skip
    theirs = subprocess.run(["blastn", "-task", "blastn", "-query", root / "q.fa", "-db", root / "db", "-outfmt", "6",
                             "-max_target_seqs", "5"], check=True, capture_output=True, text=True).stdout  # fmt: skip
    fractions, pairs = blast_agreement.compare(ours, theirs, world["truth"])
    assert pairs >= 0.9 * N_QUERIES
    assert all(f >= 0.9 for f in fractions.values()), fractions
    minus = [line.split("\t") for line in ours.splitlines() if line.startswith("q1\t")][0]
    assert minus[1] == world["truth"]["q1"] and int(minus[8]) > int(minus[9])  # sstart > send on the minus strand


def test_sam_is_read_by_samtools_and_paf_has_minimap2s_columns(world, capsys) -> None:
    _needs("samtools")
    root = world["root"]
    code, sam, err = gene_ae(capsys, "search", "--index", world["index"], root / "q.fa", "-k", "2", "--outfmt", "sam")
    assert code == 0, err
    (root / "hits.sam").write_text(sam)
    view = subprocess.run(["samtools", "view", "-c", root / "hits.sam"], capture_output=True, text=True)
    assert view.returncode == 0 and view.stderr == "", view.stderr
    records = [line.split("\t") for line in sam.splitlines() if not line.startswith("@")]
    assert int(view.stdout) == len(records) >= N_QUERIES
    first = {r[0]: r for r in records if not int(r[1]) & 256}
    assert set(first) == set(world["truth"]) and first["q1"][1] == "16" and first["q0"][1] == "0"
    code, paf, err = gene_ae(capsys, "search", "--index", world["index"], root / "q.fa", "-k", "2", "--outfmt", "paf")
    assert code == 0, err
    for line in paf.splitlines():
        f = line.split("\t")
        qlen, qs, qe, tlen, ts, te, match, block = (int(f[i]) for i in (1, 2, 3, 6, 7, 8, 9, 10))
        assert 0 <= qs < qe <= qlen and 0 <= ts < te <= tlen and 0 < match <= block and f[4] in "+-"
        assert f[12] in ("tp:A:P", "tp:A:S") and f[-1].startswith("cg:Z:")
    top = {f[0]: f for f in (line.split("\t") for line in paf.splitlines()) if f[12] == "tp:A:P"}
    assert top["q1"][4] == "-" and top["q1"][5] == world["truth"]["q1"]


@pytest.mark.parametrize("seed", range(3))
def test_the_affine_path_is_parasails_own_through_the_package_or_the_library(seed):
    """gene_ae.search.affine calls libparasail directly (the package's bindings cost 45 ms to import): the same
    packed CIGAR as the package's nw_trace_scan and Result.cigar, for 16- and 32-bit scores, gaps and N included."""
    import parasail

    from gene_ae.search.affine import nw_path
    from gene_ae.search.stats import BLASTN as s

    rng = np.random.default_rng(seed)
    source = rng.integers(0, 4, 1_500).astype(np.uint8)
    pairs = [(source, mutate(source, 0.2, rng)), (source[:40], source[300:1_100]), (source[::7], source)]
    pairs.append((np.full(30, 4, np.uint8), source[:60]))  # N against bases
    for query, subject in pairs:
        q, t = decode(query), decode(subject)
        matrix = parasail.matrix_create("ACGTN", s.reward, s.penalty)
        for wide, align in ((False, parasail.nw_trace_scan_16), (True, parasail.nw_trace_scan_32)):
            result = align(q, t, s.gap_open + s.gap_extend, s.gap_extend, matrix)
            want = np.array(result.cigar.seq, dtype=np.uint32, copy=True)
            got = nw_path(q.encode(), t.encode(), s.gap_open + s.gap_extend, s.gap_extend, s.reward, s.penalty, wide)
            np.testing.assert_array_equal(got, want)
            assert got.size > 1
