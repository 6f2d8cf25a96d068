"""What a careless user does to shard-fasta and shard-verify: lying manifests, strays in a shard directory,
GenBank/EMBL records cut short, an input given twice, byte-order marks, old Mac line endings, a directory as an
input, absurd --workers. Each gets records read right or a one-line error naming the file, never a quiet lie.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard
from shared import SHARD_ERROR, insdc_bytes, lambda_phage, one_line_error

from shard_tools import load_manifest, read_shards
from shard_tools.alphabet import decode
from shard_tools.cli import shard_fasta_main, shard_verify_main
from shard_tools.inputs import InputError, ReaderConfig, read_records
from shard_tools.readers import insdc

CODECS: dict[str, Callable[[bytes], bytes]] = {
    "plain": lambda b: b,
    "gz": gzip.compress,
    "zst": zstandard.ZstdCompressor().compress,
}


def run(main: Callable[[list[str]], int], args: list[str | Path], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """(exit status, stderr) of a console script's main, run in this process."""
    capsys.readouterr()
    rc = main([str(a) for a in args])
    return rc, capsys.readouterr().err


def records_of(path: Path, **cfg: str) -> list[tuple[str, str, str, dict]]:
    return [(r.id, r.description, decode(r.tokens), r.fields) for r in read_records(path, ReaderConfig(**cfg))]


# --- shard-verify recounts everything ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def pristine(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real 16S records in both splits, stored in two parts each (1,000-base blocks)."""
    src = tmp_path_factory.mktemp("src") / "small.fa"
    src.write_bytes(gzip.decompress((data_dir / "rrna16s" / "16s_sample.fa.gz").read_bytes())[:20_000])
    out = tmp_path_factory.mktemp("shards") / "out"
    args = [str(src), str(out), "--quiet", "--block-bases", "1000", "--val-fraction", "0.3", "--shard-size", "0.004"]
    assert shard_fasta_main(args) == 0
    manifest = load_manifest(out)
    assert all(manifest["splits"][s]["sequences"] > 0 for s in ("train", "val"))
    assert manifest["splits"]["train"]["parts"] > manifest["splits"]["train"]["sequences"]
    assert len(manifest["splits"]["train"]["shards"]) > 1
    return out


@pytest.fixture
def shards(pristine: Path, tmp_path: Path) -> Path:
    out = tmp_path / "shards"
    shutil.copytree(pristine, out)
    return out


def _sequences_dropped(m: dict) -> None:
    m["splits"]["train"]["sequences"] -= 1
    m["summary"]["records"] -= 1


def _sequences_moved(m: dict) -> None:
    m["splits"]["train"]["sequences"] += 1
    m["splits"]["val"]["sequences"] -= 1


def _histogram_moved(m: dict) -> None:
    hist = m["splits"]["train"]["length_histogram"]
    full = next(i for i, n in enumerate(hist) if n)
    hist[full] -= 1
    hist[(full + 1) % len(hist)] += 1


def _histogram_short(m: dict) -> None:
    m["splits"]["val"]["length_histogram"].pop()


def _shard_bytes(m: dict) -> None:
    m["splits"]["train"]["shards"][0]["bytes"] += 512
    m["summary"]["output_bytes"] += 512


def _output_bytes(m: dict) -> None:
    m["summary"]["output_bytes"] -= 1


def _duplicate_ids(m: dict) -> None:
    m["summary"]["duplicate_ids"] += 3


LIES: dict[str, tuple[Callable[[dict], None], str]] = {
    # a manifest edited so that its totals still add up, yet no longer describes its shards
    "sequences_dropped": (_sequences_dropped, "split 'train': sequences"),
    "sequences_moved": (_sequences_moved, "split 'train': sequences"),
    "histogram_moved": (_histogram_moved, "split 'train': length_histogram"),
    "histogram_short": (_histogram_short, "split 'val': length_histogram"),
    "shard_bytes": (_shard_bytes, "manifest says"),
    "output_bytes": (_output_bytes, "summary output_bytes"),
    "duplicate_ids": (_duplicate_ids, "summary duplicate_ids"),
}


@pytest.mark.parametrize("lie", sorted(LIES))
def test_verify_recomputes_every_count_and_histogram(lie: str, shards: Path, capsys) -> None:
    assert run(shard_verify_main, [shards], capsys)[0] == 0
    edit, fragment = LIES[lie]
    manifest = json.loads((shards / "manifest.json").read_text())
    edit(manifest)
    (shards / "manifest.json").write_text(json.dumps(manifest))
    rc, stderr = run(shard_verify_main, [shards], capsys)
    one_line_error(stderr, str(shards), fragment, rc=rc, prefix=SHARD_ERROR)


def _copy_of_a_shard(out: Path) -> str:
    shutil.copy(out / "train" / "shard-000000.tar", out / "train" / "shard-000099.tar")
    return "train/shard-000099.tar"


def _a_note(out: Path) -> str:
    (out / "notes.txt").write_text("which run was this?")
    return "notes.txt"


def _a_temp_shard(out: Path) -> str:
    (out / "val" / "shard-000007.tar.tmp").write_bytes(b"\0" * 512)
    return "val/shard-000007.tar.tmp"


def _a_folder(out: Path) -> str:
    (out / "test").mkdir()
    return "test"


STRAYS = {"unlisted_shard": _copy_of_a_shard, "note": _a_note, "temp_shard": _a_temp_shard, "folder": _a_folder}


@pytest.mark.parametrize("stray", sorted(STRAYS))
def test_verify_names_unlisted_shards_and_stray_files(stray: str, shards: Path, capsys) -> None:
    name = STRAYS[stray](shards)
    rc, stderr = run(shard_verify_main, [shards], capsys)
    line = one_line_error(stderr, str(shards), repr(name), "does not list", rc=rc, prefix=SHARD_ERROR)
    assert ("1 unlisted shards" in line) == (stray == "unlisted_shard")
    assert (shards / name).exists()  # named, never removed


def test_verify_says_what_is_wrong_with_a_path_that_is_not_a_shard_directory(tmp_path: Path, capsys) -> None:
    (tmp_path / "genes.fa").write_text(">a\nACGT\n")
    rc, stderr = run(shard_verify_main, [tmp_path / "genes.fa"], capsys)
    one_line_error(stderr, "genes.fa: is not a directory", rc=rc, prefix=SHARD_ERROR)
    rc, stderr = run(shard_verify_main, [tmp_path / "nowhere"], capsys)
    one_line_error(stderr, "nowhere: no such directory", rc=rc, prefix=SHARD_ERROR)


# --- GenBank / EMBL length --------------------------------------------------------------------------------


# EMBL cut inside its sequence is already an error from Bio ("Premature end of file"); GenBank's only a warning.
@pytest.mark.parametrize(
    ("fmt", "cut"),
    [(f, c) for f in ("genbank", "embl") for c in ("declared_longer", "declared_shorter")]
    + [("genbank", "cut_in_sequence")],
)
def test_insdc_length_disagreeing_with_the_sequence_is_an_error(
    fmt: str, cut: str, data_dir: Path, tmp_path: Path, capsys
) -> None:
    rid, seq = lambda_phage(data_dir)
    text = insdc_bytes([("X1.1", "first", seq[:300]), (rid, "lambda", seq[:1200])], fmt).decode()
    unit = "bp" if fmt == "genbank" else "BP."
    assert text.count(f" 1200 {unit}") == 1
    if cut == "cut_in_sequence":  # a download that stopped inside the sequence: nothing after it
        text = text[: text.index("\n", text.index(" 601 ")) + 1]
        found = 660
    else:
        found = 1200
        text = text.replace(f" 1200 {unit}", f" {1250 if cut == 'declared_longer' else 1150} {unit}")
    declared = 1150 if cut == "declared_shorter" else 1250 if cut == "declared_longer" else 1200
    src = tmp_path / f"loci.{'gbk' if fmt == 'genbank' else 'embl'}"
    src.write_text(text)
    header_line = [i for i, line in enumerate(text.splitlines(), 1) if line.startswith(("LOCUS", "ID"))][1]
    rc, stderr = run(shard_fasta_main, [src, tmp_path / "out"], capsys)
    word = "LOCUS" if fmt == "genbank" else "ID"
    where = f"{src}:{header_line}: record {rid!r}"
    one_line_error(
        stderr, where, f"{word} line declares {declared:,} bases", f"sequence has {found:,}", rc=rc, prefix=SHARD_ERROR
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name]  # nothing written
    rc, stderr = run(shard_fasta_main, [src, tmp_path / "kept", "--skip-invalid", "--quiet"], capsys)
    assert rc == 0, stderr
    kept = [rid for split in ("train", "val") for rid, _, _ in read_shards(tmp_path / "kept", split)]
    assert kept == ["X1.1"]


# --- the same input twice, a directory as an input, a pipe -------------------------------------------------


@pytest.mark.parametrize("alias", ["same_path", "dot_slash", "symlink", "hard_link"])
def test_the_same_input_given_twice_is_refused(alias: str, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("genes.fa").write_text(">a\nACGTACGT\n>b\nGGCCAATT\n")
    second = {"same_path": "genes.fa", "dot_slash": "./genes.fa", "symlink": "link.fa", "hard_link": "hard.fa"}[alias]
    if alias == "symlink":
        os.symlink("genes.fa", "link.fa")
    if alias == "hard_link":
        os.link("genes.fa", "hard.fa")
    rc, stderr = run(shard_fasta_main, ["genes.fa", "other.fa", second, "out"], capsys)
    assert rc == 1 and "other.fa: no such file" in stderr  # checked before anything is read, in order
    Path("other.fa").write_text(">c\nTTTT\n")
    rc, stderr = run(shard_fasta_main, ["genes.fa", "other.fa", second, "out"], capsys)
    line = one_line_error(stderr, f"shard-fasta: error: {second}: ", "once", rc=rc, prefix=SHARD_ERROR)
    assert ("given twice" if alias == "same_path" else "the same file as genes.fa") in line
    assert not Path("out").exists()
    Path("copy.fa").write_bytes(Path("genes.fa").read_bytes())  # same content, another file: both are read
    assert run(shard_fasta_main, ["genes.fa", "copy.fa", "out", "--quiet"], capsys)[0] == 0
    assert load_manifest("out")["summary"]["records"] == 4


def test_a_directory_given_as_an_input_says_so(tmp_path: Path, capsys) -> None:
    genomes = tmp_path / "genomes"
    genomes.mkdir()
    (genomes / "a.fa").write_text(">a\nACGT\n")
    rc, stderr = run(shard_fasta_main, [genomes, tmp_path / "out"], capsys)
    line = one_line_error(stderr, f"{genomes}: is a directory", "files inside", rc=rc, prefix=SHARD_ERROR)
    assert "no such file" not in line and not (tmp_path / "out").exists()


def test_a_named_pipe_is_read_as_a_stream(tmp_path: Path, capsys) -> None:
    """What `shard-fasta <(zcat genes.fa.gz) out/` passes: /dev/fd/N, a pipe, neither a file nor missing."""
    fifo = tmp_path / "genes.pipe"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb") as f:
            f.write(gzip.compress(b">a\nACGTACGT\n>b\nGGCC\n"))

    feeder = threading.Thread(target=feed)
    feeder.start()
    rc, stderr = run(shard_fasta_main, [fifo, tmp_path / "out", "--quiet"], capsys)
    feeder.join(10)
    assert rc == 0, stderr
    assert load_manifest(tmp_path / "out")["summary"]["records"] == 2


# --- byte-order marks and old Mac line endings -------------------------------------------------------------


def _insdc(data_dir: Path, fmt: str) -> bytes:
    _, seq = lambda_phage(data_dir)
    return insdc_bytes([("X1.1", "first", seq[:300]), ("X2.1", "second", seq[300:420])], fmt)


TEXTS: dict[str, tuple[str, Callable[[Path], bytes], dict]] = {
    # name: (file name, plain content, reader options)
    "fasta": ("x.fa", lambda d: b">a one\nACGTAC\nGTTA\n>b\nGGCC\n", {}),
    "fastq": ("x.fq", lambda d: b"@a one\nACGT\n+\nIIII\n@b\nGG\n+\nII\n", {}),
    "tsv": ("x.tsv", lambda d: b"name\tsequence\tclass\na\tACGT\tk1\nb\tGGCC\tk2\n", {"id_column": "name"}),
    "csv": ("x.csv", lambda d: b"sequence,name\nACGT,a\nGGCC,b\n", {"id_column": "name"}),
    "genbank": ("x.gbk", lambda d: _insdc(d, "genbank"), {}),
    "embl": ("x.embl", lambda d: _insdc(d, "embl"), {}),
}


@pytest.mark.parametrize("codec", sorted(CODECS))
@pytest.mark.parametrize("kind", sorted(TEXTS))
def test_a_utf8_byte_order_mark_is_skipped(kind: str, codec: str, data_dir: Path, tmp_path: Path) -> None:
    name, content, cfg = TEXTS[kind]
    plain, marked = tmp_path / name, tmp_path / f"bom-{name}"
    plain.write_bytes(content(data_dir))
    marked.write_bytes(CODECS[codec](b"\xef\xbb\xbf" + content(data_dir)))
    want = records_of(plain, **cfg)
    assert len(want) == 2
    assert records_of(marked, **cfg) == want


@pytest.mark.parametrize("codec", sorted(CODECS))
@pytest.mark.parametrize("kind", sorted(TEXTS))
def test_old_mac_line_endings_are_read_as_line_endings(kind: str, codec: str, data_dir: Path, tmp_path: Path) -> None:
    name, content, cfg = TEXTS[kind]
    plain, mac = tmp_path / name, tmp_path / f"mac-{name}"
    plain.write_bytes(content(data_dir))
    mac.write_bytes(CODECS[codec](content(data_dir).replace(b"\n", b"\r")))
    want = records_of(plain, **cfg)
    assert len(want) == 2
    assert records_of(mac, **cfg) == want


def test_a_stray_cr_inside_a_header_points_at_line_endings(tmp_path: Path, capsys) -> None:
    src = tmp_path / "mixed.fa"
    src.write_bytes(b">a first\nACGT\n>b second\rpasted\nGGCC\n")
    rc, stderr = run(shard_fasta_main, [src, tmp_path / "out"], capsys)
    one_line_error(stderr, f"{src}:3: record 'b'", "'\\r'", "old Mac line endings", "tr ", rc=rc, prefix=SHARD_ERROR)


def test_utf16_text_says_convert_to_utf8(tmp_path: Path, capsys) -> None:
    src = tmp_path / "genes.fa"
    src.write_bytes(">a\nACGT\n".encode("utf-16"))
    rc, stderr = run(shard_fasta_main, [src, tmp_path / "out"], capsys)
    one_line_error(stderr, f"{src}:1: ", "UTF-16", "UTF-8", rc=rc, prefix=SHARD_ERROR)


def test_stdin_with_bom_and_old_mac_endings_through_the_console_scripts(tmp_path: Path, cli_env) -> None:
    """The one subprocess test: real stdin, compressed, byte-order mark, CR line endings; then verified."""
    blob = gzip.compress(b"\xef\xbb\xbf>a one\rACGTAC\rGTTA\r>b\rGGCC\r")
    out = tmp_path / "out"
    proc = subprocess.run(
        ["shard-fasta", "-", out, "--quiet"], input=blob, env=cli_env, capture_output=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    got = sorted((rid, decode(tok)) for split in ("train", "val") for rid, tok, _ in read_shards(out, split))
    assert got == [("a", "ACGTACGTTA"), ("b", "GGCC")]
    proc = subprocess.run(["shard-verify", out], env=cli_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("shard-verify: ok: "), proc.stderr


# --- --workers ---------------------------------------------------------------------------------------------


def test_workers_are_capped_at_the_usable_cpus(tmp_path: Path, capsys) -> None:
    cpus = len(os.sched_getaffinity(0))
    src = tmp_path / "genes.fa"
    src.write_text("".join(f">r{i}\n{'ACGGT' * (40 + i)}\n" for i in range(30)))
    rc, stderr = run(shard_fasta_main, [src, tmp_path / "many", "--workers", cpus + 1, "--block-bases", 500], capsys)
    assert rc == 0, stderr
    notes = [line for line in stderr.splitlines() if "--workers" in line]
    assert notes == [f"shard-fasta: note: --workers {cpus + 1} capped at {cpus}, the CPUs this process may use"]
    assert load_manifest(tmp_path / "many")["config"]["workers"] == cpus
    assert run(shard_fasta_main, [src, tmp_path / "one", "--block-bases", 500, "--quiet"], capsys)[0] == 0
    digests = [
        [s["sha256"] for split in load_manifest(tmp_path / d)["splits"].values() for s in split["shards"]]
        for d in ("many", "one")
    ]
    assert digests[0] == digests[1]


# --- memory bounded whatever the record length; an input that changes while read (issue 34) ----------------


def _bomb(path: Path, bases: int, line: int | None) -> Path:
    """A gzip file of one record of `bases` bases (in lines of `line`, or one line): a few hundred kB on disk."""
    body = b"ACGT" * (bases // 4)
    if line:
        body = b"\n".join(body[i : i + line] for i in range(0, len(body), line))
    path.write_bytes(gzip.compress(b">huge some description\n" + body + b"\n>small\nACGTTGCA\n", compresslevel=1))
    return path


@pytest.mark.parametrize("line", [60, None], ids=["lines", "one-line"])
def test_a_record_over_max_length_is_one_line_and_memory_stays_bounded(tmp_path: Path, line) -> None:
    """One record of 128 Mb (a decompression bomb: 30 kB of gzip) was read whole, about 3.2 bytes a base, until a
    MemoryError; now reading stops at --max-length with one line naming the file and the record."""
    bomb = _bomb(tmp_path / "bomb.fa.gz", 128 << 20, line)
    probe = (
        "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); print(r.stderr, end='')"
    )
    command = [Path(sys.executable).parent / "shard-fasta", bomb, tmp_path / "out", "--max-length", "1000000"]
    done = subprocess.run(
        [sys.executable, "-c", probe, *map(str, command)], capture_output=True, text=True, timeout=300
    )
    first, _, err = done.stdout.partition("\n")
    rc, peak_kib = map(int, first.split())
    line_text = one_line_error(
        err, f"{bomb}:1: record 'huge': longer than --max-length 1,000,000 bases", rc=rc, prefix=SHARD_ERROR
    )
    assert "raise --max-length" in line_text
    print(f"peak RSS {peak_kib / 1024:.0f} MiB")
    assert peak_kib < 300 * 1024, f"peak {peak_kib / 1024:.0f} MiB for a 128 Mb record"  # unbounded: over 400 MiB
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == [bomb]


def test_skip_invalid_skips_a_record_over_max_length_and_keeps_the_rest(tmp_path: Path) -> None:
    bomb = _bomb(tmp_path / "bomb.fa.gz", 4000, 60)
    skipped: list[str] = []
    got = [(r.id, r.tokens.size) for r in read_records(bomb, ReaderConfig(max_length=1000, skip_invalid=True), skipped)]
    assert got == [("small", 8)] and len(skipped) == 1 and "record 'huge': longer than" in skipped[0]
    assert [(r.id, r.tokens.size) for r in read_records(bomb, ReaderConfig(max_length=4000))] == [("huge", 4000),
                                                                                             ("small", 8)]  # fmt: skip


def test_a_fastq_line_over_max_length_is_one_line_naming_it(tmp_path: Path, capsys) -> None:
    fq = tmp_path / "reads.fq"
    fq.write_text("@r1\n" + "ACGT" * 300 + "\n+\n" + "I" * 1200 + "\n")
    rc, err = run(shard_fasta_main, [fq, tmp_path / "out", "--max-length", "1000"], capsys)
    one_line_error(err, f"{fq}:2: a line longer than --max-length 1,000 bases", rc=rc, prefix=SHARD_ERROR)


# GenBank/EMBL and tables are bounded by --max-length too: Bio read a record whole, csv a cell whole.
def _three(data_dir: Path, fmt: str, tmp_path: Path) -> tuple[Path, int]:
    """A GenBank or EMBL file of 300, 4,000 and 120 bases (the middle one 'HUGE1.1'), and its LOCUS / ID line."""
    _, seq = lambda_phage(data_dir)
    records = [("X1.1", "first", seq[:300]), ("HUGE1.1", "huge", seq[:4000]), ("X3.1", "last", seq[4000:4120])]
    text = insdc_bytes(records, fmt).decode()
    src = tmp_path / f"loci.{'gbk' if fmt == 'genbank' else 'embl'}"
    src.write_text(text)
    huge = next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith(("LOCUS", "ID")) and "HUGE" in line)
    return src, huge


@pytest.mark.parametrize("fmt", ["genbank", "embl"])
def test_an_insdc_record_over_max_length_is_one_error_and_the_next_records_are_read(
    fmt: str, data_dir: Path, tmp_path: Path, capsys
) -> None:
    src, huge = _three(data_dir, fmt, tmp_path)
    rc, err = run(shard_fasta_main, [src, tmp_path / "out", "--max-length", "1000"], capsys)
    line = one_line_error(err, f"{src}:{huge}: record 'HUGE1.1': longer than --max-length 1,000 bases: not read into "
                          "memory", rc=rc, prefix=SHARD_ERROR)  # fmt: skip
    assert "raise --max-length" in line and "declares" not in line  # not also the declared-length check
    skipped: list[str] = []
    got = [(r.id, r.tokens.size) for r in read_records(src, ReaderConfig(max_length=1000, skip_invalid=True), skipped)]
    assert got == [("X1.1", 300), ("X3.1", 120)] and len(skipped) == 1 and "'HUGE1.1': longer than" in skipped[0]
    whole = [(r.id, r.tokens.size) for r in read_records(src, ReaderConfig(max_length=4000))]
    assert whole == [("X1.1", 300), ("HUGE1.1", 4000), ("X3.1", 120)]  # exactly max_length is read


@pytest.mark.parametrize("fmt", ["genbank", "embl"])
def test_an_insdc_line_or_feature_table_over_the_bounds_is_one_line_naming_it(
    fmt: str, data_dir: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    src, huge = _three(data_dir, fmt, tmp_path)
    text = src.read_text().splitlines(keepends=True)
    long = text[: huge + 1] + ["x" * (1000 + (1 << 20) + 1) + "\n"] + text[huge + 1 :]  # a line past the cap
    src.write_text("".join(long))
    rc, err = run(shard_fasta_main, [src, tmp_path / "out", "--max-length", "1000"], capsys)
    one_line_error(err, f"{src}:{huge + 2}: a line longer than 1,049,576 characters", rc=rc, prefix=SHARD_ERROR)
    monkeypatch.setattr(insdc, "TEXT_SLACK", 0)  # the record's text outside its sequence: at most 4 x 1,000 here
    comment = ("CC   " if fmt == "embl" else "COMMENT     ") + "x" * 50 + "\n"  # 100 of them: over 5,000 characters
    src.write_text("".join(text[:huge] + [comment] * 100 + text[huge:]))
    rc, err = run(shard_fasta_main, [src, tmp_path / "out", "--max-length", "1000"], capsys)
    one_line_error(err, f"{src}:", f"the record from line {huge} has over 4,000 characters outside its sequence",
                   rc=rc, prefix=SHARD_ERROR)  # fmt: skip


def test_a_table_cell_over_max_length_is_one_error_and_the_next_rows_are_read(tmp_path: Path, capsys) -> None:
    src = tmp_path / "genes.tsv"
    src.write_text("name\tsequence\tclass\na\tACGT\tk1\nhuge\t" + "ACGT" * 1000 + "\tk2\nc\tGGCC\tk3\n")
    rc, err = run(shard_fasta_main, [src, tmp_path / "out", "--id-column", "name", "--max-length", "1000"], capsys)
    one_line_error(err, f"{src}:3: record 'huge': longer than --max-length 1,000 bases", "raise --max-length", rc=rc,
                   prefix=SHARD_ERROR)  # fmt: skip
    skipped: list[str] = []
    cfg = ReaderConfig(id_column="name", max_length=1000, skip_invalid=True)
    assert [(r.id, r.tokens.size) for r in read_records(src, cfg, skipped)] == [("a", 4), ("c", 4)]
    assert len(skipped) == 1 and "record 'huge': longer than" in skipped[0]
    src.write_text("name\tsequence\na\tACGT\nhuge\t" + "ACGT" * 300_000 + "\n")  # one line past 1,000 + 1 MiB
    rc, err = run(shard_fasta_main, [src, tmp_path / "out", "--id-column", "name", "--max-length", "1000"], capsys)
    one_line_error(err, f"{src}:3: a line longer than 1,049,576 characters", rc=rc, prefix=SHARD_ERROR)


@pytest.mark.parametrize("fmt", ["tsv", "csv"])
def test_a_table_sequence_longer_than_the_csv_field_limit_is_read(fmt: str, tmp_path: Path) -> None:
    """csv refuses a field over 131,072 characters by default: a 200 kb sequence was a 'malformed table'. The
    limit is the whole process's, so it is raised only while a row is read."""
    sep = "\t" if fmt == "tsv" else ","
    src = tmp_path / f"genes.{fmt}"
    src.write_text(f"name{sep}sequence\nlong{sep}" + "ACGT" * 50_000 + f"\nshort{sep}GGCC\n")
    before = csv.field_size_limit()
    got = [(r.id, r.tokens.size) for r in read_records(src, ReaderConfig(id_column="name"))]
    assert got == [("long", 200_000), ("short", 4)] and csv.field_size_limit() == before == 131_072


def test_a_file_that_shrinks_while_read_is_an_error_not_a_short_record(tmp_path: Path) -> None:
    """Truncated by another program after the first record was read: the last record came out cut short, with
    exit 0 and the original size in the manifest. Now reading it to the end is an error naming the file."""
    fa = tmp_path / "growing.fa"
    fa.write_bytes(b">a\n" + b"ACGT" * 50_000 + b"\n>b\n" + b"ACGT" * 50_000 + b"\n>c\n" + b"ACGT" * 50_000 + b"\n")
    records = read_records(fa, ReaderConfig())
    assert next(records).id == "a"
    os.truncate(fa, fa.stat().st_size - 100_000)  # mid-way through b
    with pytest.raises(InputError, match=rf"^{fa}: changed while read \(600,012 bytes when opened, 500,012 at the"):
        list(records)


def test_a_file_that_grows_while_read_is_an_error_too(tmp_path: Path) -> None:
    fa = tmp_path / "growing.fa"
    fa.write_bytes(b">a\nACGTACGT\n")
    records = read_records(fa, ReaderConfig())
    assert next(records).id == "a"
    with open(fa, "ab") as f:
        f.write(b">b\nACGT\n")
    with pytest.raises(InputError, match="changed while read"):
        list(records)
