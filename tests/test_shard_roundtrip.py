"""Every bundled data set through the real `shard-fasta` and back through `read_shards`: bases, ids, labels, size.

The expected records come from a small independent parser below, not from shard_tools.inputs.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import pytest

from shard_tools import iter_blocks, load_manifest, read_shards
from shard_tools.alphabet import decode, normalise
from shard_tools.verify import verify

SPLITS = ("train", "val")
LABELLED = ["--label-column", "class"]
DATASETS = {
    "chimp": ("genefam/chimp_sample.tsv.gz", LABELLED),
    "dog": ("genefam/dog_sample.tsv.gz", LABELLED),
    "16s": ("rrna16s/16s_sample.fa.gz", []),
    "mpox": ("viruses/mpox_sample.fasta.gz", []),
    "sarscov2": ("viruses/sarscov2_sample.fasta.gz", []),
    "lambda": ("viruses/lambda_phage.fa", []),
    "saureus": ("bacteria/saureus_n315_first300kb.fasta.gz", []),
}
NOT_SEQUENCES = {"README.md", "LICENSE", "debian_copyright.txt"}


def plain_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def expected_records(path: Path) -> list[tuple[str, str, str | None]]:
    """(id, normalised bases, label) in file order, parsed without shard_tools."""
    lines = plain_bytes(path).decode("utf-8").splitlines()
    if lines[0].startswith(">"):
        out: list[tuple[str, str, str | None]] = []
        rid, chunks = None, []
        for line in [*lines, ">"]:
            if line.startswith(">"):
                if rid is not None:
                    out.append((rid, normalise("".join(chunks)), None))
                rid, chunks = line[1:].strip().partition(" ")[0], []
            else:
                chunks.append(line)
        return out
    header = lines[0].split("\t")
    seq_i, label_i = header.index("sequence"), header.index("class")
    rows = [line.split("\t") for line in lines[1:]]
    return [(f"row{i}", normalise(row[seq_i]), row[label_i].strip()) for i, row in enumerate(rows, 1)]


def read_back(out: Path) -> dict[str, list[tuple[str, str, dict]]]:
    return {split: [(rid, decode(tok), meta) for rid, tok, meta in read_shards(out, split)] for split in SPLITS}


def dir_bytes(out: Path) -> int:
    return sum(p.stat().st_size for p in out.rglob("*") if p.is_file())


def gzip9_size(raw: bytes) -> int:
    if shutil.which("gzip"):
        return len(subprocess.run(["gzip", "-9", "-n", "-c"], input=raw, capture_output=True, check=True).stdout)
    return len(gzip.compress(raw, compresslevel=9, mtime=0))


@pytest.fixture(scope="module")
def sharded(data_dir: Path, run_cli, tmp_path_factory: pytest.TempPathFactory):
    """shard_fasta(name) -> OUT_DIR, each data set sharded once per module with the default settings."""
    root = tmp_path_factory.mktemp("roundtrip")
    done: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in done:
            rel, extra = DATASETS[name]
            out = root / name
            rc, _, stderr = run_cli("shard-fasta", data_dir / rel, out, *extra)
            assert rc == 0, stderr
            assert "Traceback" not in stderr and "warning" not in stderr
            done[name] = out
        return done[name]

    return get


def test_every_bundled_sequence_file_is_covered(data_dir: Path) -> None:
    files = {str(p.relative_to(data_dir)) for p in data_dir.rglob("*") if p.is_file() and p.name not in NOT_SEQUENCES}
    assert files == {rel for rel, _ in DATASETS.values()}


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_round_trip_bases_ids_and_labels(name: str, sharded, data_dir: Path) -> None:
    rel, extra = DATASETS[name]
    expected = expected_records(data_dir / rel)
    out = sharded(name)
    back = read_back(out)
    got = back["train"] + back["val"]
    assert len(got) == len(expected)
    assert sorted((rid, seq, meta.get("label")) for rid, seq, meta in got) == sorted(expected)
    for rid, seq, meta in got:
        assert meta["id"] == rid and meta["len"] == len(seq)
        assert "part" not in meta and "offset" not in meta
    # each split keeps input order
    position = {rid: i for i, (rid, _, _) in enumerate(expected)}
    for split in SPLITS:
        order = [position[rid] for rid, _, _ in back[split]]
        assert order == sorted(order)
    manifest = load_manifest(out)
    assert manifest["summary"]["records"] == len(expected)
    assert manifest["summary"]["bases"] == sum(len(seq) for _, seq, _ in expected)
    totals = verify(out)
    assert totals["bases"] == manifest["summary"]["bases"]


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_shards_no_larger_than_gzip9(name: str, sharded, data_dir: Path) -> None:
    rel, _ = DATASETS[name]
    out = sharded(name)
    shard_size, gz_size = dir_bytes(out), gzip9_size(plain_bytes(data_dir / rel))
    assert shard_size <= gz_size, f"{name}: shards {shard_size} B (manifest included) > gzip -9 {gz_size} B"


def test_saureus_at_most_2_05_bits_per_base(sharded) -> None:
    out = sharded("saureus")
    manifest = load_manifest(out)
    shard_bytes = sum((out / s["name"]).stat().st_size for sp in SPLITS for s in manifest["splits"][sp]["shards"])
    bases = manifest["summary"]["bases"]
    assert bases == 300_020
    assert 8 * shard_bytes / bases <= 2.05


def test_small_blocks_store_long_records_in_parts(data_dir: Path, cli, tmp_path: Path) -> None:
    names = ["mpox", "sarscov2", "lambda", "saureus", "16s"]
    sources = [data_dir / DATASETS[n][0] for n in names]
    out = tmp_path / "small_blocks"
    block = 10_000
    rc, _, stderr = cli("shard-fasta", *sources, out, "--block-bases", str(block), "--shard-size", "0.2")
    assert rc == 0, stderr
    expected = [rec for src in sources for rec in expected_records(src)]
    back = read_back(out)
    got = back["train"] + back["val"]
    assert sorted((rid, seq) for rid, seq, _ in got) == sorted((rid, seq) for rid, seq, _ in expected)
    manifest = load_manifest(out)
    want_parts = sum(-(-len(seq) // block) for _, seq, _ in expected)
    assert sum(manifest["splits"][s]["parts"] for s in SPLITS) == want_parts
    assert want_parts - len(expected) > 150  # mpox, S. aureus and friends come in many parts
    assert len(manifest["splits"]["train"]["shards"]) > 1
    for split in SPLITS:  # parts are consecutive, bounded and at the right offsets
        previous = None
        for rec in iter_blocks(out, split):
            meta = rec.meta
            assert rec.tokens.size <= block and meta["offset"] == meta["part"] * block
            if meta["part"] > 0:
                assert previous is not None and previous["id"] == meta["id"] and previous["part"] == meta["part"] - 1
            previous = meta
    assert verify(out)["bases"] == sum(len(seq) for _, seq, _ in expected)


def test_gnu_tar_lists_shards(sharded) -> None:
    tar = shutil.which("tar")
    if tar is None:
        pytest.skip("no tar on PATH")
    out = sharded("dog")
    manifest = load_manifest(out)
    for split in SPLITS:
        for shard in manifest["splits"][split]["shards"]:
            names = subprocess.run([tar, "-tf", out / shard["name"]], capture_output=True, text=True, check=True)
            assert len(names.stdout.split()) == shard["samples"]


def test_a_block_declaring_a_huge_size_is_an_error_not_an_allocation() -> None:
    """A damaged zstd header may declare terabytes; decoding refuses it before allocating (Hypothesis
    found a MemoryError there)."""
    import json as _json

    import numpy as np
    import zstandard

    from shard_tools.format import MAX_META_BYTES, decode_block, encode_block

    good = encode_block([({"id": "r1", "len": 8}, np.full(8, 3, np.uint8))], 3, 1 << 16)
    assert decode_block(good)[0].tokens.size == 8
    huge_meta = zstandard.ZstdCompressor().compress(bytes(MAX_META_BYTES + 1))  # declares its size, tiny
    with pytest.raises(ValueError, match="declares"):
        decode_block(len(huge_meta).to_bytes(4, "little") + huge_meta)
    meta = zstandard.ZstdCompressor().compress(_json.dumps({"codec": "u8", "columns": {"len": [8]}}).encode())
    body = zstandard.ZstdCompressor().compress(bytes(1 << 20))  # 1 MiB where the records say 8 bases
    with pytest.raises(ValueError, match="declares"):
        decode_block(len(meta).to_bytes(4, "little") + meta + body)
