"""Fuzzing: thousands of mutated real inputs, manifests and shards; only the tools' own errors may come out.

Each property starts from small slices of the real data (16S FASTA, reads made from it, dog genes as TSV,
phage lambda written as GenBank and EMBL by biopython, a real shard directory) and mutates them: cuts,
flipped bytes, inserted control characters and format markers, compression by every codec. A reader may
return records or raise InputError with a one-line message naming the file; shard-verify and read_shards
may succeed or raise ShardError. Anything else (KeyError, UnicodeError, a traceback) fails the test.
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import io
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shared import COMPRESSORS, examples, insdc_bytes, lambda_phage

from shard_tools.cli import shard_fasta_main
from shard_tools.detect import FORMATS
from shard_tools.files import sha256_file
from shard_tools.inputs import ReaderConfig, read_records
from shard_tools.reader import ShardError, read_shards
from shard_tools.record import InputError
from shard_tools.verify import verify

FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
INSERTS = [b"\x00", b"\x1b[31m", b"\t", b"\r", b"\n", b"\n>", b"\n@", b"\n+\n", b"\xff", b"\xe2\x80\xa8", b"//\n"]


@pytest.fixture(scope="module")
def seeds(data_dir: Path) -> dict[str, bytes]:
    """Small real inputs of every format, as plain bytes."""
    fasta = gzip.decompress((data_dir / "rrna16s" / "16s_sample.fa.gz").read_bytes())[:3000]
    reads = [line for line in fasta.decode().splitlines()[1:8] if not line.startswith(">")]
    fastq = "".join(f"@r{i} x\n{seq[:60]}\n+\n{'I' * len(seq[:60])}\n" for i, seq in enumerate(reads)).encode()
    tsv = b"\n".join(gzip.decompress((data_dir / "genefam" / "dog_sample.tsv.gz").read_bytes()).splitlines()[:6])
    rid, seq = lambda_phage(data_dir)
    records = [(rid, "phage lambda, first 600 bases", seq[:600]), ("X2.1", "second", seq[600:700])]
    return {
        "x.fa": fasta,
        "x.fq": fastq,
        "x.tsv": tsv,
        "x.gbk": insdc_bytes(records, "genbank"),
        "x.embl": insdc_bytes(records, "embl"),
    }


@st.composite
def mutated(draw: st.DrawFn, blob: bytes) -> bytes:
    data = bytearray(blob)
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[pos:pos] = draw(st.sampled_from(INSERTS) | st.binary(min_size=1, max_size=8))
        elif data:
            del data[pos : pos + draw(st.integers(1, 64))]
    return bytes(data)


def read_or_input_error(path: Path, cfg: ReaderConfig) -> None:
    try:
        for rec in read_records(path, cfg, []):
            assert rec.id and rec.tokens.size > 0
    except InputError as exc:
        message = str(exc)
        assert message.startswith(str(path)) and message.isprintable(), message


@settings(FUZZ, max_examples=examples(1500))
@given(st.data())
def test_mutated_real_inputs_give_records_or_one_line_input_errors(seeds: dict[str, bytes], data: st.DataObject):
    name = data.draw(st.sampled_from(sorted(seeds)))
    blob = data.draw(mutated(seeds[name]))
    codec = data.draw(st.sampled_from(sorted(COMPRESSORS)))
    packed = COMPRESSORS[codec](blob)
    if data.draw(st.booleans()):  # mutate or cut the compressed stream too
        packed = data.draw(mutated(packed))[: data.draw(st.integers(0, len(packed)))]
    fmt = data.draw(st.sampled_from(["auto", "auto", *FORMATS]))
    cfg = ReaderConfig(format=fmt, id_column="name" if data.draw(st.booleans()) else None, label_column="class")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(packed)
        read_or_input_error(path, cfg)
        read_or_input_error(path, ReaderConfig(format=fmt, skip_invalid=True))


@settings(FUZZ, max_examples=examples(400))
@given(st.data())
def test_every_cut_of_a_compressed_input_is_an_error(seeds: dict[str, bytes], data: st.DataObject) -> None:
    """No codec may turn a cut file into a shorter success: records after the cut would vanish silently."""
    name = data.draw(st.sampled_from(sorted(seeds)))
    packed = COMPRESSORS[data.draw(st.sampled_from(["gz", "bz2", "xz", "zst"]))](seeds[name])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(packed[: data.draw(st.integers(1, len(packed) - 1))])
        with pytest.raises(InputError):
            list(read_records(path, ReaderConfig(label_column="class")))


@pytest.fixture(scope="module")
def shard_dir(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src") / "small.fa"
    src.write_bytes(gzip.decompress((data_dir / "rrna16s" / "16s_sample.fa.gz").read_bytes())[:20_000])
    out = tmp_path_factory.mktemp("shards") / "out"
    assert shard_fasta_main([str(src), str(out), "--quiet", "--block-bases", "3000", "--val-fraction", "0.3"]) == 0
    return out


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def json_edit(draw: st.DrawFn, manifest: dict) -> dict:
    """The manifest with one node replaced, removed or added, somewhere along a random path."""
    edited = copy.deepcopy(manifest)
    node: dict | list = edited
    for _ in range(draw(st.integers(0, 5))):  # walk down into a random container
        inner = [v for v in (node.values() if isinstance(node, dict) else node) if isinstance(v, dict | list) and v]
        if not inner:
            break
        node = draw(st.sampled_from(inner))
    keys = list(node) if isinstance(node, dict) else list(range(len(node)))
    action = draw(st.sampled_from(["replace", "delete", "add"])) if keys else "add"
    if action == "add":
        if isinstance(node, dict):
            node[draw(st.text(max_size=6))] = draw(JSON_VALUES)
        else:
            node.append(draw(JSON_VALUES))
    elif action == "delete":
        del node[draw(st.sampled_from(keys))]
    else:
        hostile = st.sampled_from(["../../x.tar", "/etc/passwd", "train/../x.tar", -1, 10**30])
        node[draw(st.sampled_from(keys))] = draw(JSON_VALUES | hostile)
    return edited


def verify_or_shard_error(out: Path) -> None:
    try:
        verify(out)
        for split in ("train", "val"):
            for _ in read_shards(out, split):
                pass
    except ShardError as exc:
        assert "\n" not in str(exc), str(exc)


@settings(FUZZ, max_examples=examples(700))
@given(st.data())
def test_mutated_manifests_give_ok_or_shard_error(shard_dir: Path, data: st.DataObject) -> None:
    raw = (shard_dir / "manifest.json").read_bytes()
    if data.draw(st.booleans()):
        text = json.dumps(data.draw(json_edit(json.loads(raw)))).encode()
    else:
        text = data.draw(mutated(raw))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "a" / "out"
        shutil.copytree(shard_dir, out)
        (out / "manifest.json").write_bytes(text)
        verify_or_shard_error(out)


@settings(FUZZ, max_examples=examples(400))
@given(st.data())
def test_mutated_shards_with_matching_checksums_give_ok_or_shard_error(shard_dir: Path, data: st.DataObject):
    """The sha256 is updated to match, so the tar reader and the block decoder meet the damage themselves."""
    manifest = json.loads((shard_dir / "manifest.json").read_bytes())
    entries = [s for split in manifest["splits"].values() for s in split["shards"]]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        shutil.copytree(shard_dir, out)
        entry = data.draw(st.sampled_from(entries))
        shard = out / entry["name"]
        shard.write_bytes(data.draw(mutated(shard.read_bytes())))
        entry["sha256"], entry["bytes"] = sha256_file(shard), shard.stat().st_size
        (out / "manifest.json").write_text(json.dumps(manifest))
        with contextlib.redirect_stderr(io.StringIO()):
            verify_or_shard_error(out)
