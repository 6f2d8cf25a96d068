"""`make demo`: the whole path on the bundled real sample, printing each step.

shard -> train (Ray, 2 workers) -> register + promote to production -> serve by alias, one request
-> embed a collection -> search it with real queries -> evaluation report with plots.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from gene_ae.serving import serving

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data" / "genefam"


def step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def run(*cmd: str | Path, **kw) -> subprocess.CompletedProcess:
    printable = " ".join(str(c) for c in cmd)
    print(f"$ {printable}", flush=True)
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def serve_once(env: dict, query: str) -> list[float]:
    """Serve the production alias with `mlflow models serve`, send one request, stop it."""
    uri = "models:/gene-ae-encoder@production"
    print(f"$ mlflow models serve -m {uri} --env-manager local --host 127.0.0.1 --port PORT", flush=True)
    with serving(uri, env) as port:
        body = json.dumps({"inputs": [query]}).encode()
        print(
            f"$ curl -X POST http://127.0.0.1:{port}/invocations -H 'Content-Type: application/json' "
            f'-d \'{{"inputs": ["{query[:20]}..."]}}\'',
            flush=True,
        )
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read())["predictions"][0]


def main() -> int:
    out = Path(os.environ.get("GENE_AE_DEMO_DIR", REPO / "demo-out")).resolve()
    steps = os.environ.get("GENE_AE_DEMO_STEPS", "")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{out}/mlflow.db",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "RAY_USAGE_STATS_ENABLED": "0",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",  # `mlflow models serve` execs uvicorn
    }
    started = time.time()

    step("1/6 shard the bundled real sample (600 chimpanzee genes, 7 families)")
    run(bin_dir / "shard-fasta", "--label-column", "class", DATA / "chimp_sample.tsv.gz", out / "shards", env=env)
    run(bin_dir / "shard-verify", out / "shards", env=env)

    step("2/6 train with Ray Train on 2 CPU workers, register, promote to @production")
    extra = ["--steps", steps] if steps else []
    run(
        sys.executable,
        "-m",
        "gene_ae.train",
        "--data",
        out / "shards",
        "--config",
        REPO / "gene_ae" / "configs" / "demo.toml",
        "--workers",
        "2",
        "--name",
        "demo",
        "--storage",
        out / "runs",
        "--alias",
        "production",
        *extra,
        env=env,
        cwd=out,
    )

    step("3/6 serve models:/gene-ae-encoder@production with `mlflow models serve`, one request")
    query = "ATGGCTGACGAGAAGCCGAAGGAGGGAGTCAAGACCGAGAACAACGATCATATCAATTTGAAGGTGGCAGGGCAGGACGGCTC"
    vector = serve_once(env, query)
    print(f"  -> {len(vector)}-dimensional vector, first values {[round(v, 3) for v in vector[:4]]}")

    step("4/6 embed the collection into a vector index")
    run(
        bin_dir / "gene-ae",
        "embed",
        "--model",
        "models:/gene-ae-encoder@production",
        "--input",
        out / "shards",
        "--out",
        out / "index",
        env=env,
        cwd=out,
    )

    step("5/6 search with real queries: dog genes against the chimp collection, top 10 re-ordered by alignment")
    queries = out / "dog_queries.tsv"
    import gzip

    with gzip.open(DATA / "dog_sample.tsv.gz", "rt", newline="") as f:
        queries.write_text("".join(f.readline() for _ in range(6)))
    run(
        bin_dir / "gene-ae",
        "search",
        "--index",
        out / "index",
        "--label-column",
        "class",
        queries,
        "-k",
        "3",
        "--rerank",
        "10",
        "--collection",
        out / "shards",
        env=env,
        cwd=out,
    )

    step("6/6 evaluate search on unseen genes (dog) against the 5-mer baseline and sourmash")
    run(
        bin_dir / "gene-ae",
        "eval",
        "--model",
        "models:/gene-ae-encoder@production",
        "--input",
        DATA / "dog_sample.tsv.gz",
        "--label-column",
        "class",
        "--out",
        out / "report",
        "--n-queries",
        "100",
        "--rerank",
        "10",
        env=env,
        cwd=out,
    )

    minutes = (time.time() - started) / 60
    print(f"\nDone in {minutes:.1f} min.")
    print(f"  report:    {out / 'report' / 'report.md'} (plots beside it)")
    print(
        f"  MLflow UI: {bin_dir / 'mlflow'} ui --backend-store-uri sqlite:///{out}/mlflow.db "
        f"--default-artifact-root {out}/mlruns  (then open http://127.0.0.1:5000)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
