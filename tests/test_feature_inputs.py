"""The user's per-record features on the input side (issue 21): `--feature-column NAME[:kind]` read from table
columns, FASTA/FASTQ header pairs and GenBank/EMBL source qualifiers, typed, with None for a missing value;
kept by shard-fasta (sample metadata and manifest kinds), read back from shards, and carried by `gene-ae embed`
into an index that `gene-ae search --where/--show-features` uses. Real bundled sequences throughout."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from shared import lambda_phage, tiny_model

from gene_ae.core.records import iter_input
from shard_tools import load_manifest, read_shards
from shard_tools.alphabet import decode
from shard_tools.declared import DeclaredFeature, parse_feature_column
from shard_tools.inputs import ReaderConfig, read_records
from shard_tools.manifest import ShardError
from shard_tools.record import InputError

GC = DeclaredFeature("gc", "numeric")
CLASS = DeclaredFeature("class")
MISSING = ["", "NA", "NaN", ".", "-", "n/a", "null", " "]
NOTE = "a long note that Bio folds onto two lines when it is written out as a qualifier, then joins again"


def gc_of(seq: str) -> float:
    return round(sum(c in "GC" for c in seq) / len(seq), 4)


def dog_rows(data_dir: Path, n: int) -> list[tuple[str, str]]:
    """(sequence, class) of the first n bundled dog genes (a real `sequence<TAB>class` table, CRLF)."""
    lines = gzip.decompress((data_dir / "genefam" / "dog_sample.tsv.gz").read_bytes()).decode().splitlines()
    assert lines[0].split("\t") == ["sequence", "class"]
    return [tuple(line.split("\t")) for line in lines[1 : n + 1]]  # type: ignore[misc]


def gene_table(tmp_path: Path, data_dir: Path, n: int = 24) -> tuple[Path, list[dict]]:
    """A TSV of real genes with an id, their class (one missing) and their GC content (every 3rd missing, in
    each spelling of a missing value); returns it and the features each row should read as."""
    rows, want, lines = dog_rows(data_dir, n), [], ["id\tsequence\tclass\tgc"]
    for i, (seq, cls) in enumerate(rows):
        gc = MISSING[(i // 3) % len(MISSING)] if i % 3 == 0 else f"{gc_of(seq)}"
        cls = "NA" if i == 1 else cls
        lines.append(f"g{i}\t{seq}\t{cls}\t{gc}")
        want.append({"class": None if i == 1 else cls, "gc": None if i % 3 == 0 else gc_of(seq)})
    table = tmp_path / "genes.tsv"
    table.write_text("\n".join(lines) + "\n")
    return table, want


def features_of(path: Path, *columns: DeclaredFeature, **cfg) -> list[dict]:
    return [r.features for r in read_records(path, ReaderConfig(features=columns, **cfg))]


def test_the_flag_parses_name_and_kind_and_refuses_bad_ones() -> None:
    assert parse_feature_column("family") == DeclaredFeature("family", "categorical")
    assert parse_feature_column("gc:numeric") == GC
    assert parse_feature_column(" organism : categorical ") == DeclaredFeature("organism")
    for bad, words in (("gc:float", "kind must be numeric or categorical"), (":numeric", "want NAME"),
                       ("", "want NAME"), ("a=b", "want NAME"), ("a,b", "want NAME")):  # fmt: skip
        with pytest.raises(ValueError, match=words) as exc:
            parse_feature_column(bad)
        assert "\n" not in str(exc.value)
    with pytest.raises(ValueError, match="names a feature twice"):
        ReaderConfig(features=(GC, DeclaredFeature("gc")))


def test_table_columns_are_typed_and_missing_values_are_none(tmp_path: Path, data_dir: Path) -> None:
    table, want = gene_table(tmp_path, data_dir)
    got = features_of(table, CLASS, GC, id_column="id")
    assert got == want
    assert all(type(f["gc"]) is float for f in got if f["gc"] is not None)
    assert sum(f["gc"] is None for f in got) == 8 and got[1]["class"] is None
    # nothing declared: the records are what they were before features existed, the columns kept as text
    plain = list(read_records(table, ReaderConfig(id_column="id")))
    declared = list(read_records(table, ReaderConfig(id_column="id", features=(CLASS, GC))))
    assert all(r.features == {} for r in plain)
    assert [r.fields for r in plain] == [r.fields for r in declared] and plain[4].fields["gc"] == str(want[4]["gc"])
    # a CSV, the feature also the label column
    csv = tmp_path / "genes.csv"
    csv.write_text(table.read_text().replace("\t", ","))
    both = list(read_records(csv, ReaderConfig(id_column="id", label_column="class", features=(CLASS,))))
    assert [r.features["class"] for r in both] == [w["class"] for w in want] and both[0].fields["label"] == "4"


def test_numeric_text_is_a_one_line_error_naming_file_line_and_record(tmp_path: Path, data_dir: Path, cli) -> None:
    (seq, _), (other, _) = dog_rows(data_dir, 2)
    table = tmp_path / "genes.tsv"
    table.write_text(f"id\tsequence\tgc\ng0\t{seq}\t0.5\ng1\t{other}\tabc\n")
    with pytest.raises(InputError) as exc:
        features_of(table, GC, id_column="id")
    assert str(exc.value) == f"{table}:3: record 'g1': feature 'gc' is declared numeric but holds 'abc'"
    table.write_text(f"id\tsequence\tgc\ng0\t{seq}\tinf\n")
    with pytest.raises(InputError, match="genes.tsv:2: record 'g0': feature 'gc' is declared numeric but holds 'inf'"):
        features_of(table, GC, id_column="id")
    table.write_text(f"id\tsequence\tgc\ng0\t{seq}\t0.5\ng1\t{other}\tabc\n")
    out = tmp_path / "shards"
    code, _, err = cli("shard-fasta", table, out, "--id-column", "id", "--feature-column", "gc:numeric")
    assert code == 1 and not out.exists()
    assert (
        err.strip() == f"shard-fasta: error: {table}:3: record 'g1': feature 'gc' is declared numeric but holds 'abc'"
    )
    code, _, err = cli("shard-fasta", table, out, "--id-column", "id", "--feature-column", "gc:numeric",
                       "--skip-invalid", "--quiet")  # fmt: skip
    assert code == 0, err
    assert [r.features for r in iter_input(out)] == [{"gc": 0.5}]


def test_a_declared_column_absent_from_the_header_is_an_error(tmp_path: Path, data_dir: Path, cli) -> None:
    table, _ = gene_table(tmp_path, data_dir, n=3)
    with pytest.raises(InputError) as exc:
        features_of(table, CLASS, DeclaredFeature("family"))
    assert str(exc.value).startswith(f"{table}:1: no column 'family' in header")
    code, _, err = cli("shard-fasta", table, tmp_path / "out", "--feature-column", "family")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "genes.tsv:1: no column 'family'" in err
    code, _, err = cli("shard-fasta", table, tmp_path / "out", "--feature-column", "gc:float")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "--feature-column gc:float" in err


def test_fasta_and_fastq_header_pairs(tmp_path: Path, data_dir: Path) -> None:
    seqs = [r.tokens for r in iter_input(data_dir / "rrna16s" / "16s_sample.fa.gz")][:3]
    a, b, c = (decode(t) for t in seqs)
    fasta = tmp_path / "16s.fa.gz"
    text = (f'>a family=Ent gc=0.51 note="two words" family=ignored\n{a}\n>b\tgc=NA  other=x\n{b}\n'
            f">c plain description, no pairs\n{c}\n")  # fmt: skip
    fasta.write_bytes(gzip.compress(text.encode()))
    note = DeclaredFeature("note")
    assert features_of(fasta, DeclaredFeature("family"), GC, note) == [
        {"family": "Ent", "gc": 0.51, "note": "two words"},
        {"family": None, "gc": None, "note": None},
        {"family": None, "gc": None, "note": None},
    ]
    assert [r.description for r in read_records(fasta, ReaderConfig())][0].startswith("family=Ent")
    bad = tmp_path / "bad.fa"
    bad.write_text(f">a gc=0.5\n{a}\n>b gc=high\n{b}\n")
    with pytest.raises(InputError, match=r"bad.fa:3: record 'b': feature 'gc' is declared numeric but holds 'high'"):
        features_of(bad, GC)
    fastq = tmp_path / "reads.fq"
    fastq.write_text(f"@r1 family=Vib gc=0.4\n{a[:150]}\n+\n{'I' * 150}\n@r2\n{b[:150]}\n+\n{'I' * 150}\n")
    assert features_of(fastq, DeclaredFeature("family"), GC) == [
        {"family": "Vib", "gc": 0.4},
        {"family": None, "gc": None},
    ]


@pytest.mark.parametrize("fmt", ["genbank", "embl"])
def test_genbank_and_embl_source_qualifiers(tmp_path: Path, data_dir: Path, fmt: str) -> None:
    """The source feature's qualifiers, by the name the user declares; a repeated /db_xref joined with ';'."""
    from Bio import SeqIO
    from Bio.Seq import Seq
    from Bio.SeqFeature import FeatureLocation, SeqFeature
    from Bio.SeqRecord import SeqRecord

    _, phage = lambda_phage(data_dir)
    records = [
        SeqRecord(Seq(phage[a:b]), id=rid, name=rid[:2], description=desc, annotations={"molecule_type": "DNA"})
        for rid, desc, a, b in (("J02459.1", "Escherichia phage Lambda", 0, 3000), ("X2.1", "no source", 3000, 4000))
    ]
    records[0].features.append(SeqFeature(FeatureLocation(0, 3000), type="source", qualifiers={
        "organism": ["Escherichia phage Lambda"], "mol_type": ["genomic DNA"], "strain": ["cI857"],
        "db_xref": ["taxon:10710", "BioSample:SAMN1"], "note": [NOTE]}))  # fmt: skip
    path = tmp_path / f"phage.{'gb' if fmt == 'genbank' else 'embl'}"
    SeqIO.write(records, path, fmt)
    names = ("organism", "mol_type", "strain", "db_xref", "note", "country")
    got = features_of(path, *(DeclaredFeature(n) for n in names), DeclaredFeature("gc", "numeric"))
    assert got[0] == {"organism": "Escherichia phage Lambda", "mol_type": "genomic DNA", "strain": "cI857",
                      "db_xref": "taxon:10710;BioSample:SAMN1", "country": None, "gc": None,
                      "note": NOTE}  # fmt: skip
    assert got[1] == dict.fromkeys((*names, "gc"))
    assert [r.features for r in read_records(path, ReaderConfig())] == [{}, {}]


def test_shards_keep_features_and_kinds_and_read_back_as_the_file_reads(tmp_path: Path, data_dir: Path, cli) -> None:
    table, want = gene_table(tmp_path, data_dir, n=40)
    out = tmp_path / "shards"
    flags = ["--id-column", "id", "--feature-column", "class", "--feature-column", "gc:numeric"]
    code, _, err = cli("shard-fasta", table, out, "--quiet", "--val-fraction", "0.3", "--block-bases", "20000", *flags)
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["features"] == {"class": "categorical", "gc": "numeric"}
    assert set(manifest["splits"]) == {"train", "val"} and manifest["splits"]["val"]["samples"] > 0
    stored = {rid: meta["features"] for split in ("train", "val") for rid, _, meta in read_shards(out, split)}
    assert stored == {f"g{i}": w for i, w in enumerate(want)}  # in each sample's metadata, None where missing
    from_file = {r.id: r.features for r in iter_input(table, ReaderConfig(id_column="id", features=(CLASS, GC)))}
    assert {r.id: r.features for r in iter_input(out)} == from_file
    code, _, err = cli("shard-verify", out)
    assert code == 0, err


def test_shards_without_features_read_as_before_and_a_bad_manifest_is_refused(
    tmp_path: Path, data_dir: Path, cli
) -> None:
    table, _ = gene_table(tmp_path, data_dir, n=6)
    old = tmp_path / "old"
    assert cli("shard-fasta", table, old, "--quiet", "--id-column", "id")[0] == 0
    manifest = json.loads((old / "manifest.json").read_text())
    assert "features" not in manifest  # nothing declared: the manifest written before features existed
    assert load_manifest(old)["features"] == {}
    assert [r.features for r in iter_input(old)] == [{}] * 6
    for bad, words in (({"gc": "float"}, "'gc' must be numeric or categorical"), (["gc"], "must be a JSON object")):
        manifest["features"] = bad
        (old / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(ShardError, match=words) as exc:
            load_manifest(old)
        assert "\n" not in str(exc.value)
    # a manifest declaring a feature its samples do not hold: one line naming the record
    manifest["features"] = {"gc": "numeric"}
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"record 'g0': no 'features' in its metadata"):
        list(iter_input(old))


def test_embed_keeps_features_and_search_filters_and_shows_them(tmp_path: Path, data_dir: Path, cli) -> None:

    from gene_ae.model.checkpoint import save as save_checkpoint

    cfg, tiny = tiny_model()
    ckpt = save_checkpoint(tmp_path / "ckpt", cfg, tiny.model)
    table, want = gene_table(tmp_path, data_dir, n=24)
    flags = ["--id-column", "id", "--feature-column", "class", "--feature-column", "gc:numeric"]
    code, _, err = cli("gene-ae", "embed", "--model", ckpt, "--input", table, "--out", tmp_path / "idx", *flags)
    assert code == 0, err
    seq = dog_rows(data_dir, 1)[0][0]
    query = tmp_path / "q.fa"
    query.write_text(f">q\n{seq}\n")
    cut = 0.5
    passing = {f"g{i}": w for i, w in enumerate(want) if w["gc"] is not None and w["gc"] > cut}
    assert 0 < len(passing) < len(want)

    def search(index: Path, *flags: str) -> tuple[int, str, str]:
        every = ("--sources", "dense,windows,sparse")  # the record vectors rank every record, k-mers or not
        return cli("gene-ae", "search", "--index", index, query, "-k", "24", "--rerank", "0", *every, *flags)

    code, out, err = search(tmp_path / "idx", "--where", f"gc > {cut}", "--show-features", "class,gc")
    assert code == 0, err
    header, *rows = [line.split("\t") for line in out.splitlines()]
    assert header[-2:] == ["class", "gc"]
    hit = header.index("subject_id")
    assert {r[hit]: (r[-2], float(r[-1])) for r in rows} == {k: (w["class"] or "", w["gc"]) for k, w in passing.items()}
    code, _, err = search(tmp_path / "idx", "--where", "colour == 'red'")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "colour" in err
    # a shard directory brings its features and kinds from the manifest, with no flag
    shards = tmp_path / "shards"
    assert cli("shard-fasta", table, shards, "--quiet", *flags)[0] == 0
    code, _, err = cli("gene-ae", "embed", "--model", ckpt, "--input", shards, "--out", tmp_path / "idx2")
    assert code == 0, err
    code, out, err = search(tmp_path / "idx2", "--where", "class == '4'", "--show-features", "gc")
    assert code == 0, err
    got = {r[hit]: r[-1] for r in [line.split("\t") for line in out.splitlines()][1:]}
    assert got == {f"g{i}": "" if w["gc"] is None else f"{w['gc']:g}" for i, w in enumerate(want) if w["class"] == "4"}
    # appending to an index that holds features asks for them, before anything is embedded
    code, _, err = cli("gene-ae", "embed", "--append", "--input", table, "--out", tmp_path / "idx", "--id-column", "id")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "--feature-column class:categorical" in err
