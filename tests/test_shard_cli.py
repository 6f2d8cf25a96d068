"""The `shard-fasta` and `shard-verify` command lines on real files: their `main` in this process (the `cli`
fixture) for most cases; the installed console scripts as subprocesses where the process is the point: one
sharding run and one verify run, --version and --help, standard input, and signals.

Bad input, interruption, overwriting, hostile ids, empty input, determinism, corruption and the manifest.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import lzma
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zstandard
from shared import SHARD_ERROR, one_line_error

import shard_tools
from shard_tools import load_manifest, read_shards
from shard_tools.alphabet import TOKENS, decode, normalise
from shard_tools.format import BLOCK_EXT, FORMAT_NAME, FORMAT_VERSION, MAX_KEY_LEN
from shard_tools.reader import iter_tar_samples

SPLITS = ("train", "val")


def read_all(out: Path) -> list[tuple[str, str, dict, str]]:
    """(id, bases, metadata, split) for every record in both splits."""
    return [(rid, decode(tok), meta, split) for split in SPLITS for rid, tok, meta in read_shards(out, split)]


def shard_digests(out: Path) -> list[tuple[str, str]]:
    manifest = load_manifest(out)
    return [(s["name"], s["sha256"]) for split in SPLITS for s in manifest["splits"][split]["shards"]]


def listing(folder: Path) -> list[str]:
    """Everything under folder, hidden entries included, as sorted relative paths."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture(scope="module")
def plain_16s(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plain") / "16s.fa"
    path.write_bytes(gzip.decompress((data_dir / "rrna16s" / "16s_sample.fa.gz").read_bytes()))
    return path


@pytest.fixture(scope="module")
def sharded_16s(plain_16s: Path, run_cli, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sharded") / "16s"
    rc, _, err = run_cli("shard-fasta", plain_16s, out, "--block-bases", "200000")
    assert rc == 0, err
    return out


# --- bad input ----------------------------------------------------------------------------------------------

RANDOM_DNA = b">a\n" + "".join(random.Random(7).choices("ACGT", k=20_000)).encode()
CORRUPT_GZ = (lambda gz: gz[:200] + b"\xff" * 64 + gz[264:])(gzip.compress(RANDOM_DNA))
BAD_INPUTS = {
    # name: (file name, content or None for a missing file, fragments the one-line error must hold)
    "protein": ("prot.fa", b">ok\nACGT\n>p1 kinase\nMKVLAAGIVGLLLA\n", [":3: record 'p1': ", "non-nucleotide", "'L'"]),
    "binary": ("blob.dat", random.Random(7).randbytes(3000) + b"\x00", [":1: ", "binary content"]),
    "no_sequence": ("noseq.fa", b">a\nACGT\n>empty\n>b\nACGT\n", [":3: record 'empty': no sequence"]),
    "fastq_quality": ("reads.fq", b"@r0\nAC\n+\nII\n@r1\nACGT\n+\nIII\n", [":8: record 'r1': quality length 3"]),
    "header_less": ("bare.fa", b"ACGTACGT\nACGT\n", [":1: cannot tell the format"]),
    "tsv_no_sequence_column": ("genes.tsv", b"seq\tclass\nACGT\t1\n", [":1: no column 'sequence'"]),
    "missing_file": ("missing.fa", None, [": no such file"]),
    "truncated_gzip": ("cut.fa.gz", gzip.compress(RANDOM_DNA)[:3000], ["cannot decompress"]),
    "corrupt_gzip": ("bad.fa.gz", CORRUPT_GZ, ["cannot decompress", "invalid"]),  # zlib.error, not an OSError
    "truncated_zstd": ("cut.fa.zst", zstandard.ZstdCompressor().compress(RANDOM_DNA)[:3000], ["cannot decompress"]),
    "control_char_id": ("ansi.fa", b">ok\nACGT\n>x\x1b[31m\nACGT\n", [":3: record 'x\\x1b[31m'", "control character"]),
    "genbank_protein": (
        "prot.gbk",
        b"LOCUS       P1  5 aa    linear   UNK 01-JAN-1980\nORIGIN\n        1 mkvll\n//\n",
        [":1: record 'P1'", "non-nucleotide"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_and_leaves_nothing(case: str, tmp_path: Path, cli) -> None:
    name, content, fragments = BAD_INPUTS[case]
    inputs, parent = tmp_path / "in", tmp_path / "parent"
    inputs.mkdir()
    parent.mkdir()
    src = inputs / name
    if content is not None:
        src.write_bytes(content)
    good = inputs / "good.fa"
    good.write_text(">g1\nACGTACGT\n")
    out = parent / "out"
    rc, stdout, stderr = cli("shard-fasta", good, src, out)  # a good file first: still all or nothing
    line = one_line_error(stderr, f"shard-fasta: error: {src}", *fragments, rc=rc, prefix=SHARD_ERROR)
    assert stdout == ""
    assert not out.exists()
    assert listing(parent) == [], f"left behind after {line!r}"


def test_skip_invalid_skips_and_counts(tmp_path: Path, cli) -> None:
    fa = tmp_path / "mix.fa"
    fa.write_bytes(b">ok1\nACGTAC\n>p1\nMKVLLA\n>empty\n>ok2\nGGCCAA\n")
    fq = tmp_path / "mix.fq"
    fq.write_bytes(b"@a\nACGTT\n+\nIIIII\n@b\nACG\n+\nII\n@c\nTTGCA\n+\nIIIII\n")
    tsv = tmp_path / "mix.tsv"
    tsv.write_bytes(b"sequence\tclass\nACGGT\t1\nHELLO\t2\n")
    out = tmp_path / "out"
    rc, _, stderr = cli("shard-fasta", fa, fq, tsv, out, "--skip-invalid", "--label-column", "class")
    assert rc == 0, stderr
    assert "Traceback" not in stderr
    assert "5 records" in stderr and "4 skipped (invalid)" in stderr
    for rid in ("'p1'", "'empty'", "'b'", "'row2'"):
        assert any(line.startswith("shard-fasta: skipped ") and rid in line for line in stderr.splitlines()), rid
    manifest = load_manifest(out)
    assert manifest["summary"]["skipped"] == 4
    assert manifest["summary"]["records"] == 5
    assert len(manifest["skipped"]) == 4
    assert sorted(r[0] for r in read_all(out)) == ["a", "c", "ok1", "ok2", "row1"]
    rc, _, stderr = cli("shard-fasta", fa, tmp_path / "out2")
    one_line_error(stderr, f"{fa}:3: record 'p1'", rc=rc, prefix=SHARD_ERROR)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--block-bases", "-1"),
        ("--block-bases", "0"),
        ("--block-bases", "1.5"),
        ("--shard-size", "0"),
        ("--shard-size", "-2"),
        ("--shard-size", "nan"),
        ("--workers", "0"),
        ("--level", "0"),
        ("--level", "23"),
        ("--min-length", "-1"),
        ("--val-fraction", "1"),
        ("--val-fraction", "-0.1"),
        ("--val-fraction", "nan"),
    ],
)
def test_numeric_options_are_checked_when_parsed(option: str, value: str, tmp_path: Path, cli) -> None:
    src = tmp_path / "a.fa"
    src.write_text(">a\nACGTACGT\n")
    rc, stdout, stderr = cli("shard-fasta", src, tmp_path / "out", f"{option}={value}")
    one_line_error(stderr, f"argument {option}: must be", repr(value), rc=rc, prefix=SHARD_ERROR)
    assert stdout == "" and listing(tmp_path) == ["a.fa"]


def test_version_and_help_show_defaults(run_cli) -> None:
    for command in ("shard-fasta", "shard-verify"):
        rc, stdout, _ = run_cli(command, "--version")
        assert rc == 0 and stdout.strip() == f"{command} {shard_tools.__version__}"
    rc, stdout, _ = run_cli("shard-fasta", "--help")
    assert rc == 0
    description = stdout.split("\n\n")[1]
    assert description.startswith("Turn sequence files into verified, compact WebDataset tar shards")
    options = re.split(r"\n  (?=-)", stdout.split("options:", 1)[1])[1:]
    assert len(options) >= 15
    for text in options:
        if not text.startswith(("-h", "--version")):
            assert "(default: " in " ".join(text.split()), text
    flat = " ".join(stdout.split())
    assert "--block-bases BLOCK_BASES bases per compressed block; longer records are stored in parts (>= 1)" in flat
    assert "--min-length MIN_LENGTH drop records shorter than this (>= 0) (default: 1)" in flat
    assert "--overwrite replace OUT_DIR if it is a shard directory this tool wrote (its manifest.json" in flat
    assert "'-' reads standard input" in flat
    rc, stdout, _ = run_cli("shard-verify", "--help")
    assert rc == 0 and stdout.split("\n\n")[1].startswith("Check a shard directory")


def test_stdin_dash_reads_standard_input_without_a_temp_copy(plain_16s: Path, tmp_path: Path, cli_env, cli) -> None:
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    out = tmp_path / "out"
    blob = gzip.compress(plain_16s.read_bytes())
    proc = subprocess.run(
        ["shard-fasta", "-", out, "--quiet"],
        input=blob,
        env={**cli_env, "TMPDIR": str(scratch)},
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(read_all(out)) == 600
    manifest = load_manifest(out)
    assert manifest["inputs"] == [{"path": "-", "bytes": None}]
    assert listing(scratch) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "tmpdir"]
    rc, _, stderr = cli("shard-fasta", "-", tmp_path / "out2", stdin=b">a\nAC\n>p\nMKLE\n")
    one_line_error(stderr, "shard-fasta: error: <stdin>:3: record 'p'", rc=rc, prefix=SHARD_ERROR)
    assert not (tmp_path / "out2").exists()


def test_duplicate_ids_stay_distinct_and_warn_once(tmp_path: Path, cli) -> None:
    src = tmp_path / "dup.fa"
    src.write_text(">x one\nACGTAA\n>x two\nACGTCC\n>y\nGGGG\n>x three\nTTTTAA\n>y\nCCCC\n")
    out = tmp_path / "out"
    rc, _, stderr = cli("shard-fasta", src, out, "--quiet")
    assert rc == 0, stderr
    warnings = [line for line in stderr.splitlines() if "warning" in line]
    assert warnings == [
        "shard-fasta: warning: 3 records reuse an earlier record's id (first: 'x'); all are kept, each with its own "
        "unique key"
    ]
    records = sorted((meta["desc"], rid, meta["key"], bases) for rid, bases, meta, _ in read_all(out))
    assert records == [
        ("", "y", "y", "GGGG"),
        ("", "y", "y_2", "CCCC"),
        ("one", "x", "x", "ACGTAA"),
        ("three", "x", "x_3", "TTTTAA"),
        ("two", "x", "x_2", "ACGTCC"),
    ]
    assert load_manifest(out)["summary"]["duplicate_ids"] == 3


def test_a_file_name_with_control_characters_keeps_the_error_one_line(tmp_path: Path, cli) -> None:
    src = tmp_path / "evil\nname\x1b[2J.fa"
    src.write_bytes(b">p\nMKVL\n")
    rc, _, stderr = cli("shard-fasta", src, tmp_path / "out")
    line = one_line_error(stderr, "evil\\nname\\x1b[2J.fa:1: record 'p'", rc=rc, prefix=SHARD_ERROR)
    assert line.isprintable()


def test_bad_arguments(tmp_path: Path, cli) -> None:
    src = tmp_path / "a.fa"
    src.write_text(">a\nACGT\n")
    rc, _, stderr = cli("shard-fasta", src, tmp_path / "out", "--val-fraction", "1.5")
    one_line_error(stderr, "--val-fraction", rc=rc, prefix=SHARD_ERROR)
    assert listing(tmp_path) == ["a.fa"]
    rc, stdout, _ = cli("shard-fasta", "--help")
    assert rc == 0 and "--skip-invalid" in stdout and "--overwrite" in stdout


# --- output directory ---------------------------------------------------------------------------------------


def test_existing_out_dir_is_refused_and_overwrite_replaces_only_a_shard_directory(tmp_path: Path, cli) -> None:
    src = tmp_path / "a.fa"
    src.write_text(">new1\nACGTACGT\n>new2\nTTTT\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    rc, _, stderr = cli("shard-fasta", src, out)
    one_line_error(stderr, str(out), "already exists", "--overwrite", rc=rc, prefix=SHARD_ERROR)
    assert listing(out) == ["precious.txt"]
    rc, _, stderr = cli("shard-fasta", src, out, "--overwrite")  # not a directory shard-fasta wrote
    one_line_error(stderr, str(out), "not replaced", "no manifest.json", rc=rc, prefix=SHARD_ERROR)
    assert (out / "precious.txt").read_text() == "keep me"
    (out / "precious.txt").unlink()
    out.rmdir()
    old = tmp_path / "old.fa"
    old.write_text(">old\nGGGGCCCC\n")
    rc, _, stderr = cli("shard-fasta", old, out)
    assert rc == 0, stderr
    rc, _, stderr = cli("shard-fasta", src, out, "--overwrite")
    assert rc == 0, stderr
    assert sorted(r[0] for r in read_all(out)) == ["new1", "new2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.fa", "old.fa", "out"]  # no .old or .tmp left
    rc, _, _ = cli("shard-verify", out)
    assert rc == 0


def test_overwrite_never_deletes_what_shard_fasta_did_not_write(tmp_path: Path, cli) -> None:
    src = tmp_path / "a.fa"
    src.write_text(">a\nACGTACGT\n")
    out = tmp_path / "out"
    rc, _, stderr = cli("shard-fasta", src, out)
    assert rc == 0, stderr
    before = listing(out)
    inside = out / "train" / "mine.fa"  # an input kept inside the shard directory
    inside.write_text(">mine\nTTTTGGGG\n")
    rc, _, stderr = cli("shard-fasta", inside, out, "--overwrite")
    one_line_error(stderr, str(out), "not replaced", "'train/mine.fa'", rc=rc, prefix=SHARD_ERROR)
    assert inside.read_text() == ">mine\nTTTTGGGG\n" and listing(out) == sorted([*before, "train/mine.fa"])
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["format"] = "something-else"
    (out / "manifest.json").write_text(json.dumps(manifest))
    inside.unlink()
    rc, _, stderr = cli("shard-fasta", src, out, "--overwrite")  # a manifest, but not ours
    one_line_error(stderr, "not replaced", "unsupported format", rc=rc, prefix=SHARD_ERROR)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.fa", "out"]


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]], ids=["plain", "overwrite"])
def test_forgotten_out_dir_never_turns_an_input_into_an_output(overwrite: list[str], tmp_path: Path, cli) -> None:
    first, second = tmp_path / "a.fa", tmp_path / "b.fa"
    first.write_text(">a\nACGT\n")
    second.write_text(">b\nGGGG\n")
    rc, _, stderr = cli("shard-fasta", first, second, *overwrite)  # OUT_DIR forgotten: b.fa is last
    one_line_error(stderr, str(second), "not a directory", rc=rc, prefix=SHARD_ERROR)
    assert second.read_text() == ">b\nGGGG\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.fa", "b.fa"]
    rc, _, stderr = cli("shard-fasta", first)
    assert rc == 1 and "OUT_DIR" in stderr and len(stderr.splitlines()) == 1


# --- interrupted writes -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slow_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~24 MB of related sequences: at --level 19 the u8 path takes many seconds, long enough to interrupt."""
    rng = np.random.default_rng(0)
    letters = np.frombuffer(b"ACGT", np.uint8)
    base = rng.integers(0, 4, 10_000)
    path = tmp_path_factory.mktemp("slow") / "related.fa"
    with open(path, "wb") as f:
        for i in range(2400):
            seq = base.copy()
            hit = rng.random(seq.size) < 0.05
            seq[hit] = rng.integers(0, 4, int(hit.sum()))
            f.write(b">v%d\n" % i + letters[seq].tobytes() + b"\n")
    return path


def start_and_interrupt(
    src: Path, out: Path, sig: signal.Signals, cli_env: dict, extra: tuple[str, ...] = (), group: bool = False
) -> tuple[int, str]:
    """Start shard-fasta, wait until it has closed a shard in its hidden temp dir, send sig, wait.

    group: send sig to the whole process group (what Ctrl-C in a terminal does), pool workers included.
    """
    cmd = ["shard-fasta", str(src), str(out), "--level", "19", "--block-bases", "200000", "--shard-size", "0.05"]
    # SIGINT back to its default even if pytest runs in the background (where it is ignored), set in a small
    # exec wrapper: a preexec_fn would run Python between fork and exec in a process with threads.
    reset = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])"
    proc = subprocess.Popen(
        [sys.executable, "-c", reset, *cmd, *extra],
        start_new_session=group,
        env=cli_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not list(out.parent.glob(f".{out.name}.tmp-*/*/*.tar")):
            assert proc.poll() is None, "shard-fasta finished before it could be interrupted"
            assert time.monotonic() < deadline, "no shard written within 60 s"
            time.sleep(0.02)
        assert group or not out.exists()
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, stderr


def test_sigkill_mid_run_leaves_nothing_that_looks_complete(slow_input: Path, tmp_path: Path, cli_env, cli):
    out = tmp_path / "out"
    rc, _ = start_and_interrupt(slow_input, out, signal.SIGKILL, cli_env)
    assert rc == -signal.SIGKILL
    assert not out.exists()
    assert list(tmp_path.rglob("manifest.json")) == []
    tars = list(tmp_path.rglob("*.tar"))
    assert tars, "expected the killed run's closed shards in its hidden temp dir"
    for tar in tars:
        assert tar.relative_to(tmp_path).parts[0].startswith("."), tar
    assert load_manifest_fails(out)
    # a later run into the same OUT_DIR is not confused by the stale temp dir
    small = tmp_path / "small.fa"
    small.write_text(">s\nACGT\n")
    rc, _, stderr = cli("shard-fasta", small, out)
    assert rc == 0, stderr
    assert [r[0] for r in read_all(out)] == ["s"]
    assert list(tmp_path.glob(".out.tmp-*")) == []  # the dead run's temp dir was removed


def load_manifest_fails(out: Path) -> bool:
    try:
        load_manifest(out)
    except shard_tools.reader.ShardError:
        return True
    return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sigint_and_sigterm_clean_up(sig: signal.Signals, slow_input: Path, tmp_path: Path, cli_env) -> None:
    out = tmp_path / "out"
    rc, stderr = start_and_interrupt(slow_input, out, sig, cli_env)
    assert rc == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert listing(tmp_path) == []


def test_ctrl_c_to_the_group_while_overwriting_keeps_the_old_directory(
    slow_input: Path, tmp_path: Path, cli_env, cli
) -> None:
    out = tmp_path / "out"
    small = tmp_path / "small.fa"
    small.write_text(">s\nACGTACGT\n")
    rc, _, stderr = cli("shard-fasta", small, out)
    assert rc == 0, stderr
    before = {name: (out / name).read_bytes() for name in listing(out) if (out / name).is_file()}
    rc, stderr = start_and_interrupt(slow_input, out, signal.SIGINT, cli_env, ("--workers", "2", "--overwrite"), True)
    assert rc == 130 and stderr.splitlines() == ["shard-fasta: interrupted; nothing written"], stderr
    assert {name: (out / name).read_bytes() for name in listing(out) if (out / name).is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "small.fa"]  # no .tmp-* or .old-*


# --- ids and keys -------------------------------------------------------------------------------------------


def test_hostile_ids_get_safe_unique_keys(tmp_path: Path, cli) -> None:
    long_id = "L" * 10_000
    ids = [
        "../../x",
        "x",
        "x",
        "x_2",
        "a.b.c",
        long_id,
        long_id,
        "日本語",
        "αβγ",
        "Ünïcödé",
        "dir/sub/id",
        "..",
        ".",
        "/etc/passwd",
        "C:\\win\\x",
    ]
    rng = random.Random(1)
    fasta = tmp_path / "ids.fa"
    with open(fasta, "w", encoding="utf-8") as f:
        for rid in ids:
            f.write(f">{rid} some description\n{''.join(rng.choice('ACGT') for _ in range(50))}\n")
    tsv = tmp_path / "ids.tsv"
    tsv.write_text("name\tsequence\nwith spaces / and slash\tACGT\n  padded id  \tGGGG\n", encoding="utf-8")
    out = tmp_path / "out"
    rc, _, stderr = cli("shard-fasta", fasta, out, "--val-fraction", "0.3")
    assert rc == 0, stderr
    out_tsv = tmp_path / "out_tsv"
    rc, _, stderr = cli("shard-fasta", tsv, out_tsv, "--id-column", "name")
    assert rc == 0, stderr
    records = read_all(out) + read_all(out_tsv)
    assert sorted(r[0] for r in records) == sorted([*ids, "with spaces / and slash", "padded id"])
    for out_dir, recs in ((out, read_all(out)), (out_tsv, read_all(out_tsv))):
        keys = [meta["key"] for _, _, meta, _ in recs]
        assert len(set(keys)) == len(keys), keys
        for key in keys:
            assert key and len(key) <= MAX_KEY_LEN
            assert "/" not in key and "\\" not in key and "." not in key and " " not in key
            assert re.fullmatch(r"[A-Za-z0-9_\-]+", key), key
        for split in SPLITS:  # the tar member names never come from ids
            for shard in (out_dir / split).glob("*.tar"):
                for key, members in iter_tar_samples(shard):
                    assert re.fullmatch(rf"{split}-\d{{8}}", key) and list(members) == [BLOCK_EXT]
    by_id = {}
    for rid, _, meta, _ in read_all(out):
        by_id.setdefault(rid, []).append(meta["key"])
    assert by_id["../../x"] == ["x"]
    assert sorted(by_id["x"]) == ["x_2", "x_3"] and by_id["x_2"] == ["x_2_2"]
    assert by_id["a.b.c"] == ["a_b_c"]
    assert [len(k) for k in by_id[long_id]] == [MAX_KEY_LEN, MAX_KEY_LEN]
    assert by_id["dir/sub/id"] == ["dir_sub_id"]
    assert by_id["Ünïcödé"] == ["Unicode"]


def test_dedup_drops_exact_duplicates(tmp_path: Path, cli) -> None:
    src = tmp_path / "dups.fa"
    src.write_text(">a\nACGTACGT\n>b\nACGTACGT\n>c\nacgtacgt\n>d\nACGT\nACGT\n>e\nTTTTGGGG\n>f\nTTTTGGGG\n>g\nCCCC\n")
    rc, _, stderr = cli("shard-fasta", src, tmp_path / "d", "--dedup")
    assert rc == 0, stderr
    assert "3 records" in stderr and "4 duplicates dropped" in stderr
    manifest = load_manifest(tmp_path / "d")
    assert manifest["summary"]["duplicates"] == 4 and manifest["summary"]["records"] == 3
    assert sorted((r[0], r[1]) for r in read_all(tmp_path / "d")) == [
        ("a", "ACGTACGT"),
        ("e", "TTTTGGGG"),
        ("g", "CCCC"),
    ]
    rc, _, stderr = cli("shard-fasta", src, tmp_path / "all")
    assert rc == 0 and "7 records" in stderr and "0 duplicates dropped" in stderr


def test_min_length_counts_short_records(tmp_path: Path, cli) -> None:
    src = tmp_path / "s.fa"
    src.write_text(">short\nACG\n>long\nACGTACGTAA\n")
    rc, _, stderr = cli("shard-fasta", src, tmp_path / "o", "--min-length", "5")
    assert rc == 0 and "1 too short" in stderr
    assert [r[0] for r in read_all(tmp_path / "o")] == ["long"]
    assert load_manifest(tmp_path / "o")["summary"]["short"] == 1


# --- empty input --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", gzip.compress(b""), b"sequence\tclass\r\n"], ids=["empty", "empty_gz", "hdr"])
def test_empty_input_gives_warning_and_empty_manifest(content: bytes, tmp_path: Path, cli) -> None:
    src = tmp_path / "empty.tsv"
    src.write_bytes(content)
    out = tmp_path / "out"
    rc, _, stderr = cli("shard-fasta", src, out)
    assert rc == 0, stderr
    assert f"shard-fasta: warning: no records in {src}" in stderr
    manifest = load_manifest(out)
    assert manifest["summary"]["records"] == 0 and manifest["summary"]["bases"] == 0
    for split in SPLITS:
        info = manifest["splits"][split]
        assert (info["sequences"], info["bases"], info["samples"], info["shards"]) == (0, 0, 0, [])
        assert sum(info["length_histogram"]) == 0
    assert read_all(out) == []
    rc, stdout, _ = cli("shard-verify", out)
    assert rc == 0 and "0 shards" in stdout


# --- determinism --------------------------------------------------------------------------------------------


def test_identical_sequences_share_a_split(tmp_path: Path, cli) -> None:
    rng = random.Random(3)
    seqs = ["".join(rng.choice("ACGT") for _ in range(rng.randint(20, 300))) for _ in range(150)]
    entries = [(f"s{i}_{copy}", seq.lower() if copy == 2 else seq) for i, seq in enumerate(seqs) for copy in range(3)]
    for run, order in enumerate([entries, rng.sample(entries, len(entries))]):
        src = tmp_path / f"in{run}.fa"
        src.write_text("".join(f">{rid}\n{seq}\n" for rid, seq in order))
        rc, _, stderr = cli("shard-fasta", src, tmp_path / f"out{run}", "--val-fraction", "0.4")
        assert rc == 0, stderr
    placements = []
    for run in range(2):
        split_of_seq: dict[str, set[str]] = {}
        for _, bases, _, split in read_all(tmp_path / f"out{run}"):
            split_of_seq.setdefault(bases, set()).add(split)
        assert len(split_of_seq) == len(seqs)
        assert all(len(s) == 1 for s in split_of_seq.values())
        placements.append({seq: s.pop() for seq, s in split_of_seq.items()})
    assert placements[0] == placements[1]  # content decides, not position
    assert 0.2 < sum(v == "val" for v in placements[0].values()) / len(seqs) < 0.6


def test_same_input_twice_gives_byte_identical_shards(data_dir: Path, tmp_path: Path, cli) -> None:
    src = data_dir / "genefam" / "dog_sample.tsv.gz"
    for name in ("a", "b"):
        rc, _, stderr = cli("shard-fasta", src, tmp_path / name, "--label-column", "class", "--block-bases", "100000")
        assert rc == 0, stderr
    assert shard_digests(tmp_path / "a") == shard_digests(tmp_path / "b")
    assert len(shard_digests(tmp_path / "a")) == 2  # both splits hold data
    for name, _ in shard_digests(tmp_path / "a"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_compressed_inputs_give_identical_shards(plain_16s: Path, tmp_path: Path, cli) -> None:
    raw = plain_16s.read_bytes()
    variants = {
        "16s.fa": raw,
        "16s.fa.gz": gzip.compress(raw),
        "16s.fa.bz2": bz2.compress(raw),
        "16s.fa.xz": lzma.compress(raw),
        "16s.fa.zst": zstandard.ZstdCompressor(level=3).compress(raw),
    }
    digests = {}
    for name, blob in variants.items():
        src = tmp_path / name
        src.write_bytes(blob)
        out = tmp_path / f"out_{name}"
        rc, _, stderr = cli("shard-fasta", src, out)
        assert rc == 0, stderr
        digests[name] = shard_digests(out)
    assert all(d == digests["16s.fa"] for d in digests.values()), digests


def test_workers_2_matches_workers_1(data_dir: Path, tmp_path: Path, cli) -> None:
    src = data_dir / "genefam" / "chimp_sample.tsv.gz"
    common = ["--label-column", "class", "--block-bases", "60000", "--shard-size", "0.1"]
    for workers in ("1", "2"):
        rc, _, stderr = cli("shard-fasta", src, tmp_path / f"w{workers}", *common, "--workers", workers)
        assert rc == 0, stderr
    one, two = shard_digests(tmp_path / "w1"), shard_digests(tmp_path / "w2")
    assert len(one) > 2  # several shards, many blocks in flight
    assert one == two


# --- shard-verify -------------------------------------------------------------------------------------------


@pytest.fixture
def shard_copy(sharded_16s: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(sharded_16s, out)
    return out


def test_verify_clean_directory(shard_copy: Path, run_cli) -> None:
    rc, stdout, stderr = run_cli("shard-verify", shard_copy)
    assert rc == 0, stderr
    manifest = load_manifest(shard_copy)
    n_shards = sum(len(manifest["splits"][s]["shards"]) for s in SPLITS)
    assert stdout.startswith(f"shard-verify: ok: {n_shards} shards, ")
    assert f"{manifest['summary']['bases']:,} bases" in stdout


def first_shard(out: Path) -> Path:
    return out / load_manifest(out)["splits"]["train"]["shards"][0]["name"]


def test_verify_catches_flipped_bytes(shard_copy: Path, cli) -> None:
    shard = first_shard(shard_copy)
    data = bytearray(shard.read_bytes())
    for pos in (len(data) // 3, len(data) // 2):
        data[pos] ^= 0x5A
    shard.write_bytes(bytes(data))
    rc, _, stderr = cli("shard-verify", shard_copy)
    assert "shard-verify: error: " in stderr
    one_line_error(stderr, str(shard), "sha256", rc=rc, prefix=SHARD_ERROR)


def test_verify_catches_truncation(shard_copy: Path, cli) -> None:
    shard = first_shard(shard_copy)
    shard.write_bytes(shard.read_bytes()[:-1000])
    rc, _, stderr = cli("shard-verify", shard_copy)
    one_line_error(stderr, str(shard), rc=rc, prefix=SHARD_ERROR)


def test_verify_catches_deleted_shard(shard_copy: Path, cli) -> None:
    shard = first_shard(shard_copy)
    shard.unlink()
    rc, _, stderr = cli("shard-verify", shard_copy)
    one_line_error(stderr, str(shard), "missing", rc=rc, prefix=SHARD_ERROR)


def test_verify_catches_count_mismatch_and_missing_manifest(shard_copy: Path, cli) -> None:
    manifest = json.loads((shard_copy / "manifest.json").read_text())
    manifest["splits"]["train"]["shards"][0]["bases"] += 1
    (shard_copy / "manifest.json").write_text(json.dumps(manifest))
    rc, _, stderr = cli("shard-verify", shard_copy)
    one_line_error(stderr, str(first_shard(shard_copy)), "manifest says", rc=rc, prefix=SHARD_ERROR)
    (shard_copy / "manifest.json").unlink()
    rc, _, stderr = cli("shard-verify", shard_copy)
    one_line_error(stderr, "no manifest", rc=rc, prefix=SHARD_ERROR)


# --- manifest -----------------------------------------------------------------------------------------------


def test_manifest_fields(sharded_16s: Path, plain_16s: Path) -> None:
    manifest = load_manifest(sharded_16s)
    assert manifest["format"] == FORMAT_NAME and manifest["format_version"] == FORMAT_VERSION == 1
    assert manifest["alphabet"] == list(TOKENS)
    assert manifest["compression"]["codec"] == "zstd"
    assert manifest["compression"]["long_distance_matching"] is True
    assert manifest["compression"]["level"] == "auto"
    assert manifest["tool"] == {"name": "gene-ae", "version": shard_tools.__version__}
    assert manifest["command"][0] == "shard-fasta" and str(plain_16s) in manifest["command"]
    assert manifest["inputs"] == [{"path": str(plain_16s), "bytes": plain_16s.stat().st_size}]
    assert manifest["config"]["block_bases"] == 200_000
    records = read_all(sharded_16s)
    total_bases = sum(len(r[1]) for r in records)
    assert manifest["summary"]["records"] == len(records) == 600
    assert manifest["summary"]["bases"] == total_bases
    edges = manifest["length_histogram_edges"]
    for split in SPLITS:
        info = manifest["splits"][split]
        mine = [r for r in records if r[3] == split]
        assert info["sequences"] == len(mine) > 0
        assert info["bases"] == sum(len(r[1]) for r in mine) == sum(s["bases"] for s in info["shards"])
        assert info["samples"] == sum(s["samples"] for s in info["shards"])
        assert info["parts"] == sum(s["parts"] for s in info["shards"])
        hist = np.histogram([len(r[1]) for r in mine], bins=edges)[0].tolist()
        assert info["length_histogram"] == hist
        for shard in info["shards"]:
            path = sharded_16s / shard["name"]
            assert shard["name"].startswith(f"{split}/") and shard["name"].endswith(".tar")
            assert shard["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
            assert shard["bytes"] == path.stat().st_size
            assert shard["samples"] == len(list(iter_tar_samples(path))) > 0
            assert shard["parts"] >= 1
    assert manifest["summary"]["output_bytes"] == sum(
        s["bytes"] for split in SPLITS for s in manifest["splits"][split]["shards"]
    )
    assert {normalise(b) for b in (r[1] for r in records)} == {r[1] for r in records}


def test_shard_config_checks_the_same_ranges_for_library_callers() -> None:
    from shard_tools.writer import ShardConfig

    for field, bad in [("block_bases", 0), ("block_bases", -1), ("workers", 0), ("level", 23), ("val_fraction", 1.0)]:
        with pytest.raises(ValueError, match=f"^{field} must be "):
            ShardConfig(**{field: bad})
    assert ShardConfig(level=None).level is None
