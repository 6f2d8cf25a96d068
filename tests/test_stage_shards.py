"""cluster/stage_shards.py --local on real shards through pyarrow.fs (file://): copy, skip, refuse, never litter."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import shutil
from pathlib import Path

import pytest

from shard_tools import load_manifest
from shard_tools.cli import shard_fasta_main
from shard_tools.verify import verify

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def stage_main():
    spec = importlib.util.spec_from_file_location("stage_shards", REPO / "cluster" / "stage_shards.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope="module")
def source(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("src") / "genefam"
    src = data_dir / "genefam" / "dog_sample.tsv.gz"
    assert (
        shard_fasta_main(
            [
                str(src),
                str(out),
                "--quiet",
                "--label-column",
                "class",
                "--block-bases",
                "100000",
                "--shard-size",
                "0.02",
            ]
        )
        == 0
    )
    return out


def run(stage_main, src: Path, dest: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = stage_main([src.as_uri(), str(dest), "--local"])
    return rc, out.getvalue(), err.getvalue()


def litter(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


def test_copies_then_finds_the_copy_present(stage_main, source: Path, tmp_path: Path) -> None:
    dest = tmp_path / "staged" / "genefam"
    rc, stdout, stderr = run(stage_main, source, dest)
    assert rc == 0, stderr
    staged = json.loads(stdout.splitlines()[-1])["staged"]
    assert [s["status"] for s in staged] == ["copied"] and staged[0]["files"] > 2
    assert verify(dest)["bases"] == load_manifest(source)["summary"]["bases"]
    rc, stdout, _ = run(stage_main, source, dest)
    assert rc == 0 and json.loads(stdout.splitlines()[-1])["staged"][0]["status"] == "present"
    assert litter(dest.parent) == []


def test_an_outdated_copy_is_replaced(stage_main, source: Path, tmp_path: Path, data_dir: Path) -> None:
    dest = tmp_path / "genefam"
    chimp = data_dir / "genefam" / "chimp_sample.tsv.gz"
    assert shard_fasta_main([str(chimp), str(dest), "--quiet"]) == 0
    rc, stdout, stderr = run(stage_main, source, dest)
    assert rc == 0, stderr
    assert (dest / "manifest.json").read_bytes() == (source / "manifest.json").read_bytes()
    assert litter(tmp_path) == []


def test_a_directory_that_is_not_a_shard_copy_is_refused_and_kept(stage_main, source: Path, tmp_path: Path) -> None:
    dest = tmp_path / "home"
    dest.mkdir()
    (dest / "thesis.tex").write_text("years of work")
    rc, stdout, stderr = run(stage_main, source, dest)
    assert rc == 1 and stdout == ""
    assert len(stderr.splitlines()) == 1 and stderr.startswith("stage_shards: error: ") and "not replaced" in stderr
    assert (dest / "thesis.tex").read_text() == "years of work"
    assert litter(tmp_path) == []


@pytest.mark.parametrize("name", ["../../x.tar", "/etc/passwd", "train/../../x.tar"])
def test_unsafe_shard_names_in_the_source_manifest_are_refused(
    stage_main, source: Path, tmp_path: Path, name: str
) -> None:
    src = tmp_path / "src"
    shutil.copytree(source, src)
    manifest = json.loads((src / "manifest.json").read_text())
    manifest["splits"]["train"]["shards"][0]["name"] = name
    (src / "manifest.json").write_text(json.dumps(manifest))
    dest = tmp_path / "dest"
    rc, _, stderr = run(stage_main, src, dest)
    assert rc == 1 and len(stderr.splitlines()) == 1 and "unsafe" in stderr and "manifest.json" in stderr
    assert not dest.exists() and litter(tmp_path) == []


def test_a_corrupt_source_shard_leaves_the_old_copy_and_no_temp(stage_main, source: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(source, src)
    dest = tmp_path / "dest"
    assert run(stage_main, src, dest)[0] == 0
    before = (dest / "manifest.json").read_bytes()
    manifest = json.loads((src / "manifest.json").read_text())
    manifest["tool"]["version"] = "changed"  # a new manifest, so the copy is no longer "present"
    (src / "manifest.json").write_text(json.dumps(manifest))
    shard = src / manifest["splits"]["train"]["shards"][-1]["name"]
    shard.write_bytes(shard.read_bytes()[:-10] + b"0123456789")
    rc, _, stderr = run(stage_main, src, dest)
    assert rc == 1 and "the manifest says" in stderr and len(stderr.splitlines()) == 1
    assert (dest / "manifest.json").read_bytes() == before
    assert verify(dest)["shards"] > 2 and litter(tmp_path) == []
