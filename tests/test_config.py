"""The run config refuses what cannot train, before Ray starts, in one line naming `section.key` and the range;
training always ends: a train split with nothing usable is refused, and a finished run is not rerun for ever."""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import random
import tempfile
import time
import tomllib
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shared import examples, one_line_error

from gene_ae.config import Config, DataConfig, TrainConfig, load_config
from gene_ae.model.config import ModelConfig
from gene_ae.train.data import random_windows, train_loader
from gene_ae.train.driver import checked_config, parse_args
from shard_tools.inputs import ReaderConfig, read_records
from shard_tools.writer import ShardConfig, ShardWriter

REPO = Path(__file__).resolve().parents[1]
SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


def _declared() -> dict[tuple[str, str], tuple[object, object]]:
    """(section, key) -> (type, Range or None), as the config classes declare them (structured fields a section
    parses and checks itself, its OWN_CHECKS, such as model.features, apart)."""
    from gene_ae.core.settings import field_types

    return {
        (section, key): (kind, cls.LIMITS.get(key))
        for section, cls in SECTIONS.items()
        for key, kind in field_types(cls).items()
        if key not in getattr(cls, "OWN_CHECKS", ())
    }


def _assert_checked(cfg: Config) -> None:
    """Every field of its declared type (bool apart from int, floats finite) and within its declared range."""
    for (section, key), (kind, limit) in _declared().items():
        value = getattr(getattr(cfg, section), key)
        where = f"{section}.{key} = {value!r}"
        if kind in (bool, int, float, str):
            assert type(value) is kind, where
            values = [value] if kind in (int, float) else []
        else:
            assert type(value) is tuple and all(type(v) is int for v in value), where
            values = list(value)
        for v in values:
            assert math.isfinite(v) and (limit is None or v in limit), where


def test_every_numeric_setting_declares_its_range_and_checkpoints_still_load() -> None:
    """One mechanism for the three sections: each int, float and int-tuple field has a Range in its class's
    LIMITS; the defaults pass it; a checkpoint's config.json (JSON: lists, ints for floats) loads back."""
    for (section, key), (kind, limit) in _declared().items():
        if kind not in (bool, str):
            assert limit is not None, f"{section}.{key} ({kind}) declares no range"
    _assert_checked(Config())
    saved = json.loads(json.dumps(Config().to_dict()))
    saved["train"]["lr"] = 1  # an int where a float belongs, as a hand-edited file may hold
    loaded = Config.from_dict(saved)
    assert loaded.model.kmer_sizes == (5, 7) and type(loaded.train.lr) is float
    _assert_checked(loaded)


# Each was accepted at 09275d9 and then trained for ever, hung or trained garbage (or crashed inside Ray).
BAD = [
    ("train.steps", "0", "0", ">= 1"),
    ("train.steps", "1.5", "1.5", "an integer >= 1"),
    ("train.steps", None, "true", "an integer >= 1"),
    ("train.steps", None, '"10"', "an integer >= 1"),
    ("train.lr", "-1", "-1.0", "> 0"),
    ("train.lr", "nan", "nan", "a finite number > 0"),
    ("train.weight_decay", "inf", "inf", "a finite number >= 0"),
    ("train.temperature", "0", "0.0", "> 0"),
    ("train.log_every", "0", "0", ">= 1"),
    ("train.checkpoint_every", "0", "0", ">= 1"),
    ("train.steps_per_epoch", "0", "0", ">= 1"),
    ("train.grad_clip", "0", "0.0", "> 0"),
    ("train.seed", "-1", "-1", "in [0, "),
    ("train.max_failures", "-1", "-1", ">= 0"),
    ("train.name", "", '""', "folder name"),
    ("data.batch_size", "0", "0", ">= 1"),
    ("data.window", "-5", "-5", ">= 1"),
    ("data.min_length", "0", "0", ">= 1"),
    ("data.rc_prob", "1.5", "1.5", "in [0, 1]"),
    ("data.view_divergence", "2", "2.0", "in [0, 1]"),
    ("data.sibling_ratio", "-0.1", "-0.1", "in [0, 1]"),
    ("data.windows_per_record", "0", "0.0", "> 0"),
    ("data.shuffle_buffer", "0", "0", ">= 1"),
    ("model.dropout", "1.5", "1.5", "in [0, 1)"),
    ("model.vector_dim", None, "64.0", "an integer >= 1"),
    ("model.kmer_init_std", "0", "0.0", "> 0"),
    ("model.kmer_sizes", "5,16", "[5, 16]", "integers each in [1, 15]"),
    ("model.kmer_sizes", None, "[5, true]", "a list of integers"),
    ("model.variational", "maybe", "2", "true or false"),
]


@pytest.mark.parametrize(("key", "text", "toml", "wanted"), BAD, ids=[f"{b[0]}={b[2]}" for b in BAD])
def test_a_bad_setting_is_refused_in_one_line_naming_it_and_its_range(key, text, toml, wanted) -> None:
    section, name = key.split(".")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bad.toml"
        path.write_text(f"[{section}]\n{name} = {toml}\n")
        with pytest.raises(ValueError) as exc:
            load_config(path)
        assert one_line_error(str(exc.value), key).startswith(f"{key}: must be "), exc.value
        assert wanted in str(exc.value), exc.value
        default = getattr(getattr(Config(), section), name)
        good = "ok" if key == "train.name" else str(default).strip("()")
        # checked once TOML and --set are merged: an override mends the file, and is checked the same way
        mended = getattr(getattr(load_config(path, [f"{key}={good}"]), section), name)
        assert mended == ("ok" if key == "train.name" else default)
    if text is not None:
        with pytest.raises(ValueError) as exc:
            load_config(None, [f"{key}={text}"])
        assert one_line_error(str(exc.value), key).startswith(f"{key}: must be ") and wanted in str(exc.value), (
            exc.value
        )


# Any value TOML can hold: the integers and floats it can write (NaN and infinities too), booleans, strings,
# dates and times, arrays (mixed ones too) and inline tables.
SCALARS = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-3, 600),
    st.floats(),
    st.floats(-2, 2),
    st.booleans(),
    st.text(max_size=12),
    st.datetimes(),
    st.dates(),
    st.times(),
)
VALUES = st.one_of(
    SCALARS,
    st.lists(st.one_of(st.integers(-3, 20), SCALARS), max_size=4),
    st.dictionaries(st.text("abcxyz", min_size=1, max_size=3), SCALARS, max_size=2),
)


def _toml(value: object) -> str:
    """A TOML literal for a value tomllib would return."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else {math.inf: "inf", -math.inf: "-inf"}.get(value, repr(value))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"


KEYS = [(s, k) for s, cls in SECTIONS.items() for k in (f.name for f in dataclasses.fields(cls))]


@settings(max_examples=examples(200), deadline=None)
@given(
    key=st.sampled_from(KEYS),
    value=VALUES,
    text=st.one_of(st.text(max_size=12), st.integers(-3, 600).map(str), st.floats().map(str)),
    via_set=st.booleans(),
)
def test_any_value_for_any_key_gives_a_checked_config_or_one_line_naming_the_key(key, value, text, via_set) -> None:
    """From a TOML file or from --set: either every field is of its type and in its range, or a ValueError of
    one line names the key; nothing else (no TypeError, no bool taken for an int, no NaN let through)."""
    section, name = key
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.toml"
        doc = f"[{section}]\n{name} = {_toml(value)}\n"
        assert name in tomllib.loads(doc)[section]  # the literal is TOML
        path.write_text(doc, encoding="utf-8")
        try:
            cfg = load_config(None, [f"{section}.{name}={text}"]) if via_set else load_config(path)
        except ValueError as exc:
            message = str(exc)
            assert "\n" not in message and f"{section}.{name}" in message, message
            return
    _assert_checked(cfg)


def _write_shards(out: Path, records) -> Path:
    ShardWriter(out, ShardConfig(block_bases=20_000)).write(records, {"command": ["tests/test_config.py"]})
    return out


def _genes(data_dir: Path, n: int, cut: int | None = None) -> list:
    recs = islice(read_records(data_dir / "genefam" / "chimp_sample.tsv.gz", ReaderConfig(label_column="class")), n)
    return [dataclasses.replace(r, tokens=r.tokens[:cut]) if cut else r for r in recs]


@pytest.fixture(scope="module")
def short_shards(tmp_path_factory, data_dir) -> Path:
    """Real chimp genes cut to their first 150 bases: every record in the length bin [100, 300)."""
    return _write_shards(tmp_path_factory.mktemp("short") / "shards", _genes(data_dir, 300, cut=150))


def test_a_train_split_with_nothing_usable_is_refused_before_ray(tmp_path, short_shards) -> None:
    """No train sequences at all, or none as long as data.min_length by the manifest's length histogram."""
    empty = _write_shards(tmp_path / "empty", [])
    with pytest.raises(ValueError) as exc:
        checked_config(parse_args(["--data", str(empty), "--storage", str(tmp_path / "runs")]))
    assert one_line_error(str(exc.value), "data.path").startswith("data.path: must hold train records")
    with pytest.raises(ValueError) as exc:
        checked_config(
            parse_args(["--data", str(short_shards), "--set", "data.min_length=300", "--storage", str(tmp_path)])
        )
    assert one_line_error(str(exc.value), "data.min_length").startswith("data.min_length: must be < 300")
    fine = ["--data", str(short_shards), "--set", "data.min_length=100", "--storage", str(tmp_path)]
    assert checked_config(parse_args(fine)).data.min_length == 100


@pytest.mark.timeout(120)
def test_the_loader_says_within_seconds_when_no_record_reaches_min_length(short_shards) -> None:
    """min_length 200 passes the histogram (the bin goes to 300) but every record has 150 bases: the loader
    used to resample for ever without a batch; now it names data.min_length. Also asked for 0 batches (which
    webdataset's with_epoch takes as no limit) it refuses."""
    seqs = [g.tokens for g in _genes(REPO / "data", 5, cut=150)]
    endless = ((seqs[i % len(seqs)], np.zeros(0, np.float32)) for i in range(10**9))
    with pytest.raises(ValueError, match="^data.min_length: "):
        list(random_windows(endless, 256, 200, 1.0, random.Random(0), max_short_run=1000))
    cfg = DataConfig(path=str(short_shards), window=256, batch_size=4, loader_workers=0, min_length=200)
    started = time.perf_counter()
    with pytest.raises(ValueError) as exc:
        next(iter(train_loader(cfg, 0, batches=1, seed=0)))
    assert time.perf_counter() - started < 30
    assert one_line_error(str(exc.value), "data.min_length").startswith("data.min_length: must be at most")
    with pytest.raises(ValueError, match="batches must be >= 1"):
        train_loader(dataclasses.replace(cfg, min_length=64), 0, batches=0, seed=0)


@pytest.mark.parametrize("encoding", ["utf-16", "latin-1"])
def test_a_config_file_that_is_not_utf8_is_one_line_naming_it(tmp_path, encoding) -> None:
    """A TOML saved as UTF-16 (or Latin-1 with an accent) gave Python's decode error, without the file's name."""
    path = tmp_path / "run.toml"
    path.write_bytes("# entraîné\n[train]\nsteps = 3\n".encode(encoding))
    with pytest.raises(ValueError) as exc:
        load_config(path)
    line = one_line_error(str(exc.value), "not UTF-8 text", "TOML is UTF-8")
    assert line.startswith(f"{path}: "), line
