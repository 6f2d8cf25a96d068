"""Answers come from the model and the data the index was built with, or not at all.

A real sqlite MLflow registry with two versions of an encoder; the index is built through the alias, the
alias then moves. Every case runs `gene-ae` in-process through its `main`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import mlflow
import pytest
import torch
from shared import one_line_error

from gene_ae.cli import main
from gene_ae.config import Config
from gene_ae.model import checkpoint
from gene_ae.model.autoencoder import GeneAE
from gene_ae.model.config import ModelConfig
from gene_ae.registry import tracking
from shard_tools.alphabet import decode
from shard_tools.inputs import ReaderConfig, read_records

NAME = "prov-encoder"


def _checkpoint(root: Path, seed: int, poison: bool = False) -> Path:
    torch.manual_seed(seed)
    cfg = Config()
    cfg.model = ModelConfig(channels=32, embed_dim=16, lstm_hidden=32, vector_dim=64, window=256, downsample=4)
    model = GeneAE(cfg.model)
    if poison:  # weights gone bad (a diverged run): every vector NaN
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(float("nan"))
    return checkpoint.save(root / f"ckpt-{seed}{'-nan' if poison else ''}", cfg, model)


@pytest.fixture(scope="module")
def world(tmp_path_factory, data_dir: Path):
    root = tmp_path_factory.mktemp("prov")
    uri = f"sqlite:///{root}/mlflow.db"
    old_env, old_cwd = os.environ.get("MLFLOW_TRACKING_URI"), os.getcwd()
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    os.chdir(root)
    versions = []
    for seed in (0, 1):
        with mlflow.start_run():
            info = tracking.log_encoder(_checkpoint(root, seed), register=NAME)
        versions.append(str(info.registered_model_version))
    tracking.set_alias(NAME, versions[0], "production")
    recs = list(read_records(data_dir / "genefam" / "dog_sample.tsv.gz", ReaderConfig(label_column="class")))[:15]
    (root / "genes.fa").write_text("".join(f">{r.id}\n{decode(r.tokens)}\n" for r in recs))
    (root / "q.fa").write_text(f">copy4\n{decode(recs[4].tokens)}\n")
    yield {"root": root, "versions": versions, "recs": recs}
    os.chdir(old_cwd)
    if old_env is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = old_env


def gene_ae(capsys, *args: object) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return done.value.code, out.out, out.err


@pytest.fixture(scope="module")
def index(world) -> Path:
    out = world["root"] / "index"
    with pytest.raises(SystemExit) as done:
        main(["embed", "--model", f"models:/{NAME}@production", "--input", str(world["root"] / "genes.fa"),
              "--out", str(out)])  # fmt: skip
    assert done.value.code == 0
    return out


def test_the_index_records_the_version_the_alias_pointed_at(world, index) -> None:
    meta = json.loads((index / "index.json").read_text())
    assert meta["model_uri"] == f"models:/{NAME}/{world['versions'][0]}"
    assert meta["model_version"] == world["versions"][0]


def test_search_after_the_alias_moves_still_uses_the_index_model(world, index, capsys) -> None:
    tracking.set_alias(NAME, world["versions"][1], "production")
    try:
        code, out, err = gene_ae(capsys, "search", "--index", index, world["root"] / "q.fa", "-k", "1", "--rerank", "0",
                                 "--sources", "dense")  # fmt: skip
        assert code == 0, err
        row = out.splitlines()[1].split("\t")
        assert row[1] == world["recs"][4].id and float(row[3]) > 0.999  # an exact copy scores 1, not 0.05
        # Asking for the alias explicitly is asking for another model: refused, not answered wrongly.
        code, out, err = gene_ae(capsys, "search", "--index", index, world["root"] / "q.fa",
                                 "--model", f"models:/{NAME}@production", "--sources", "dense,sparse")  # fmt: skip
        one_line_error(
            err, "differ from the index's", "not the model the index was built with", rc=code, prefix="gene-ae "
        )
        # A model given to a search that reads no vectors (the default k-mer list) is refused, not ignored.
        code, out, err = gene_ae(
            capsys, "search", "--index", index, world["root"] / "q.fa", "--model", f"models:/{NAME}/1"
        )
        one_line_error(err, "--model", "reads no vectors", rc=code, prefix="gene-ae ")
        assert out == ""
    finally:
        tracking.set_alias(NAME, world["versions"][0], "production")


def test_a_model_with_nan_weights_is_refused_by_embed_and_search(world, index, capsys) -> None:
    bad = _checkpoint(world["root"], 0, poison=True)
    out = world["root"] / "nan-index"
    code, _, err = gene_ae(capsys, "embed", "--model", bad, "--input", world["root"] / "genes.fa", "--out", out)
    one_line_error(err, "non-finite", "record vectors", rc=code, prefix="gene-ae ")
    assert not out.exists() and not list(world["root"].glob(".nan-index*"))
    code, _, err = gene_ae(capsys, "search", "--index", index, world["root"] / "q.fa", "--model", bad,
                           "--sources", "dense,sparse")  # fmt: skip
    one_line_error(err, "differ from the index's", rc=code, prefix="gene-ae ")


def test_a_collection_with_the_same_ids_but_other_bases_is_refused(world, index, capsys) -> None:
    recs = world["recs"]
    other = world["root"] / "other.fa"
    seqs = [decode(r.tokens) for r in recs]
    seqs[7] = seqs[7][::-1]  # same id, same length, other bases
    other.write_text("".join(f">{r.id}\n{s}\n" for r, s in zip(recs, seqs)))
    code, _, err = gene_ae(capsys, "search", "--index", index, world["root"] / "q.fa", "--collection", other)
    one_line_error(err, str(other), recs[7].id, "other bases", rc=code, prefix="gene-ae ")
    seqs[7] = seqs[7][:-5]
    other.write_text("".join(f">{r.id}\n{s}\n" for r, s in zip(recs, seqs)))
    code, _, err = gene_ae(capsys, "search", "--index", index, world["root"] / "q.fa", "--collection", other)
    one_line_error(err, recs[7].id, "differs from the one indexed", rc=code, prefix="gene-ae ")


@pytest.mark.parametrize("seq", ["ACGTAC", "N" * 400, "ACGTNACGTNACGTNACGTN"])
def test_a_query_too_short_or_all_n_is_refused_not_answered(world, index, capsys, seq) -> None:
    q = world["root"] / "short.fa"
    q.write_text(f">good\n{decode(world['recs'][0].tokens)}\n>tiny\n{seq}\n")
    code, out, err = gene_ae(capsys, "search", "--index", index, q)
    one_line_error(err, str(q), "'tiny'", "too short or too many N", rc=code, prefix="gene-ae ")
    assert out == ""


def test_tsv_and_blast6_report_the_same_region(world, index, capsys) -> None:
    q = world["root"] / "q2.fa"
    part = decode(world["recs"][2].tokens[100:400])
    q.write_text(f">whole\n{decode(world['recs'][5].tokens)}\n>part\n{part}\n")
    code, tsv, err = gene_ae(capsys, "search", "--index", index, q, "-k", "3")
    assert code == 0, err
    code, b6, err = gene_ae(capsys, "search", "--index", index, q, "-k", "3", "--outfmt", "blast6")
    assert code == 0, err
    header, *rows = [r.split("\t") for r in tsv.splitlines()]
    at = {name: i for i, name in enumerate(header)}
    tsv_regions = [(r[0], r[1], int(r[at["sstart"]]), int(r[at["send"]])) for r in rows]
    b6_regions = [(r[0], r[1], int(r[8]), int(r[9])) for r in (line.split("\t") for line in b6.splitlines())]
    assert tsv_regions == b6_regions
    spans = [(int(r[at["subject_start"]]) + 1, int(r[at["subject_end"]])) for r in rows]  # the same, increasing
    assert spans == [(min(a, b), max(a, b)) for *_, a, b in tsv_regions] and all(b > a for a, b in spans)
    assert tsv_regions[3][:2] == ("part", world["recs"][2].id) and tsv_regions[3][2:] == (101, 400)  # the part
