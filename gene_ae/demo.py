"""`make demo`: the whole path on the bundled real sample, printing each step.

shard -> train (Ray, 2 workers) -> register + promote to production -> serve by alias, one request
-> embed a collection -> search it with real queries -> evaluation report with plots.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from gene_ae.config import DEFAULT_MODEL_NAME
from gene_ae.registry.serve_model import serving

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data" / "genefam"
PRODUCTION = f"models:/{DEFAULT_MODEL_NAME}@production"


def step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def run(*cmd: str | Path, **kw) -> subprocess.CompletedProcess:
    printable = " ".join(str(c) for c in cmd)
    print(f"$ {printable}", flush=True)
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def serve_once(env: dict, query: str) -> list[float]:
    """Serve the production alias with `mlflow models serve`, send one request, stop it."""
    print(f"$ mlflow models serve -m {PRODUCTION} --env-manager local --host 127.0.0.1 --port PORT", flush=True)
    with serving(PRODUCTION, env) as port:
        body = json.dumps({"inputs": [query]}).encode()
        print(
            f"$ curl -X POST http://127.0.0.1:{port}/invocations -H 'Content-Type: application/json' "
            f'-d \'{{"inputs": ["{query[:20]}..."]}}\'',
            flush=True,
        )
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read())["predictions"][0]


@dataclass
class Demo:
    """Where the demo writes, the environment its commands run in, and the venv's console scripts."""

    out: Path
    env: dict[str, str]
    bin_dir: Path

    def gene_ae(self, *args: str | Path) -> None:
        run(self.bin_dir / "gene-ae", *args, env=self.env, cwd=self.out)


def setup() -> Demo:
    out = Path(os.environ.get("GENE_AE_DEMO_DIR", REPO / "demo-out")).resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{out}/mlflow.db",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # a bar each time a models:/ URI is read
        "RAY_USAGE_STATS_ENABLED": "0",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",  # `mlflow models serve` execs uvicorn
    }
    return Demo(out, env, bin_dir)


def shard(demo: Demo) -> None:
    step("1/6 shard the bundled real sample (600 chimpanzee genes, 7 families)")
    run(demo.bin_dir / "shard-fasta", "--label-column", "class", DATA / "chimp_sample.tsv.gz", demo.out / "shards",
        env=demo.env)  # fmt: skip
    run(demo.bin_dir / "shard-verify", demo.out / "shards", env=demo.env)


def train(demo: Demo) -> None:
    step("2/6 train with Ray Train on 2 CPU workers, register, promote to @production")
    steps = os.environ.get("GENE_AE_DEMO_STEPS", "")
    config = REPO / "gene_ae" / "configs" / "demo.toml"
    run(sys.executable, "-m", "gene_ae.train", "--data", demo.out / "shards", "--config", config,
        "--workers", "2", "--name", "demo", "--storage", demo.out / "runs", "--alias", "production",
        *(["--steps", steps] if steps else []), env=demo.env, cwd=demo.out)  # fmt: skip


def serve(demo: Demo) -> None:
    step(f"3/6 serve {PRODUCTION} with `mlflow models serve`, one request")
    query = "ATGGCTGACGAGAAGCCGAAGGAGGGAGTCAAGACCGAGAACAACGATCATATCAATTTGAAGGTGGCAGGGCAGGACGGCTC"
    vector = serve_once(demo.env, query)
    print(f"  -> {len(vector)}-dimensional vector, first values {[round(v, 3) for v in vector[:4]]}")


def embed_and_search(demo: Demo) -> None:
    step("4/6 embed the collection into a vector index")
    demo.gene_ae("embed", "--model", PRODUCTION, "--input", demo.out / "shards", "--out", demo.out / "index")
    step("5/6 search with real queries: dog genes against the chimp collection (exact k-mers, then alignment)")
    queries = demo.out / "dog_queries.tsv"
    with gzip.open(DATA / "dog_sample.tsv.gz", "rt", newline="") as f:
        queries.write_text("".join(f.readline() for _ in range(6)))
    demo.gene_ae("search", "--index", demo.out / "index", "--label-column", "class", queries, "-k", "3")


def evaluate(demo: Demo) -> None:
    step("6/6 evaluate on unseen genes (dog): the default search and the vector beside k-mer profiles, sourmash")
    demo.gene_ae("eval", "--model", PRODUCTION, "--input", DATA / "dog_sample.tsv.gz", "--label-column", "class",
                 "--out", demo.out / "report", "--n-queries", "100", "--align-queries", "5",
                 "--methods", "gene-ae search,gene-ae,5-mer,7-mer,6-mer@dim,sourmash-k11")  # fmt: skip


def main() -> int:
    started = time.time()
    demo = setup()
    for part in (shard, train, serve, embed_and_search, evaluate):
        part(demo)
    print(f"\nDone in {(time.time() - started) / 60:.1f} min.")
    print(f"  report:    {demo.out / 'report' / 'report.md'} (plots beside it)")
    print(
        f"  MLflow UI: {demo.bin_dir / 'mlflow'} ui --backend-store-uri sqlite:///{demo.out}/mlflow.db "
        f"--default-artifact-root {demo.out}/mlruns  (then open http://127.0.0.1:5000)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
