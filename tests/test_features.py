"""The user's features: typed columns, the --where language, and filtered search equal to a search of an index
holding only the records that pass."""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from shared import tiny_model

from gene_ae.core.features import FeatureColumns, where
from gene_ae.core.mutate import mutate
from gene_ae.core.records import iter_input
from gene_ae.index import build
from gene_ae.index.directory import IndexDir
from gene_ae.search import engine
from shard_tools.inputs import ReaderConfig

WINDOW = 256
KINDS = {"family": "categorical", "gc": "numeric"}


@pytest.fixture(scope="module")
def columns() -> FeatureColumns:
    rows = [{"family": "a", "gc": 0.4}, {"family": "b", "gc": 0.6}, {"family": None, "gc": None}, {"family": "a"}]
    return FeatureColumns.from_rows(KINDS, rows)


@pytest.mark.parametrize(
    ("expr", "rows"),
    [
        ('family == "a"', [0, 3]),
        ("family == 'b' or gc < 0.5", [0, 1]),
        ('family != "a"', [1]),  # a missing value matches no comparison
        ('not family == "a"', [1, 2]),
        ('family in ["a", "b"] and gc >= 0.4', [0, 1]),
        ('family not in ["a"]', [1]),
        ('(gc > 0.5 or gc <= 0.4) and not (family == "b")', [0]),
        ("gc == 4e-1", [0]),
    ],
)
def test_where_selects_what_it_says(columns, expr, rows) -> None:
    assert np.flatnonzero(where(expr, columns)).tolist() == rows


@pytest.mark.parametrize(
    ("expr", "words"),
    [
        ('colour == "red"', "unknown feature 'colour' (this index has: family, gc)"),
        ("family == 3", "'family' is categorical: compare it with quoted text"),
        ('gc > "high"', "'gc' is numeric: compare it with a number"),
        ('family < "b"', "use ==, != or in"),
        ('family == "a" and', "expected name, got the end"),
        ("gc > 0.5 )", "unexpected ')'"),
        ("", "empty filter"),
        ("gc ~ 1", "cannot read"),
    ],
)
def test_a_bad_filter_is_one_line_naming_what_is_wrong(columns, expr, words) -> None:
    with pytest.raises(ValueError) as err:
        where(expr, columns)
    assert words in str(err.value) and "\n" not in str(err.value) and str(err.value).startswith("--where")


def test_columns_round_trip_through_the_index_file(columns, tmp_path) -> None:
    columns.save(tmp_path)
    back = FeatureColumns.load(tmp_path)
    assert back.kinds == KINDS and list(back.values["family"]) == ["a", "b", None, "a"]
    assert back.values["gc"][0] == 0.4 and math.isnan(back.values["gc"][2]) and back.text("gc", 3) == ""


@pytest.fixture(scope="module")
def genes(data_dir: Path) -> list:
    recs = list(iter_input(data_dir / "genefam" / "dog_sample.tsv.gz", ReaderConfig(label_column="class")))[:40]
    for r in recs:
        gc = float(np.isin(r.tokens, [4, 5]).mean())  # C and G tokens
        r.features = {"family": r.label, "gc": round(gc, 3)}
    return recs


def _index(recs, out: Path, embed) -> IndexDir:
    model = build.ModelInfo(uri="mem", version="", dim=64, window=WINDOW)
    build.build_index(iter(recs), embed, model, out, build.BuildConfig(features=KINDS))
    return IndexDir.open(out)


def test_a_filtered_search_ranks_the_passing_records_as_an_index_of_only_them(genes, tmp_path) -> None:
    embed = partial(tiny_model(WINDOW)[1].embed_tokens, batch_size=64)
    whole = _index(genes, tmp_path / "all", embed)
    family = max(set(whole.features.values["family"]), key=list(whole.features.values["family"]).count)
    mask = where(f"family == {family!r} or gc > 0.5", whole.features)
    assert 2 < mask.sum() < len(genes)
    passing = [g for g, keep in zip(genes, mask) if keep]
    only = _index(passing, tmp_path / "only", embed)
    rng = np.random.default_rng(1)
    queries = [mutate(g.tokens, d, rng) for g in genes[:12] for d in (0.05, 0.25)]
    for rerank in (0, 5):
        scfg = engine.SearchConfig(k=5, rerank=rerank)
        filtered = engine.search(whole, queries, embed, scfg, allowed=mask)
        alone = engine.search(only, queries, embed, scfg)
        position = np.flatnonzero(mask)  # record j of `only` is record position[j] of `whole`
        assert [[h.subject for h in hits] for hits in filtered] == [
            [int(position[h.subject]) for h in hits] for hits in alone
        ]
        assert all(mask[h.subject] for hits in filtered for h in hits)
