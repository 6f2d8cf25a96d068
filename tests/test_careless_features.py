"""What a careless user did to features, filters and indexes in this round's probe (issue 19's closing note),
each now a one-line error or a warning, never a traceback, a silent empty answer or a silently wrong value."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from shared import one_line_error, tiny_model

from gene_ae.core.features import FeatureColumns, where
from gene_ae.model.checkpoint import save as save_checkpoint
from gene_ae.model.features import ModelFeature, parse_features
from gene_ae.train.data import fit_features
from shard_tools.declared import DeclaredFeature, parse_feature_column
from shard_tools.inputs import ReaderConfig, read_records
from shard_tools.record import InputError

SEQ = "ACGTTGCAAGGCTTACCGATGCATGCAAGTCCGATTGACCATGGTTACGATCGGATCCATGACGTAGCTAGCATCGATGCTAGCATGCATCGATCG"


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A tiny untrained model's index of 12 genes with a `family` and a feature named like a hits column."""
    from gene_ae.cli import main

    root = tmp_path_factory.mktemp("careless")
    cfg, tiny = tiny_model(64, 32)
    ckpt = save_checkpoint(root / "ckpt", cfg, tiny.model)
    rng = np.random.default_rng(0)
    rows = ["".join(rng.choice(list("ACGT"), 300)) for _ in range(12)]
    table = root / "genes.tsv"
    table.write_text(
        "id\tsequence\tfamily\tscore\n" + "".join(f"g{i}\t{s}\tf{i % 3}\t{i}\n" for i, s in enumerate(rows))
    )
    flags = ["--id-column", "id", "--feature-column", "family", "--feature-column", "score:numeric"]
    with pytest.raises(SystemExit) as done:
        main(["embed", "--model", str(ckpt), "--input", str(table), "--out", str(root / "idx"), *flags])
    assert done.value.code in (0, None)
    query = root / "q.fa"
    query.write_text(f">q\n{rows[4]}\n")
    return root / "idx", query, table


def test_deep_or_empty_filters_are_one_line_errors() -> None:
    cols = FeatureColumns.from_rows({"gc": "numeric"}, [{"gc": 0.6}, {"gc": 0.4}])
    for text, words in (("(" * 3000 + "gc > 0.5" + ")" * 3000, "nested more than"), ("not " * 5000 + "gc > 0.5",
                        "nested more than"), ("", "empty filter"), ("   ", "empty filter")):  # fmt: skip
        with pytest.raises(ValueError) as exc:
            where(text, cols)
        assert len(str(exc.value)) < 200 and words in str(exc.value)


def test_search_bounds_filters_and_says_when_nothing_passes(index, cli) -> None:
    idx, query, _ = index
    for flags, words in ((["-k", "1000000000"], "-k"), (["--rerank", "1000000000"], "--rerank"),
                         (["--where", ""], "empty filter")):  # fmt: skip
        code, _, err = cli("gene-ae", "search", "--index", idx, query, *flags)
        assert code != 0
        one_line_error(err, words)
    code, out, err = cli("gene-ae", "search", "--index", idx, query, "--where", 'family == "none"')
    assert code == 0 and len(out.splitlines()) == 1 and "no record passes --where" in one_line_error(err)
    code, out, err = cli("gene-ae", "search", "--index", idx, query, "--rerank", "0", "--show-features",
                         "score,family,score")  # fmt: skip
    header = out.splitlines()[0].split("\t")
    assert code == 0 and header.count("score") == 1 and header[-2:] == ["feature.score", "family"], header


def test_append_refuses_build_flags_it_would_ignore(index, cli) -> None:
    idx, _, table = index
    code, _, err = cli("gene-ae", "embed", "--append", "--input", table, "--out", idx, "--vector-codec", "f16")
    assert code == 1 and "leave --vector-codec out" in one_line_error(err)


@pytest.mark.parametrize("name", ["gc-content", "GC%", "and", "1st", "a b", "x=y"])
def test_feature_names_a_filter_cannot_write_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="--feature-column"):
        parse_feature_column(name)


@pytest.mark.parametrize("value", ["1_000", "\u0663", "0x10", "1,5", "inf"])
def test_numbers_are_plain_decimal(value: str, tmp_path: Path) -> None:
    table = tmp_path / "t.tsv"
    table.write_text(f"id\tsequence\tgc\na\t{SEQ}\t{value}\n")
    with pytest.raises(InputError, match="declared numeric but holds"):
        list(read_records(table, ReaderConfig(id_column="id", features=(DeclaredFeature("gc", "numeric"),))))


def test_an_unclosed_quote_and_a_doubled_column_are_errors(tmp_path: Path) -> None:
    fasta = tmp_path / "q.fa"
    fasta.write_text(f'>a note="unterminated\n{SEQ}\n')
    with pytest.raises(InputError, match=r"q.fa:1: record 'a': header value of 'note' opens a quote"):
        list(read_records(fasta, ReaderConfig(features=(DeclaredFeature("note"),))))
    table = tmp_path / "t.tsv"
    table.write_text(f"id\tsequence\tgc\tgc\na\t{SEQ}\t1\t2\n")
    with pytest.raises(InputError, match="column 'gc' appears 2 times"):
        list(read_records(table, ReaderConfig(id_column="id", features=(DeclaredFeature("gc", "numeric"),))))


def test_shard_fasta_warns_of_a_feature_no_record_holds_and_names_a_missing_folder(tmp_path: Path, cli) -> None:
    fasta = tmp_path / "g.fa"
    fasta.write_text(f">a family=x\n{SEQ}\n>b family=y\n{SEQ}\n")
    code, _, err = cli("shard-fasta", "--quiet", "--feature-column", "famly", fasta, tmp_path / "out")
    assert code == 0 and "feature 'famly' has no value in any of the 2 records" in one_line_error(err)
    code, _, err = cli("shard-fasta", "--quiet", fasta, tmp_path / "no" / "such" / "out")
    assert code == 1 and "its folder" in one_line_error(err) and ".tmp" not in err


def test_model_feature_specs_and_signals_that_cannot_work(tmp_path: Path, cli) -> None:
    with pytest.raises(ValueError, match="want NAME:KIND:USE:WEIGHT"):
        parse_features("family:categorical:signal:0.5:junk")
    fasta = tmp_path / "g.fa"
    fasta.write_text("".join(f">r{i} family=f{i}\n{SEQ}\n" for i in range(6)))  # every value once
    assert cli("shard-fasta", "--quiet", "--val-fraction", "0", "--feature-column", "family", fasta,
               tmp_path / "s")[0] == 0  # fmt: skip
    with pytest.raises(ValueError, match="none in two records"):
        fit_features(tmp_path / "s", (ModelFeature("family", "categorical", "signal"),))
    with pytest.raises(ValueError, match="declared numeric, but the shards hold it as categorical"):
        fit_features(tmp_path / "s", (ModelFeature("family", "numeric", "vector"),))
