"""A bag-only model's vector in numpy (gene_ae/core/bagvec.py): the model's own vectors from its tables, the tables
written into an index without k-mers and read back checked, and a search of that index that never imports torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from shared import tiny_model

from gene_ae.core.bagvec import FILE, BagTables, canonical_ids
from gene_ae.core.records import iter_input
from gene_ae.model.config import ModelConfig
from gene_ae.model.encoder import EMBED_CHUNK, Encoder


def _seqs(data_dir: Path) -> list[np.ndarray]:
    genes = [r.tokens for r in iter_input(data_dir / "viruses" / "lambda_phage.fa")]
    lam = genes[0]
    with_n = lam[:900].copy()
    with_n[100:140] = 0  # a run of non-bases (PAD): k-mers touching it count for nothing
    return [lam[:600], lam[5000:6400], with_n, lam[:3], lam[: 2 * EMBED_CHUNK + 777]]  # the last: three pieces


@pytest.mark.parametrize("buckets", [1 << 16, 300])  # 300: both k-mer sizes hashed into 300 rows
def test_the_tables_give_the_models_vectors(data_dir, tmp_path, buckets) -> None:
    """Every vector from the tables (saved and loaded) is the model's to float32 rounding, for genes, a sequence
    cut into three pieces, one with N and one shorter than k; a table with a wrong row fails it."""
    import torch

    from gene_ae.model.autoencoder import GeneAE

    torch.manual_seed(1)
    cfg = ModelConfig(channels=32, embed_dim=16, lstm_hidden=32, vector_dim=48, window=256, downsample=4,
                      kmer_buckets=buckets)  # fmt: skip
    encoder = Encoder(GeneAE(cfg), device="cpu")
    seqs = _seqs(data_dir)
    tables = encoder.bag_tables()
    assert tables is not None and tables.piece == EMBED_CHUNK and tables.overlap == 6
    tables.save(tmp_path)
    loaded = BagTables.load(tmp_path)
    want = encoder.embed_tokens(seqs)
    for got in (tables.embed(seqs), loaded.embed(seqs)):
        np.testing.assert_allclose(got, want, atol=2e-6)
    held = [t.rows.size for t in loaded.tables]
    assert held == ([512, 8192] if buckets > 4**7 else [300, 300])  # canonical ids only, unless hashed
    wrong = BagTables((loaded.tables[0], type(loaded.tables[1])(7, loaded.tables[1].buckets, loaded.tables[1].rows,
                       np.roll(loaded.tables[1].weights, 1, axis=0))), True, tables.piece, tables.overlap)  # fmt: skip
    assert np.abs(wrong.embed(seqs[:2]) - want[:2]).max() > 1e-3


def test_a_model_whose_vector_needs_torch_has_no_tables() -> None:
    import torch

    from gene_ae.model.autoencoder import GeneAE

    torch.manual_seed(0)
    for extra in ({"vector_conv": True}, {"vector_trunk": True}):
        cfg = ModelConfig(channels=32, embed_dim=16, lstm_hidden=32, vector_dim=48, window=256, downsample=4, **extra)
        assert Encoder(GeneAE(cfg), device="cpu").bag_tables() is None
    assert tiny_model()[1].bag_tables() is not None


def test_canonical_ids_are_those_no_greater_than_their_reverse_complement() -> None:
    ids = canonical_ids(3)
    assert ids.size == 32 and 0 in ids and 63 not in ids  # AAA in, TTT (its reverse complement) out
    assert canonical_ids(2).size == 10  # 16 dimers: 4 palindromes and 6 pairs


def test_a_damaged_table_file_is_one_line_naming_it(tmp_path) -> None:
    (tmp_path / FILE).write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ValueError, match=f"{FILE}: not a gene-ae bag table file") as err:
        BagTables.load(tmp_path)
    assert "\n" not in str(err.value)
    tables = tiny_model()[1].bag_tables()
    np.savez(tmp_path / FILE, config=np.frombuffer(b'{"ks": [5], "buckets": [1024], "canonical": true}', np.uint8),
             rows_5=tables.tables[0].rows, weights_5=tables.tables[0].weights[:10])  # fmt: skip
    with pytest.raises(ValueError, match="not a gene-ae bag table file"):
        BagTables.load(tmp_path)


@pytest.fixture(scope="module")
def nokmers(tmp_path_factory, data_dir) -> dict:
    """A tiny model's checkpoint, 30 dog genes as an index built --no-kmers in two shards, and 6 queries."""
    from gene_ae.cli import main
    from gene_ae.model.checkpoint import save as save_checkpoint
    from shard_tools.alphabet import decode

    root = tmp_path_factory.mktemp("bagvec")
    cfg, encoder = tiny_model()
    ckpt = save_checkpoint(root / "ckpt", cfg, encoder.model)
    records = list(iter_input(data_dir / "genefam" / "dog_sample.tsv.gz"))[:30]
    fasta, query = root / "in.fa", root / "q.fa"
    fasta.write_text("".join(f">{r.id}\n{decode(r.tokens)}\n" for r in records))
    query.write_text("".join(f">q{i}\n{decode(r.tokens[50:650])}\n" for i, r in enumerate(records[::5])))
    with pytest.raises(SystemExit) as done:
        main(["embed", "--model", str(ckpt), "--input", str(fasta), "--out", str(root / "idx"), "--no-kmers",
              "--shard-records", "20"])  # fmt: skip
    assert done.value.code == 0
    return {"ckpt": ckpt, "index": root / "idx", "query": query, "records": records}


def test_an_index_without_k_mers_is_searched_without_torch_as_with_the_model(nokmers) -> None:
    """`gene-ae embed --no-kmers` writes the tables into shard 0 only; `gene-ae search` of it reads them, never
    imports torch, and answers as the model itself does (--model, the torch path)."""
    out, ckpt, records = nokmers["index"], nokmers["ckpt"], nokmers["records"]
    assert (out / FILE).is_file() and not list(out.glob(f"shard-*/{FILE}"))
    code = """
import sys
from gene_ae.cli import main
try:
    main(sys.argv[1:])
except SystemExit as done:
    assert not done.code, done.code
print("torch imported" if "torch" in sys.modules else "no torch", file=sys.stderr)
"""
    hits = []
    for extra in ([], ["--model", str(ckpt)]):
        found = subprocess.run([sys.executable, "-c", code, "search", "--index", str(out), str(nokmers["query"]),
                                "-k", "3", *extra], capture_output=True, text=True)  # fmt: skip
        assert found.returncode == 0, found.stderr
        hits.append([line.split("\t")[:3] for line in found.stdout.splitlines()])
        assert found.stderr.strip().endswith("torch imported" if extra else "no torch"), found.stderr
    assert hits[0] == hits[1] and len(hits[0]) == 1 + 3 * 6
    assert [h[1] for h in hits[0][1::3]] == [r.id for r in records[::5]]


def test_a_served_index_without_k_mers_is_searched_by_its_tables(nokmers, tmp_path) -> None:
    """`gene-ae serve --index`'s loader and requests: an index built --no-kmers is served vector-first from its bag
    tables (no model loaded) as `gene-ae search` reads it; one with k-mers reads no vectors and loads nothing."""
    from gene_ae.cli import main
    from gene_ae.index.directory import IndexDir
    from gene_ae.search import engine
    from gene_ae.search.searcher import search_model
    from gene_ae.search.serve_index import ServeConfig, parse_request

    shard0 = IndexDir.open(nokmers["index"])
    embed, needed = search_model(shard0, None, 64)
    assert isinstance(embed, BagTables) and needed == ()
    assert not isinstance(search_model(shard0, str(nokmers["ckpt"]), 64)[0], BagTables)  # --model: the model
    sources = engine.default_sources(shard0.meta.sparse)
    body = {"sequences": [{"id": "q", "sequence": "ACGTTGCAAGGCATTAC"}]}
    assert parse_request(body, needed, ServeConfig(), sources).cfg.sources == ("dense",)
    with pytest.raises(SystemExit):
        main(["embed", "--model", str(nokmers["ckpt"]), "--input", str(nokmers["query"]), "--out",
              str(tmp_path / "kmers")])  # fmt: skip
    kmers = IndexDir.open(tmp_path / "kmers")
    assert search_model(kmers, None, 64) == (None, ())
    assert parse_request(body, (), ServeConfig(), engine.default_sources(kmers.meta.sparse)).cfg.sources == ("sparse",)
