"""shard_tools.inputs: streaming FASTA/FASTQ/TSV parsing, compression by magic bytes, and InputError context."""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import io
import random
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import pytest
import zstandard
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from shared import COMPRESSORS, examples, insdc_bytes, lambda_phage

from shard_tools.alphabet import FIRST_BASE, N, decode, normalise
from shard_tools.cli import shard_fasta_main
from shard_tools.detect import detect_format
from shard_tools.inputs import ReaderConfig, read_records
from shard_tools.reader import load_manifest, read_shards
from shard_tools.record import InputError

# ids: any printable, non-space characters (FASTA splits the id from the description at the first space)
IDS = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FF, blacklist_categories=("C", "Z")), min_size=1
)
DESCS = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30).map(str.strip)
SEQS = st.text(alphabet="ACGTNacgtnRYKMSWryu", min_size=1, max_size=400)
MAGIC_PREFIXES = [b"", b">", b"@", b"\x1f\x8b", b"\x1f\x8b\x08\x00", b"BZh9", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd"]


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def fasta_bytes(records: list[tuple[str, str, str]], width: int, newline: str) -> bytes:
    out = []
    for rid, desc, seq in records:
        out.append(f">{rid} {desc}".rstrip() + newline)
        out.extend(seq[i : i + width] + newline for i in range(0, len(seq), width))
    return "".join(out).encode()


# --- property tests -----------------------------------------------------------------------------------------


@settings(max_examples=examples(60), deadline=None)
@given(
    st.lists(st.tuples(IDS, DESCS, SEQS), min_size=1, max_size=8),
    st.integers(1, 120),
    st.sampled_from(["\n", "\r\n"]),
    st.sampled_from(sorted(COMPRESSORS)),
)
def test_random_fasta_round_trips_through_read_records(records, width, newline, codec) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp) / "in.fa", COMPRESSORS[codec](fasta_bytes(records, width, newline)))
        got = list(read_records(path, ReaderConfig()))
    assert [(r.id, r.description, decode(r.tokens)) for r in got] == [(i, d, normalise(s)) for i, d, s in records]
    assert all(r.tokens.min() >= FIRST_BASE and r.tokens.max() <= N for r in got)


@settings(max_examples=examples(60), deadline=None)
@given(st.lists(st.tuples(IDS, SEQS), min_size=1, max_size=8), st.sampled_from(["\n", "\r\n"]))
def test_random_fastq_round_trips_through_read_records(records, newline) -> None:
    text = "".join(f"@{rid}{newline}{seq}{newline}+{newline}{'I' * len(seq)}{newline}" for rid, seq in records)
    with tempfile.TemporaryDirectory() as tmp:
        got = list(read_records(write(Path(tmp) / "in.fq", text.encode()), ReaderConfig()))
    assert [(r.id, decode(r.tokens)) for r in got] == [(rid, normalise(seq)) for rid, seq in records]


@settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(IDS, DESCS, SEQS), min_size=1, max_size=6), st.integers(1, 80))
def test_random_fasta_round_trips_through_shard_fasta(records, width) -> None:
    ids = [rid for rid, _, _ in records]
    with tempfile.TemporaryDirectory() as tmp:
        src = write(Path(tmp) / "in.fa", fasta_bytes(records, width, "\n"))
        out = Path(tmp) / "out"
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = shard_fasta_main([str(src), str(out), "--quiet", "--val-fraction", "0.3", "--block-bases", "64"])
        assert rc == 0, err.getvalue()
        back = [(i, decode(t), m) for split in ("train", "val") for i, t, m in read_shards(out, split)]
        manifest = load_manifest(out)
    assert sorted((i, s, m["desc"]) for i, s, m in back) == sorted((i, normalise(s), d) for i, d, s in records)
    keys = [m["key"] for _, _, m in back]
    assert len(set(keys)) == len(keys) == len(ids)
    assert manifest["summary"]["records"] == len(records)
    assert manifest["summary"]["bases"] == sum(len(normalise(s)) for _, _, s in records)


@settings(max_examples=examples(150), deadline=None)
@given(
    st.sampled_from(MAGIC_PREFIXES),
    st.binary(max_size=300),
    st.sampled_from(["x.bin", "x.tsv", "x.csv", "x.fa"]),
    st.booleans(),
)
def test_random_bytes_give_input_error_or_valid_records(prefix, body, name, skip) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp) / name, prefix + body)
        try:
            records = list(read_records(path, ReaderConfig(skip_invalid=skip), []))
        except InputError as exc:
            message = str(exc)
            assert message.startswith(str(path))
            assert "\n" not in message and "\r" not in message
            return
    for rec in records:  # whatever parsed must be clean DNA with an id
        assert rec.id and rec.tokens.size > 0
        assert rec.tokens.min() >= FIRST_BASE and rec.tokens.max() <= N


def reference_decode(blob: bytes) -> bytes | None:
    """The blob decoded in one piece by the codec its first bytes name (plain when none), as an independent
    reading of what the streaming reader should see; None when that codec refuses it (corrupt, truncated)."""
    import bz2
    import lzma

    codecs = {b"\x1f\x8b": gzip.decompress, b"BZh": bz2.decompress, b"\xfd7zXZ\x00": lzma.decompress}
    try:
        for magic, decode_with in codecs.items():
            if blob.startswith(magic):
                return decode_with(blob)
        if not blob.startswith(b"\x28\xb5\x2f\xfd"):
            return blob
        out, rest = [], blob
        while rest:  # concatenated frames, each complete
            frame = zstandard.ZstdDecompressor().decompressobj()
            out.append(frame.decompress(rest))
            if not frame.eof:
                return None
            rest = frame.unused_data
        return b"".join(out)
    except (
        OSError,
        EOFError,
        ValueError,
        lzma.LZMAError,
        zstandard.ZstdError,
        zlib.error,
    ):  # ValueError: bz2 cut short
        return None


def outcome(path: Path) -> tuple[str, object]:
    """What reading a file gives: its records (id, bases), or its one-line error with the path taken out."""
    try:
        return "records", [(r.id, decode(r.tokens)) for r in read_records(path, ReaderConfig(), [])]
    except InputError as exc:
        assert "\n" not in str(exc)
        return "error", str(exc).replace(str(path), "PATH")


@settings(max_examples=examples(60), deadline=None)
@given(st.sampled_from(sorted(COMPRESSORS)), st.binary(min_size=1, max_size=200), st.data())
def test_corrupt_compressed_input_is_an_input_error(codec, payload, data) -> None:
    """A damaged compressed file is an InputError when its codec refuses it, and otherwise reads exactly as its
    decoded bytes read as a plain file: never an other exception, never records the codec would not give."""
    blob = bytearray(COMPRESSORS[codec](b">r1\n" + payload))
    for _ in range(data.draw(st.integers(1, 4))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    blob = bytes(blob[: data.draw(st.integers(1, len(blob)))])
    decoded = reference_decode(blob)
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp) / "x.fa", blob)
        if decoded is None:
            with pytest.raises(InputError):
                list(read_records(path, ReaderConfig(), []))
            return
        (Path(tmp) / "plain").mkdir()
        assert outcome(path) == outcome(write(Path(tmp) / "plain" / "x.fa", decoded))


@settings(max_examples=examples(40), deadline=None)
@given(st.sampled_from(MAGIC_PREFIXES), st.binary(max_size=300))
def test_random_bytes_through_cli_give_rc_1_and_one_line(prefix, body) -> None:
    assume(prefix + body)
    with tempfile.TemporaryDirectory() as tmp:
        src = write(Path(tmp) / "junk.dat", prefix + body)
        out = Path(tmp) / "out"
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = shard_fasta_main([str(src), str(out), "--quiet"])
        left = sorted(p.name for p in Path(tmp).iterdir())
        if rc == 0:
            assert (out / "manifest.json").is_file()
            return
        assert rc == 1
        lines = err.getvalue().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"shard-fasta: error: {src}")
        assert left == ["junk.dat"]  # no output directory, no hidden temp directory


# --- examples -----------------------------------------------------------------------------------------------


def test_compression_is_chosen_by_magic_not_name(tmp_path: Path) -> None:
    text = b">a x\nACGT\n>b\nGG\n"
    expected = [("a", "ACGT"), ("b", "GG")]
    for codec, compress in COMPRESSORS.items():
        path = write(tmp_path / f"{codec}.fasta", compress(text))  # misleading name on purpose
        assert [(r.id, decode(r.tokens)) for r in read_records(path, ReaderConfig())] == expected


def test_fasta_details(tmp_path: Path) -> None:
    text = b"\n\n>r1 first record\r\nacgt\r\n\r\nNNRY\r\n>r2\n  1 acgtacgtac\n 11 gg\n>r3\tdesc\nA\n"
    recs = list(read_records(write(tmp_path / "x.fa", text), ReaderConfig()))
    assert [(r.id, r.description, decode(r.tokens), r.line) for r in recs] == [
        ("r1", "first record", "ACGTNNNN", 3),
        ("r2", "", "ACGTACGTACGG", 7),
        ("r3", "desc", "A", 10),  # the id ends at the first whitespace, tab included (was "r3\tdesc" before #13)
    ]
    assert all(r.source == str(tmp_path / "x.fa") for r in recs)


def test_tsv_with_crlf_labels_and_ids(tmp_path: Path) -> None:
    text = b"name\tsequence\tclass\textra\r\nfoo bar\tacgt\t3\tx\r\n\r\nbaz\tGGNN\t0\ty\r\n"
    path = write(tmp_path / "t.txt", text)
    recs = list(read_records(path, ReaderConfig(id_column="name", label_column="class")))
    assert [(r.id, decode(r.tokens), r.fields) for r in recs] == [
        ("foo bar", "ACGT", {"label": "3", "extra": "x"}),
        ("baz", "GGNN", {"label": "0", "extra": "y"}),
    ]
    default_ids = [r.id for r in read_records(path, ReaderConfig())]
    assert default_ids == ["row1", "row3"]  # row number = physical line - 1


def test_csv(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", b"sequence,label\nACGT,a\nTTTT,b\n")
    recs = list(read_records(path, ReaderConfig(label_column="label")))
    assert [(decode(r.tokens), r.fields["label"]) for r in recs] == [("ACGT", "a"), ("TTTT", "b")]


def test_bundled_genefam_reads_with_labels(data_dir: Path) -> None:
    recs = list(read_records(data_dir / "genefam" / "dog_sample.tsv.gz", ReaderConfig(label_column="class")))
    assert len(recs) == 300
    assert {r.fields["label"] for r in recs} <= {str(c) for c in range(7)}
    assert sum(r.tokens.size for r in recs) == 630_603


def test_bundled_mpox_streams_long_records(data_dir: Path) -> None:
    recs = list(read_records(data_dir / "viruses" / "mpox_sample.fasta.gz", ReaderConfig()))
    assert [r.id for r in recs][:2] == ["PP601204.1", "OR943698.1"]
    assert min(r.tokens.size for r in recs) > 150_000
    assert sum(r.tokens.size for r in recs) == 1_182_610


@pytest.mark.parametrize(
    ("name", "content", "fmt"),
    [
        ("a.fa", b"  \n>x\nAC\n", "fasta"),
        ("a.fq", b"@x\nAC\n+\nII\n", "fastq"),
        ("a.dat", b"sequence\tclass\n", "tsv"),
        ("a.tsv", b"sequence\n", "tsv"),
        ("a.dat", b"sequence,class\n", "csv"),
        ("a.fa", b"", "fasta"),
    ],
)
def test_detect_format(name: str, content: bytes, fmt: str) -> None:
    assert detect_format(name, content) == fmt


@pytest.mark.parametrize(
    ("name", "content", "line", "record", "words"),
    [
        ("prot.fa", b">p1 kinase\nMKVLAAGIVGLLLA\n", 1, "p1", "non-nucleotide character 'L'"),
        ("empty.fa", b">a\nACGT\n>b\n>c\nGG\n", 3, "b", "no sequence"),
        ("noid.fa", b">\nACGT\n", 1, "", "empty record id"),
        ("q.fq", b"@r1\nACGT\n+\nIII\n", 4, "r1", "quality length 3 != sequence length 4"),
        ("q2.fq", b"@r1\nACGT\nIIII\nIIII\n", 3, "r1", "missing '+'"),
        ("q3.fq", b"@r1\nACGT\n", 1, "r1", "truncated FASTQ record"),
        ("noheader.fa", b"ACGTACGT\n", 1, None, "cannot tell the format"),
        ("bin.fa", b">x\nAC\x00GT\n", 1, None, "binary content"),
        ("nul.fa", b">x\nAC\n" + b"A" * 5000 + b"\x00\n", 3, "x", "binary content"),
        ("cols.tsv", b"seq\tclass\nACGT\t1\n", 1, None, "no column 'sequence'"),
        ("ragged.tsv", b"sequence\tclass\nACGT\t1\tx\n", 2, "row1", "3 columns, header has 2"),
        ("latin.fa", b">\xff\xfe\nACGT\n", 1, None, "not valid UTF-8"),
        ("colname.tsv", b"sequence\tcla\x1bss\nACGT\t1\n", 1, None, "control character '\\x1b' in column name"),
    ],
)
def test_bad_input_errors_carry_context(tmp_path: Path, name, content, line, record, words) -> None:
    path = write(tmp_path / name, content)
    with pytest.raises(InputError) as info:
        list(read_records(path, ReaderConfig()))
    exc = info.value
    assert (exc.path, exc.line, exc.record) == (str(path), line, record)
    assert words in str(exc)
    assert str(exc).startswith(f"{path}:{line}: ")
    if record:
        assert f"record {record!r}: " in str(exc)


def test_skip_invalid_keeps_good_records_and_lists_the_bad(tmp_path: Path) -> None:
    path = write(tmp_path / "mix.fa", b">ok1\nACGT\n>prot\nMKLLE\n>empty\n>ok2\nGGCC\n")
    skipped: list[str] = []
    recs = list(read_records(path, ReaderConfig(skip_invalid=True), skipped))
    assert [r.id for r in recs] == ["ok1", "ok2"]
    assert len(skipped) == 2
    assert "'prot'" in skipped[0] and "'empty'" in skipped[1] and "no sequence" in skipped[1]
    fq = write(tmp_path / "mix.fq", b"@a\nAC\n+\nII\n@b\nACG\n+\nII\n@c\nTT\n+\nII\n")
    skipped = []
    assert [r.id for r in read_records(fq, ReaderConfig(skip_invalid=True), skipped)] == ["a", "c"]
    assert len(skipped) == 1 and "'b'" in skipped[0]


def test_empty_and_header_only_inputs_yield_nothing(tmp_path: Path) -> None:
    assert list(read_records(write(tmp_path / "e.fa", b""), ReaderConfig())) == []
    assert list(read_records(write(tmp_path / "e.fa.gz", gzip.compress(b"")), ReaderConfig())) == []
    assert list(read_records(write(tmp_path / "h.tsv", b"sequence\tclass\n"), ReaderConfig())) == []
    assert list(read_records(write(tmp_path / "b.fa", b"\n \n\n"), ReaderConfig())) == []


# --- issue 13: truncated zstd, ids, control characters, GenBank/EMBL ------------------------------------------


RANDOM_DNA = b">a first\n" + bytes(random.Random(5).choices(b"ACGT", k=50_000)) + b"\n>b second\nACGTAC\n"


@pytest.mark.parametrize("codec", ["gz", "bz2", "xz", "zst"])
@pytest.mark.parametrize("keep", [0.3, 0.5, 0.9, -1])
def test_truncated_compressed_input_is_an_error_for_every_codec(tmp_path: Path, codec: str, keep: float) -> None:
    blob = COMPRESSORS[codec](RANDOM_DNA)
    cut = blob[: int(len(blob) * keep)] if keep > 0 else blob[:-1]
    path = write(tmp_path / f"cut.fa.{codec}", cut)
    with pytest.raises(InputError, match="cannot decompress") as info:
        list(read_records(path, ReaderConfig()))
    assert str(info.value).startswith(f"{path}: ")


def test_zstd_concatenated_frames_read_in_full(tmp_path: Path) -> None:
    cctx = zstandard.ZstdCompressor()
    blob = cctx.compress(b">a\nACGT\n") + cctx.compress(b">b\nGG\n") + cctx.compress(b"")
    recs = list(read_records(write(tmp_path / "x.fa.zst", blob), ReaderConfig()))
    assert [(r.id, decode(r.tokens)) for r in recs] == [("a", "ACGT"), ("b", "GG")]


def test_ids_end_at_the_first_whitespace_tab_included(tmp_path: Path) -> None:
    fasta = write(tmp_path / "t.fa", b">r1\tgene=abc\tproduct=x y\nACGT\n>r2 \t desc\nGG\n>r3\x0bv\nT\n")
    assert [(r.id, r.description) for r in read_records(fasta, ReaderConfig())] == [
        ("r1", "gene=abc product=x y"),
        ("r2", "desc"),
        ("r3", "v"),
    ]
    fastq = write(tmp_path / "t.fq", b"@read1\t1:N:0:ACGT\nACGT\n+\nIIII\n@read2 x\tY\nGG\n+\nII\n")
    assert [(r.id, r.description) for r in read_records(fastq, ReaderConfig())] == [
        ("read1", "1:N:0:ACGT"),
        ("read2", "x Y"),
    ]


@pytest.mark.parametrize(
    ("name", "content", "record", "char"),
    [
        ("nul_id.fa", b">ok\n" + b"A" * 5000 + b"\n>bad\x00id desc\nACGT\n", "bad\x00id", "\x00"),
        ("ansi_desc.fa", b">ok \x1b[31mred\x1b[0m\nACGT\n", "ok", "\x1b"),
        ("c1_id.fq", "@x\u0085y\nAC\n+\nII\n".encode(), "x\x85y", "\x85"),
        ("linesep.fa", ">a b\u2028c\nAC\n".encode(), "a", "\u2028"),
        ("label.tsv", b"sequence\tclass\nACGT\tfam\x1b[2J\n", "row1", "\x1b"),
        ("quoted.csv", b'name,sequence\n"a\tb",ACGT\n', "a\tb", "\t"),
        ("newline.csv", b'name,sequence\n"a\nb",ACGT\n', "a\nb", "\n"),
    ],
)
def test_control_characters_in_ids_descriptions_and_fields_are_refused(
    tmp_path: Path, name: str, content: bytes, record: str, char: str
) -> None:
    path = write(tmp_path / name, content)
    cfg = ReaderConfig(id_column="name") if name.endswith(".csv") else ReaderConfig(label_column="class")
    if not name.endswith((".csv", ".tsv")):
        cfg = ReaderConfig()
    with pytest.raises(InputError) as info:
        list(read_records(path, cfg))
    message = str(info.value)
    assert info.value.record == record
    assert f"control character {char!r}" in message and "refused" in message
    assert message.isprintable()  # the message itself is one printable line: repr escapes what it quotes
    skipped: list[str] = []
    kept = list(read_records(path, dataclasses.replace(cfg, skip_invalid=True), skipped))
    assert [r.id for r in kept] == (["ok"] if name == "nul_id.fa" else [])
    assert len(skipped) == 1


@pytest.mark.parametrize(
    ("name", "fmt", "codec"),
    [
        ("phage.gbk", "genbank", "plain"),
        ("phage.gb.gz", "genbank", "gz"),
        ("phage.genbank.xz", "genbank", "xz"),
        ("phage.embl", "embl", "plain"),
        ("phage.embl.zst", "embl", "zst"),
        ("phage.txt", "genbank", "bz2"),  # detected by content: LOCUS
        ("phage.dat", "embl", "plain"),  # detected by content: ID
    ],
)
def test_genbank_and_embl_inputs(tmp_path: Path, data_dir: Path, name: str, fmt: str, codec: str) -> None:
    rid, seq = lambda_phage(data_dir)
    records = [("J02459.1", "Escherichia phage Lambda, complete genome", seq), ("X1.1", "short one", "acgtnRY")]
    path = write(tmp_path / name, COMPRESSORS[codec](insdc_bytes(records, fmt)))
    got = list(read_records(path, ReaderConfig()))
    assert [(r.id, r.description, decode(r.tokens)) for r in got] == [(i, d, normalise(s)) for i, d, s in records]
    assert got[0].tokens.size == 48_502 and got[0].line == 1 and got[1].line > got[0].line
    assert list(read_records(path, ReaderConfig(format=fmt)))[1].id == "X1.1"


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        (
            "bad.gbk",
            b"LOCUS       X1  10 bp    DNA     linear   UNK 01-JAN-1980\nACCESSION   X1\n//\n",
            "malformed genbank record",
        ),
        (
            "contig.gbk",
            b"LOCUS       X1  10 bp    DNA     linear   UNK 01-JAN-1980\nCONTIG      join(A1.1:1..10)\n//\n",
            "record 'X1': no sequence",
        ),
        (
            "prot.gbk",
            b"LOCUS       P1  5 aa    linear   UNK 01-JAN-1980\nORIGIN\n        1 mkvll\n//\n",
            "non-nucleotide",
        ),
        (
            "latin.embl",
            b"ID   X1; SV 1; linear; DNA; STD; UNC; 4 BP.\nDE   caf\xe9\nSQ   Sequence 4 BP;\n     acgt 4\n//\n",
            "UTF-8",
        ),
    ],
)
def test_bad_genbank_and_embl_give_one_line_errors(tmp_path: Path, name: str, content: bytes, words: str) -> None:
    path = write(tmp_path / name, content)
    with pytest.raises(InputError) as info:
        list(read_records(path, ReaderConfig()))
    assert str(info.value).startswith(f"{path}:") and words in str(info.value)
    assert "\n" not in str(info.value)


def test_stdin_is_read_as_a_stream(tmp_path: Path) -> None:
    blob = zstandard.ZstdCompressor().compress(b">s1 from stdin\nACGT\n>s2\nGG\n")
    code = (
        "import sys; from shard_tools.inputs import ReaderConfig, read_records; "
        "print([(r.id, r.source, r.tokens.size) for r in read_records('-', ReaderConfig())])"
    )
    proc = subprocess.run([sys.executable, "-c", code], input=blob, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().strip() == "[('s1', '-', 4), ('s2', '-', 2)]"
    proc = subprocess.run(
        [sys.executable, "-c", code], input=blob[: len(blob) // 2], capture_output=True, text=False, timeout=60
    )
    assert proc.returncode != 0 and b"<stdin>: cannot decompress" in proc.stderr
