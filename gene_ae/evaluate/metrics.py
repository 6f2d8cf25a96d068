"""What evaluation measures, one function per question; each takes methods and sequences, returns a dict.

`mutation_recall` is the one definition of "recall@k of mutated copies against their originals": evaluation
calls it through `mutation_retrieval`, and training's validation can call it with the model's embed.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.stats import spearmanr

from gene_ae.core.mutate import mutate
from gene_ae.core.topk import top_k
from gene_ae.evaluate.config import EvalConfig
from gene_ae.evaluate.methods import EmbeddingMethod, Method, RerankedMethod, digest
from gene_ae.search import align

if TYPE_CHECKING:
    from gene_ae.model.encoder import Encoder

SearchFn = Callable[[Sequence[np.ndarray], int], np.ndarray]  # (queries, k) -> indices [q, k], -1 = no hit
EmbedFn = Callable[[list[np.ndarray]], np.ndarray]  # sequences -> L2-normalised vectors [n, dim]


def copy_recall(
    search: SearchFn,
    seqs: Sequence[np.ndarray],
    sources: np.ndarray,
    divergences: Sequence[float],
    seed: int,
    k_values: Sequence[int],
) -> dict[str, list[float]]:
    """{"recall@k": [one value per divergence]}: copies of seqs[sources] mutated at each divergence, searched;
    a hit is any of the top k identical to the copy's source (duplicates in the collection are not misses).
    Copies depend only on (seed, divergence step, source), so a subset of sources gets the same copies."""
    targets = identical_members(seqs, sources)
    scores: dict[str, list[float]] = {f"recall@{k}": [] for k in k_values}
    for step, d in enumerate(divergences):
        idx = search(mutated_copies(seqs, sources, d, seed, step), max(k_values))
        for k in k_values:
            hits = [bool(np.isin(row[:k], t).any()) for row, t in zip(idx, targets)]
            scores[f"recall@{k}"].append(float(np.mean(hits)) if hits else math.nan)
    return scores


def mutation_recall(
    embed: EmbedFn,
    seqs: Sequence[np.ndarray],
    divergences: Sequence[float],
    seed: int,
    k_values: Sequence[int] = (1,),
    n_queries: int | None = None,
    stored: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict[str, list[float]]:
    """Recall@k of mutated copies against their originals by exact cosine over `embed`'s vectors (no faiss
    index needed): every sequence is a query unless n_queries samples fewer (seeded). `stored`: the originals'
    vectors as an index would store them (a code), the queries staying float as a search compares them."""
    originals = np.asarray(embed(list(seqs)), dtype=np.float32)
    originals = np.asarray(stored(originals), dtype=np.float32) if stored is not None else originals

    def search(queries: Sequence[np.ndarray], k: int) -> np.ndarray:
        return top_k(np.asarray(embed(list(queries)), dtype=np.float32) @ originals.T, k)[0]

    return copy_recall(search, seqs, sample_sources(len(seqs), n_queries, seed), divergences, seed, k_values)


def sample_sources(n: int, n_queries: int | None, seed: int) -> np.ndarray:
    """Sorted query positions: all n, or n_queries drawn without replacement by `seed`."""
    if n_queries is None or n_queries >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=n_queries, replace=False))


def mutated_copies(
    seqs: Sequence[np.ndarray], sources: np.ndarray, divergence: float, seed: int, step: int
) -> list[np.ndarray]:
    """One copy per source, from a generator seeded by (seed, divergence step, source): reproducible alone."""
    return [mutate(seqs[i], divergence, np.random.default_rng([seed, step, int(i)])) for i in sources]


def identical_members(seqs: Sequence[np.ndarray], positions: np.ndarray) -> list[np.ndarray]:
    """For each position, every collection index holding the same sequence (itself included)."""
    groups: dict[bytes, list[int]] = {}
    for i, s in enumerate(seqs):
        groups.setdefault(digest(s), []).append(i)
    return [np.array(groups[digest(seqs[i])]) for i in positions]


def mutation_retrieval(methods: Sequence[Method], seqs: Sequence[np.ndarray], cfg: EvalConfig) -> dict[str, Any]:
    """Mutate n_queries sequences at each divergence and query the copies against the originals
    (`copy_recall`); every method sees exactly the same mutated copies."""
    sources = sample_sources(len(seqs), cfg.n_queries, cfg.seed)
    result: dict[str, Any] = {
        "divergences": list(cfg.divergences),
        "n_queries": int(sources.size),
        "query_indices": sources.tolist(),
        "methods": {},
    }
    for method in methods:
        index = method.index(seqs)

        def search(queries: Sequence[np.ndarray], k: int, index=index) -> np.ndarray:
            return index.search(queries, k)[0]

        result["methods"][method.name] = copy_recall(search, seqs, sources, cfg.divergences, cfg.seed, cfg.k_values)
    result["best_baselines"] = best_baselines(result)
    if cfg.align_queries > 0:
        result["alignment_ceiling"] = alignment_ceiling(seqs, cfg, sources)
    return result


def exhaustive_alignment(seqs: Sequence[np.ndarray], queries: Sequence[np.ndarray], k: int) -> np.ndarray:
    """Each query's top k records by alignment identity over the whole collection (gene_ae.search.align.align_hit,
    the aligner search re-ranks with; ties keep collection order): the answer every search is scored against."""
    rows = []
    for q in queries:
        ident = np.array([align.align_hit(q, s).identity for s in seqs])
        rows.append(np.argsort(-ident, kind="stable")[:k])
    return np.array(rows)


def alignment_ceiling(seqs: Sequence[np.ndarray], cfg: EvalConfig, sources: np.ndarray) -> dict[str, Any]:
    """The reference answer: each of the first `align_queries` sources' mutated copies (the very copies the
    methods were given) aligned against the whole collection (gene_ae.search.align.align_hit, the alignment search
    re-ranks by), best identity first; recall@k and the time per query."""
    picked = sources[: cfg.align_queries]
    if picked.size == 0:
        return {"skipped": "align_queries is 0"}
    spent = [0.0, 0]

    def search(queries: Sequence[np.ndarray], k: int) -> np.ndarray:
        start = time.perf_counter()
        rows = exhaustive_alignment(seqs, queries, k)
        spent[0] += time.perf_counter() - start
        spent[1] += len(queries)
        return rows

    scores = copy_recall(search, seqs, picked, cfg.divergences, cfg.seed, cfg.k_values)
    return {"n_queries": int(picked.size), "seconds_per_query": spent[0] / max(spent[1], 1), "scores": scores}


def best_baselines(mr: dict[str, Any], model: str = "gene-ae") -> dict[str, Any]:
    """Per recall@k and divergence: the best method other than the model (plain and '+align' apart), its
    score, and the model's margin over it (positive: the model wins)."""
    out: dict[str, Any] = {}
    for suffix in ("", "+align"):
        ours = mr["methods"].get(model + suffix)
        others = {  # the baselines: not the model, nor gene-ae's own default search
            n: v for n, v in mr["methods"].items() if not n.startswith(model) and n.endswith("+align") == bool(suffix)
        }
        if ours is None or not others:
            continue
        for key, values in ours.items():
            rows = []
            for i, value in enumerate(values):
                name = max(others, key=lambda n: others[n][key][i])
                best = others[name][key][i]
                rows.append({"best": name, "score": best, "margin": value - best})
            out[f"{model}{suffix} {key}"] = rows
    return out


def label_retrieval(
    methods: Sequence[Method], seqs: Sequence[np.ndarray], labels: Sequence[str | None], cfg: EvalConfig
) -> dict[str, Any]:
    """Leave-one-out precision@k among labelled sequences: the fraction of a query's k nearest other
    sequences that share its label. Queries are the sequences whose label occurs at least twice (a label
    seen once cannot be retrieved); every labelled sequence stays in the collection. Chance is what
    random neighbours would score."""
    keep = [i for i, lab in enumerate(labels) if lab]
    lab = np.array([labels[i] for i in keep], dtype=object)
    counts = Counter(lab.tolist())
    queries = np.array([q for q in range(len(keep)) if counts[lab[q]] > 1], dtype=np.int64)
    if queries.size == 0:
        return {"skipped": "needs a label carried by at least two sequences"}
    subset = [seqs[i] for i in keep]
    rng = np.random.default_rng(cfg.seed)
    if queries.size > cfg.label_queries:
        queries = np.sort(rng.choice(queries, size=cfg.label_queries, replace=False))
    chance = float(np.mean([(counts[lab[q]] - 1) / (len(keep) - 1) for q in queries]))
    result: dict[str, Any] = {
        "n_sequences": len(keep),
        "n_labels": len(counts),
        "singletons_not_queried": sum(1 for c in counts.values() if c == 1),
        "n_queries": int(queries.size),
        "chance": chance,
        "methods": {},
    }
    for method in methods:
        try:
            found = method.index(subset)
        except ValueError as exc:  # a coded method (@64b) on fewer labelled records than its codebooks need
            if not getattr(method, "code_bytes", 0):
                raise
            result.setdefault("not_scored", {})[method.name] = str(exc)
            continue
        idx, _ = found.self_search(queries, max(cfg.precision_k))
        result["methods"][method.name] = {
            f"precision@{k}": _precision(idx[:, :k], lab, lab[queries]) for k in cfg.precision_k
        }
    return result


def _precision(idx: np.ndarray, ref_labels: np.ndarray, query_labels: np.ndarray) -> float:
    """Mean fraction of each row's neighbours that carry the query's label (-1, no hit, never matches)."""
    if idx.size == 0:
        return math.nan
    neighbour = np.where(idx >= 0, ref_labels[np.maximum(idx, 0)], None)
    return float(np.mean(neighbour == query_labels[:, None]))


def cross_set_retrieval(
    methods: Sequence[Method],
    query_seqs: Sequence[np.ndarray],
    query_labels: Sequence[str | None],
    ref_seqs: Sequence[np.ndarray],
    ref_labels: Sequence[str | None],
) -> dict[str, Any]:
    """Fraction of labelled queries (say, dog genes) whose nearest reference (chimp genes) shares the label."""
    q_keep = [i for i, lab in enumerate(query_labels) if lab]
    r_keep = [i for i, lab in enumerate(ref_labels) if lab]
    if not q_keep or not r_keep:
        return {"skipped": "needs labelled queries and labelled references"}
    q_lab = np.array([query_labels[i] for i in q_keep], dtype=object)
    r_lab = np.array([ref_labels[i] for i in r_keep], dtype=object)
    counts = Counter(r_lab.tolist())
    result: dict[str, Any] = {
        "n_queries": len(q_keep),
        "n_references": len(r_keep),
        "chance": float(np.mean([counts[q] / len(r_keep) for q in q_lab])),
        "methods": {},
    }
    refs, queries = [ref_seqs[i] for i in r_keep], [query_seqs[i] for i in q_keep]
    for method in methods:
        idx, _ = method.index(refs).search(queries, 1)
        result["methods"][method.name] = {"accuracy@1": _precision(idx, r_lab, q_lab)}
    return result


def distance_faithfulness(methods: Sequence[Method], seqs: Sequence[np.ndarray], cfg: EvalConfig) -> dict[str, Any]:
    """Spearman correlation between each method's similarity and alignment identity, so a positive value
    means the method ranks pairs as alignment does (equivalently, cosine distance vs identity is negative).

    Identity = 1 - edit distance / longer length (edlib, global NW) over the first align_max_bases of each
    sequence. Random pairs test the whole range; near pairs (a sequence vs its copies at every divergence)
    test the neighbourhood that search cares about. A pair is (record, query): a method storing codes compares
    the record's code, trained on this collection, with the float query, as its search does.
    """
    if len(seqs) < 2:
        return {"skipped": "needs at least two sequences"}
    rng = np.random.default_rng([cfg.seed, 7])
    i = rng.integers(0, len(seqs), cfg.spearman_pairs)
    j = (i + rng.integers(1, len(seqs), cfg.spearman_pairs)) % len(seqs)  # never i itself
    random_pairs = ([seqs[x] for x in i], [seqs[y] for y in j])
    n_src = min(len(seqs), math.ceil(cfg.spearman_pairs / max(len(cfg.divergences), 1)))
    sources = np.sort(rng.choice(len(seqs), size=n_src, replace=False))
    near_a, near_b = [], []
    for step, d in enumerate(cfg.divergences):
        near_a += [seqs[x] for x in sources]
        near_b += mutated_copies(seqs, sources, d, cfg.seed + 1, step)
    capped = any(s.size > cfg.align_max_bases for s in seqs)
    result: dict[str, Any] = {"align_max_bases": cfg.align_max_bases, "alignment_capped": capped, "methods": {}}
    identities = {}
    for kind, (a, b) in (("random", random_pairs), ("near", (near_a, near_b))):
        identities[kind] = align.pair_identities(a, b, cfg.align_max_bases)
        result[f"{kind}_pairs"] = len(a)
        result[f"{kind}_identity_mean"] = float(np.mean(identities[kind]))
    for method in methods:
        if not hasattr(method, "pair_similarity") or isinstance(method, RerankedMethod):
            continue  # the default search ranks by alignment itself; a re-ranked method's is its base's
        if isinstance(method, EmbeddingMethod) and method.code_bytes:
            method.index(seqs)  # pairs compared as this collection's index stores its records (their codes)
        result["methods"][method.name] = {
            f"spearman_{kind}": _spearman(method.pair_similarity(a, b), identities[kind])
            for kind, (a, b) in (("random", random_pairs), ("near", (near_a, near_b)))
        }
    return result


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rho, NaN when either side is constant (no ranking to compare)."""
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(spearmanr(x, y).statistic)


def reconstruction(encoder: Encoder, seqs: Sequence[np.ndarray], cfg: EvalConfig) -> dict[str, Any]:
    """Per-base accuracy and bits per base of the decoder over the first `window` bases of n_queries
    sequences (and over shorter prefixes): real bases only, padding and specials excluded. Equal to
    comparing `encoder.reconstruct_tokens` with the input, but batched, and with the logits for bits."""
    window = min(cfg.window or encoder.window, encoder.window)
    lengths = sorted({min(n, window) for n in cfg.reconstruction_lengths} | {window})
    rng = np.random.default_rng([cfg.seed, 11])
    picks = np.sort(rng.choice(len(seqs), size=min(cfg.n_queries, len(seqs)), replace=False))
    result: dict[str, Any] = {"window": window, "n_sequences": int(picks.size), "by_length": {}}
    for length in lengths:
        correct = bits = count = 0.0
        prefixes = [seqs[i][:length] for i in picks]
        for batch in _batches(prefixes, cfg.batch_size):
            c, b, n = _reconstruct_batch(encoder, batch)
            correct, bits, count = correct + c, bits + b, count + n
        result["by_length"][str(length)] = {
            "accuracy": correct / count if count else math.nan,
            "bits_per_base": bits / count if count else math.nan,
            "bases": int(count),
        }
    result["accuracy"] = result["by_length"][str(window)]["accuracy"]
    result["bits_per_base"] = result["by_length"][str(window)]["bits_per_base"]
    return result


def _batches(items: Sequence[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _reconstruct_batch(encoder: Encoder, batch: list[np.ndarray]) -> tuple[float, float, float]:
    """(correct bases, total bits, real bases) for one batch."""
    rec = encoder.reconstruct_windows(batch, batch_size=len(batch))
    return float(rec.correct), rec.nats / math.log(2), float(rec.bases)
