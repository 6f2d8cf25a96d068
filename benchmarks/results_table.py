"""Summarise the eval reports that benchmarks/results.sh wrote into the tables of docs/RESULTS.md.

Usage: python benchmarks/results_table.py OUT_DIR   (reads OUT_DIR/eval_*/report.json, prints markdown)
Per data set and recall@k: gene-ae, the best same-size hashed profile, the best exact k-mer count profile,
the best sourmash, exhaustive alignment (the ceiling), and gene-ae's margin over the best of all others.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _best(methods: dict, prefix_test, key: str, i: int) -> tuple[str, float]:
    names = [n for n in methods if prefix_test(n)]
    if not names:
        return "", float("nan")
    name = max(names, key=lambda n: methods[n][key][i])
    return name, methods[name][key][i]


def table(report: dict, key: str) -> str:
    mr = report["mutation_retrieval"]
    methods = {n: v for n, v in mr["methods"].items() if not n.endswith("+align")}
    divs = mr["divergences"]
    groups = {
        "hashed to the model's size": lambda n: "@" in n,
        "exact k-mer counts": lambda n: n.endswith("-mer"),
        "sourmash": lambda n: n.startswith("sourmash"),
    }
    head = "| " + key + " | " + " | ".join(f"{d:.0%}" for d in divs) + " |\n|---|" + "---|" * len(divs) + "\n"
    rows = ["| gene-ae | " + " | ".join(f"{v:.3f}" for v in methods["gene-ae"][key]) + " |"]
    for label, test in groups.items():
        cells = [_best(methods, test, key, i) for i in range(len(divs))]
        rows.append(f"| best {label} | " + " | ".join(f"{v:.3f} ({n})" for n, v in cells) + " |")
    others = [_best(methods, lambda n: n != "gene-ae", key, i) for i in range(len(divs))]
    rows.append(
        "| gene-ae margin over the best other | "
        + " | ".join(f"{methods['gene-ae'][key][i] - v:+.3f}" for i, (_, v) in enumerate(others))
        + " |"
    )
    ceiling = mr.get("alignment_ceiling", {})
    if "scores" in ceiling:
        rows.append(
            f"| exhaustive alignment ({ceiling['n_queries']} queries, {ceiling['seconds_per_query']:.1f} s/query) | "
            + " | ".join(f"{v:.3f}" for v in ceiling["scores"][key])
            + " |"
        )
    return head + "\n".join(rows) + "\n"


def main() -> None:
    out = Path(sys.argv[1])
    for path in sorted(out.glob("eval_*/report.json")):
        report = json.loads(path.read_text())
        ds = report["dataset"]
        print(f"### {path.parent.name}: {ds['n_sequences']:,} sequences, median {ds['length_median']:,.0f} bases\n")
        for key in ("recall@1", "recall@10"):
            print(table(report, key))
        rec = report.get("reconstruction")
        if rec:
            curve = ", ".join(f"{n}: {v['accuracy']:.3f}" for n, v in rec["by_length"].items())
            print(f"Reconstruction accuracy by window length ({rec['n_sequences']} sequences): {curve}\n")
        for section in ("label_retrieval", "cross_set_retrieval"):
            sec = report.get(section, {})
            if "methods" in sec:
                key = next(iter(next(iter(sec["methods"].values()))))
                scores = {n: v[key] for n, v in sec["methods"].items()}
                best = max((n for n in scores if n != "gene-ae"), key=scores.get)
                print(f"{section} {key}: gene-ae {scores['gene-ae']:.3f}, best other {scores[best]:.3f} ({best})\n")


if __name__ == "__main__":
    main()
