"""Tests for the baselines and the evaluation library behind `gene-ae eval`, on bundled real data."""

from __future__ import annotations

import json
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from gene_ae.core.kmers import kmer_codes
from gene_ae.core.mutate import mutate
from gene_ae.core.records import read_columns
from gene_ae.evaluate import (
    EmbeddingMethod,
    EvalConfig,
    SourmashMethod,
    baselines,
    build_methods,
    clean_label,
    cross_set_retrieval,
    distance_faithfulness,
    label_retrieval,
    mutation_retrieval,
    parse_label,
    reconstruction,
    run_eval,
)
from gene_ae.evaluate.report import _section_table
from gene_ae.index import vectors
from shard_tools import alphabet
from shard_tools.inputs import ReaderConfig

KMER = EmbeddingMethod("5-mer", baselines.kmer_profiles)
needs_sourmash = pytest.mark.skipif(not baselines.is_available(), reason="sourmash is not installed")


def random_bases(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(alphabet.A, alphabet.T + 1, n, dtype=np.uint8)


@pytest.fixture(scope="module")
def rrna(data_dir: Path):
    return read_columns(data_dir / "rrna16s" / "16s_sample.fa.gz")


@pytest.fixture(scope="module")
def chimp(data_dir: Path):
    return read_columns(data_dir / "genefam" / "chimp_sample.tsv.gz", ReaderConfig(label_column="class"))


def untrained_encoder(vector_dim: int):
    """An untrained tiny encoder: only structure and ranges can be asserted for it."""
    import torch

    from gene_ae.config import Config
    from gene_ae.model.autoencoder import GeneAE
    from gene_ae.model.config import ModelConfig
    from gene_ae.model.encoder import Encoder

    torch.manual_seed(0)
    cfg = Config()
    cfg.model = ModelConfig(channels=32, lstm_hidden=32, vector_dim=vector_dim, window=256)
    return Encoder(GeneAE(cfg.model), device="cpu")


@pytest.fixture(scope="module")
def tiny_encoder():
    return untrained_encoder(32)


@pytest.fixture(scope="module")
def wide_encoder():
    """128 values: more than 64 bytes hold at 8 bits, so gene-ae@64b product-quantises them."""
    return untrained_encoder(128)


# ------------------------------------------------------------------------------------------ k-mer profiles


def test_kmer_profiles_rank_identical_mutated_and_unrelated_sequences() -> None:
    # 500 bases: long uniform random sequences all converge to a flat 5-mer profile (cosine -> 1), so
    # "unrelated" is only distinguishable for lengths well under 4**5 k-mers.
    seq = random_bases(500, 0)
    copy = mutate(seq, 0.01, np.random.default_rng(1))
    other = random_bases(500, 2)
    p = baselines.kmer_profiles([seq, seq.copy(), copy, other])
    assert p.shape == (4, 1024) and p.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1.0, rtol=1e-5)
    assert p[0] @ p[1] == pytest.approx(1.0, abs=1e-6)
    assert p[0] @ p[2] > 0.9
    assert p[0] @ p[3] < 0.5


def test_kmer_profiles_match_a_direct_count_and_skip_n() -> None:
    seq = np.array([alphabet.A, alphabet.C, alphabet.G, alphabet.N, alphabet.A, alphabet.C, alphabet.G], np.uint8)
    p = baselines.kmer_profiles([seq, seq[:2]], k=3)
    acg = 0 * 16 + 1 * 4 + 2  # the only real 3-mer, seen twice; the ones touching N are skipped
    expected = np.zeros(64, np.float32)
    expected[acg] = 1.0
    np.testing.assert_allclose(p[0], expected)
    assert not p[1].any()  # shorter than k: a zero row, not NaN


def test_strand_free_profiles_agree_for_a_reverse_complement() -> None:
    seq = random_bases(3000, 3)
    rc = alphabet.reverse_complement(seq)
    assert baselines.kmer_profiles([seq, rc])[0] @ baselines.kmer_profiles([seq, rc])[1] < 0.9
    for kwargs in ({"both_strands": True}, {"canonical": True}):
        p = baselines.kmer_profiles([seq, rc], **kwargs)
        assert p[0] @ p[1] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="both_strands or canonical"):
        baselines.kmer_profiles([seq], both_strands=True, canonical=True)


def test_kmer_profiles_of_10_mb_in_chunks() -> None:
    """10 Mb over several counting chunks (one record longer than a chunk): every row is the record's own
    normalised profile. Speed is measured in benchmarks/search_bench.py, not here."""
    seqs = [random_bases(5_000_000, 10), *[random_bases(1_000, i) for i in range(5_000)]]
    p = baselines.kmer_profiles(seqs)
    assert p.shape == (5_001, 1024)
    assert np.allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-5)
    for i in (0, 1, 5_000):  # the same as each record counted alone: chunks never mix rows
        assert np.allclose(p[i], baselines.kmer_profiles([seqs[i]])[0], atol=1e-6)
    codes, valid = kmer_codes(seqs[0], 5, canonical=False)  # one pass, no chunks: each k-mer once
    direct = np.bincount(codes[valid].astype(np.int64), minlength=1024).astype(np.float64)
    assert np.allclose(p[0], direct / np.linalg.norm(direct), atol=1e-6)


# ----------------------------------------------------------------------------------------------- sourmash


@needs_sourmash
def test_sourmash_finds_an_exact_copy_first_and_matches_sourmash_jaccard(rrna) -> None:
    import sourmash

    refs = rrna.seqs[:50]
    index = baselines.SourmashIndex(refs)
    assert index.scaled == 1  # 16S genes (~1.5 kb) get every k-mer (scaled=1)
    idx, sims = index.search([refs[7].copy(), random_bases(1500, 5)], k=3)
    assert idx[0, 0] == 7 and sims[0, 0] == pytest.approx(1.0)
    assert (idx[1] == -1).all() and not sims[1].any()  # no shared hash: no hit
    mhs = []
    for s in refs[:4]:
        mh = sourmash.MinHash(n=0, ksize=21, scaled=index.scaled)
        mh.add_sequence(alphabet.decode(s), force=True)
        mhs.append(mh)
    ours = index.similarities(index.sketches[:4])
    for i in range(4):
        for j in range(4):
            assert ours[i, j] == pytest.approx(mhs[i].jaccard(mhs[j]), abs=1e-6)


def test_auto_scaled_is_exact_for_genes_and_keeps_1000_hashes_for_genomes() -> None:
    assert baselines.auto_scaled([150]) == 1
    assert baselines.auto_scaled([1_500, 1_400]) == 1  # genes: every k-mer (scaled=1), the strongest sourmash
    assert baselines.auto_scaled([197_000] * 6) == 100
    assert baselines.auto_scaled([50_000_000]) == 1000


# -------------------------------------------------------------------------------------------- evaluations


def test_mutation_retrieval_with_5mers_on_16s(rrna) -> None:
    cfg = EvalConfig(n_queries=50)
    result = mutation_retrieval([KMER], rrna.seqs[:50], cfg)
    recall = result["methods"]["5-mer"]["recall@1"]
    assert result["n_queries"] == 50 and len(recall) == len(cfg.divergences)
    assert recall[0] == 1.0
    assert all(b <= a + 0.05 for a, b in zip(recall, recall[1:]))  # non-increasing, up to sampling noise
    assert recall[-1] < recall[0]
    assert all(r10 >= r1 for r1, r10 in zip(recall, result["methods"]["5-mer"]["recall@10"]))
    assert result["methods"]["5-mer"]["recall@100"] == [1.0] * len(cfg.divergences)  # 50 records: all of them


def test_label_retrieval_on_gene_families_beats_chance(chimp) -> None:
    result = label_retrieval([KMER], chimp.seqs, chimp.labels, EvalConfig())
    assert result["n_labels"] == 7 and result["n_queries"] == 600
    p1 = result["methods"]["5-mer"]["precision@1"]
    assert p1 > 0.5 and p1 > 2 * result["chance"]


def test_label_retrieval_never_returns_the_query_itself(chimp) -> None:
    index = KMER.index(chimp.seqs[:100])
    positions = np.arange(100)
    idx, _ = index.self_search(positions, 5)
    assert idx.shape == (100, 5) and not (idx == positions[:, None]).any()


def test_cross_set_retrieval_dog_against_chimp(data_dir: Path, chimp) -> None:
    dog = read_columns(data_dir / "genefam" / "dog_sample.tsv.gz", ReaderConfig(label_column="class"))
    result = cross_set_retrieval([KMER], dog.seqs[:100], dog.labels[:100], chimp.seqs, chimp.labels)
    assert result["n_queries"] == 100 and result["n_references"] == 600
    assert result["methods"]["5-mer"]["accuracy@1"] > 2 * result["chance"]


def test_distance_faithfulness_is_positive_for_5mers_on_near_pairs(rrna) -> None:
    result = distance_faithfulness([KMER], rrna.seqs[:40], EvalConfig(spearman_pairs=50))
    assert result["near_pairs"] == 50 and result["random_pairs"] == 50
    assert result["methods"]["5-mer"]["spearman_near"] > 0.5
    assert result["alignment_capped"] is False


def test_batched_reconstruction_equals_reconstruct_tokens(tiny_encoder, rrna) -> None:
    seqs = [s[:n] for s, n in zip(rrna.seqs[:6], (256, 100, 256, 37, 200, 256))]
    result = reconstruction(tiny_encoder, seqs, EvalConfig(n_queries=6, reconstruction_lengths=()))
    decoded = np.concatenate([tiny_encoder.reconstruct_tokens(s) for s in seqs])
    expected = float(np.mean(decoded == np.concatenate(seqs)))
    assert result["window"] == 256 and result["by_length"]["256"]["bases"] == sum(s.size for s in seqs)
    assert result["accuracy"] == pytest.approx(expected, abs=0.01)
    assert 0.0 < result["bits_per_base"] < 8.0


def test_parse_label_reads_genus_and_label_fields() -> None:
    assert parse_label("gi_1;tax=d:Bacteria,p:Firmicutes,f:Bacillaceae,g:Bacillus;") == "Bacillus"
    assert parse_label("PP601204.1 nextclade_dataset=clade-i label=clade_I desc=x") == "clade_I"
    assert parse_label("seq1 some description") is None


def test_clean_label_drops_placeholders_and_groups_by_regex() -> None:
    import re

    assert clean_label("unlabelled") is None and clean_label(" NA ") is None and clean_label(None) is None
    assert clean_label("clade_IIb,clade_IIb_lineage_B.1") == "clade_IIb,clade_IIb_lineage_B.1"
    clade = re.compile(r"^(clade_I+b?)")
    assert clean_label("clade_IIb,clade_IIb_lineage_B.1", clade) == "clade_IIb"
    assert clean_label("clade_IIb_lineage_B.1", clade) == "clade_IIb"
    assert clean_label("clade_I", clade) == "clade_I"
    assert clean_label("lineage_A", clade) is None
    assert clean_label("Bacillus", re.compile("cill")) == "cill"  # no group: the whole match


def test_run_eval_groups_labels_by_regex_and_drops_placeholders(rrna, tmp_path) -> None:
    """The grouping lives in run_eval (recorded in the report's config), not only in the CLI."""
    seqs = rrna.seqs[:6]
    labels = ["clade_IIb,x", "clade_IIb_y", "clade_I", "clade_I", "unlabelled", "unlabelled"]
    cfg = EvalConfig(n_queries=2, divergences=(0.01,), methods=("5-mer",), label_regex=r"^(clade_I+b?)")
    report = run_eval(None, seqs, [f"s{i}" for i in range(6)], labels, cfg, tmp_path)
    assert report["config"]["label_regex"] == r"^(clade_I+b?)"
    lr = report["label_retrieval"]
    assert lr["n_sequences"] == 4 and lr["n_labels"] == 2


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown method 'blast'"):
        build_methods(None, EvalConfig(methods=("blast",)), [random_bases(10, 0)])


# -------------------------------------------------------------------------------------------------- run_eval


@pytest.fixture(scope="module")
def eval_run(tmp_path_factory, tiny_encoder, chimp, data_dir: Path):
    """One run_eval over 40 genes plus the 48 kb lambda genome (unlabelled), logged to a local MLflow."""
    import mlflow

    root = tmp_path_factory.mktemp("eval")
    lam = read_columns(data_dir / "viruses" / "lambda_phage.fa")
    seqs, ids, labels = chimp.seqs[:40] + lam.seqs, chimp.ids[:40] + lam.ids, chimp.labels[:40] + [None]
    cfg = EvalConfig(
        n_queries=20, spearman_pairs=40, reconstruction_lengths=(64,), methods=("gene-ae", "5-mer", "sourmash")
    )
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    try:
        client = mlflow.MlflowClient(uri)
        experiment = client.create_experiment("eval-test", artifact_location=(root / "artifacts").as_uri())
        run_id = client.create_run(experiment).info.run_id
        report = run_eval(tiny_encoder, seqs, ids, labels, cfg, root / "out", run_id)
        logged = client.get_run(run_id).data.metrics
        artifacts = {f.path for f in client.list_artifacts(run_id, "eval")}
    finally:
        mlflow.set_tracking_uri(None)
    return report, root / "out", logged, artifacts


@needs_sourmash
def test_run_eval_writes_every_metric_for_every_method(eval_run) -> None:
    report, out, logged, artifacts = eval_run
    names = ("gene-ae", "5-mer", "sourmash")
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["config"]["n_queries"] == 20 and on_disk["dataset"]["n_sequences"] == 41
    for section, keys in (
        ("mutation_retrieval", ("recall@1", "recall@10", "recall@100")),
        ("label_retrieval", ("precision@1", "precision@10")),
        ("distance_faithfulness", ("spearman_random", "spearman_near")),
    ):
        assert set(on_disk[section]["methods"]) == set(names)
        for name in names:
            for key in keys:
                values = np.atleast_1d(np.array(on_disk[section]["methods"][name][key], dtype=float))
                assert np.all((values >= -1.0) & (values <= 1.0)), (section, name, key)
    assert len(on_disk["mutation_retrieval"]["query_ids"]) == 20
    assert set(on_disk["label_retrieval"]["methods"]["5-mer"]) == {"precision@1", "precision@10"}
    assert on_disk["mutation_retrieval"]["methods"]["5-mer"]["recall@1"][0] == 1.0
    rec = on_disk["reconstruction"]
    assert set(rec["by_length"]) == {"64", "256"} and 0.0 <= rec["accuracy"] <= 1.0 and rec["bits_per_base"] > 0
    assert on_disk["distance_faithfulness"]["alignment_capped"] is True  # the 48 kb genome
    assert any("first 5,000 bases" in n for n in on_disk["notes"])
    md = (out / "report.md").read_text()
    for name in names:
        assert md.count(f"| {name} |") >= 5  # a row in each results table
    assert "## Mutation retrieval: recall@100 (20 queries)" in md
    for png in ("recall_vs_divergence.png", "embedding_map.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*tmp"))  # atomic writes leave no temporaries
    assert (
        logged["eval/sourmash/recall_at_1/d0.01"] == report["mutation_retrieval"]["methods"]["sourmash"]["recall@1"][0]
    )
    assert "eval/gene-ae/reconstruction_accuracy" in logged
    assert logged["eval/5-mer/recall_at_100/d0.3"] == 1.0  # 41 records: recall@100 is the whole collection
    assert {"eval/report.json", "eval/report.md", "eval/recall_vs_divergence.png"} <= artifacts


def test_run_eval_without_sourmash_or_labels_skips_cleanly(tmp_path: Path, rrna, monkeypatch) -> None:
    monkeypatch.setattr(baselines, "is_available", lambda: False)
    seqs = rrna.seqs[:20]
    cfg = EvalConfig(n_queries=10, spearman_pairs=20, divergences=(0.01, 0.1), methods=("gene-ae", "5-mer", "sourmash"))
    report = run_eval(None, seqs, rrna.ids[:20], None, cfg, tmp_path)
    assert set(report["methods"]) == {"5-mer"}
    assert "sourmash" in report["skipped_methods"] and "gene-ae" in report["skipped_methods"]
    assert "skipped" in report["label_retrieval"]
    assert (tmp_path / "recall_vs_divergence.png").exists() and not (tmp_path / "embedding_map.png").exists()


def test_sourmash_method_similarity_is_symmetric_jaccard(rrna) -> None:
    if not baselines.is_available():
        pytest.skip("sourmash is not installed")
    method = SourmashMethod(scaled=10)
    a, b = rrna.seqs[:5], rrna.seqs[5:10]
    np.testing.assert_allclose(method.pair_similarity(a, b), method.pair_similarity(b, a))
    assert (method.pair_similarity(a, a) == 1.0).all()


def test_alignment_rerank_lifts_recall_at_1_to_the_candidates_recall(chimp) -> None:
    """'+align' rows: the same candidates (recall@10 unchanged), re-ordered by edlib identity, so the
    source of a 30 %-mutated copy comes first whenever the vector search put it in the top 10."""
    seqs = chimp.seqs[:150]
    cfg = EvalConfig(divergences=(0.1, 0.3), n_queries=40, methods=("5-mer",), rerank=10)
    methods, _ = build_methods(None, cfg, seqs)
    assert [m.name for m in methods] == ["5-mer", "5-mer+align"]
    mr = mutation_retrieval(methods, seqs, cfg)["methods"]
    base, reranked = mr["5-mer"], mr["5-mer+align"]
    assert reranked["recall@10"] == base["recall@10"]
    assert all(r >= b for r, b in zip(reranked["recall@1"], base["recall@1"]))
    assert reranked["recall@1"][1] == pytest.approx(reranked["recall@10"][1], abs=0.051)
    assert reranked["recall@1"][1] > base["recall@1"][1] + 0.1, (base, reranked)
    idx, ident = methods[1].index(seqs).self_search(np.array([0, 1]), 3)
    assert idx.shape == (2, 3) and (np.diff(ident, axis=1) <= 0).all() and (idx != [[0], [1]]).all()


def test_strong_baselines_ceiling_and_margins_on_16s(rrna) -> None:
    """Exact 8-mer counts beat 5-mer counts at 20 % on dense 16S; the hashed profile has the asked size;
    exhaustive alignment is the ceiling; each row names the best other method and the margin over it."""
    seqs = rrna.seqs[:120]
    cfg = EvalConfig(n_queries=60, divergences=(0.05, 0.2), align_queries=8)
    methods, skipped = build_methods(None, replace(cfg, methods=("5-mer", "8-mer", "6-mer@64")), seqs)
    assert [m.name for m in methods] == ["5-mer", "8-mer", "6-mer@64"] and not skipped
    hashed = methods[2].embed(seqs[:3])
    assert hashed.shape == (3, 64) and np.allclose(np.linalg.norm(hashed, axis=1), 1.0, atol=1e-5)
    exact = methods[1].index(seqs)
    idx, sims = exact.search([seqs[5]], 3)
    assert idx[0, 0] == 5 and sims[0, 0] == pytest.approx(1.0, abs=1e-5)
    self_idx, _ = exact.self_search(np.array([5]), 3)
    assert 5 not in self_idx[0]
    result = mutation_retrieval(methods, seqs, cfg)
    r5, r8 = result["methods"]["5-mer"]["recall@1"], result["methods"]["8-mer"]["recall@1"]
    assert r8[1] >= r5[1]
    for scores in result["methods"].values():  # recall@100 of 120 records: more found than in the top 10
        assert all(r100 >= r10 for r10, r100 in zip(scores["recall@10"], scores["recall@100"]))
    assert result["methods"]["6-mer@64"]["recall@100"][1] > result["methods"]["6-mer@64"]["recall@10"][1]
    ceiling = result["alignment_ceiling"]
    assert ceiling["n_queries"] == 8 and ceiling["seconds_per_query"] > 0
    assert ceiling["scores"]["recall@1"] == [1.0, 1.0]  # alignment finds every 5 % and 20 % copy of a 16S gene
    best = mutation_retrieval(
        [EmbeddingMethod("gene-ae", partial(baselines.hashed_profiles, k=6, dim=64)), *methods], seqs, cfg
    )["best_baselines"]["gene-ae recall@1"]
    assert best[1]["best"] == max(("5-mer", "8-mer", "6-mer@64"), key=lambda n: result["methods"][n]["recall@1"][1])
    assert best[1]["margin"] == pytest.approx(result["methods"]["6-mer@64"]["recall@1"][1] - best[1]["score"])


def test_the_default_search_is_scored_beside_the_vector_and_never_returns_the_query(tiny_encoder, chimp) -> None:
    """ "gene-ae search" is the search a user runs (an index as `gene-ae embed` builds it, Searcher's defaults):
    it finds every 5 % copy even with an untrained model (the exact k-mers), leaves itself out of self-search,
    is neither re-ranked again nor scored for distance faithfulness, and is no baseline of the vector's."""
    seqs = chimp.seqs[:60]
    cfg = EvalConfig(n_queries=20, divergences=(0.05, 0.2), rerank=5, methods=("gene-ae search", "gene-ae", "5-mer"))
    methods, skipped = build_methods(tiny_encoder, cfg, seqs)
    assert [m.name for m in methods] == ["gene-ae search", "gene-ae", "5-mer", "gene-ae+align", "5-mer+align"]
    assert not skipped and build_methods(None, cfg, seqs)[1]["gene-ae search"]
    result = mutation_retrieval(methods[:3], seqs, replace(cfg, align_queries=0))
    assert result["methods"]["gene-ae search"]["recall@1"][0] == 1.0
    assert all(row["best"] != "gene-ae search" for rows in result["best_baselines"].values() for row in rows)
    idx, _ = methods[0].index(seqs[:30]).self_search(np.arange(30), 3)
    assert idx.shape == (30, 3) and not (idx == np.arange(30)[:, None]).any()
    assert "gene-ae search" not in distance_faithfulness(methods[:1], seqs, EvalConfig(spearman_pairs=10))["methods"]


def test_gene_ae_at_64_bytes_stores_the_index_codes_and_compares_them(wide_encoder, chimp) -> None:
    """gene-ae@64b codes the collection with the index's pq64 coder (vectors.build_coded: IVF-PQ of one list, 64
    bytes a record, from 256 records on), and its pair similarity is its search's: the record decoded from its
    code against the float query, not the float vectors' cosine; distance faithfulness trains the coder itself."""
    import faiss

    seqs = chimp.seqs[:300]
    cfg = EvalConfig(methods=("gene-ae", "gene-ae@64b"), spearman_pairs=40)
    (plain, coded), _ = build_methods(wide_encoder, cfg, seqs)
    rng = np.random.default_rng(0)
    records, queries = seqs[:30], [mutate(s, 0.1, rng) for s in seqs[:30]]
    with pytest.raises(ValueError, match="index the collection first"):
        coded.pair_similarity(records, queries)
    with pytest.raises(ValueError, match="too few to product-quantise"):
        coded.index(seqs[:255])
    stored = coded.index(seqs).index
    floats = coded.embed(seqs)
    assert isinstance(stored, faiss.IndexIVFPQ) and stored.nlist == 1 and stored.code_size == 64
    np.testing.assert_array_equal(stored.sa_encode(floats), vectors.build_coded(floats)[0].sa_encode(floats))
    sims = coded.pair_similarity(records, queries)
    decoded = stored.sa_decode(stored.sa_encode(coded.embed(records)))
    np.testing.assert_allclose(sims, np.einsum("ij,ij->i", decoded, coded.embed(queries)), atol=1e-5)
    idx, found = vectors.search(stored, coded.embed(queries), len(seqs))
    np.testing.assert_allclose(found[idx == np.arange(30)[:, None]], np.clip(sims, -1, 1), atol=1e-4)
    assert np.abs(sims - plain.pair_similarity(records, queries)).max() > 1e-3
    fresh = build_methods(wide_encoder, replace(cfg, methods=("gene-ae@64b",)), seqs)[0][0]
    spearman = distance_faithfulness([plain, fresh], seqs, cfg)["methods"]
    assert fresh.coder.ntotal == len(seqs) and spearman["gene-ae@64b"] != spearman["gene-ae"]


def test_label_retrieval_names_a_coded_method_it_cannot_score_and_scores_the_rest(wide_encoder, chimp) -> None:
    """Fewer labelled records than product codes need (256): gene-ae@64b is named as not scored, with why, in
    the section and its report table; the other methods are scored (the eval stopped mid-run with a ValueError)."""
    seqs, labels = chimp.seqs[:300], [lab if i < 200 else None for i, lab in enumerate(chimp.labels[:300])]
    cfg = EvalConfig(methods=("gene-ae", "gene-ae@64b"), label_queries=50)
    methods, _ = build_methods(wide_encoder, cfg, seqs)
    result = label_retrieval(methods, seqs, labels, cfg)
    assert set(result["methods"]) == {"gene-ae"} and result["n_sequences"] == 200
    assert "too few to product-quantise" in result["not_scored"]["gene-ae@64b"]
    table = _section_table({"label_retrieval": result}, "label_retrieval", "Label retrieval")
    assert "Not scored: gene-ae@64b (200 vectors are too few" in table and "| gene-ae |" in table
