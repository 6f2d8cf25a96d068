"""Shards -> training batches: a WebDataset pipeline of small generator stages.

resampled shards + `with_epoch` on the loader means every Ray rank yields exactly the same number of
batches whatever the shard count (plain shard splitting deadlocks DDP when ranks run out unevenly,
and raises when there are fewer shards than rank x loader workers).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import webdataset as wds

from gene_ae.config import DataConfig
from gene_ae.core.mutate import mutate, random_view
from gene_ae.core.windows import pad_batch
from gene_ae.model.features import FeatureStats, ModelFeature, codes
from shard_tools.format import BLOCK_EXT, decode_block
from shard_tools.reader import ShardError, check_shard_files, load_manifest


def shard_urls(path: str | Path, split: str) -> list[str]:
    manifest = load_manifest(path)
    urls = [str(Path(path) / s["name"]) for s in manifest["splits"][split]["shards"]]
    missing = [u for u in urls if not os.path.isfile(u)]
    if missing:
        raise ShardError(f"{missing[0]}: shard listed in the manifest is missing")
    if not urls:
        raise ShardError(f"{path}: split {split!r} has no shards")
    return urls


# A window travels through the stages with its record's feature codes (model/features.py `codes`; [0] values
# when the model declares no features), so every batch carries batch["features"] [B, F].
Item = tuple[np.ndarray, np.ndarray]


def decode_samples(
    samples: Iterable[dict], skip_corrupt: bool, features: Sequence[ModelFeature] = ()
) -> Iterator[Item]:
    """WebDataset samples (one block each) -> (tokens, feature codes) of the stored record parts."""
    for sample in samples:
        try:
            if BLOCK_EXT not in sample:
                raise ValueError(f"no .{BLOCK_EXT} member")
            records = decode_block(sample[BLOCK_EXT])
        except ValueError as exc:
            if skip_corrupt:
                continue
            raise ShardError(f"{sample.get('__url__')}: sample {sample.get('__key__')!r}: {exc}") from None
        for rec in records:
            yield rec.tokens, codes(features, rec.meta.get("features"))


# Records shorter than data.min_length in a row before the loader gives up: resampled shards never end, so
# a split with (almost) nothing that long would otherwise spin for ever without a batch. A few seconds' reading.
MAX_SHORT_RUN = 20_000


def random_windows(
    seqs: Iterable[Item],
    window: int,
    min_length: int,
    per_window: float,
    rng: random.Random,
    max_short_run: int = MAX_SHORT_RUN,
) -> Iterator[Item]:
    """Random windows of each (sequence, codes), about `per_window` per window-length of sequence.

    Raises ValueError after `max_short_run` records in a row shorter than min_length."""
    short = 0
    for seq, coded in seqs:
        n = int(seq.size)
        if n < min_length:
            short += 1
            if short >= max_short_run:
                raise ValueError(
                    f"data.min_length: must be at most the length of some train records, got {min_length}: "
                    f"the last {short:,} records read were all shorter"
                )
            continue
        short = 0
        if n <= window:
            yield seq, coded
            continue
        expected = per_window * n / window
        count = int(expected) + (rng.random() < expected - int(expected))
        for _ in range(count):
            start = rng.randrange(0, n - window + 1)
            yield seq[start : start + window], coded


def with_views(windows: Iterable[Item], cfg: DataConfig, rng: np.random.Generator) -> Iterator[tuple]:
    """Pair each window with its mutated (and maybe reverse-complemented) view, cropped to the window,
    and, when cfg.sibling_ratio > 0, a sibling: the window mutated at about sibling_ratio times the view's
    divergence (training's hard negative, see model.contrastive_loss). The codes come last."""
    for w, coded in windows:
        d = float(rng.uniform(0.0, cfg.view_divergence))
        view = random_view(w, rng, cfg.view_divergence, cfg.rc_prob, divergence=d)[: cfg.window]
        if cfg.sibling_ratio <= 0:
            yield w, view, coded
            continue
        sibling_d = max(MIN_SIBLING_DIVERGENCE, d * cfg.sibling_ratio * float(rng.uniform(0.5, 1.5)))
        sibling_d = min(sibling_d, 1.0)  # mutate's most: one event per base
        yield w, view, mutate(w, sibling_d, rng)[: cfg.window], coded


MIN_SIBLING_DIVERGENCE = 0.005  # a sibling always differs from its window: an identical one teaches nothing
FIELDS = ("tokens", "view", "sibling")  # a batch's token arrays, in the order with_views yields them


def grouped(buf: list[tuple], column: int, size: int, rng: random.Random) -> list[tuple]:
    """`buf` reordered so that runs of `size` items share the feature code in `column` (0, unknown, items
    stand alone), the runs in random order: cut into batches, each batch holds positives of every kind."""
    by_code: dict[float, list[tuple]] = {}
    for item in buf:
        by_code.setdefault(float(item[-1][column]), []).append(item)
    runs: list[list[tuple]] = []
    for code, items in by_code.items():
        rng.shuffle(items)
        step = size if code > 0 else 1
        runs += [items[i : i + step] for i in range(0, len(items), step)]
    rng.shuffle(runs)
    return [item for run in runs for item in run]


def bucket_batches(
    pairs: Iterable[tuple],
    batch_size: int,
    pool: int,
    rng: random.Random,
    group: tuple[int, int] | None = None,
) -> Iterator[dict]:
    """Pool `pool` batches of pairs (or triples), sort by length so batches pad little, emit in random order.

    Windows, views and siblings are padded together to one width, so training stacks them as they are.
    Each field F comes as batch[F] and its lengths as batch[F + "_lengths"] ("lengths" for the windows); the
    last element of each tuple, the record's feature codes, as batch["features"] [B, F] float32.
    `group` (feature column, group size): class-balanced batches instead of length-sorted ones (`grouped`)."""

    def emit(buf: list[tuple]) -> Iterator[dict]:
        if group is not None and group[1] > 1:
            buf = grouped(buf, *group, rng)
        else:
            buf.sort(key=lambda p: p[0].size)
        batches = [buf[i : i + batch_size] for i in range(0, len(buf) - batch_size + 1, batch_size)]
        rng.shuffle(batches)
        for b in batches:
            width = len(b[0]) - 1
            padded, lengths = pad_batch([p[f] for f in range(width) for p in b])
            n = len(b)
            out = {"features": np.stack([p[-1] for p in b]).astype(np.float32)}
            for f, name in enumerate(FIELDS[:width]):
                out[name] = padded[f * n : (f + 1) * n]
                out["lengths" if f == 0 else f"{name}_lengths"] = lengths[f * n : (f + 1) * n]
            yield out
        return buf[len(batches) * batch_size :]

    buf: list[tuple] = []
    for pair in pairs:
        buf.append(pair)
        if len(buf) >= pool * batch_size:
            buf = yield from emit(buf)
    yield from emit(buf)


def train_loader(
    cfg: DataConfig, rank: int, batches: int, seed: int, features: Sequence[ModelFeature] = ()
) -> wds.WebLoader:
    """An endless-shard loader that yields exactly `batches` (>= 1) batches on this rank, each carrying the
    codes of the model's `features` (model.features) of every window's record."""
    if batches < 1:  # with_epoch(0) would mean no limit at all
        raise ValueError(f"train_loader: batches must be >= 1, got {batches}")
    urls = shard_urls(cfg.path, "train")
    signals = [i for i, f in enumerate(features) if f.use == "signal"]
    group = (signals[0], cfg.group_size) if signals else None  # batches balanced on the first signal feature

    def worker_seed() -> int:
        info = wds.utils.pytorch_worker_info()
        return seed * 1_000_003 + rank * 1009 + info[2]

    def stage_rngs() -> tuple[random.Random, np.random.Generator]:
        s = worker_seed()
        return random.Random(s), np.random.default_rng(s)

    def windows_stage(src: Iterable) -> Iterator:
        py_rng, np_rng = stage_rngs()
        seqs = decode_samples(src, cfg.skip_corrupt, features)
        wins = random_windows(seqs, cfg.window, cfg.min_length, cfg.windows_per_record, py_rng)
        shuffled = wds.shuffle(cfg.shuffle_buffer, min(cfg.shuffle_buffer, 100), rng=py_rng)(wins)
        yield from bucket_batches(with_views(shuffled, cfg, np_rng), cfg.batch_size, cfg.bucket_batches, py_rng,
                                  group)  # fmt: skip

    pipeline = wds.DataPipeline(
        wds.ResampledShards(urls, worker_seed=worker_seed, deterministic=True),
        wds.tarfile_to_samples(handler=wds.reraise_exception),
        windows_stage,
    )
    loader = wds.WebLoader(pipeline, batch_size=None, num_workers=cfg.loader_workers)
    return loader.with_epoch(batches)


def check_train_split(cfg: DataConfig) -> None:
    """Refuse, before Ray starts, a train split that can give no batch: one without sequences, or one whose
    length histogram (shard_tools writer's manifest) shows every record shorter than data.min_length."""
    manifest = load_manifest(cfg.path)
    check_shard_files(cfg.path, manifest)  # each listed shard there, whole
    train = manifest["splits"].get("train")
    if not train or not train["sequences"] or not train["shards"]:
        raise ShardError(f"data.path: must hold train records, got {cfg.path}: its train split has no sequences")
    edges, hist = manifest.get("length_histogram_edges"), train.get("length_histogram")
    longest = _length_bound(edges, hist)
    if longest is not None and cfg.min_length >= longest:
        raise ValueError(
            f"data.min_length: must be < {longest} (every train record in {cfg.path} is shorter), got {cfg.min_length}"
        )
    if longest is not None and not any(count and lo >= cfg.min_length for lo, count in zip(edges, hist)):
        # Every filled bin straddles min_length, so the histogram cannot tell: read records until one is long
        # enough (else Ray would start and the data loader fail).
        from shard_tools.reader import read_shards

        seen = 0
        for _id, tokens, _meta in read_shards(cfg.path, "train"):
            if tokens.size >= cfg.min_length:
                break
            seen = max(seen, int(tokens.size))
        else:
            raise ValueError(f"data.min_length: must be at most {seen} (the longest train record in {cfg.path}), "
                             f"got {cfg.min_length}")  # fmt: skip


def _length_bound(edges: object, hist: object) -> int | None:
    """An exclusive upper bound on the longest record, from a manifest's length histogram; None when the
    histogram is absent, malformed, or its top filled bin is open-ended (the last one takes anything longer)."""
    ints = (list, tuple)
    if not isinstance(edges, ints) or not isinstance(hist, ints) or len(edges) != len(hist) + 1:
        return None
    if not all(type(v) is int and v >= 0 for v in [*edges, *hist]):
        return None
    filled = [i for i, count in enumerate(hist) if count]
    if not filled or filled[-1] == len(hist) - 1:
        return None
    return edges[filled[-1] + 1]


def fit_features(path: str | Path, specs: Sequence[ModelFeature]) -> tuple[ModelFeature, ...]:
    """The model's features as the train split holds them: each declared in the manifest with its kind, a
    categorical one's values seen (its embedding rows), a numeric one's mean and std (its standardisation).
    One pass over the train split's metadata, before Ray starts; a feature the shards lack is a one-line error
    naming it, so no run trains on a column that is not there."""
    if not specs:
        return ()
    from shard_tools.reader import read_shards

    kinds = load_manifest(path).get("features") or {}
    for f in specs:
        if f.name not in kinds:
            held = ", ".join(sorted(kinds)) or "none"
            raise ValueError(
                f"model.features.{f.name}: the shards in {path} hold no such feature (they hold: {held}; "
                "shard-fasta --feature-column NAME[:kind] keeps one)"
            )
        if kinds[f.name] != f.kind:
            raise ValueError(f"model.features.{f.name}: declared {f.kind}, but the shards hold it as {kinds[f.name]}")
    stats = FeatureStats()
    counts: dict[str, dict[str, int]] = {f.name: {} for f in specs if f.use == "signal"}
    for _id, _tokens, meta in read_shards(path, "train"):
        values = meta.get("features") or {}
        stats.add(specs, values)
        for name, seen in counts.items():
            if values.get(name) is not None:
                seen[str(values[name])] = seen.get(str(values[name]), 0) + 1
    for name, seen in counts.items():  # a signal needs records that share a value, else the term is 0
        if not any(n > 1 for n in seen.values()):
            raise ValueError(
                f"model.features.{name}: a signal needs values that several train records share; the shards in "
                f"{path} hold {len(seen):,} distinct values, none in two records"
            )
    return stats.fitted(specs)


def val_records(cfg: DataConfig) -> list[np.ndarray]:
    """Deterministic validation records from the val split (reference reader), cut to val_max_length.

    Whole records, not windows: retrieval is then measured the way `gene-ae eval` measures it, so
    configs with different window lengths can be compared on the training data's own held-out split.
    """
    from shard_tools import read_shards

    out = []
    for _id, tokens, _meta in read_shards(cfg.path, "val"):
        if tokens.size >= cfg.min_length:
            out.append(tokens[: cfg.val_max_length])
        if len(out) >= cfg.val_records:
            break
    return out
