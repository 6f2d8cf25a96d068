"""A query holding several stored records reports each of them (issue 32): records laid end to end, one of
them reverse-complemented, come back each with its own query coordinates and strand, best region first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from shared import tiny_index

from gene_ae.cli import main
from gene_ae.core.records import iter_input
from shard_tools.alphabet import decode, reverse_complement


@pytest.fixture(scope="module")
def world(tmp_path_factory, data_dir: Path) -> dict:
    root = tmp_path_factory.mktemp("long")
    genes = [r for r in iter_input(data_dir / "rrna16s" / "16s_sample.fa.gz")][:80]
    (root / "subjects.fa").write_text("".join(f">s{i}\n{decode(g.tokens)}\n" for i, g in enumerate(genes)))
    return {"root": root, "index": tiny_index(root, root / "subjects.fa")[1], "genes": genes}


def test_records_laid_end_to_end_are_each_reported_with_their_region(world, capsys) -> None:
    picks = [3, 17, 29, 41, 55, 68, 74]
    parts = [world["genes"][i].tokens for i in picks]
    parts[2] = reverse_complement(parts[2])  # one on the minus strand
    starts = np.cumsum([0] + [p.size for p in parts])
    query = world["root"] / "cat.fa"
    query.write_text(">cat\n" + decode(np.concatenate(parts)) + "\n")
    with pytest.raises(SystemExit) as done:
        main(["search", "--index", str(world["index"]), str(query), "-k", "10", "--outfmt",
              "6 sseqid qstart qend sstrand pident"])  # fmt: skip
    out = capsys.readouterr()
    assert done.value.code == 0, out.err
    rows = [line.split("\t") for line in out.out.splitlines()]
    first = {r[0]: r for r in rows[: len(picks)]}  # each region's best hit before any other
    assert set(first) == {f"s{i}" for i in picks}
    for n, i in enumerate(picks):
        _, qstart, qend, strand, pident = first[f"s{i}"]
        assert (int(qstart) - 1, int(qend)) == (starts[n], starts[n + 1]) and float(pident) == 100.0
        assert strand == ("minus" if n == 2 else "plus")
