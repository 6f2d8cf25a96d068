"""`gene-ae` as a careless or hostile user meets it: numbers checked while parsing, stdin read as a stream,
ids that would break a column refused, BLAST tabular output, --version and help that shows every default.

A tiny untrained model and a small index of real dog genes; the CLI runs in-process through `main(argv)` or,
where the process boundary matters (stdin, TMPDIR, --version), as `python -m gene_ae.cli` in a subprocess.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import os
import select
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from shared import REPO, edit_entries, insdc_bytes, text_blob, tiny_model

from gene_ae.cli import build_parser, main, output
from gene_ae.cli.common import Given
from gene_ae.core.mutate import mutate
from gene_ae.core.records import iter_input
from gene_ae.index import build as embedding
from gene_ae.model.checkpoint import save as save_checkpoint
from shard_tools.alphabet import decode
from shard_tools.inputs import ReaderConfig
from shard_tools.record import Record
from shard_tools.writer import ShardConfig, ShardWriter

WINDOW = 256


@pytest.fixture(scope="module")
def world(tmp_path_factory, data_dir: Path) -> dict:
    """A checkpoint, 20 dog genes as FASTA, an index of them and a query file (two exact copies, one mutated)."""
    root = tmp_path_factory.mktemp("cli")
    cfg, encoder = tiny_model(WINDOW, 64)
    ckpt = save_checkpoint(root / "ckpt", cfg, encoder.model)
    genes = list(iter_input(data_dir / "genefam" / "dog_sample.tsv.gz", ReaderConfig(label_column="class")))[:20]
    (root / "genes.fa").write_text("".join(f">{g.id}_g class={g.label}\n{decode(g.tokens)}\n" for g in genes))
    records = list(iter_input(root / "genes.fa"))
    embed = partial(embedding.embed_local, encoder, batch_size=64)
    model = embedding.ModelInfo(uri=str(ckpt), version="", dim=64, window=WINDOW)
    embedding.build_index(iter(records), embed, model, root / "index", embedding.BuildConfig())
    far = decode(mutate(genes[6].tokens, 0.1, np.random.default_rng(3)))
    query = f">exact3\n{decode(genes[3].tokens)}\n>exact9\n{decode(genes[9].tokens)}\n>mut6\n{far}\n"
    (root / "q.fa").write_text(query)
    return {"root": root, "ckpt": ckpt, "index": root / "index", "q": root / "q.fa", "query": query, "genes": genes}


def gene_ae(capsys, *args: object) -> tuple[int, str, str]:
    """`gene-ae ARGS` in this process: (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return done.value.code, out.out, out.err


def subprocess_cli(*args: object, stdin: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gene_ae.cli", *map(str, args)],
        cwd=REPO,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


# ----------------------------------------------------------------------------- 1. numbers checked at parse


@pytest.mark.parametrize(
    ("command", "flag", "value"),
    [
        ("search", "-k", "0"),
        ("search", "-k", "-3"),
        ("search", "-k", "1.5"),
        ("search", "-k", "ten"),
        ("search", "--batch-size", "0"),
        ("search", "--rerank", "-1"),
        ("embed", "--stride", "-1"),
        ("embed", "--batch-size", "0"),
        ("embed", "--ray-workers", "0"),
        ("eval", "--n-queries", "0"),
        ("eval", "--rerank", "-2"),
        ("eval", "--seed", "-1"),
        ("serve", "--port", "70000"),
    ],
)
def test_bad_numbers_are_one_line_usage_errors_before_anything_runs(world, capsys, command, flag, value) -> None:
    out = world["root"] / f"out-{command}{flag}{value}"
    common = {
        "search": ("--index", world["index"], world["q"]),
        "embed": ("--model", world["ckpt"], "--input", world["q"], "--out", out),
        "eval": ("--model", world["ckpt"], "--input", world["q"], "--out", out),
        "serve": ("--model", "models:/gene-ae-encoder@production"),
    }[command]
    code, stdout, err = gene_ae(capsys, command, *common, flag, value)
    lines = err.strip().splitlines()
    assert code == 1 and stdout == "" and len(lines) == 1, err
    assert lines[0].startswith(f"gene-ae {command}: error: argument {flag}: must be an integer"), err
    assert repr(value) in lines[0] and not out.exists()
    assert gc.isenabled()  # main pauses collection while it starts, and resumes it even when parsing fails


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_evalue_is_a_finite_number_at_least_0(world, capsys, value) -> None:
    """`--evalue -1` and `--evalue nan` were taken, and every hit silently dropped (exit 0, a header and no row)."""
    code, stdout, err = gene_ae(capsys, "search", "--index", world["index"], world["q"], "--evalue", value)
    lines = err.strip().splitlines()
    assert code == 1 and stdout == "" and len(lines) == 1, err
    assert lines[0].startswith("gene-ae search: error: argument --evalue: must be a number >= 0"), err
    assert repr(value) in lines[0]


# ------------------------------------------------------------------------------- 2. stdin as a stream


def test_stdin_is_read_as_it_arrives_and_nothing_goes_to_the_temp_folder(world, tmp_path) -> None:
    """The first record comes out while stdin is still open (no spooling to a temporary file), and a real
    `gene-ae search -` with TMPDIR pointed at an empty folder leaves it empty."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    code = "from gene_ae.core.records import iter_input\nit = iter_input('-')\nprint(next(it).id, flush=True)\n"
    code += "print(sum(1 for _ in it), flush=True)\n"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        proc.stdin.write(">first\nACGT\n>second\nACGTA\n")
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        assert ready, "no record before the end of stdin: the input was spooled, not streamed"
        assert proc.stdout.readline().strip() == "first"
        proc.stdin.write(">third\nGG\n")
        proc.stdin.close()
        assert proc.stdout.readline().strip() == "2" and proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        proc.wait()
    done = subprocess_cli("search", "--index", world["index"], "-", "-k", "1", stdin=world["query"], env=env)
    assert done.returncode == 0, done.stderr
    rows = [line.split("\t") for line in done.stdout.splitlines()[1:]]
    genes = world["genes"]
    assert [r[:2] for r in rows[:2]] == [["exact3", f"{genes[3].id}_g"], ["exact9", f"{genes[9].id}_g"]]
    assert list(tmp.iterdir()) == []


def test_stdin_cannot_be_both_the_query_and_the_collection(world, capsys) -> None:
    code, _, err = gene_ae(capsys, "search", "--index", world["index"], "-", "--collection", "-")
    assert code == 1 and "can be the query or --collection, not both" in err


# ---------------------------------------------------------------------- 3. text that would break a column


def test_a_tab_or_escape_in_an_indexed_id_or_label_is_refused_naming_the_file(world, capsys, tmp_path) -> None:
    """A search reads the ids it reports (and the labels, where a reported record has one) and refuses damaged ones;
    `gene-ae verify` reads them all, so it also refuses a label of a record that has none (this index's)."""
    cases = (("ids", "evil\tid", "record 3: control character"), ("labels", "red\x1b[31m", "record 3: control"),
             ("ids", "two\nlines", "ids for"))  # fmt: skip
    for column, value, fault in cases:
        bad = tmp_path / f"index-{column}-{len(value)}"
        shutil.copytree(world["index"], bad)

        def put(blob: np.ndarray, value: str = value) -> np.ndarray:
            texts = blob.tobytes().decode().split("\n")[:-1]
            return text_blob(*texts[:3], value, *texts[4:])

        edit_entries(bad, sign=True, **{column: put})  # as if gene-ae embed had written it: the check must catch it
        out = tmp_path / "hits.tsv"
        commands = [("verify", "--index", bad)] + ([("search", "--index", bad, world["q"], "--out", out)]
                                                   if column == "ids" else [])  # fmt: skip
        for command in commands:
            code, stdout, err = gene_ae(capsys, *command)
            lines = err.strip().splitlines()
            assert code == 1 and stdout == "" and len(lines) == 1 and not out.exists(), (command, err)
            assert f"{bad / 'entries.npz'}: " in lines[0] and fault in lines[0], lines[0]


def test_a_control_character_in_a_shard_record_id_is_refused(world, capsys, tmp_path) -> None:
    """Shards written by an older shard-fasta (or by hand) may hold such ids; readers refuse them."""
    tokens = world["genes"][0].tokens
    shards = tmp_path / "shards"
    records = [Record("fine", "", tokens, "x", 1), Record("bad\tid", "", tokens[:300], "x", 3)]
    ShardWriter(shards, ShardConfig(val_fraction=0.0)).write(iter(records), {})
    out = tmp_path / "rec.tsv"
    code, stdout, err = gene_ae(capsys, "reconstruct", "--model", world["ckpt"], "--input", shards, "--out", out)
    assert code == 1 and stdout == "" and not out.exists(), err
    assert f"{shards}: split 'train': record 'bad\\tid': control character '\\t' in the id; refused" in err


def test_rows_refuse_control_characters_and_keep_unicode() -> None:
    assert output.row(["Ünïcödé", 3, "a b"]) == "Ünïcödé\t3\ta b\n"
    for bad in ("a\tb", "a\nb", "x\x00", "\x1b[31mred", "line\u2028sep", "del\x7f"):
        with pytest.raises(ValueError, match="control character"):
            output.row(["q", bad])


def test_format_choices_include_genbank_and_embl(world, capsys, tmp_path) -> None:
    gene = world["genes"][3]
    for fmt in ("genbank", "embl"):
        query = tmp_path / f"q.{fmt}.txt"  # a name that says nothing: --format decides
        query.write_bytes(insdc_bytes([("QX000001.1", "a dog gene", decode(gene.tokens))], fmt))
        code, stdout, err = gene_ae(capsys, "search", "--index", world["index"], query, "--format", fmt, "-k", "1")
        assert code == 0, err
        assert stdout.splitlines()[1].split("\t")[:2] == ["QX000001.1", f"{gene.id}_g"]


# ------------------------------------------------------------------------------------- 4. BLAST tabular


def test_blast6_has_blast_columns_and_one_based_inclusive_coordinates(world, capsys) -> None:
    base = ("search", "--index", world["index"], world["q"], "-k", "4")
    code, tsv, err = gene_ae(capsys, *base)
    assert code == 0, err
    header, *rows = [line.split("\t") for line in tsv.splitlines()]
    assert header[:2] == ["query_id", "subject_id"] and header[-1] == "identity"
    col = {name: i for i, name in enumerate(header)}
    code, blast, err = gene_ae(capsys, *base, "--outfmt", "blast6")
    assert code == 0, err
    hits = [line.split("\t") for line in blast.splitlines()]
    assert len(hits) == len(rows) == 12 and all(len(h) == 12 for h in hits)
    for h, r in zip(hits, rows):
        qid, sid, pident, length, mismatch, gapopen, qstart, qend, sstart, send, evalue, bitscore = h
        assert [qid, sid] == r[:2]
        # the same alignment in both formats, every column computed (no placeholders)
        for name, value in zip(("pident", "length", "mismatch", "gapopen", "qstart", "qend", "sstart", "send",
                                "evalue", "bitscore"), h[2:]):  # fmt: skip
            assert r[col[name]] == value, name
        assert 1 <= int(qstart) < int(qend) <= int(r[col["query_length"]])
        lo, hi = sorted((int(sstart), int(send)))  # a weak hit may align on the minus strand: sstart > send
        assert 1 <= lo < hi <= int(r[col["subject_length"]]) and (int(sstart) < int(send)) == (r[col["strand"]] == "+")
        assert int(length) >= max(int(qend) - int(qstart), hi - lo) + 1
        assert float(bitscore) > 0 and float(evalue) >= 0
    first = hits[0]
    assert first[:4] == ["exact3", f"{world['genes'][3].id}_g", "100.000", first[7]]
    assert first[4:8] == ["0", "0", "1", first[3]] and first[8:10] == ["1", first[7]] and first[10] == "0.0"
    mutated = [h for h in hits if h[0] == "mut6"][0]
    assert int(mutated[4]) > 0 and float(mutated[2]) < 100  # a mutated copy has mismatches
    code, plain, err = gene_ae(capsys, *base, "--outfmt", "blast6", "--rerank", "0")
    assert code == 1 and "leave --rerank on" in err and plain == ""


def test_outfmt_6_with_named_columns_and_evalue_filter(world, capsys) -> None:
    base = ("search", "--index", world["index"], world["q"], "-k", "4")
    code, out, err = gene_ae(capsys, *base, "--outfmt", "6 qseqid sseqid sstrand nident qlen slen score")
    assert code == 0, err
    rows = [line.split("\t") for line in out.splitlines()]
    assert rows and all(len(r) == 7 and r[2] in ("plus", "minus") for r in rows)
    assert rows[0][:6] == ["exact3", f"{world['genes'][3].id}_g", "plus", rows[0][4], rows[0][4], rows[0][4]]
    assert int(rows[0][6]) == 2 * int(rows[0][4])  # an exact copy: 2 a matching base
    code, kept, err = gene_ae(capsys, *base, "--outfmt", "blast6", "--evalue", "1e-100")
    assert code == 0, err
    assert 0 < len(kept.splitlines()) < len(rows) and all(float(r.split("\t")[10]) <= 1e-100 for r in kept.splitlines())
    code, _, err = gene_ae(capsys, *base, "--outfmt", "6 qseqid nonsense")
    assert code == 1 and "unknown column 'nonsense'" in err


# ----------------------------------------------------------------------------- 5. --version and help


def test_version_on_gene_ae_and_train() -> None:
    done = subprocess_cli("--version")
    assert done.returncode == 0 and done.stdout.startswith("gene-ae ") and done.stdout.split()[1][0].isdigit()
    train = subprocess.run(
        [sys.executable, "-m", "gene_ae.train", "--version"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert train.returncode == 0 and train.stdout.split()[-1] == done.stdout.split()[1], train.stderr


def test_every_option_has_help_with_its_default_and_every_subcommand_says_what_it_does() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(commands.choices) == {"embed", "search", "remove", "verify", "eval", "reconstruct", "promote", "serve"}
    for name, sub in commands.choices.items():
        summary = next(a.help for a in commands._choices_actions if a.dest == name)
        assert sub.description.lower().startswith(summary.lower()), name
        text = sub.format_help()
        for action in sub._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction | argparse._VersionAction):
                continue
            assert action.help, (name, action.option_strings)
            if action.option_strings and not action.required:
                assert f"{action.help} (default: {action.default})" in " ".join(text.split()), (name, action.dest)
    overwrite = next(a for a in commands.choices["embed"]._actions if a.dest == "overwrite")
    assert "index.json" in overwrite.help and "never deleted" in overwrite.help


@pytest.mark.parametrize(
    ("flags", "given"),
    [((), None), (("--fast",), {}), (("--rerank", "5", "--fast"), {"rerank": 5}),
     (("--fast", "--deep", "9"), {"deep": 9}), (("--rerank", "40", "--fast"), {"rerank": 40})],
)  # fmt: skip
def test_search_fast_sets_what_was_not_given_whatever_the_order(flags, given) -> None:
    from gene_ae.cli.search import preset
    from gene_ae.search.engine import FAST, SearchConfig

    args = build_parser().parse_args(["search", "--index", "i", "q.fa", *flags])
    preset(args)
    default = SearchConfig()
    expected = (
        (default.rerank, default.deep) if given is None else tuple({**FAST, **given}[n] for n in ("rerank", "deep"))
    )
    assert (args.rerank, args.deep) == expected
    assert FAST.keys() == {"rerank", "deep"} and (FAST["rerank"], FAST["deep"]) != (default.rerank, default.deep)
    search = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["search"]
    preset_options = [a for a in search._actions if a.dest in FAST]
    assert len(preset_options) == len(FAST) and all(isinstance(a, Given) for a in preset_options)  # given: kept


def test_search_fast_is_refused_for_a_genome_comparison(world, capsys) -> None:
    code, _, err = gene_ae(capsys, "search", "--index", world["index"], world["q"], "--fast", "--outfmt", "ani")
    assert code != 0 and "--fast applies to hits, not to --outfmt ani" in err


def test_promote_keeps_version_as_the_model_version(capsys) -> None:
    args = build_parser().parse_args(["promote", "--version", "3"])
    assert args.version == "3" and args.alias == "production"


def test_hits_file_is_replaced_whole_and_a_directory_is_refused(world, capsys, tmp_path) -> None:
    out = tmp_path / "hits.tsv"
    out.write_text("old\n")
    code, _, err = gene_ae(capsys, "search", "--index", world["index"], world["q"], "-k", "2", "--out", out)
    assert code == 0 and out.read_text().startswith("query_id\t") and len(out.read_text().splitlines()) == 7, err
    folder = tmp_path / "results"
    (folder / "keep").mkdir(parents=True)
    code, _, err = gene_ae(capsys, "search", "--index", world["index"], world["q"], "--out", folder)
    assert code == 1 and "is a directory" in err and (folder / "keep").is_dir()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_reconstruct_out_is_a_tsv_of_every_record(world, capsys, tmp_path) -> None:
    out = tmp_path / "rec.tsv"
    code, stdout, err = gene_ae(capsys, "reconstruct", "--model", world["ckpt"], "--input", world["q"], "--out", out)
    assert code == 0 and stdout == "", err
    header, *rows = [line.split("\t") for line in out.read_text().splitlines()]
    assert header == ["id", "length", "identity", "reconstruction"]
    assert [r[0] for r in rows] == ["exact3", "exact9", "mut6"]
    assert all(len(r[3]) == int(r[1]) and 0 <= float(r[2]) <= 1 for r in rows)
    assert "bits a base as stored" in err.splitlines()[-1]  # the summary names the latent's rate


def test_gzip_query_from_stdin(world, tmp_path) -> None:
    """Compressed stdin is detected by magic bytes, as for files (the same reader as shard-fasta's)."""
    done = subprocess.run(
        [sys.executable, "-m", "gene_ae.cli", "search", "--index", str(world["index"]), "-", "-k", "1"],
        cwd=REPO,
        input=gzip.compress(world["query"].encode()),
        capture_output=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().splitlines()[1].split("\t")[0] == "exact3"
