"""manifest.json is untrusted: schema, shard names confined to OUT_DIR, counts; one-line errors, never a traceback."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from shard_tools import load_manifest, read_shards
from shard_tools.cli import shard_fasta_main, shard_verify_main
from shard_tools.reader import ShardError
from shard_tools.verify import verify


@pytest.fixture(scope="module")
def pristine(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pristine") / "shards"
    src = data_dir / "genefam" / "dog_sample.tsv.gz"
    rc = shard_fasta_main([str(src), str(out), "--quiet", "--label-column", "class", "--block-bases", "100000"])
    assert rc == 0
    return out


@pytest.fixture
def shards(pristine: Path, tmp_path: Path) -> Path:
    """A fresh copy two levels down, so that `../../x.tar` lands inside tmp_path."""
    out = tmp_path / "a" / "b" / "shards"
    shutil.copytree(pristine, out)
    return out


def first(m: dict) -> dict:
    return m["splits"]["train"]["shards"][0]


def _set(path: list, value: object) -> Callable[[dict], None]:
    def edit(m: dict) -> None:
        target = m
        for key in path[:-1]:
            target = target[key] if not callable(key) else key(target)
        target[path[-1]] = value

    return edit


EDITS: dict[str, tuple[Callable[[dict], None], str]] = {
    # name: (edit of the parsed manifest, fragment the one-line error holds)
    "format_version": (_set(["format_version"], 2), "unsupported format"),
    "splits_a_list": (_set(["splits"], []), "'splits' must be a JSON object"),
    "split_not_object": (_set(["splits", "val"], "x"), "the split must be a JSON object"),
    "split_bad_name": (lambda m: m["splits"].update({"../x": m["splits"]["val"]}), "not a plain name"),
    "shards_not_list": (_set(["splits", "val", "shards"], {}), "'shards' must be a list"),
    "name_int": (_set(["splits", "train", "shards", 0, "name"], 5), "shard name must be a string"),
    "name_dotdot": (_set(["splits", "train", "shards", 0, "name"], "train/../../x.tar"), "unsafe or unexpected"),
    "name_wrong_split": (_set(["splits", "train", "shards", 0, "name"], "val/shard-000000.tar"), "unexpected"),
    "name_backslash": (_set(["splits", "train", "shards", 0, "name"], "train\\..\\x.tar"), "unsafe"),
    "bytes_string": (_set(["splits", "train", "shards", 0, "bytes"], "12"), "'bytes' must be a non-negative"),
    "samples_negative": (_set(["splits", "train", "shards", 0, "samples"], -1), "'samples' must be a non-negative"),
    "parts_bool": (_set(["splits", "train", "shards", 0, "parts"], True), "'parts' must be a non-negative"),
    "bases_float": (_set(["splits", "train", "shards", 0, "bases"], 1e3), "'bases' must be a non-negative"),
    "sha_bad": (_set(["splits", "train", "shards", 0, "sha256"], "XYZ"), "'sha256' must be 64"),
    "listed_twice": (lambda m: m["splits"]["train"]["shards"].append(first(m)), "listed twice"),
    "summary_missing": (lambda m: m.pop("summary"), "'summary' must be a JSON object"),
    "summary_records": (lambda m: m["summary"].update(records=m["summary"]["records"] + 1), "summary records"),
    "summary_bases": (lambda m: m["summary"].update(bases=m["summary"]["bases"] - 1), "summary bases"),
    "split_bases": (lambda m: m["splits"]["train"].update(bases=m["splits"]["train"]["bases"] + 7), "bases"),
    "split_samples": (lambda m: m["splits"]["val"].update(samples=0), "samples 0 disagrees"),
    "split_sequences": (lambda m: m["splits"]["val"].update(sequences=10**9), "sequences in"),
}


def run_verify(out: Path) -> tuple[int, str, str]:
    err, stdout = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(stdout):
        rc = shard_verify_main([str(out)])
    return rc, stdout.getvalue(), err.getvalue()


def assert_refused(out: Path, *fragments: str) -> str:
    rc, stdout, stderr = run_verify(out)
    assert rc == 1 and stdout == "", stdout
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("shard-verify: error: "), stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    with pytest.raises(ShardError):
        for split in ("train", "val"):
            list(read_shards(out, split))
    return lines[0]


@pytest.mark.parametrize("case", sorted(EDITS))
def test_edited_manifest_is_refused_with_one_line(case: str, shards: Path) -> None:
    edit, fragment = EDITS[case]
    manifest = json.loads((shards / "manifest.json").read_text())
    edited = copy.deepcopy(manifest)
    edit(edited)
    (shards / "manifest.json").write_text(json.dumps(edited))
    assert_refused(shards, "manifest.json", fragment)


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"[]", b"null", b"\xff\xfe", b"[" * 100_000, b'{"format": 1' + b"9" * 5000 + b"}", b"{'a': 1}"],
    ids=["empty", "open_brace", "list", "null", "not_utf8", "deep", "huge_int", "python_dict"],
)
def test_malformed_manifest_json_is_refused(raw: bytes, shards: Path) -> None:
    (shards / "manifest.json").write_bytes(raw)
    assert_refused(shards, f"{shards / 'manifest.json'}: ")


def test_truncated_manifest_is_refused(shards: Path) -> None:
    raw = (shards / "manifest.json").read_bytes()
    (shards / "manifest.json").write_bytes(raw[: len(raw) // 2])
    assert_refused(shards, "not valid JSON")


@pytest.mark.parametrize("how", ["dotdot", "absolute"])
def test_shard_paths_outside_out_dir_are_refused(how: str, shards: Path, tmp_path: Path) -> None:
    """A manifest that names a file outside OUT_DIR is refused, even though that file is a valid shard."""
    manifest = json.loads((shards / "manifest.json").read_text())
    outside = tmp_path / "a" / "x.tar"  # shards/../../x.tar from inside a/b/shards
    shutil.copy(shards / first(manifest)["name"], outside)
    first(manifest)["name"] = "../../x.tar" if how == "dotdot" else str(outside)
    (shards / "manifest.json").write_text(json.dumps(manifest))
    assert_refused(shards, "unsafe or unexpected shard name")


def test_symlinked_shard_leading_outside_is_refused(shards: Path, tmp_path: Path) -> None:
    manifest = load_manifest(shards)
    inside = shards / first(manifest)["name"]
    outside = tmp_path / "elsewhere.tar"
    shutil.move(inside, outside)
    os.symlink(outside, inside)
    assert_refused(shards, "leads outside")


def test_pristine_copy_verifies(shards: Path) -> None:
    rc, stdout, stderr = run_verify(shards)
    assert rc == 0, stderr
    totals = verify(shards)
    assert totals["bases"] == load_manifest(shards)["summary"]["bases"] > 0
    assert stdout.startswith(f"shard-verify: ok: {totals['shards']} shards")
