"""docs/FEATURES.md's worked example, as `make demo-features` runs it, on the bundled genes with a tiny model:
features kept by shard-fasta, family as a training signal through Ray Train and MLflow, both features in the
index, and a search filtered on them that shows them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_features_example_runs_and_filters(tmp_path: Path, cli_env: dict[str, str]) -> None:
    env = {**cli_env, "GENE_AE_DEMO_DIR": str(tmp_path / "demo"), "GENE_AE_DEMO_STEPS": "4",
           "GENE_AE_DEMO_CONFIG": str(REPO / "tests" / "configs" / "tiny.toml")}  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "gene_ae.demo_features"], env=env, capture_output=True,
                          text=True, timeout=600, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    tables = proc.stdout.split("query_id\t")[1:]
    assert len(tables) == 2, proc.stdout[-3000:]
    unfiltered, filtered = ([line.split("\t") for line in ("query_id\t" + t).splitlines() if line and not
                             line.startswith(("$", "=", "Done"))] for t in tables)  # fmt: skip
    for header, *rows in (unfiltered, filtered):
        assert header[-2:] == ["family", "gc"] and rows
    assert len(unfiltered) - 1 == 4 * 3  # 4 queries, 3 hits each
    assert all(r[-2] == "tyrosine-kinase" and float(r[-1]) > 0.45 for r in filtered[1:]), filtered
    manifest = json.loads((tmp_path / "demo" / "shards" / "manifest.json").read_text())
    assert manifest["features"] == {"family": "categorical", "gc": "numeric"}
    assert os.path.isdir(tmp_path / "demo" / "index")
