"""The user's features from input to index: table columns, FASTA/FASTQ header pairs and GenBank/EMBL source
qualifiers, typed and with explicit missing values; kept by shard-fasta (samples and manifest) and by
`gene-ae embed`, then filtered and shown by `gene-ae search`. Bad values are one-line errors naming the file,
the line and the record."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gene_ae.config import Config
from gene_ae.core.records import iter_input
from gene_ae.model.autoencoder import GeneAE
from gene_ae.model.checkpoint import save as save_checkpoint
from gene_ae.model.config import ModelConfig
from shard_tools import load_manifest
from shard_tools.alphabet import decode
from shard_tools.cli import shard_fasta_main
from shard_tools.inputs import FeatureColumn, InputError, ReaderConfig, parse_feature_column, read_records

GC = FeatureColumn("gc", "numeric")
FAMILY = FeatureColumn("family")
SEQ = "ACGTTGCAAGGCTTACCGATGCATGCAAGTCCGATTGACCATGG"


def features_of(path: Path, *columns: FeatureColumn, **cfg) -> list[tuple[str, dict]]:
    return [(r.id, r.features) for r in read_records(path, ReaderConfig(features=columns, **cfg))]


def test_a_table_column_is_typed_and_missing_values_are_none(tmp_path: Path) -> None:
    table = tmp_path / "genes.tsv"
    table.write_text(f"id\tsequence\tfamily\tgc\tother\na\t{SEQ}\tEnt\t0.51\tx\nb\t{SEQ}\tNA\t\ty\nc\t{SEQ}\t \t.\tz\n")
    got = features_of(table, FAMILY, GC, id_column="id")
    assert got == [("a", {"family": "Ent", "gc": 0.51}), ("b", {"family": None, "gc": None}),
                   ("c", {"family": None, "gc": None})]  # fmt: skip
    plain = list(read_records(table, ReaderConfig(id_column="id")))  # nothing declared: as before
    assert plain[0].features == {} and plain[0].fields == {"family": "Ent", "gc": "0.51", "other": "x"}


def test_numeric_text_and_an_absent_column_are_one_line_errors(tmp_path: Path, capsys) -> None:
    table = tmp_path / "genes.tsv"
    table.write_text(f"id\tsequence\tgc\na\t{SEQ}\t0.5\nb\t{SEQ}\thigh\n")
    with pytest.raises(InputError) as exc:
        features_of(table, GC, id_column="id")
    assert str(exc.value) == f"{table}:3: record 'b': feature 'gc' is declared numeric but holds 'high'"
    with pytest.raises(InputError, match=r"genes.tsv:1: no column 'family'"):
        features_of(table, FAMILY, id_column="id")
    out = tmp_path / "shards"
    assert shard_fasta_main([str(table), str(out), "--id-column", "id", "--feature-column", "gc:numeric"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "genes.tsv:3: record 'b': feature 'gc'" in err[0] and not out.exists()
    for bad in ("gc:float", ":numeric", "a=b"):
        with pytest.raises(ValueError, match="--feature-column"):
            parse_feature_column(bad)


def test_fasta_and_fastq_header_pairs(tmp_path: Path) -> None:
    fasta = tmp_path / "g.fa.gz"
    fasta.write_bytes(gzip.compress(f'>a family=Ent gc=0.5 note="two words"\n{SEQ}\n>b gc=0.4\n{SEQ}\n'.encode()))
    note = FeatureColumn("note")
    assert features_of(fasta, FAMILY, GC, note) == [
        ("a", {"family": "Ent", "gc": 0.5, "note": "two words"}),
        ("b", {"family": None, "gc": 0.4, "note": None}),
    ]
    fastq = tmp_path / "r.fq"
    fastq.write_text(f"@r1 family=Vib\n{SEQ}\n+\n{'I' * len(SEQ)}\n")
    assert features_of(fastq, FAMILY) == [("r1", {"family": "Vib"})]


@pytest.mark.parametrize("fmt", ["genbank", "embl"])
def test_genbank_and_embl_source_qualifiers(fmt: str, tmp_path: Path) -> None:
    from Bio import SeqIO
    from Bio.Seq import Seq
    from Bio.SeqFeature import FeatureLocation, SeqFeature
    from Bio.SeqRecord import SeqRecord

    rec = SeqRecord(Seq(SEQ), id="X1.1", name="X1", description="a gene", annotations={"molecule_type": "DNA"})
    rec.features.append(SeqFeature(FeatureLocation(0, len(SEQ)), type="source", qualifiers={
        "organism": ["Escherichia coli"], "strain": ["K-12"], "db_xref": ["taxon:562", "BioSample:1"]}))  # fmt: skip
    text = io.StringIO()
    SeqIO.write([rec], text, fmt)
    path = tmp_path / f"x.{'gb' if fmt == 'genbank' else 'embl'}"
    path.write_text(text.getvalue())
    columns = (FeatureColumn("organism"), FeatureColumn("strain"), FeatureColumn("db_xref"), FAMILY)
    assert features_of(path, *columns) == [
        ("X1.1", {"organism": "Escherichia coli", "strain": "K-12", "db_xref": "taxon:562;BioSample:1",
                  "family": None}),
    ]  # fmt: skip


def test_shards_keep_features_and_their_kinds(tmp_path: Path, data_dir: Path) -> None:
    """shard-fasta --feature-column: the manifest names the kinds, every record's sample holds its values, and
    reading the shards gives the features reading the file gives; shards written without features read as before."""
    rows = gzip.decompress((data_dir / "genefam" / "dog_sample.tsv.gz").read_bytes()).decode().splitlines()[:41]
    table = tmp_path / "dog.tsv"
    head, *body = rows
    gcs = [f"{0.3 + i / 100}" if i % 7 else "NA" for i in range(len(body))]
    table.write_text(f"{head}\tgc\n" + "".join(f"{r}\t{gc}\n" for r, gc in zip(body, gcs)))
    cols = ["--feature-column", "class", "--feature-column", "gc:numeric"]
    out = tmp_path / "shards"
    assert shard_fasta_main([str(table), str(out), "--quiet", "--val-fraction", "0", *cols]) == 0
    assert load_manifest(out)["features"] == {"class": "categorical", "gc": "numeric"}
    from_file = [r.features for r in iter_input(table, ReaderConfig(features=(FeatureColumn("class"), GC)))]
    from_shards = {r.id: r.features for r in iter_input(out)}
    assert sorted(from_shards.values(), key=str) == sorted(from_file, key=str) and from_file[0]["gc"] is None
    old = tmp_path / "old"
    assert shard_fasta_main([str(table), str(old), "--quiet"]) == 0
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["features"]  # as written before features existed
    (old / "manifest.json").write_text(json.dumps(manifest))
    assert load_manifest(old)["features"] == {} and all(r.features == {} for r in iter_input(old))
    manifest["features"] = {"gc": "float"}
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="features: 'gc' must be numeric or categorical"):
        load_manifest(old)


def test_embed_keeps_features_and_search_filters_and_shows_them(tmp_path: Path, data_dir: Path, cli) -> None:
    torch.manual_seed(0)
    cfg = Config()
    cfg.model = ModelConfig(channels=32, embed_dim=16, lstm_hidden=32, vector_dim=64, window=256, downsample=4)
    ckpt = save_checkpoint(tmp_path / "ckpt", cfg, GeneAE(cfg.model))
    recs = list(iter_input(data_dir / "genefam" / "dog_sample.tsv.gz", ReaderConfig(label_column="class")))[:30]
    gcs = [float(np.isin(r.tokens, [4, 5]).mean()) for r in recs]
    table = tmp_path / "genes.tsv"
    table.write_text("id\tsequence\tfamily\tgc\n" + "".join(
        f"g{i}\t{decode(r.tokens)}\tfam{r.label}\t{gc:.3f}\n" for i, (r, gc) in enumerate(zip(recs, gcs))))  # fmt: skip
    flags = ["--id-column", "id", "--feature-column", "family", "--feature-column", "gc:numeric"]
    code, _, err = cli("gene-ae", "embed", "--model", ckpt, "--input", table, "--out", tmp_path / "idx", *flags)
    assert code == 0, err
    query = tmp_path / "q.fa"
    query.write_text(f">q\n{decode(recs[3].tokens)}\n")
    cut = float(np.median(gcs))
    code, out, err = cli("gene-ae", "search", "--index", tmp_path / "idx", query, "-k", "30", "--rerank", "0",
                         "--where", f"gc > {cut}", "--show-features", "family,gc")  # fmt: skip
    assert code == 0, err
    header, *rows = [line.split("\t") for line in out.splitlines()]
    assert header[-2:] == ["family", "gc"] and rows
    assert all(float(r[-1]) > cut for r in rows) and len(rows) == sum(gc > cut for gc in gcs)
    code, _, err = cli("gene-ae", "search", "--index", tmp_path / "idx", query, "--where", "colour == 'red'")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "colour" in err
