"""Report assembly: run every evaluation with every method, then write report.json, report.md and PNG
plots atomically, and log them to MLflow when given a run id."""

from __future__ import annotations

import io
import json
import math
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gene_ae.core.labels import clean_label
from gene_ae.evaluate.config import EvalConfig
from gene_ae.evaluate.methods import EmbeddingMethod, Method, build_methods, digest
from gene_ae.evaluate.metrics import (
    cross_set_retrieval,
    distance_faithfulness,
    label_retrieval,
    mutation_retrieval,
    reconstruction,
)
from shard_tools.files import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from gene_ae.model.encoder import Encoder

# With a single distinct sequence every method's first hit is a copy of its source: recall 1.0 by construction.
# Two are the least where recall@1 can miss; recall@k needs more than k (the report notes when it has fewer).
MIN_DISTINCT = 2


def check_collection(seqs: Sequence[np.ndarray], name: str = "collection") -> None:
    """Refuse a collection too small to measure (fewer than MIN_DISTINCT distinct sequences)."""
    distinct = len({digest(s) for s in seqs})
    if distinct < MIN_DISTINCT:
        what = f"{len(seqs):,} sequence{'' if len(seqs) == 1 else 's'}, {distinct} distinct" if seqs else "no sequences"
        raise ValueError(
            f"{name}: {what}: evaluation needs at least {MIN_DISTINCT} distinct sequences "
            "(with one, every method finds its source first and scores recall 1.0)"
        )


def run_eval(
    encoder: Encoder | None,
    seqs: Sequence[np.ndarray],
    ids: Sequence[str],
    labels: Sequence[str | None] | None,
    cfg: EvalConfig,
    out_dir: str | Path,
    mlflow_run_id: str | None = None,
    *,
    cross_queries: tuple[Sequence[np.ndarray], Sequence[str | None]] | None = None,
) -> dict[str, Any]:
    """Run every evaluation with every method side by side; write report.json, report.md,
    recall_vs_divergence.png and embedding_map.png (when labels exist) to out_dir; log to MLflow.

    cross_queries = (sequences, labels) from another set (dog genes against these chimp genes) adds
    cross-set retrieval. encoder=None evaluates the baselines alone. Returns the report dict.
    """
    check_collection(seqs)
    if len(ids) != len(seqs) or (labels is not None and len(labels) != len(seqs)):
        raise ValueError(f"{len(seqs)} sequences but {len(ids)} ids and {len(labels or [])} labels")
    out = Path(out_dir)
    methods, skipped = build_methods(encoder, cfg, seqs)
    pattern = re.compile(cfg.label_regex) if cfg.label_regex else None
    labels = [clean_label(lab, pattern) for lab in labels] if labels is not None else [None] * len(seqs)
    report: dict[str, Any] = {
        "config": asdict(cfg),
        "model": (encoder.uri or "(in-memory encoder)") if encoder is not None else None,
        "dataset": _summary(seqs, labels),
        "methods": {m.name: getattr(m, "description", "") for m in methods},
        "skipped_methods": skipped,
        "timings_s": {},
    }
    steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("mutation_retrieval", lambda: mutation_retrieval(methods, seqs, cfg)),
        ("label_retrieval", lambda: label_retrieval(methods, seqs, labels, cfg)),
        ("distance_faithfulness", lambda: distance_faithfulness(methods, seqs, cfg)),
    ]
    if cross_queries is not None:
        q_seqs, q_labels = cross_queries[0], [clean_label(lab, pattern) for lab in cross_queries[1]]
        steps.append(("cross_set_retrieval", lambda: cross_set_retrieval(methods, q_seqs, q_labels, seqs, labels)))
    if encoder is not None:
        steps.append(("reconstruction", lambda: reconstruction(encoder, seqs, cfg)))
    with _phases(len(steps) + 1) as bar:
        for name, step in steps:
            bar.set_postfix_str(name)
            start = time.perf_counter()
            report[name] = step()
            report["timings_s"][name] = round(time.perf_counter() - start, 3)
            bar.update()
        report["mutation_retrieval"]["query_ids"] = [ids[i] for i in report["mutation_retrieval"]["query_indices"]]
        report["notes"] = _notes(report, cfg)
        bar.set_postfix_str("writing the report")
        paths = _write_outputs(report, methods, seqs, labels, out)
        bar.update()
    if mlflow_run_id:
        log_to_mlflow(mlflow_run_id, report, paths)
    return report


def _phases(total: int):
    """A tqdm bar over the evaluation's phases on stderr when it is a terminal (gone when closed); silent otherwise."""
    from tqdm import tqdm

    return tqdm(total=total, desc="eval", unit="phase", file=sys.stderr, leave=False, disable=not sys.stderr.isatty())


def _summary(seqs: Sequence[np.ndarray], labels: Sequence[str | None]) -> dict[str, Any]:
    lengths = np.array([s.size for s in seqs])
    labelled = [lab for lab in labels if lab]
    return {
        "n_sequences": len(seqs),
        "distinct_sequences": len({digest(s) for s in seqs}),
        "length_min": int(lengths.min()),
        "length_median": float(np.median(lengths)),
        "length_max": int(lengths.max()),
        "total_bases": int(lengths.sum()),
        "n_labelled": len(labelled),
        "n_labels": len(set(labelled)),
    }


def _notes(report: dict[str, Any], cfg: EvalConfig) -> list[str]:
    notes = [
        "Mutation: gene_ae.core.mutate (per base, 80 % substitutions, 20 % indels of 1-3 bases); a hit is any of "
        "the top k identical to the query's source.",
        "Distance faithfulness is Spearman(similarity, alignment identity): higher is better.",
    ]
    if report["distance_faithfulness"].get("alignment_capped"):
        notes.append(
            f"Alignment identity compares only the first {cfg.align_max_bases:,} bases of each sequence "
            "(edlib on whole long genomes is too slow); similarities use the whole sequences."
        )
    if report["dataset"]["n_sequences"] <= max(cfg.k_values):
        notes.append(
            f"The collection has only {report['dataset']['n_sequences']} sequences: recall@{max(cfg.k_values)} "
            "counts every sequence that scores above zero, so it says little."
        )
    if "sourmash" in report["methods"]:
        notes.append(f"sourmash: {report['methods']['sourmash']}; queries sharing no hash count as misses.")
    notes += [f"{name} skipped: {why}" for name, why in report["skipped_methods"].items()]
    return notes


def _write_outputs(
    report: dict[str, Any],
    methods: Sequence[Method],
    seqs: Sequence[np.ndarray],
    labels: Sequence[str | None],
    out: Path,
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)  # only now: a run that fails leaves no empty report folder
    paths = [out / "report.json", out / "report.md", out / "recall_vs_divergence.png"]
    _atomic_write(paths[0], json.dumps(_jsonable(report), indent=2, allow_nan=False) + "\n")
    _atomic_write(paths[1], render_markdown(report))
    _atomic_savefig(plot_recall(report["mutation_retrieval"]), paths[2])
    embedders = [m for m in methods if isinstance(m, EmbeddingMethod)]
    embedder = next((m for m in embedders if m.name == "gene-ae"), embedders[0] if embedders else None)
    if embedder is not None and sum(1 for lab in labels if lab) >= 2:
        paths.append(out / "embedding_map.png")
        _atomic_savefig(plot_embedding_map(embedder.embed(seqs), labels, embedder.name), paths[-1])
    return paths


def _jsonable(obj: Any) -> Any:
    """NaN to null (strict JSON) and numpy scalars to Python ones."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _atomic_write(path: Path, text: str) -> None:
    """Write beside the target, then rename: a reader never sees half a report."""
    atomic_write_bytes(path, text.encode())


def _atomic_savefig(fig: Figure, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(report: dict[str, Any]) -> str:
    """The report as markdown: one table per evaluation, one row per method."""
    ds = report["dataset"]
    parts = [
        "# gene-ae evaluation",
        f"Model: `{report.get('model') or 'none (baselines only)'}`. "
        f"{ds['n_sequences']:,} sequences ({ds['distinct_sequences']:,} distinct), lengths {ds['length_min']:,}"
        f"-{ds['length_max']:,} (median {ds['length_median']:,.0f}), {ds['n_labelled']:,} labelled "
        f"({ds['n_labels']} labels).",
        "## Methods\n" + _table(["method", "what"], [[k, v] for k, v in report["methods"].items()]),
    ]
    mr = report["mutation_retrieval"]
    ks = [key for key in next(iter(mr["methods"].values()), {})]
    ceiling = mr.get("alignment_ceiling", {})
    for key in ks:
        header = ["method"] + [f"d={d:g}" for d in mr["divergences"]]
        rows = [[name] + scores[key] for name, scores in mr["methods"].items()]
        for label, best in mr.get("best_baselines", {}).items():
            if label.endswith(" " + key):
                model = label[: -len(key) - 1]
                rows.append([f"best other than {model}"] + [f"{b['score']:.3f} ({b['best']})" for b in best])
                rows.append([f"{model} margin"] + [f"{b['margin']:+.3f}" for b in best])
        if "scores" in ceiling:
            rows.append(
                [f"exhaustive alignment ({ceiling['n_queries']} queries, {ceiling['seconds_per_query']:.2f} s each)"]
                + ceiling["scores"][key]
            )
        parts.append(f"## Mutation retrieval: {key} ({mr['n_queries']} queries)\n" + _table(header, rows))
    parts += [_section_table(report, name, title) for name, title in _SECTIONS if name in report]
    if "reconstruction" in report:
        rec = report["reconstruction"]
        rows = [[length, v["accuracy"], v["bits_per_base"], v["bases"]] for length, v in rec["by_length"].items()]
        parts.append(
            f"## Reconstruction (gene-ae, {rec['n_sequences']} sequences)\n"
            + _table(["first bases", "accuracy", "bits/base", "bases"], rows)
        )
    parts.append("## Notes\n" + "\n".join(f"- {n}" for n in report.get("notes", [])))
    return "\n\n".join(parts) + "\n"


_SECTIONS = (
    ("label_retrieval", "Label retrieval (leave-one-out)"),
    ("cross_set_retrieval", "Cross-set retrieval"),
    ("distance_faithfulness", "Distance faithfulness (Spearman of similarity vs alignment identity)"),
)


def _section_table(report: dict[str, Any], name: str, title: str) -> str:
    section = report[name]
    if "skipped" in section:
        return f"## {title}\nSkipped: {section['skipped']}."
    keys = list(next(iter(section["methods"].values()), {}))
    rows = [[m] + [scores[k] for k in keys] for m, scores in section["methods"].items()]
    facts = ", ".join(f"{k} {_fmt(v)}" for k, v in section.items() if k not in ("methods", "not_scored"))
    missing = "".join(f"\n\nNot scored: {m} ({why})." for m, why in section.get("not_scored", {}).items())
    return f"## {title}\n{facts}\n\n" + _table(["method"] + keys, rows) + missing


def plot_recall(mr: dict[str, Any]) -> Figure:
    """Recall@1 (solid) and the largest recall@k (dashed) against divergence, one colour per method."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    divs = [100 * d for d in mr["divergences"]]
    for n, (name, scores) in enumerate(mr["methods"].items()):
        colour = f"C{n}"
        ax.plot(divs, scores.get("recall@1", []), "o-", color=colour, label=f"{name} recall@1")
        far = [k for k in scores if k != "recall@1"]
        if far:
            ax.plot(divs, scores[far[-1]], "s--", color=colour, alpha=0.6, label=f"{name} {far[-1]}")
    ax.set(xlabel="divergence (%)", ylabel="recall", ylim=(-0.02, 1.02), title="Mutated copy finds its original")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_embedding_map(vectors: np.ndarray, labels: Sequence[str | None], name: str, top: int = 10) -> Figure:
    """First two principal components, coloured by the `top` most common labels (the rest grey)."""
    from matplotlib.figure import Figure

    centred = vectors - vectors.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T if vt.shape[0] >= 2 else np.column_stack([centred[:, 0], np.zeros(len(centred))])
    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    common = [lab for lab, _ in Counter(lab for lab in labels if lab).most_common(top)]
    other = np.array([lab not in common for lab in labels])
    ax.scatter(xy[other, 0], xy[other, 1], s=6, c="lightgrey", label="other / unlabelled" if other.any() else None)
    for n, lab in enumerate(common):
        sel = np.array([x == lab for x in labels])
        ax.scatter(xy[sel, 0], xy[sel, 1], s=8, color=f"C{n % 10}", label=str(lab))
    ax.set(xlabel="PC 1", ylabel="PC 2", title=f"{name} embeddings (PCA)")
    ax.legend(fontsize=7, markerscale=2, title=f"label ({len(common)} most common)", title_fontsize=7)
    return fig


def metrics_for_mlflow(report: dict[str, Any]) -> dict[str, float]:
    """Flat eval/<method>/<metric> names (MLflow allows no '@') to finite values."""
    out: dict[str, float] = {}
    mr = report.get("mutation_retrieval", {})
    for name, scores in mr.get("methods", {}).items():
        for key, values in scores.items():
            for d, v in zip(mr["divergences"], values):
                out[f"eval/{name}/{key.replace('@', '_at_')}/d{d:g}"] = v
    for section in ("label_retrieval", "cross_set_retrieval", "distance_faithfulness"):
        for name, scores in report.get(section, {}).get("methods", {}).items():
            for key, v in scores.items():
                out[f"eval/{name}/{key.replace('@', '_at_')}"] = v
    rec = report.get("reconstruction")
    if rec:
        out["eval/gene-ae/reconstruction_accuracy"] = rec["accuracy"]
        out["eval/gene-ae/reconstruction_bits_per_base"] = rec["bits_per_base"]
    return {k.replace("@", "_at_"): float(v) for k, v in out.items() if v is not None and math.isfinite(v)}


def log_to_mlflow(run_id: str, report: dict[str, Any], paths: Sequence[Path]) -> None:
    """Metrics in one batch, and the report files under the run's eval/ artifacts."""
    import mlflow
    from mlflow.entities import Metric

    client = mlflow.MlflowClient()
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, 0) for k, v in metrics_for_mlflow(report).items()]
    for start in range(0, len(metrics), 1000):  # MLflow's batch limit
        client.log_batch(run_id, metrics=metrics[start : start + 1000])
    for path in paths:
        client.log_artifact(run_id, str(path), artifact_path="eval")
