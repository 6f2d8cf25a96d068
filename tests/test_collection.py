"""Collections in shards: a sharded index, an appended one and one with records removed or replaced answer
every query exactly as an index built at once from the same records (exact vector indexes, exact k-mers)."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from shared import tiny_model

from gene_ae.cli import main
from gene_ae.core.mutate import mutate
from gene_ae.core.records import iter_input
from gene_ae.index import build
from gene_ae.index import collection as collection_module
from gene_ae.index import vectors as vector_index
from gene_ae.index.collection import Collection
from gene_ae.model.checkpoint import save as save_checkpoint
from gene_ae.search import engine
from shard_tools.alphabet import decode
from shard_tools.inputs import ReaderConfig

WINDOW = 256


@pytest.fixture(scope="module")
def world(tmp_path_factory, data_dir: Path) -> dict:
    root = tmp_path_factory.mktemp("collection")
    cfg, encoder = tiny_model(WINDOW, 64)
    genes = list(iter_input(data_dir / "genefam" / "dog_sample.tsv.gz", ReaderConfig(label_column="class")))[:24]
    lam = next(iter_input(data_dir / "viruses" / "lambda_phage.fa"))
    lam.tokens = lam.tokens[:9000]  # long enough for window vectors and two k-mer segments
    records = genes[:10] + [lam] + genes[10:]
    rng = np.random.default_rng(2)
    queries = [mutate(r.tokens, d, rng) for r in records[::2] for d in (0.02, 0.2)] + [lam.tokens[3000:3600]]
    embed = partial(encoder.embed_tokens, batch_size=64)
    model = build.ModelInfo(uri=str(save_checkpoint(root / "ckpt", cfg, encoder.model)), version="", dim=64,
                            window=WINDOW)  # fmt: skip
    build.build_index(iter(records), embed, model, root / "whole", build.BuildConfig())
    return {"root": root, "records": records, "queries": queries, "embed": embed, "model": model}


def _hits(directory: Path, world: dict, rerank: int) -> list[list[tuple[str, int, int]]]:
    """Per query: (subject id, region) of each of the top 10; ids, since positions differ between layouts."""
    collection = Collection.open(directory)
    entries = collection.entries
    found = engine.search(collection, world["queries"], world["embed"], engine.SearchConfig(k=10, rerank=rerank))
    return [[(entries[h.subject].id, h.subject_start, h.subject_end) for h in hits] for hits in found]


@pytest.mark.parametrize("rerank", [0, 20])
def test_an_index_in_shards_answers_as_the_index_built_at_once(world, tmp_path, rerank) -> None:
    out = tmp_path / "sharded"
    metas = build.build_collection(iter(world["records"]), world["embed"], world["model"], out, build.BuildConfig(),
                                   limits=build.ShardLimits(records=7))  # fmt: skip
    assert [len(m.entries) for m in metas] == [7, 7, 7, 4]
    assert json.loads((out / "shards.json").read_text())["shards"] == ["shard-00001", "shard-00002", "shard-00003"]
    assert _hits(out, world, rerank) == _hits(world["root"] / "whole", world, rerank)


def test_an_index_of_8_bit_vectors_in_shards_answers_as_one_built_at_once(world, tmp_path) -> None:
    """sq8 codes cover one fixed range (vectors.SQ8_RANGE), not one trained on each shard's vectors."""
    cfg = build.BuildConfig(codec="sq8")
    build.build_index(iter(world["records"]), world["embed"], world["model"], tmp_path / "whole", cfg)
    build.build_collection(iter(world["records"]), world["embed"], world["model"], tmp_path / "sharded", cfg,
                           limits=build.ShardLimits(records=7))  # fmt: skip
    assert _hits(tmp_path / "sharded", world, 0) == _hits(tmp_path / "whole", world, 0)
    whole, sharded = Collection.open(tmp_path / "whole").shards[0].dense, Collection.open(tmp_path / "sharded")
    assert whole.sa_code_size() == 64  # a byte a value
    for shard, lo in zip(sharded.shards, sharded.offsets[:-1]):  # every record's code, the same in both
        n = shard.dense.ntotal
        np.testing.assert_array_equal(shard.dense.reconstruct_n(0, n), whole.reconstruct_n(int(lo), n))


def test_an_index_of_sign_codes_answers_as_one_built_at_once_and_stores_the_signs(world, tmp_path) -> None:
    """The signs codec (a bit a value, vectors.build_signs): fixed codebooks, nothing trained on a shard's vectors,
    so a sharded index's vector-first search (--sources dense) answers as one built at once, and each record's
    stored code is its vector's signs."""
    cfg = build.BuildConfig(codec="signs")
    build.build_index(iter(world["records"]), world["embed"], world["model"], tmp_path / "whole", cfg)
    build.build_collection(iter(world["records"]), world["embed"], world["model"], tmp_path / "sharded", cfg,
                           limits=build.ShardLimits(records=7))  # fmt: skip
    whole = Collection.open(tmp_path / "whole")
    assert whole.shards[0].dense.sa_code_size() == 8  # 64 values, a bit each

    def dense_hits(directory: Path) -> list[list[str]]:
        collection = Collection.open(directory)
        found = engine.search(collection, world["queries"], world["embed"],
                              engine.SearchConfig(k=5, rerank=0, sources=("dense",)))  # fmt: skip
        return [[collection.entries[h.subject].id for h in hits] for hits in found]

    assert dense_hits(tmp_path / "sharded") == dense_hits(tmp_path / "whole")
    assert [hits[0] for hits in dense_hits(tmp_path / "whole")[::2][:5]] == [r.id for r in world["records"][::2][:5]]
    stored = vector_index.reconstruct(whole.shards[0].dense, np.arange(len(world["records"])))
    fresh = world["embed"]([r.tokens for r in world["records"]])
    np.testing.assert_allclose(stored, np.where(fresh >= 0, 1, -1) / np.sqrt(64), atol=1e-6)


def test_shards_by_bases_cut_after_the_limit_and_answer_as_one_index(world, tmp_path) -> None:
    """`gene-ae embed`'s default: a new shard once a shard holds shard_bases bases (a 9 kb record included)."""
    out, limit = tmp_path / "by-bases", 12_000
    metas = build.build_collection(iter(world["records"]), world["embed"], world["model"], out, build.BuildConfig(),
                                   limits=build.ShardLimits(bases=limit))  # fmt: skip
    sizes = [[e.length for e in m.entries] for m in metas]
    assert len(metas) > 2 and sum(map(len, sizes)) == len(world["records"])
    assert all(sum(s) >= limit > sum(s[:-1]) for s in sizes[:-1]) and sum(sizes[-1]) > 0
    assert _hits(out, world, 20) == _hits(world["root"] / "whole", world, 20)
    one = build.build_collection(iter(world["records"]), world["embed"], world["model"], tmp_path / "one",
                                 build.BuildConfig())  # fmt: skip
    assert len(one) == 1 and not (tmp_path / "one" / "shards.json").exists()  # no limit: one shard
    with pytest.raises(ValueError, match="must be >= 0"):
        build.build_collection(iter(world["records"]), world["embed"], world["model"], tmp_path / "x",
                               build.BuildConfig(), limits=build.ShardLimits(bases=-1))  # fmt: skip


def test_append_then_remove_answers_as_a_rebuild(world, tmp_path) -> None:
    records, embed, model = world["records"], world["embed"], world["model"]
    out = tmp_path / "grown"
    build.build_index(iter(records[:9]), embed, model, out, build.BuildConfig())
    build.append_shard(iter(records[9:16]), embed, out)
    build.append_shard(iter(records[16:]), embed, out)
    assert _hits(out, world, 20) == _hits(world["root"] / "whole", world, 20)
    gone = [records[2].id, records[12].id]
    assert build.remove_records(out, gone) == 2
    rebuilt = tmp_path / "rebuilt"
    build.build_index(iter(r for r in records if r.id not in gone), embed, model, rebuilt, build.BuildConfig())
    after = _hits(out, world, 20)
    assert after == _hits(rebuilt, world, 20)
    assert not {i for hits in after for i, *_ in hits} & set(gone)
    with pytest.raises(ValueError, match="no record 'nope' to remove"):
        build.remove_records(out, ["nope"])


def test_a_second_writer_is_refused_while_one_changes_the_index(world, tmp_path) -> None:
    """Two writers at once (issue 34: both said "appended" and one shard was lost): the second is refused in one
    line before it reads or writes anything; once the first is done, it goes through."""
    records, embed, model = world["records"], world["embed"], world["model"]
    out = tmp_path / "busy"
    build.build_index(iter(records[:9]), embed, model, out, build.BuildConfig())
    with collection_module.writing(out):  # another process's append, as the kernel's lock sees it
        listed = sorted(p.name for p in out.iterdir())
        for write in (lambda: build.append_shard(iter(records[9:12]), embed, out),
                      lambda: build.remove_records(out, [records[2].id])):  # fmt: skip
            with pytest.raises(ValueError, match="another gene-ae is changing this index") as err:
                write()
            assert str(out) in str(err.value) and "\n" not in str(err.value)
        assert sorted(p.name for p in out.iterdir()) == listed  # nothing written
    build.append_shard(iter(records[9:12]), embed, out)
    assert build.remove_records(out, [records[2].id]) == 1
    assert len(Collection.open(out).shards) == 2


def test_cli_append_is_refused_before_it_reads_its_input_while_another_writer_changes_the_index(
    world, tmp_path, capsys
) -> None:
    """`embed --append` took the lock only to write its shard: while another writer held it, it first read the
    whole --input and loaded the model (and chose the records to replace from a list the other could change).
    Now the lock is its first step: a malformed input is not even read."""
    records, embed, model = world["records"], world["embed"], world["model"]
    out, bad = tmp_path / "busy", tmp_path / "bad.fa"
    build.build_index(iter(records[:9]), embed, model, out, build.BuildConfig())
    bad.write_text(">r1\nACGT\n>r2\nACZZGT\n")  # its second record would be an error, once read
    with collection_module.writing(out):  # another process's append, as the kernel's lock sees it
        code, _, err = _cli(capsys, "embed", "--append", "--input", bad, "--out", out)
    assert code != 0 and "another gene-ae is changing this index" in err and "r2" not in err
    code, _, err = _cli(capsys, "embed", "--append", "--input", bad, "--out", out)
    assert code != 0 and "r2" in err  # free again: the input is read, and its bad record named


def test_a_writer_of_an_index_whose_index_json_is_damaged_says_what_is_wrong_with_it(world, tmp_path) -> None:
    """The writer lock is taken first (`writing`), before the index is read: a damaged index.json still gets its own
    one-line error there, not "not a gene-ae index ... run gene-ae embed first"."""
    records, embed, model = world["records"], world["embed"], world["model"]
    out = tmp_path / "damaged"
    build.build_index(iter(records[:9]), embed, model, out, build.BuildConfig())
    (out / "index.json").write_text("{not json")
    with pytest.raises(ValueError, match="not JSON") as err:
        build.remove_records(out, [records[2].id])
    assert "index.json" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(FileNotFoundError, match="not a gene-ae index"):
        build.remove_records(tmp_path / "absent", [records[2].id])


def test_an_overwrite_is_refused_while_another_writer_changes_the_index(world, tmp_path) -> None:
    """`embed --overwrite` of an index an append was writing: both said done, and the append's records were gone
    with the old directory (its shard written into the new one, or lost). Now the overwrite holds the writer lock
    too: while an append holds it the overwrite is refused, before anything is read."""
    records, embed, model = world["records"], world["embed"], world["model"]
    out = tmp_path / "busy"
    build.build_index(iter(records[:9]), embed, model, out, build.BuildConfig())
    build.append_shard(iter(records[9:12]), embed, out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with collection_module.writing(out):  # an append in another process, as the kernel's lock sees it
        with pytest.raises(ValueError, match="another gene-ae is changing this index") as err:
            build.build_index(iter(records[12:15]), embed, model, out, build.BuildConfig(), overwrite=True)
        assert str(out) in str(err.value) and "\n" not in str(err.value)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left beside it
    build.build_index(iter(records[12:15]), embed, model, out, build.BuildConfig(), overwrite=True)
    assert list(Collection.open(out).entries.ids) == [r.id for r in records[12:15]]


def _cli(capsys, *args) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return done.value.code, out.out, out.err


def test_cli_append_replace_and_remove(world, tmp_path, capsys) -> None:
    records = world["records"]
    first, more = tmp_path / "first.fa", tmp_path / "more.fa"
    first.write_text("".join(f">{r.id}\n{decode(r.tokens)}\n" for r in records[:8]))
    changed = decode(records[20].tokens)  # record 3 gets record 20's sequence under its own id
    more.write_text(f">{records[3].id}\n{changed}\n>{records[9].id}\n{decode(records[9].tokens)}\n")
    out = tmp_path / "idx"
    code, _, err = _cli(capsys, "embed", "--model", world["model"].uri, "--input", first, "--out", out,
                        "--shard-records", "3", "--kmer-k", "11")  # fmt: skip
    assert code == 0 and "8 records in 3 shards" in err, err
    assert {s.kmers.cfg.k for s in Collection.open(out).shards} == {11}
    code, _, err = _cli(capsys, "embed", "--append", "--input", more, "--out", out, "--kmer-k", "12")
    assert code == 1 and "leave --kmer-k out" in err, err
    code, _, err = _cli(capsys, "embed", "--append", "--input", more, "--out", out)
    assert code == 1 and f"record {records[3].id!r} is already in" in err and "--replace" in err, err
    code, _, err = _cli(capsys, "embed", "--append", "--replace", "--input", more, "--out", out)
    assert code == 0 and "2 records appended" in err and "replacing 1" in err, err
    q = tmp_path / "q.fa"
    q.write_text(f">q\n{changed}\n")
    code, hits, err = _cli(capsys, "search", "--index", out, q, "-k", "2")
    assert code == 0, err
    top = [line.split("\t") for line in hits.splitlines()[1:]]
    assert top[0][1] == records[3].id and top[0][-1] == "1.0000"  # the new sequence, under the old id
    code, only_kmers, err = _cli(capsys, "search", "--index", out, q, "-k", "2", "--sources", "sparse")
    assert code == 0 and only_kmers.splitlines()[1].split("\t")[1] == records[3].id, err
    code, _, err = _cli(capsys, "search", "--index", out, q, "--sources", "sparse,vectors")
    assert code == 1 and "'sparse,vectors': give one or more of dense, windows, sparse" in err, err
    assert Collection.open(out).removed.sum() == 1
    code, _, err = _cli(capsys, "remove", "--index", out, records[3].id)
    assert code == 0 and "1 records removed" in err, err
    code, hits, err = _cli(capsys, "search", "--index", out, q, "-k", "9")
    assert code == 0 and records[3].id not in hits, err


# ------------------------------------------------------- the shard list, tied to its index (issue 34)
def _ids(directory: Path) -> list[str]:
    collection = Collection.open(directory)
    return [i for j, i in enumerate(collection.entries.ids) if not collection.removed[j]]


def _one_line(exc: pytest.ExceptionInfo) -> str:
    assert "\n" not in str(exc.value), exc.value
    return str(exc.value)


def test_a_deleted_shard_list_is_refused_where_shards_exist(world, tmp_path) -> None:
    """Deleting shards.json brought removed records back and hid the appended shards (exit 0): now every reader and
    writer refuses the index in one line."""
    out, records, embed = tmp_path / "idx", world["records"], world["embed"]
    build.build_index(iter(records[:9]), embed, world["model"], out, build.BuildConfig())
    build.append_shard(iter(records[9:12]), embed, out)
    assert build.remove_records(out, [records[0].id]) == 1
    before = _ids(out)
    (out / "shards.json").unlink()
    for action in (lambda: Collection.open(out), lambda: build.append_shard(iter(records[12:14]), embed, out),
                   lambda: build.remove_records(out, [records[1].id])):  # fmt: skip
        with pytest.raises(ValueError) as exc:
            action()
        assert _one_line(exc).startswith(f"{out / 'shards.json'}: missing, but {out} holds shard shard-00001")
    assert not (out / "shards.json").exists() and not (out / "shard-00002").exists()
    assert len(before) == 11


def test_a_shard_list_copied_from_another_index_is_refused(world, tmp_path) -> None:
    records, embed = world["records"], world["embed"]
    for name, part in (("a", records[:9]), ("b", records[12:20])):
        build.build_index(iter(part), embed, world["model"], tmp_path / name, build.BuildConfig())
        build.append_shard(iter(records[9:12]), embed, tmp_path / name)
    (tmp_path / "a" / "shards.json").write_bytes((tmp_path / "b" / "shards.json").read_bytes())
    with pytest.raises(ValueError) as exc:
        Collection.open(tmp_path / "a")
    assert _one_line(exc).startswith(f"{tmp_path / 'a' / 'shards.json'}: the shard list of another index"), exc.value


def test_a_listed_shard_swapped_for_another_indexs_is_refused(world, tmp_path) -> None:
    records, embed = world["records"], world["embed"]
    for name in ("a", "b"):
        build.build_index(iter(records[:9]), embed, world["model"], tmp_path / name, build.BuildConfig())
    build.append_shard(iter(records[9:12]), embed, tmp_path / "a")
    build.append_shard(iter(records[12:16]), embed, tmp_path / "b")
    shard = tmp_path / "a" / "shard-00001"
    for part in shard.iterdir():
        part.unlink()
    for part in (tmp_path / "b" / "shard-00001").iterdir():
        (shard / part.name).write_bytes(part.read_bytes())
    with pytest.raises(ValueError) as exc:
        Collection.open(tmp_path / "a")
    assert _one_line(exc).startswith(f"{shard}: not the shard shards.json lists"), exc.value


def test_an_append_killed_before_listing_its_first_shard_leaves_a_readable_index(world, tmp_path) -> None:
    """The list is written before the first appended shard, so a shard left unlisted by a killed append is
    ignored (and overwritten by the next append) rather than making the index unreadable."""
    out, records, embed = tmp_path / "idx", world["records"], world["embed"]
    build.build_index(iter(records[:9]), embed, world["model"], out, build.BuildConfig())
    name = collection_module.next_shard_name(out)  # append_shard's steps, up to listing the shard
    with build.write_index(out / name) as writer:
        settings = build.settings_of(build.read_meta(out))
        build.write_shard(iter(records[9:12]), embed, world["model"], writer, settings, "test")
    assert (out / "shards.json").is_file() and (out / name).is_dir()
    assert _ids(out) == [r.id for r in records[:9]]
    build.append_shard(iter(records[9:12]), embed, out)
    assert _ids(out) == [r.id for r in records[:12]]


def test_a_writer_on_a_folder_that_is_not_an_index_is_refused_and_leaves_no_lock(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="not a gene-ae index"):
        build.remove_records(tmp_path, ["a"])
    assert list(tmp_path.iterdir()) == []  # no .gene-ae-writer.lock dropped in the user's folder


def test_an_index_without_k_mers_is_searched_vector_first_and_grows_so(world, tmp_path, capsys) -> None:
    """`gene-ae embed --no-kmers`: vectors and sequences alone, no postings; a search of it reads the record
    vectors (vector-first) unless told otherwise, finds mutated copies' sources, and an append keeps it so."""
    records = world["records"]
    first, more = tmp_path / "first.fa", tmp_path / "more.fa"
    first.write_text("".join(f">{r.id}\n{decode(r.tokens)}\n" for r in records[:16]))
    more.write_text("".join(f">{r.id}\n{decode(r.tokens)}\n" for r in records[16:]))
    out = tmp_path / "idx"
    code, _, err = _cli(capsys, "embed", "--model", world["model"].uri, "--input", first, "--out", out, "--no-kmers")
    assert code == 0 and "no k-mer index" in err, err
    code, _, err = _cli(capsys, "embed", "--append", "--input", more, "--out", out, "--no-kmers")
    assert code == 1 and "leave --no-kmers out" in err, err
    code, _, err = _cli(capsys, "embed", "--append", "--input", more, "--out", out)
    assert code == 0, err
    index = Collection.open(out)
    assert len(index.shards) == 2 and all(not s.meta.sparse and s.kmers is None for s in index.shards)
    assert not list(out.rglob("kmers.npz")) and not list(out.rglob("kmer_postings.npy"))
    q = tmp_path / "q.fa"
    genes = [r for r in records if r.tokens.size < 4000][::3][:6]
    rng = np.random.default_rng(7)
    q.write_text("".join(f">{r.id}\n{decode(mutate(r.tokens, 0.1, rng))}\n" for r in genes))
    code, hits, err = _cli(capsys, "search", "--index", out, q, "-k", "1")
    assert code == 0, err
    assert [line.split("\t")[1] for line in hits.splitlines()[1:]] == [r.id for r in genes]
    code, _, err = _cli(capsys, "search", "--index", out, q, "--sources", "sparse")
    assert code == 1 and "no candidate source" in err and "--no-kmers" in err, err
