"""64 bytes a record (issue 33): the model's vector trained as the 8-bit code it is stored as, and the methods
evaluation compares at those bytes (the vector product-quantised, hashed k-mer profiles at 8 bits, MinHash)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gene_ae.core.mutate import mutate
from gene_ae.evaluate import baselines
from gene_ae.evaluate.config import EvalConfig
from gene_ae.evaluate.methods import EmbeddingMethod, MinHashMethod, build_methods
from gene_ae.index import vectors as vector_index
from gene_ae.model.config import ModelConfig
from gene_ae.model.layers import ProductCode, int_code


def test_the_code_is_the_unit_vector_rounded_and_passes_its_gradient() -> None:
    v = torch.randn(5, 64, requires_grad=True)
    code = int_code(v, 8)
    scaled = code.detach() * 127
    assert torch.allclose(scaled, scaled.round(), atol=1e-4)  # every value a multiple of 1/127
    assert torch.allclose(code, F.normalize(v, dim=-1), atol=0.5 / 127 + 1e-6)  # within half a step of the vector
    weights = torch.randn(5, 64)
    (code * weights).sum().backward()
    straight = torch.autograd.grad((F.normalize(v, dim=-1) * weights).sum(), v)[0]
    assert torch.allclose(v.grad, straight)  # straight-through: the rounding is not in the gradient


def test_only_float_or_8_bit_vectors_are_accepted() -> None:
    with pytest.raises(ValueError, match="vector_bits"):
        ModelConfig(vector_bits=4)


def test_a_minhash_of_16_bins_is_64_bytes_and_ranks_a_copy_above_strangers() -> None:
    rng = np.random.default_rng(0)
    seqs = [rng.integers(3, 7, 1500).astype(np.uint8) for _ in range(50)]
    sketches = baselines.minhash_codes(seqs, 11)
    assert sketches.shape == (50, 16) and sketches.dtype == np.uint32 and sketches[0].nbytes == 64
    same = baselines.minhash_similarity(sketches[0], sketches[0])
    copy = baselines.minhash_codes([mutate(seqs[0], 0.02, rng)], 11)
    sims = baselines.minhash_similarity(copy, sketches)
    assert same == 1.0 and sims.argmax() == 0 and sims[1:].max() < 0.2 < sims[0]
    found, _ = MinHashMethod(11).index(seqs).search([mutate(seqs[7], 0.02, rng)], 3)
    assert found[0, 0] == 7


@pytest.mark.parametrize("dim", [64, 512])
def test_vectors_stored_in_64_bytes_find_their_own(dim) -> None:
    """64 values at 8 bits (sq8), or 512 product-quantised to 64 sub-vectors of 8 bits: 64 bytes a record, from 256
    records on (fewer cannot train 256 codes a sub-vector)."""
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(300, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index, _ = vector_index.build_coded(vectors, "flat", 64)
    assert index.sa_code_size() == 64
    _, found = index.search(vectors[:20], 1)
    assert (found[:, 0] == np.arange(20)).mean() >= 0.9
    if dim > 64:
        with pytest.raises(ValueError, match="too few to product-quantise"):
            vector_index.build_coded(vectors[:255], "flat", 64)


@pytest.mark.parametrize("codec", ["pq64", "signs"])
def test_auto_scans_64_byte_codes_whole_where_float_vectors_get_an_ivf(monkeypatch, codec) -> None:
    """auto: coded vectors in one list up to CODED_FLAT_MAX a shard (an IVF's float32 centroids would cost 40 % of
    a 10^5-gene shard's codes), uncoded ones by IVF above FLAT_MAX; each limit moves only its own."""
    monkeypatch.setattr(vector_index, "FLAT_MAX", 300)
    monkeypatch.setattr(vector_index, "PQ_MIN", 256)
    vectors = np.random.default_rng(2).normal(size=(800, 64 if codec == "pq64" else 512)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = np.repeat(vectors, 2, axis=1) if codec == "pq64" else vectors  # 128 values: product-quantised
    coded, kind = vector_index.build_faiss(vectors, "auto", codec)
    assert (kind, coded.nlist, coded.sa_code_size()) == ("flat", 1, 64)
    _, uncoded_kind = vector_index.build_faiss(vectors, "auto", "sq8")
    assert uncoded_kind == "ivf"
    monkeypatch.setattr(vector_index, "CODED_FLAT_MAX", 500)
    coded, kind = vector_index.build_faiss(vectors, "auto", codec)
    assert kind == "ivf" and coded.nlist > 1


def test_methods_at_n_bytes_are_named_by_their_size() -> None:
    names = ("7-mer@64b", "minhash-k11@64b", "gene-ae@64b")
    methods, skipped = build_methods(None, EvalConfig(methods=names, rerank=0), [])
    assert [m.name for m in methods] == ["7-mer@64b", "minhash-k11@64b"] and "gene-ae@64b" in skipped
    assert isinstance(methods[0], EmbeddingMethod) and methods[0].code_bytes == 64 and methods[1].bins == 16
    with pytest.raises(ValueError, match="multiple of 4 bytes"):
        build_methods(None, EvalConfig(methods=("minhash-k11@66b",), rerank=0), [])


def test_the_product_code_is_its_centroids_and_trains_them() -> None:
    """Each sub-vector becomes one of its part's 256 centroids (one byte), the gradient passes straight through
    to the vector, and the VQ loss moves the centroids (model.vector_pq)."""
    torch.manual_seed(0)
    code = ProductCode(64, 8)
    v = torch.randn(300, 64, requires_grad=True)
    coded, loss = code(v)
    parts = coded.detach().view(300, 8, 8)
    for m in range(8):  # every coded sub-vector is a centroid of its part
        dist = ((parts[:, m, None, :] - code.centroids.detach()[m][None]) ** 2).sum(-1)
        assert dist.min(1).values.max() < 1e-12
    weights = torch.randn(300, 64)
    (coded * weights).sum().backward(retain_graph=True)
    straight = torch.autograd.grad((F.normalize(v, dim=-1) * weights).sum(), v)[0]
    assert torch.allclose(v.grad, straight, atol=1e-6)
    loss.backward()
    assert code.centroids.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="vector_pq"):
        ModelConfig(vector_dim=64, vector_pq=7)


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_sign_codes_store_a_bit_a_value_and_score_float_queries_against_the_signs(kind) -> None:
    """vectors.build_signs (the index's signs codec; gene-ae@512bit, K-mer@512bit in the eval): 512 values in 64
    bytes, a float query's score its dot with the record's signs scaled to unit length, best first, flat or by IVF
    (every list scanned here: the same answer); the trained 1-bit vector is those signs."""
    vectors = vector_index
    rng = np.random.default_rng(0)
    records = rng.normal(size=(2000, 512)).astype(np.float32)
    records /= np.linalg.norm(records, axis=1, keepdims=True)
    code, built = vectors.build_signs(records, kind)
    assert built == kind and code.ntotal == 2000 and code.code_size == 64
    signs = np.where(records >= 0, 1, -1).astype(np.float32) / np.sqrt(512)
    np.testing.assert_allclose(vectors.requantised(code, records), signs, atol=1e-6)
    code.nprobe = code.nlist
    queries = records[:5] + 0.02 * rng.normal(size=(5, 512)).astype(np.float32)
    idx, sims = vectors.search(code, queries, 10)
    expected = queries @ signs.T
    np.testing.assert_array_equal(idx, np.argsort(-expected, axis=1)[:, :10])
    np.testing.assert_array_equal(idx[:, 0], np.arange(5))
    np.testing.assert_allclose(sims, np.take_along_axis(expected, idx, 1), rtol=1e-5)
    kept, _ = vectors.search(code, queries, 3, ids=np.arange(100, 2000))  # an ID filter (--where) works on it
    assert (kept >= 100).all()
    trained = int_code(torch.from_numpy(records[:3]), 1).numpy()
    np.testing.assert_allclose(trained, signs[:3], atol=1e-6)
    with pytest.raises(ValueError, match="8 values a byte"):
        vectors.build_signs(records[:, :100])
    index, _ = vectors.build_faiss(records, kind, "signs")  # the codec builds the same code
    assert index.code_size == 64 and vectors.search(index, queries, 10)[0].tolist() == idx.tolist()
    (kmer,), skipped = build_methods(None, EvalConfig(methods=("7-mer@512bit", "gene-ae@512bit")), [])
    assert kmer.signs and kmer.code_bytes == 64 and skipped == {"gene-ae@512bit": "no encoder given"}
    with pytest.raises(ValueError, match="multiple of 8 bits"):
        build_methods(None, EvalConfig(methods=("7-mer@100bit",)), [])


@pytest.mark.parametrize("code_views", [True, False])
def test_sign_training_codes_the_records_and_leaves_the_queries_float_when_asked(code_views) -> None:
    """model.vector_bits = 1: the windows and siblings (records) are trained as their signs; the views (a search's
    queries) as signs too (code_views) or float, as a search compares a float query with the stored signs, and
    the encoder then gives the float vector that the index codes."""
    from gene_ae.model.autoencoder import GeneAE
    from shard_tools.alphabet import FIRST_BASE

    torch.manual_seed(0)
    cfg = ModelConfig(channels=16, embed_dim=8, lstm_hidden=8, vector_dim=64, window=64, downsample=4,
                      vector_bits=1, code_views=code_views)  # fmt: skip
    model = GeneAE(cfg)
    x = torch.randint(FIRST_BASE, FIRST_BASE + 4, (3, 64))
    others = torch.randint(FIRST_BASE, FIRST_BASE + 4, (6, 64))
    out = model(x, x > 0, others, queries=3)

    def signs(v: torch.Tensor) -> bool:
        return torch.allclose(v.detach().abs(), torch.full_like(v, 64**-0.5))

    assert signs(out["vector"]) and signs(out["others"][3:])  # records: windows and siblings
    assert signs(out["others"][:3]) == code_views  # queries: the views
    embedded = model.embed(x, x > 0)
    assert signs(embedded) == code_views


def test_a_checkpoint_written_before_code_views_keeps_coding_both_sides(tmp_path) -> None:
    """A coded model's config.json from before model.code_views loads as trained (views coded too); a new one, or a
    float model, takes the field as written or its default."""
    import json

    from gene_ae.model.config import CONFIG_FILE, load_sections

    for model, expected in [({"vector_bits": 1}, True), ({"vector_bits": 8, "code_views": False}, False),
                            ({"vector_bits": 0}, False)]:  # fmt: skip
        (tmp_path / CONFIG_FILE).write_text(json.dumps({"model": model}))
        assert ModelConfig.from_dict(load_sections(tmp_path)["model"]).code_views is expected, model


def test_recall_with_stored_codes_scores_coded_records_against_float_queries() -> None:
    """mutation_recall's `stored` codes the originals only (what validation reports for a coded model): a store
    that zeroes the records finds nothing at 1 where the float vectors find every copy."""
    from gene_ae.evaluate.metrics import mutation_recall

    rng = np.random.default_rng(2)
    seqs = [rng.integers(3, 7, 800).astype(np.uint8) for _ in range(30)]

    def embed(s):
        return baselines.hashed_profiles(s, 7, 256)

    assert mutation_recall(embed, seqs, (0.05,), 0)["recall@1"] == [1.0]
    signs = mutation_recall(embed, seqs, (0.05,), 0, stored=lambda v: np.sign(v))["recall@1"][0]
    assert signs >= 0.9
    assert mutation_recall(embed, seqs, (0.05,), 0, stored=np.zeros_like)["recall@1"][0] < 0.2
