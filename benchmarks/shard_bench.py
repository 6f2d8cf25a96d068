"""Benchmark shard-fasta against general-purpose compressors on real data.

    .venv/bin/python benchmarks/shard_bench.py [--data DIR] [--out FILE] [--workers N]

For each sequence file under DIR (default ../shared/data beside the clone if it exists, else the bundled data/), the
input is first decompressed to a temporary plain file. Then, one run of each tool per file:

- shard-fasta, run in-process through shard_tools.cli.shard_fasta_main (no interpreter start-up in the
  timing; genefam tables get --label-column class): wall time and MB/s of plain input;
- shard directory size (every file, manifest included) in bits per stored base;
- gzip -9, zstd -3 and zstd -19 --long of the same plain file, in bits per stored base (the CLI tools when
  installed; otherwise zlib / the python zstandard module with the same level and long-distance matching,
  marked in the table);
- shards / gzip -9 size ratio;
- read-back speed: decoded bases per second through shard_tools.read_shards (train + val).

"bits/base" always divides by the number of bases stored (headers, newlines and labels are free for the
shards but cost the plain compressors a little, as they would in practice).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zstandard
from common import emit, machine

from shard_tools import load_manifest, read_shards
from shard_tools.cli import shard_fasta_main
from shard_tools.compression import open_binary

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data beside the clone
NOT_SEQUENCES = {"README.md", "LICENSE"}


def default_data() -> Path:
    return SHARED if SHARED.is_dir() else REPO / "data"


def decompress_to(src: Path, dst: Path) -> int:
    with open_binary(src) as fin, open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
    return dst.stat().st_size


def shard_args(plain: Path) -> list[str] | str:
    """Extra shard-fasta arguments for this file, or the reason it is not a sequence file."""
    with open(plain, "rb") as f:
        head = f.read(4096).lstrip()
    if not head:
        return "empty"
    if head[:1] in (b">", b"@"):
        return []
    first = head.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    columns = [c.strip() for c in first.split("\t" if "\t" in first else ",")]
    if "sequence" not in columns:
        return f"table without a 'sequence' column ({', '.join(columns[:4])}, ...)"
    return ["--label-column", "class"] if "class" in columns else []


def compressed_size(plain: Path, tool: str) -> tuple[int, bool]:
    """(size in bytes, whether the CLI tool was used) for tool in gzip9 | zstd3 | zstd19long."""
    cli = {
        "gzip9": ["gzip", "-9", "-n", "-c"],
        "zstd3": ["zstd", "-3", "-c", "-q"],
        "zstd19long": ["zstd", "-19", "--long", "-c", "-q"],
    }[tool]
    if shutil.which(cli[0]):
        with open(plain, "rb") as fin:
            out = subprocess.run(cli, stdin=fin, capture_output=True, check=True).stdout
        return len(out), True
    data = plain.read_bytes()
    if tool == "gzip9":
        return len(gzip.compress(data, compresslevel=9, mtime=0)), False
    if tool == "zstd3":
        return len(zstandard.ZstdCompressor(level=3).compress(data)), False
    params = zstandard.ZstdCompressionParameters.from_level(19, enable_ldm=True, window_log=27)  # = zstd --long
    return len(zstandard.ZstdCompressor(compression_params=params).compress(data)), False


def bench_file(src: Path, name: str, work: Path, workers: int) -> dict:
    plain = work / "plain"
    plain_bytes = decompress_to(src, plain)
    row: dict = {"name": name, "mb": plain_bytes / 1e6}
    args = shard_args(plain)
    if isinstance(args, str):
        row["skipped"] = args
        return row
    out = work / "shards"
    err = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stderr(err):
        rc = shard_fasta_main([str(plain), str(out), "--quiet", "--workers", str(workers), *args])
    seconds = time.perf_counter() - start
    if rc != 0:
        row["skipped"] = f"shard-fasta failed: {err.getvalue().strip()}"
        return row
    manifest = load_manifest(out)
    bases = manifest["summary"]["bases"]
    shard_size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    start = time.perf_counter()
    decoded = sum(int(tokens.size) for split in ("train", "val") for _, tokens, _ in read_shards(out, split))
    read_seconds = time.perf_counter() - start
    assert decoded == bases, (decoded, bases)
    row.update(
        records=manifest["summary"]["records"],
        bases=bases,
        seconds=seconds,
        mbs=plain_bytes / 1e6 / seconds,
        shard_bpb=8 * shard_size / bases,
        read_mbases=bases / 1e6 / read_seconds,
    )
    sizes = {}
    for tool in ("gzip9", "zstd3", "zstd19long"):
        size, used_cli = compressed_size(plain, tool)
        sizes[tool] = size
        row[tool] = 8 * size / bases
        row[tool + "_cli"] = used_cli
    row["ratio"] = shard_size / sizes["gzip9"]
    shutil.rmtree(out)
    plain.unlink()
    return row


def table(rows: list[dict]) -> str:
    mark = {True: "", False: " (py)"}
    lines = [
        "| data set | input MB | records | bases | shard-fasta s | MB/s | shards bits/base | gzip -9 | zstd -3 "
        "| zstd -19 --long | shards / gzip -9 | read-back Mbases/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['name']} | {r['mb']:.2f} | skipped: {r['skipped']} |" + " |" * 9)
            continue
        lines.append(
            f"| {r['name']} | {r['mb']:.2f} | {r['records']:,} | {r['bases']:,} | {r['seconds']:.3f} | {r['mbs']:.1f} "
            f"| **{r['shard_bpb']:.3f}** | {r['gzip9']:.3f}{mark[r['gzip9_cli']]} "
            f"| {r['zstd3']:.3f}{mark[r['zstd3_cli']]} | {r['zstd19long']:.3f}{mark[r['zstd19long_cli']]} "
            f"| {r['ratio']:.3f} | {r['read_mbases']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=default_data(), help="folder of sequence files (searched recursively)")
    p.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    p.add_argument("--workers", type=int, default=1, help="shard-fasta --workers")
    args = p.parse_args(argv)
    files = sorted(
        f for f in args.data.rglob("*") if f.is_file() and f.name not in NOT_SEQUENCES and "copyright" not in f.name
    )
    if not files:
        print(f"shard_bench: no files under {args.data}", file=sys.stderr)
        return 1
    rows = []
    with tempfile.TemporaryDirectory(prefix="shard-bench-") as tmp:
        for f in files:
            name = str(f.relative_to(args.data))
            print(f"shard_bench: {name} ...", file=sys.stderr, flush=True)
            rows.append(bench_file(f, name, Path(tmp), args.workers))
    tools = "gzip, zstd CLI" if shutil.which("zstd") and shutil.which("gzip") else "see (py) marks"
    zstd_version = ""
    if shutil.which("zstd"):
        zstd_version = subprocess.run(["zstd", "--version"], capture_output=True, text=True).stdout.strip()
    header = (
        f"shard-fasta benchmark on {args.data} ({machine()}, shard-fasta in-process via "
        "shard_tools.cli.shard_fasta_main, "
        f"--workers {args.workers}; compressors: {tools}{'; ' + zstd_version if zstd_version else ''}).\n"
        "Bits/base = 8 x compressed bytes / stored bases; shards = every file in OUT_DIR incl. manifest.json; "
        "gzip/zstd compress the decompressed input file (headers and newlines included). "
        "(py) = CLI not installed, python zlib/zstandard used with the same level (and long-distance matching)."
    )
    return emit(f"{header}\n\n{table(rows)}\n", args.out)


if __name__ == "__main__":
    sys.exit(main())
