"""Index directories read back are untrusted: a damaged index.json, a truncated faiss file or a missing part is
a one-line error naming the file, never a traceback; Hypothesis mutates every file of a real index.

The index is built by the streaming builder from real dog genes and the lambda genome (so it has window
vectors, the k-mer index and stored sequences) with a tiny untrained model.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shared import edit_entries, examples, one_line_error, text_blob, texts_whole, tiny_model

from gene_ae.core.mutate import mutate
from gene_ae.core.records import iter_input
from gene_ae.index import build as embedding
from gene_ae.index import directory as index
from gene_ae.index.directory import IndexDir
from gene_ae.search import engine as search
from shard_tools.inputs import ReaderConfig

WINDOW = 256
FILES = ("index.json", "entries.npz", "index.faiss", "windows.faiss", "windows.npz", "kmers.npz", "kmer_postings.npy",
         "sequences.gae", "sequences.npz")  # fmt: skip


@pytest.fixture(scope="module")
def built(tmp_path_factory, data_dir: Path) -> dict:
    cfg, encoder = tiny_model(WINDOW, 64)
    genes = list(iter_input(data_dir / "genefam" / "dog_sample.tsv.gz", ReaderConfig(label_column="class")))[:12]
    lam = next(iter_input(data_dir / "viruses" / "lambda_phage.fa"))
    lam.tokens = lam.tokens[:6000]
    out = tmp_path_factory.mktemp("index") / "idx"
    embed = partial(encoder.embed_tokens, batch_size=64)
    model = embedding.ModelInfo(uri="mem", version="", dim=64, window=WINDOW)
    embedding.build_index(iter(genes + [lam]), embed, model, out, embedding.BuildConfig(batch_bases=5000))
    rng = np.random.default_rng(0)
    queries = [genes[2].tokens, mutate(genes[5].tokens, 0.2, rng), lam.tokens[1000:1800]]
    return {"dir": out, "embed": embed, "queries": queries}


def _search(directory: Path, built: dict) -> list:
    loaded = IndexDir.open(directory)
    return search.search(loaded, built["queries"], built["embed"], search.SearchConfig(k=3, rerank=4))


def test_the_index_lists_a_digest_of_every_part_and_searches(built) -> None:
    meta = json.loads((built["dir"] / "index.json").read_text())
    assert set(meta["files"]) == set(FILES) - {"index.json"} and all(len(h) == 64 for h in meta["files"].values())
    hits = _search(built["dir"], built)
    assert hits[0][0].identity == 1.0 and hits[2][0].subject == 12


@pytest.mark.parametrize("name", [f for f in FILES if f not in index.LAZY_FILES])
def test_a_missing_or_truncated_part_is_one_line_naming_it(built, tmp_path, name) -> None:
    for damage in ("truncate", "remove"):
        d = tmp_path / damage
        shutil.copytree(built["dir"], d)
        if damage == "remove":
            (d / name).unlink()
        else:
            (d / name).write_bytes((d / name).read_bytes()[: (d / name).stat().st_size // 2])
        with pytest.raises((ValueError, OSError)) as err:
            opened = IndexDir.open(d)
            assert opened.dense is not None and opened.windows is not None  # read, and checked, on first use
        one_line_error(str(err.value), str(d / name))


@pytest.mark.parametrize("name", ["kmer_postings.npy"])
def test_damaged_k_mer_postings_are_one_line_naming_the_index(built, tmp_path, name) -> None:
    """The postings are mapped, not hashed on open (LAZY_FILES): a truncated file is refused on open by its
    size, and a stream overwritten with another of the same size is refused by the first search that reads it."""
    d = tmp_path / "cut"
    shutil.copytree(built["dir"], d)
    (d / name).write_bytes((d / name).read_bytes()[:-64])
    with pytest.raises(ValueError) as err:
        IndexDir.open(d)
    one_line_error(str(err.value), str(d / name))
    if name == "kmer_postings.npy":
        d = tmp_path / "scrambled"
        shutil.copytree(built["dir"], d)
        stream = np.load(d / name)
        np.save(d / name, np.full_like(stream, 0xFF))  # every nibble says another follows: varints run past their rows
        with pytest.raises(ValueError, match="damaged k-mer postings") as err:
            _search(d, built)
        one_line_error(str(err.value), str(d))


@pytest.mark.parametrize(
    ("edit", "fault"),
    [
        (lambda m: [m], "a JSON list"),
        (lambda m: {**m, "dim": "64"}, "'dim' is str"),
        (lambda m: {**m, "version": index.FORMAT_VERSION + 1}, "a newer gene-ae"),
        (lambda m: {**m, "format": "something-else"}, "format 'something-else'"),
        (lambda m: {**m, "records": m["records"] - 1}, "columns of [13, 13, 13, 13] values for 12 records"),
        (lambda m: {**m, "records": "13"}, "'records' is str"),
        (lambda m: {**m, "records": -1}, "records -1"),
        (lambda m: {k: v for k, v in m.items() if k != "records"}, "values for 0 records"),
        (lambda m: {**m, "files": {**m["files"], "../escape": "0" * 64}}, "file entry '../escape'"),
        (lambda m: {**m, "files": {**m["files"], "index.faiss": "0" * 64}}, "sha256 differs"),
        (lambda m: {k: v for k, v in m.items() if k != "dim"}, "dim"),
    ],
)
def test_a_malformed_index_json_is_one_line_naming_the_file(built, tmp_path, edit, fault) -> None:
    d = tmp_path / "idx"
    shutil.copytree(built["dir"], d)
    edited = edit(json.loads((d / "index.json").read_text()))
    (d / "index.json").write_text(json.dumps(_signed(edited)))  # signed: the checks past the digest
    with pytest.raises(ValueError) as err:
        opened = IndexDir.open(d)
        assert opened.dense is not None  # read, and checked, on first use
    one_line_error(str(err.value), str(d))
    assert fault in str(err.value)


def test_the_window_spans_are_checked_when_the_window_vectors_are_read_not_on_open(built, tmp_path) -> None:
    """windows.npz is read only with the window vectors: a k-mer search opens and answers without hashing it, and
    the first use of the window vectors names it when its bytes are not the ones index.json records."""
    d = tmp_path / "idx"
    shutil.copytree(built["dir"], d)
    raw = bytearray((d / "windows.npz").read_bytes())
    raw[-30] ^= 0xFF  # the zip's directory: same size, other bytes
    (d / "windows.npz").write_bytes(bytes(raw))
    opened = IndexDir.open(d)
    hits = search.search(opened, built["queries"][:1], None, search.SearchConfig(k=3, sources=("sparse",)))
    assert hits[0][0].identity == 1.0
    with pytest.raises(ValueError, match="sha256 differs") as err:
        opened.windows  # noqa: B018
    one_line_error(str(err.value), str(d / "windows.npz"))


def _signed(raw):
    """index.json content with the digest of itself that gene-ae embed would write."""
    return {**raw, "meta_sha256": index.meta_digest(raw)} if isinstance(raw, dict) else raw


@pytest.mark.parametrize(
    ("columns", "fault"),
    [
        ({"length": lambda a: np.concatenate([[-1], a[1:]])}, "record 0 ("),
        ({"end": lambda a: a + 1}, "span"),
        ({"ids": text_blob("a\x1bb", *[f"r{i}" for i in range(12)])}, "control character '\\x1b' in the id"),
        ({"ids": text_blob("", *[f"r{i}" for i in range(12)])}, "record 0: an empty id"),
        ({"ids": text_blob(*[f"r{i}" for i in range(12)])}, "12 ids for 13 records"),
        ({"ids": np.frombuffer(b"\xff\n" * 13, np.uint8)}, "not UTF-8"),
        ({"start": lambda a: a.astype(np.float32)}, "'start' is float32"),
        ({"has_label": lambda a: a[:-1]}, "columns of"),
    ],
)
def test_a_damaged_record_list_is_one_line_naming_it(built, tmp_path, columns, fault) -> None:
    """The numbers are checked on open, the ids and labels when first read (a search reports a few of them)."""
    d = tmp_path / "idx"
    shutil.copytree(built["dir"], d)
    edit_entries(d, sign=True, **columns)
    with pytest.raises(ValueError) as err:
        IndexDir.open(d).meta.entries[5]
    one_line_error(str(err.value), str(d / "entries.npz"))
    assert fault in str(err.value)


def test_ids_are_read_when_used_and_verify_reads_them_all(built, tmp_path) -> None:
    """An id list signed into index.json but holding a control character: opening the index does not read it (a
    search decodes only the ids it reports), `verify` does, and says so in one line naming the file."""
    from gene_ae.index.verify import verify

    d = tmp_path / "idx"
    shutil.copytree(built["dir"], d)
    edit_entries(d, sign=True, ids=text_blob(*[f"r{i}" for i in range(12)], "a\x1bb"))
    opened = IndexDir.open(d)
    assert opened.meta.entries.length.size == 13
    with pytest.raises(ValueError) as err:
        verify(d)
    one_line_error(str(err.value), str(d / "entries.npz"))
    assert "record 12: control character" in str(err.value)


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: {**m, "records": m["records"] + 1},
        lambda m: {**m, "model_uri": "models:/other@production"},
    ],
)
def test_a_hand_edit_of_index_json_is_refused(built, tmp_path, edit) -> None:
    d = tmp_path / "idx"
    shutil.copytree(built["dir"], d)
    (d / "index.json").write_text(json.dumps(edit(json.loads((d / "index.json").read_text()))))
    with pytest.raises(ValueError, match="differs from the digest it records") as err:
        IndexDir.open(d)
    one_line_error(str(err.value), str(d))


@pytest.mark.parametrize(
    "columns",
    [
        {"length": lambda a: a + 1},
        {"ids": lambda a: np.frombuffer(b"r1\nr0\n" + a.tobytes()[a.tobytes().index(b"\n", 3) + 1 :], np.uint8)},
    ],
)
def test_a_hand_edit_of_the_record_list_is_refused(built, tmp_path, columns) -> None:
    """A valid record list that is not the one embed wrote (lengths changed, ids swapped) differs from the
    digest index.json records for it."""
    d = tmp_path / "idx"
    shutil.copytree(built["dir"], d)
    edit_entries(d, sign=False, **columns)
    with pytest.raises(ValueError, match="sha256 differs") as err:
        IndexDir.open(d)
    one_line_error(str(err.value), str(d / "entries.npz"))


def test_an_index_of_an_older_format_says_how_to_rebuild(built, tmp_path) -> None:
    d = tmp_path / "old"
    shutil.copytree(built["dir"], d)
    meta = json.loads((d / "index.json").read_text())
    meta["version"] = 2
    del meta["meta_sha256"]
    (d / "index.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"format v2 .* rebuild it with `gene-ae embed") as err:
        IndexDir.open(d)
    one_line_error(str(err.value), str(d))


def test_a_v6_index_with_postings_in_record_order_is_still_read_and_searched_the_same(built, tmp_path) -> None:
    """v7 stores the k-mer segments in their neighbour order with runs, v8 its integer columns narrowed and the
    k-mer rows' lengths in a byte, v9 the ids and labels in zstd blocks; an index v6 wrote (no order, plain gaps,
    uint32 row pointers, int64 columns, the ids as one blob) opens and answers every query, with the same ids, as
    the v9 index of the same records does; an older gene-ae refuses v9 by its version."""
    from gene_ae.index.kmer_index import KmerIndex
    from gene_ae.index.postings import Postings
    from shard_tools.files import sha256_file

    d = tmp_path / "v6"
    shutil.copytree(built["dir"], d)
    new = KmerIndex.load(d)
    assert new.lists.order is not None and index.IndexDir.open(d).meta.version == index.FORMAT_VERSION == 9
    held = np.flatnonzero(np.diff(new.lists.ptr))
    segments, lens = new.postings(held)
    n = new.n_segments
    keys, counts = np.unique(np.repeat(held, lens) * n + segments, return_counts=True)
    indptr = np.searchsorted(keys // n, np.arange(new.lists.ptr.size))
    plain = Postings.encode(indptr, keys % n, counts, n)
    KmerIndex(new.cfg, plain, new.owner, new.start, new.end, new.scale).save(d)
    for name in (KmerIndex.FILE, "entries.npz", "sequences.npz"):  # v6's layout: pointers, int64 columns
        with np.load(d / name) as z:
            parts = texts_whole({k: z[k] for k in z.files if k not in ("rows", "long_rows")})
        parts = {k: v.astype(np.int64) if v.dtype.kind in "iu" and k not in ("ids", "labels") else v
                 for k, v in parts.items()}  # fmt: skip
        if name == KmerIndex.FILE:
            parts["ptr"] = plain.ptr.astype(np.uint32)
        np.savez(d / name, **parts)
    meta = json.loads((d / "index.json").read_text())
    for name in (KmerIndex.FILE, KmerIndex.POSTINGS_FILE, "entries.npz", "sequences.npz"):
        meta["files"][name] = sha256_file(d / name)
    meta["version"] = 6
    del meta["meta_sha256"]
    (d / "index.json").write_text(json.dumps({**meta, "meta_sha256": index.meta_digest(meta)}))
    old = IndexDir.open(d)
    assert old.kmers.lists.order is None
    cfg = search.SearchConfig(k=5)
    got = search.search(old, built["queries"], None, cfg)
    want = search.search(IndexDir.open(built["dir"]), built["queries"], None, cfg)
    assert [[(h.subject, h.score) for h in q] for q in got] == [[(h.subject, h.score) for h in q] for q in want]
    assert list(old.meta.entries.ids) == list(IndexDir.open(built["dir"]).meta.entries.ids)
    assert [old.meta.entries[j].id for j in (12, 0, 5)] == [IndexDir.open(built["dir"]).meta.entries[j].id
                                                            for j in (12, 0, 5)]  # fmt: skip


def test_overwrite_replaces_the_index_and_leaves_no_temp(built, tmp_path, data_dir: Path) -> None:
    d = tmp_path / "idx"
    shutil.copytree(built["dir"], d)
    lam = next(iter_input(data_dir / "viruses" / "lambda_phage.fa"))
    with pytest.raises(FileExistsError, match="already exists"):
        embedding.build_index(iter([lam]), built["embed"], embedding.ModelInfo(uri="mem", version="", dim=64,
                              window=WINDOW), d, embedding.BuildConfig())  # fmt: skip
    model = embedding.ModelInfo(uri="mem", version="", dim=64, window=WINDOW)
    embedding.build_index(iter([lam]), built["embed"], model, d, embedding.BuildConfig(), overwrite=True)
    assert index.read_meta(d).entries.ids == [lam.id]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]


# -------------------------------------------------------------------------------------------------- fuzz

MUTATIONS = ("flip", "truncate", "append", "remove")


@settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_indexes_search_or_give_one_line_errors(built, data) -> None:
    """Flip, cut, extend or remove any file; loading and searching either works or raises ValueError/OSError
    with one line naming the index. Each example is bounded in time."""
    name = data.draw(st.sampled_from(FILES), label="file")
    how = data.draw(st.sampled_from(MUTATIONS), label="mutation")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "idx"
        shutil.copytree(built["dir"], d)
        raw = bytearray((d / name).read_bytes())
        if how == "flip":
            for _ in range(data.draw(st.integers(1, 4), label="flips")):
                at = data.draw(st.integers(0, len(raw) - 1), label="at")
                raw[at] ^= data.draw(st.integers(1, 255), label="xor")
        elif how == "truncate":
            raw = raw[: data.draw(st.integers(0, len(raw) - 1), label="cut")]
        elif how == "append":
            raw += data.draw(st.binary(min_size=1, max_size=64), label="tail")
        if how == "remove":
            (d / name).unlink()
        else:
            (d / name).write_bytes(bytes(raw))
        start = time.perf_counter()
        try:
            hits = _search(d, built)
            assert len(hits) == 3
        except (ValueError, OSError) as exc:
            one_line_error(str(exc), str(d))
        assert time.perf_counter() - start < 10


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=examples(1000), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_json_in_any_field_of_index_json_is_meta_or_one_line_error(built, data) -> None:
    """Structured mutations the byte flips rarely reach: any JSON value for any field."""
    raw = json.loads((built["dir"] / "index.json").read_text())
    where = data.draw(st.sampled_from(["top", "drop"]), label="where")
    if where == "top":
        raw[data.draw(st.sampled_from([*raw, "extra"]), label="key")] = data.draw(JSON, label="value")
    else:
        del raw[data.draw(st.sampled_from(sorted(raw)), label="key")]
    path = built["dir"] / "index.json"
    try:
        meta = index.check_meta(_signed(raw), path)
    except ValueError as exc:
        one_line_error(str(exc), str(path))
        return
    assert all(isinstance(e.id, str) and 0 <= e.start <= e.end <= e.length for e in meta.entries)


COLUMNS = st.sampled_from(["ids", "labels", "has_label", "length", "start", "end"])
ARRAYS = st.one_of(
    st.lists(st.integers(-(2**40), 2**40), max_size=16).map(lambda v: np.array(v, dtype=np.int64)),
    st.binary(max_size=64).map(lambda b: np.frombuffer(b, dtype=np.uint8)),
    st.lists(st.booleans(), max_size=16).map(lambda v: np.array(v, dtype=bool)),
    st.lists(st.floats(allow_nan=True), max_size=4).map(lambda v: np.array(v, dtype=np.float64)),
)


@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(column=COLUMNS, value=ARRAYS)
def test_any_column_in_the_record_list_is_records_or_one_line_error(built, column, value) -> None:
    """Any array for any column of entries.npz, signed into index.json: the records read back are well formed
    or the error is one line naming the file."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "idx"
        shutil.copytree(built["dir"], d)
        edit_entries(d, sign=True, **{column: value})
        try:
            meta = index.read_meta(d)
            records = list(meta.entries)  # the ids and labels are read when first used
        except ValueError as exc:
            one_line_error(str(exc), str(d / "entries.npz"))
            return
        assert len(records) == 13
        assert all(isinstance(e.id, str) and e.id and 0 <= e.start <= e.end <= e.length for e in records)


def test_verify_reads_every_part_and_names_a_damaged_one_that_opening_does_not_read(built, tmp_path, cli) -> None:
    """`gene-ae verify` passes a whole index, and finds what opening it does not check (the large parts are read
    lazily): a changed byte in the postings or the sequence blocks is one line naming the file, exit 1."""
    code, out, err = cli("gene-ae", "verify", "--index", built["dir"])
    assert code == 0 and out == "" and "13 records" in err and err.strip().endswith("OK"), err
    for name, at in (("kmer_postings.npy", 0.6), ("sequences.gae", 0.5)):
        d = tmp_path / name
        shutil.copytree(built["dir"], d)
        data = bytearray((d / name).read_bytes())
        data[int(at * len(data))] ^= 0x40
        (d / name).write_bytes(bytes(data))
        IndexDir.open(d)  # opening reads neither part whole: no error yet
        code, out, err = cli("gene-ae", "verify", "--index", d)
        one_line_error(err, str(d / name), rc=code)


# ------------------------------------------------------------------------------------- ids in zstd blocks


def _many(tmp_path: Path, n: int = 2500, label_every: int = 7):
    """A record list of n records (ids of varied lengths, some labels) saved in tmp_path, and the rows written."""
    from gene_ae.index.entries import Entries, Entry

    rows = [Entry(id=f"rec{j}" + "x" * (j % 13), length=10 + j, label=f"L{j}" if j % label_every == 0 else None,
                  start=0, end=10 + j) for j in range(n)]  # fmt: skip
    Entries.of(rows).save(tmp_path)
    return rows


def test_a_record_list_of_many_blocks_reads_one_block_for_one_id(tmp_path) -> None:
    """Ids and labels come back exactly whichever way they are read (one by one at the blocks' edges, prefetched by
    position, iterated whole); reading one id decodes its block alone, not the whole column."""
    from gene_ae.index.entries import TEXT_BLOCK, Entries, JoinedTexts

    rows = _many(tmp_path)
    got = Entries.load(tmp_path, len(rows))
    for j in (0, TEXT_BLOCK - 1, TEXT_BLOCK, 2 * TEXT_BLOCK + 1, len(rows) - 1, -1):
        assert got[j].id == rows[j].id and got[j].label == rows[j].label
    assert got.ids._blob is None and sorted(got.ids._decoded) == [0, 1, 2]  # three blocks of three decoded
    joined = Entries.concat([got, Entries.load(tmp_path, len(rows))])
    joined.prefetch([5, len(rows) + TEXT_BLOCK + 3])
    assert isinstance(joined.ids, JoinedTexts) and sorted(joined.ids.parts[1]._decoded) == [1]
    assert joined[len(rows) + TEXT_BLOCK + 3].id == rows[TEXT_BLOCK + 3].id
    assert list(got.ids) == [r.id for r in rows] and got.labels == [r.label for r in rows]
    assert [e.id for e in Entries.load(tmp_path, len(rows))] == [r.id for r in rows]


@pytest.mark.parametrize(
    ("edit", "at", "fault"),
    [
        ("flip", 1500, "the ids of records 1024-2047: not a zstd block"),
        ("control", 2100, "record 2100: control character"),
        ("ends", 0, "id blocks ending within"),
        ("missing", 2400, "451 ids for 452 records (records 2048-2499)"),  # id 1500 left out: the last block short
    ],
)
def test_a_damaged_id_block_is_one_line_naming_the_file_and_records(tmp_path, edit, at, fault) -> None:
    """A damaged block (a flipped byte, a control character, block ends that do not fit, an id missing) is refused
    when one of its ids is read, in one line naming the file and the records; the other blocks still read."""
    import zstandard

    from gene_ae.index.entries import TEXT_BLOCK, Entries, text_blocks

    rows = _many(tmp_path)
    path = tmp_path / "entries.npz"
    with np.load(path) as z:
        cols = {k: z[k] for k in z.files}
    if edit == "flip":
        stream = cols["ids_z"].copy()
        stream[int(cols["ids_at"][0]) + 20] ^= 0x55
        cols["ids_z"] = stream
    elif edit == "ends":
        cols["ids_at"] = cols["ids_at"][:-1]
    else:
        text = zstandard.ZstdDecompressor().decompress
        ends = [0, *cols["ids_at"].astype(np.int64).tolist()]
        blob = b"".join(text(cols["ids_z"][a:b].tobytes()) for a, b in zip(ends, ends[1:])).split(b"\n")[:-1]
        blob[at] = b"a\x1bb" if edit == "control" else blob[at]
        if edit == "missing":
            del blob[1500]
        cols["ids_z"], cols["ids_at"] = text_blocks(b"".join(t + b"\n" for t in blob))
    np.savez(path, **cols)
    got = Entries.load(tmp_path, len(rows))
    with pytest.raises(ValueError) as err:
        got[at].id  # noqa: B018
    one_line_error(str(err.value), str(path))
    assert fault in str(err.value), str(err.value)
    if edit != "ends":
        assert got[TEXT_BLOCK - 1].id == rows[TEXT_BLOCK - 1].id


def test_a_mapped_npz_reads_stored_members_as_views_and_refuses_what_np_load_refuses(tmp_path) -> None:
    """npzmap.MappedNpz: a stored member is a read-only view equal to np.load's copy (any shape, dtype, order), a
    zipped member is read as numpy reads it, and an object array, a file that is not a zip or a member cut short is
    a ValueError (one line, as KmerIndex.load reports it)."""
    from gene_ae.index.kmer_index import KmerIndex
    from gene_ae.index.npzmap import MappedNpz

    arrays = {"a": np.arange(7, dtype=np.uint16), "b": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
              "c": np.zeros(0, np.int64), "d": np.array([True, False])}  # fmt: skip
    np.savez(tmp_path / "s.npz", **arrays)
    np.savez_compressed(tmp_path / "z.npz", **arrays)
    for name in ("s.npz", "z.npz"):
        with MappedNpz(tmp_path / name) as z:
            assert sorted(z.files) == sorted(arrays) and "a" in z and "x" not in z
            got = {k: z[k] for k in arrays}
        for k, v in arrays.items():
            assert got[k].dtype == v.dtype and got[k].shape == v.shape and (got[k] == v).all()
        assert got["d"].flags.writeable is (name == "z.npz")  # stored: a view of the read-only map
        assert all(v.flags.aligned for v in got.values())  # np.savez aligns nothing: a misaligned view is copied
    np.savez(tmp_path / "o.npz", o=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match="object array"):
        MappedNpz(tmp_path / "o.npz")["o"]
    (tmp_path / "t.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not an .npz"):
        MappedNpz(tmp_path / "t.npz")
    raw = (tmp_path / "s.npz").read_bytes()
    cut = raw.index(b"PK\x01\x02")  # the central directory kept, a member's bytes gone
    (tmp_path / "cut.npz").write_bytes(raw[: cut - 40] + raw[cut:])
    with pytest.raises(ValueError):
        with MappedNpz(tmp_path / "cut.npz") as z:
            [z[k] for k in arrays]
    seq = np.random.default_rng(3).integers(3, 7, size=2000).astype(np.uint8)
    KmerIndex.build([seq]).save(tmp_path)
    (tmp_path / KmerIndex.FILE).write_bytes((tmp_path / KmerIndex.FILE).read_bytes()[:-200])
    with pytest.raises(ValueError) as err:
        KmerIndex.load(tmp_path)
    one_line_error(str(err.value), str(tmp_path / KmerIndex.FILE))
