"""The user's features in the model: declared in [model.features], a vector input (categorical embedding,
standardised numeric MLP) or a training signal (supervised contrastive), required where the vector takes them
(Encoder, pyfunc, index build, search), and carried by the loader into every batch."""

from __future__ import annotations

import math
from dataclasses import asdict
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from gene_ae.config import Config, load_config
from gene_ae.core.mutate import mutate
from gene_ae.core.records import iter_input
from gene_ae.index import build
from gene_ae.index.directory import IndexDir
from gene_ae.index.vectors import SQ8_RANGE
from gene_ae.model.autoencoder import GeneAE
from gene_ae.model.config import ModelConfig
from gene_ae.model.encoder import Encoder
from gene_ae.model.features import FeatureStats, ModelFeature, codes, parse_features
from gene_ae.model.losses import supcon_loss
from gene_ae.search import checks, engine
from gene_ae.train.step import batch_loss
from shard_tools.inputs import ReaderConfig

WINDOW = 128
VECTOR = (ModelFeature("family", "categorical", "vector", 1.0, ("a", "b")), ModelFeature("gc", "numeric", "vector"))


def tiny(features=()) -> Config:
    cfg = Config()
    cfg.model = ModelConfig(channels=32, embed_dim=16, lstm_hidden=32, vector_dim=64, window=WINDOW, downsample=4,
                            features=tuple(features))  # fmt: skip
    return cfg


def encoder(features=()) -> Encoder:
    torch.manual_seed(0)
    cfg = tiny(features)
    return Encoder(GeneAE(cfg.model), device="cpu")


@pytest.fixture(scope="module")
def genes(data_dir: Path) -> list:
    recs = list(iter_input(data_dir / "genefam" / "dog_sample.tsv.gz", ReaderConfig(label_column="class")))[:24]
    for i, r in enumerate(recs):
        r.features = {"family": "ab"[i % 2], "gc": round(float(np.isin(r.tokens, [4, 5]).mean()), 3)}
    return recs


# --- declaring features -------------------------------------------------------------------------------------


def test_features_declared_in_toml_and_set(tmp_path: Path) -> None:
    toml = tmp_path / "f.toml"
    toml.write_text('[model.features]\nfamily = { kind = "categorical", use = "signal", weight = 0.3 }\n')
    cfg = load_config(str(toml), ["model.features=family:categorical:signal:0.3"])
    assert cfg.model.features == (ModelFeature("family", "categorical", "signal", 0.3),)
    assert load_config(str(toml), []).model.features == cfg.model.features
    again = Config.from_dict(cfg.to_dict())  # as a checkpoint's config.json loads back
    assert again.model.features == cfg.model.features
    assert cfg.flat()["model.features"] == "family:categorical:signal:0.3"  # the MLflow param, short


@pytest.mark.parametrize(
    "value,words",
    [
        ("gc:numeric:signal", "numeric feature can enter the vector"),
        ("family:colour", "kind must be one of"),
        ("family:categorical:vector:0", "weight: must be in (0, 10]"),
        ("family:categorical:vector:x", "weight: not a number"),
        ("family,family", "names a feature twice"),
    ],
)
def test_a_bad_feature_declaration_is_one_line_naming_it(value: str, words: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_features(value)
    assert "\n" not in str(exc.value) and words in str(exc.value) and "model.features" in str(exc.value)


def test_stats_fit_categories_and_standardisation() -> None:
    specs = (ModelFeature("family"), ModelFeature("gc", "numeric", "vector"))
    stats = FeatureStats()
    for fam, gc in (("x", 0.4), ("y", 0.6), (None, None), ("x", float("nan"))):
        stats.add(specs, {"family": fam, "gc": gc})
    family, gc = stats.fitted(specs)
    assert family.categories == ("x", "y") and gc.mean == pytest.approx(0.5) and gc.std == pytest.approx(0.1)
    assert codes((family, gc), {"family": "y", "gc": 0.7}).tolist() == pytest.approx([2.0, 0.7])
    unknown = codes((family, gc), {"family": "z"})
    assert unknown[0] == 0 and math.isnan(unknown[1])  # unseen -> the unknown bucket; missing -> NaN


# --- features in the vector ---------------------------------------------------------------------------------


def test_vector_features_move_the_vector_and_are_required(genes) -> None:
    enc = encoder(VECTOR)
    assert enc.required_features == ["family", "gc"]
    seqs = [g.tokens for g in genes[:4]]
    a = enc.embed_tokens(seqs, features={"family": ["a"] * 4, "gc": [0.5] * 4})
    b = enc.embed_tokens(seqs, features={"family": ["b"] * 4, "gc": [0.5] * 4})
    unseen = enc.embed_tokens(seqs, features={"family": ["zzz"] * 4, "gc": [None] * 4})
    assert np.allclose(np.linalg.norm(a, axis=1), 1) and not np.allclose(a, b) and np.isfinite(unseen).all()
    with pytest.raises(ValueError, match="takes the feature 'gc'") as exc:
        enc.embed_tokens(seqs, features={"family": ["a"] * 4})
    assert "\n" not in str(exc.value)
    plain = encoder()
    assert plain.required_features == [] and plain.embed_tokens(seqs).shape == (4, 64)


def test_the_pyfunc_refuses_input_without_a_required_feature(genes) -> None:
    from gene_ae.registry.pyfunc_model import EncoderPyfunc
    from shard_tools.alphabet import decode

    served = EncoderPyfunc()
    served.encoder = encoder(VECTOR)
    frame = pd.DataFrame({"sequence": [decode(g.tokens) for g in genes[:3]], "family": ["a", "b", None]})
    with pytest.raises(Exception, match="takes the feature 'gc'"):
        served.predict(None, frame)
    frame["gc"] = [0.4, None, 0.6]
    got = served.predict(None, frame)
    want = served.encoder.embed_tokens([g.tokens for g in genes[:3]],
                                       features={"family": ["a", "b", None], "gc": [0.4, None, 0.6]})  # fmt: skip
    assert np.allclose(got, want)


def test_index_build_and_search_pass_each_record_and_query_its_features(genes, tmp_path: Path) -> None:
    """Record vectors and window vectors of an index get their record's features; search embeds the queries
    with theirs; the stored records re-embed to the index's vectors (the provenance check) with their own."""
    enc = encoder(VECTOR)
    embed = partial(enc.embed_tokens, batch_size=64)
    model = build.ModelInfo(uri="mem", version="", dim=64, window=WINDOW, features=("family", "gc"))
    kinds = {"family": "categorical", "gc": "numeric"}
    build.build_index(iter(genes), embed, model, tmp_path / "idx", build.BuildConfig(features=kinds))
    opened = IndexDir.open(tmp_path / "idx")
    want = enc.embed_tokens([g.tokens for g in genes], features={k: [g.features[k] for g in genes] for k in kinds})
    step = 2 * SQ8_RANGE / 255  # the default 8-bit codes: within half a step a value
    assert np.abs(opened.record_vectors(np.arange(len(genes))) - want).max() <= step / 2 + 1e-6
    assert checks.model_agreement(opened, embed) > 0.999
    rng = np.random.default_rng(0)
    queries = [mutate(g.tokens, 0.05, rng) for g in genes[:6]]
    given = {k: [g.features[k] for g in genes[:6]] for k in kinds}
    every = engine.SearchConfig(k=3, rerank=0, sources=engine.SOURCES)  # the vector lists read the features
    hits = engine.search(opened, queries, embed, every, features=given)
    assert [h[0].subject for h in hits] == list(range(6))
    with pytest.raises(ValueError, match="takes the feature"):
        engine.search(opened, queries, embed, every)


def test_the_cli_asks_for_the_feature_column_a_model_needs() -> None:
    enc = encoder(VECTOR)
    declared = {"family": "categorical", "gc": "numeric", "other": "numeric"}
    assert enc.check_features(declared, "x.tsv") == ("family", "gc")
    with pytest.raises(ValueError, match="takes the feature 'gc' as numeric, declared categorical"):
        enc.check_features({**declared, "gc": "categorical"}, "x.tsv")
    with pytest.raises(ValueError) as exc:
        enc.check_features({"family": "categorical"}, "x.tsv")
    assert str(exc.value) == (
        "x.tsv: this model's vector takes the feature 'gc' (numeric): declare it with --feature-column gc:numeric"
    )


# --- features as a training signal --------------------------------------------------------------------------


def test_supcon_pulls_rows_sharing_a_label_together() -> None:
    torch.manual_seed(0)
    labels = torch.tensor([1, 1, 2, 2, 0, 0])
    apart = torch.randn(6, 16)
    together = apart.clone()
    together[1], together[3] = together[0] + 0.01, together[2] + 0.01
    assert supcon_loss(together, labels) < supcon_loss(apart, labels)
    assert supcon_loss(apart, torch.zeros(6, dtype=torch.long)) == 0  # no label: no anchor, no term


def test_a_signal_feature_adds_its_term_and_trains_the_vector(genes) -> None:
    """A batch as the loader gives it (codes in batch["features"]): the supervised-contrastive term is in the
    loss, and its gradient reaches the vector's weights; without the feature there is no such term."""
    from gene_ae.core.windows import pad_batch

    spec = ModelFeature("family", "categorical", "signal", 1.0, ("a", "b"))
    cfg = tiny([spec])
    cfg.train.contrastive_weight = 0.0  # the signal alone
    seqs = [g.tokens[:WINDOW] for g in genes[:8]]
    tokens, lengths = pad_batch(seqs)
    batch = {"tokens": tokens, "lengths": lengths, "view": tokens, "view_lengths": lengths,
             "features": np.stack([codes([spec], g.features) for g in genes[:8]])}  # fmt: skip
    torch.manual_seed(0)
    model = GeneAE(cfg.model)
    loss, metrics = batch_loss(model, batch, cfg, 0, torch.device("cpu"))
    assert metrics["loss_supcon_family"] > 0
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "bags" in n)
    _, plain = batch_loss(GeneAE(tiny().model), batch, tiny(), 0, torch.device("cpu"))
    assert "loss_supcon_family" not in plain


def test_batches_with_a_signal_feature_hold_groups_that_share_it() -> None:
    """Class-balanced batches: with groups of 4, nearly every window whose record has a value shares its batch
    with another window of that value; in random batches of 16 over 60 values, few do. Unknown (0) windows
    stand alone, and no window is lost."""
    import random

    from gene_ae.train.data import bucket_batches

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 61, size=400)  # 0: unknown
    items = [(rng.integers(3, 7, size=int(rng.integers(60, 100))).astype(np.uint8),) * 2 + (np.array([lab, 0.5]),)
             for lab in labels]  # fmt: skip

    def with_positive(batches: list[dict]) -> float:
        codes = [b["features"][:, 0] for b in batches]
        hits = [np.sum(c == v) >= 2 for c in codes for v in c if v > 0]
        return float(np.mean(hits))

    grouped = list(bucket_batches(items, 16, 25, random.Random(0), group=(0, 4)))
    plain = list(bucket_batches(items, 16, 25, random.Random(0)))
    assert sum(len(b["tokens"]) for b in grouped) == sum(len(b["tokens"]) for b in plain) == 400
    assert with_positive(grouped) > 0.85 and with_positive(plain) < 0.4


def test_a_registered_model_names_and_requires_its_vector_features(tmp_path: Path, genes, monkeypatch) -> None:
    """Logged and registered as production logs it: its signature carries the feature columns (else MLflow's
    schema enforcement would drop them), the loaded pyfunc embeds with them and refuses a frame without one."""
    import mlflow

    from gene_ae.model.checkpoint import save as save_checkpoint
    from gene_ae.registry import tracking
    from shard_tools.alphabet import decode

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    enc = encoder(VECTOR)
    ckpt = save_checkpoint(tmp_path / "ckpt", {"model": asdict(enc.cfg)}, enc.model)
    with mlflow.start_run():
        info = tracking.log_encoder(ckpt, register="feat-model")
    served = mlflow.pyfunc.load_model(f"models:/feat-model/{info.registered_model_version}")
    assert served.metadata.get_input_schema().input_names() == ["sequence", "family", "gc"]
    seqs = [decode(g.tokens) for g in genes[:3]]
    got = served.predict(pd.DataFrame({"sequence": seqs, "family": ["a", "b", None], "gc": [0.4, None, 0.6]}))
    want = enc.embed_tokens([g.tokens for g in genes[:3]],
                            features={"family": ["a", "b", None], "gc": [0.4, None, 0.6]})  # fmt: skip
    assert np.allclose(got, want, atol=1e-5)
    with pytest.raises(Exception, match="takes the feature 'gc'"):
        served.predict(pd.DataFrame({"sequence": seqs, "family": ["a", "b", None]}))


def test_a_coded_models_queue_keeps_the_stored_codes_and_the_float_views_apart(genes) -> None:
    """train.queue_size with a 1-bit model (views float, model.code_views false): the windows' queue holds the
    codes as stored (every value +-1/sqrt(D)), the views' queue the float views, and a second batch reads both."""
    from gene_ae.core.windows import pad_batch
    from gene_ae.model.losses import NegativeQueue

    cfg = tiny()
    cfg.model.vector_bits, cfg.train.queue_size = 1, 12
    seqs = [g.tokens[:WINDOW] for g in genes[:8]]
    tokens, lengths = pad_batch(seqs)
    batch = {"tokens": tokens, "lengths": lengths, "view": tokens[::-1].copy(), "view_lengths": lengths[::-1].copy()}
    torch.manual_seed(0)
    model, queue = GeneAE(cfg.model), NegativeQueue(cfg.train.queue_size)
    first, _ = batch_loss(model, batch, cfg, 0, torch.device("cpu"), queue)
    windows, views = queue.get()
    step = cfg.model.vector_dim**-0.5
    assert windows.shape == views.shape == (8, cfg.model.vector_dim)
    assert torch.allclose(windows.abs(), torch.full_like(windows, step))  # the stored codes
    assert not torch.allclose(views.abs(), torch.full_like(views, step))  # float
    second, _ = batch_loss(model, batch, cfg, 1, torch.device("cpu"), queue)
    assert queue.get()[0].shape == (12, cfg.model.vector_dim) and second > first  # 8 more keys a side to rank past
