"""Constants and readers shared by several test modules (kept out of conftest so they can be imported)."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import re
import tomllib
from pathlib import Path

import numpy as np
import zstandard

REPO = Path(__file__).resolve().parents[1]
# `make test-all` sets GENE_AE_TEST_PROFILE=full: every property test runs its full count of examples; the
# default suite runs a tenth (at least 10), so it stays near 5 minutes on 2 cores and still exercises each.
FULL = os.environ.get("GENE_AE_TEST_PROFILE") == "full"


def examples(n: int) -> int:
    """Hypothesis examples for a property test: n in the full profile, n // 10 (at least 10) by default."""
    return n if FULL else max(10, n // 10)


# A training run small enough for a subprocess test: 6 steps, checkpoints at 3 and 6, metrics at 2/4/6.
TINY_TRAIN_ARGS = [
    "--steps", "6",
    "--set", "train.log_every=2",
    "--set", "train.steps_per_epoch=3",
    "--set", "train.checkpoint_every=3",
    "--set", "data.batch_size=8",
    "--set", "model.channels=32",
    "--set", "model.lstm_hidden=32",
    "--set", "model.vector_dim=32",
    "--set", "model.window=256",
    "--set", "data.window=256",
    "--set", "data.val_records=32",
]  # fmt: skip


# What shard-fasta and shard-verify print first on an error.
SHARD_ERROR = ("shard-fasta: error: ", "shard-verify: error: ")


def one_line_error(text: str, *words: str, rc: int | None = None, prefix: str | tuple[str, ...] = "") -> str:
    """The one line an error is: `text` (a command's stderr or an exception's message) is a single line, no
    traceback, starting with `prefix` and holding every one of `words`; with `rc`, the exit status was 1."""
    if rc is not None:
        assert rc == 1, (rc, text)
    lines = text.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in text, text
    assert lines[0].startswith(prefix), text
    missing = [w for w in words if w not in lines[0]]
    assert not missing, (missing, lines[0])
    return lines[0]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def constraints() -> dict[str, str]:
    """Package name -> pinned version, from constraints.txt."""
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        pins[canonical(name)] = version
    return pins


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def session_pids(sid: int) -> list[int]:
    """PIDs of the live processes in session `sid` (from /proc/PID/stat, field 6)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


# Every input codec shard_tools reads, as a function of the plain bytes.
COMPRESSORS = {
    "plain": lambda b: b,
    "gz": gzip.compress,
    "bz2": bz2.compress,
    "xz": lzma.compress,
    "zst": lambda b: zstandard.ZstdCompressor().compress(b),
}


def lambda_phage(data_dir: Path) -> tuple[str, str]:
    lines = (data_dir / "viruses" / "lambda_phage.fa").read_text().splitlines()
    return lines[0][1:].split()[0], "".join(lines[1:])


def insdc_bytes(records: list[tuple[str, str, str]], fmt: str) -> bytes:
    """GenBank or EMBL text written by biopython (a real writer) for (id, description, sequence)."""
    from Bio import SeqIO
    from Bio.Seq import Seq
    from Bio.SeqRecord import SeqRecord

    out = io.StringIO()
    recs = [
        SeqRecord(Seq(seq), id=rid, name=rid.split(".")[0][:16], description=desc, annotations={"molecule_type": "DNA"})
        for rid, desc, seq in records
    ]
    SeqIO.write(recs, out, fmt)
    return out.getvalue().encode()


def text_blob(*texts: str) -> np.ndarray:
    """Texts as an index's entries.npz stores them (gene_ae/index/entries.py): UTF-8, each ended by a newline."""
    return np.frombuffer("".join(t + "\n" for t in texts).encode(), dtype=np.uint8)


def texts_whole(cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """entries.npz's columns with the ids and labels as one blob each (`ids`, `labels`: the layout before format 9)
    rather than zstd blocks (`ids_z`, `ids_at`, ...)."""
    import zstandard

    cols = dict(cols)
    for name in ("ids", "labels"):
        if f"{name}_z" in cols:
            stream, ends = cols.pop(f"{name}_z").tobytes(), cols.pop(f"{name}_at").astype(np.int64).tolist()
            unzstd = zstandard.ZstdDecompressor().decompress
            cols[name] = np.frombuffer(b"".join(unzstd(stream[a:b]) for a, b in zip([0, *ends], ends)), np.uint8)
    return cols


def edit_entries(d: Path, sign: bool, **columns) -> None:
    """An index's entries.npz with some columns replaced (a value or a function of the old column); with
    `sign`, index.json records the new file's digest and its own, as `gene-ae embed` would have written them,
    so the checks past the digests are reached."""
    from gene_ae.index.directory import meta_digest
    from gene_ae.index.entries import text_blocks
    from shard_tools.files import sha256_file

    with np.load(d / "entries.npz") as z:
        cols = texts_whole({k: z[k] for k in z.files})  # edited as one blob, stored in blocks again
    cols = {**cols, **{k: v(cols[k]) if callable(v) else v for k, v in columns.items()}}
    for name in ("ids", "labels"):
        if name in cols:
            cols[f"{name}_z"], cols[f"{name}_at"] = text_blocks(np.asarray(cols.pop(name)).tobytes())
    np.savez(d / "entries.npz", **cols)
    if sign:
        raw = json.loads((d / "index.json").read_text())
        raw["files"]["entries.npz"] = sha256_file(d / "entries.npz")
        raw["meta_sha256"] = meta_digest(raw)
        (d / "index.json").write_text(json.dumps(raw))


def tiny_model(window: int = 256, dim: int = 64):
    """(run Config, Encoder) of a tiny untrained model, seeded: the model of tests where what the vector holds
    does not matter (save it with model.checkpoint.save(dir, cfg, encoder.model))."""
    import torch

    from gene_ae.config import Config
    from gene_ae.model.autoencoder import GeneAE
    from gene_ae.model.config import ModelConfig
    from gene_ae.model.encoder import Encoder

    torch.manual_seed(0)
    cfg = Config()
    cfg.model = ModelConfig(channels=32, embed_dim=16, lstm_hidden=32, vector_dim=dim, window=window, downsample=4)
    return cfg, Encoder(GeneAE(cfg.model), device="cpu")


def tiny_index(root: Path, fasta: Path, window: int = 256, dim: int = 64) -> tuple[Path, Path]:
    """(checkpoint, index) of a tiny untrained model and an index of the records in `fasta`, under `root`: for
    tests of search and its output, where what the vector holds does not matter."""
    from functools import partial

    from gene_ae.core.records import iter_input
    from gene_ae.index import build
    from gene_ae.model.checkpoint import save as save_checkpoint

    cfg, encoder = tiny_model(window, dim)
    ckpt = save_checkpoint(root / "ckpt", cfg, encoder.model)
    embed = partial(build.embed_local, encoder, batch_size=64)
    model = build.ModelInfo(uri=str(ckpt), version="", dim=dim, window=window)
    build.build_index(iter(iter_input(fasta)), embed, model, root / "index", build.BuildConfig())
    return ckpt, root / "index"
