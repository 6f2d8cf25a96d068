"""cluster/: the submit script (run for real with --dry-run and on bad input), the runtime environment
files, the KubeRay RayCluster and RayJob, and the cluster-launcher config, checked against the code and
the pins they have to agree with. Nothing here needs a cluster; tests/test_cluster_multinode.py runs one.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from shared import canonical, constraints, project

REPO = Path(__file__).resolve().parents[1]
KUBERAY = REPO / "cluster/kuberay"
SUBMIT = REPO / "cluster/submit.py"


def submit_module():
    spec = importlib.util.spec_from_file_location("cluster_submit", SUBMIT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RESERVED = submit_module().reserved_env_keys()


def dep_name(spec: str) -> str:
    return canonical(re.split(r"[<>=!~\[ ;]", spec, maxsplit=1)[0])


def submit(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SUBMIT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd="/",
    )


def dry_run(*args: str) -> dict:
    proc = submit("--dry-run", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def train_argv(entry: list[str]) -> list[str]:
    assert entry[:3] == ["python", "-m", "gene_ae.train"], entry
    return entry[3:]


# ---------------------------------------------------------------- runtime environment files


def test_reserved_env_keys_are_what_gene_ae_train_passes_to_ray_init() -> None:
    """Read from gene_ae/train/driver.py, so the check follows the code; the multi-node test shows the failure."""
    assert {"MLFLOW_DISABLE_TELEMETRY", "RAY_USAGE_STATS_ENABLED"} <= RESERVED
    assert "env_vars" not in RESERVED
    assert all(re.fullmatch(r"[A-Z_][A-Z0-9_]*", k) for k in RESERVED)


@pytest.mark.parametrize("name", ["runtime_env.yaml", "runtime_env.pip.yaml"])
def test_runtime_env_files_are_valid_for_ray(name: str) -> None:
    from ray.runtime_env import RuntimeEnv

    doc = yaml.safe_load((REPO / "cluster" / name).read_text())
    RuntimeEnv(**doc)  # Ray's own validation of every field
    assert "working_dir" not in doc  # cluster/submit.py sets it
    assert {".git/", ".venv/", "data/"} <= set(doc["excludes"])
    assert not RESERVED & set(doc.get("env_vars", {}))


def test_pip_runtime_env_pins_the_project_dependencies_at_the_constraints_versions() -> None:
    doc = yaml.safe_load((REPO / "cluster/runtime_env.pip.yaml").read_text())
    pins = constraints()
    listed = {}
    for spec in doc["pip"]["packages"]:
        name, sep, version = spec.partition("==")
        assert sep, f"{spec}: not an exact pin"
        listed[canonical(name)] = version
        assert version == pins[canonical(name)], f"{spec}: constraints.txt pins {pins[canonical(name)]}"
    wanted = {dep_name(d) for d in project()["dependencies"]} - {"ray"}
    assert set(listed) == wanted
    assert "ray" not in listed  # the cluster's own Ray must not be replaced per job


# ---------------------------------------------------------------- cluster/submit.py


def test_submit_builds_ray_job_submit_for_a_local_shard_path() -> None:
    out = dry_run(
        "--address", "http://head:8265", "--data", "/shared/shards/genefam", "--storage", "/shared/runs",
        "--tracking-uri", "http://mlflow:5000", "--submission-id", "job-1", "--env", "EXTRA=1",
        "--", "--workers", "4", "--gpu", "--steps", "100", "--alias", "production",
    )  # fmt: skip
    cmd = out["command"]
    cut = cmd.index("--")
    head, entry = cmd[:cut], cmd[cut + 1 :]
    assert head[:3] == ["ray", "job", "submit"]
    opts = dict(zip(head[3::2], head[4::2]))
    assert opts["--address"] == "http://head:8265"
    assert opts["--working-dir"] == "."
    assert opts["--submission-id"] == "job-1"
    runtime_env = json.loads(opts["--runtime-env-json"])
    assert runtime_env == out["runtime_env"]
    assert runtime_env["env_vars"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert runtime_env["env_vars"]["EXTRA"] == "1"
    assert runtime_env["excludes"] == yaml.safe_load((REPO / "cluster/runtime_env.yaml").read_text())["excludes"]
    assert entry == [
        "python", "-m", "gene_ae.train", "--data", "/shared/shards/genefam", "--storage", "/shared/runs",
        "--workers", "4", "--gpu", "--steps", "100", "--alias", "production",
    ]  # fmt: skip
    assert out["entrypoint"] == shlex.join(entry)


def test_submit_entrypoint_is_the_real_training_cli() -> None:
    """The entrypoint's module exists and accepts exactly the arguments the script passes."""
    from gene_ae.train import driver as train

    out = dry_run(
        "--address", "http://head:8265", "--data", "/shared/shards", "--storage", "s3://bucket/runs",
        "--tracking-uri", "http://mlflow:5000", "--", "--workers", "2", "--set", "model.vector_dim=64",
    )  # fmt: skip
    entry = out["command"][out["command"].index("--") + 1 :]
    args = train.parse_args(train_argv(entry))
    assert (args.data, args.storage, args.workers, args.set) == ("/shared/shards", "s3://bucket/runs", 2,
                                                                 ["model.vector_dim=64"])  # fmt: skip
    help_ = subprocess.run(
        [sys.executable, "-m", "gene_ae.train", "--help"], capture_output=True, text=True, timeout=120
    )
    assert help_.returncode == 0 and "--storage" in help_.stdout


def test_submit_stages_object_store_shards_on_every_node_first() -> None:
    out = dry_run(
        "--address", "http://head:8265", "--data", "s3://bucket/shards/genefam", "--storage", "s3://bucket/runs",
        "--tracking-uri", "http://mlflow:5000", "--", "--workers", "4", "--gpu",
    )  # fmt: skip
    entry = out["command"][out["command"].index("--") + 1 :]
    # Ray 2.60's CLI quotes each argument after `--`, so two steps go through one `bash -c` string.
    assert entry[:2] == ["bash", "-c"] and len(entry) == 3
    stage, train_step = (shlex.split(part) for part in entry[2].split(" && "))
    local = stage[3]
    assert stage[:4] == ["python", "cluster/stage_shards.py", "s3://bucket/shards/genefam", local]
    assert local.startswith("/tmp/gene-ae-shards/genefam-")
    assert stage[stage.index("--workers") + 1] == "4" and "--gpu" in stage
    assert train_argv(train_step)[:4] == ["--data", local, "--storage", "s3://bucket/runs"]
    assert (REPO / stage[1]).is_file()


@pytest.mark.parametrize(
    "args, env, message",
    [
        (["--data", "shards", "--storage", "/r", "--tracking-uri", "http://m"], {}, "--data shards: must be absolute"),
        (["--data", "/s", "--storage", "runs", "--tracking-uri", "http://m"], {}, "--storage runs: must be absolute"),
        (["--data", "hdfs://nn/s", "--storage", "/r", "--tracking-uri", "http://m"], {}, "hdfs:// is not supported"),
        (["--data", "/s", "--storage", "/r"], {}, "no MLflow tracking URI"),
        (["--data", "/s", "--storage", "/r", "--tracking-uri", "sqlite:///mlflow.db"], {}, "relative sqlite path"),
        (["--data", "/s", "--storage", "/r"], {"MLFLOW_TRACKING_URI": "mlruns"}, "a relative path"),
        (["--data", "/s", "--storage", "/r", "--tracking-uri", "http://m", "--env", "MLFLOW_DISABLE_TELEMETRY=1"], {},
         "refuse to start the driver"),
        (["--data", "/s", "--storage", "/r", "--tracking-uri", "http://m", "--env", "RAY_AUTH_TOKEN=x"], {},
         "belongs on the cluster nodes"),
        (["--data", "/s", "--storage", "/r", "--tracking-uri", "http://m", "--", "--data", "/x"], {},
         "--data goes before `--`"),
        (["--data", "/s", "--storage", "/r", "--tracking-uri", "http://m", "--runtime-env", "/nonexistent.yaml"], {},
         "--runtime-env /nonexistent.yaml"),
        (["--data", "/s", "--storage", "/r", "--tracking-uri", "http://m", "--token-file", "/nonexistent"], {},
         "--token-file /nonexistent: missing or empty"),
    ],
)  # fmt: skip
def test_submit_refuses_what_would_break_on_a_cluster(args: list[str], env: dict, message: str) -> None:
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_"))}
    proc = submit("--address", "http://head:8265", *args, env={**base, **env})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cluster/submit.py: error: "), proc.stderr
    assert message in lines[0]
    assert proc.stdout == ""


def test_submit_warns_about_artifacts_of_a_sqlite_store() -> None:
    proc = submit(
        "--dry-run", "--address", "http://h:8265", "--data", "/s", "--storage", "/r",
        "--tracking-uri", "sqlite:////shared/mlflow.db",
    )  # fmt: skip
    assert proc.returncode == 0
    assert "a new experiment keeps its artifacts in ./mlruns of the job's temporary working directory" in proc.stderr


def test_submit_warns_about_secrets_in_the_job_env() -> None:
    proc = submit(
        "--dry-run", "--address", "http://h:8265", "--data", "/s", "--storage", "/r", "--tracking-uri", "http://m",
        "--env", "MLFLOW_TRACKING_PASSWORD=hunter2hunter2",
    )  # fmt: skip
    assert proc.returncode == 0
    assert "warning: MLFLOW_TRACKING_PASSWORD goes into the job's runtime env" in proc.stderr


# ---------------------------------------------------------------- KubeRay


def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def pod_containers(spec: dict) -> list[dict]:
    return spec["template"]["spec"]["containers"]


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def assert_token_auth(env: dict[str, dict]) -> None:
    assert env["RAY_AUTH_MODE"]["value"] == "token"
    ref = env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == ("gene-ae-ray-token", "auth_token")


def assert_images(cluster_spec: dict) -> None:
    version = project()["version"]
    head = pod_containers(cluster_spec["headGroupSpec"])[0]
    assert head["image"] == f"ghcr.io/your-org/gene-ae:{version}-cpu"
    for group in cluster_spec["workerGroupSpecs"]:
        for c in pod_containers(group):
            assert c["image"] == f"ghcr.io/your-org/gene-ae:{version}-gpu"


def assert_volumes_resolve(pod_spec: dict) -> None:
    volumes = {v["name"] for v in pod_spec.get("volumes", [])}
    for c in pod_spec["containers"]:
        for m in c.get("volumeMounts", []):
            assert m["name"] in volumes, f"{c['name']} mounts undefined volume {m['name']}"
    claims = {
        v["persistentVolumeClaim"]["claimName"] for v in pod_spec.get("volumes", []) if "persistentVolumeClaim" in v
    }
    defined = {
        d["metadata"]["name"]
        for d in load_docs(KUBERAY / "shared-storage.yaml")
        if d["kind"] == "PersistentVolumeClaim"
    }
    assert claims <= defined


def test_raycluster_has_a_head_and_an_autoscaling_gpu_worker_group() -> None:
    (doc,) = load_docs(KUBERAY / "raycluster.yaml")
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayCluster")
    spec = doc["spec"]
    assert spec["rayVersion"] == constraints()["ray"]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    (gpu,) = spec["workerGroupSpecs"]
    assert 0 <= gpu["minReplicas"] <= gpu["replicas"] <= gpu["maxReplicas"] and gpu["maxReplicas"] > gpu["minReplicas"]
    for c in pod_containers(gpu):
        assert c["resources"]["limits"]["nvidia.com/gpu"] == c["resources"]["requests"]["nvidia.com/gpu"] == "1"
    # Token auth on every Ray container and on the autoscaler sidecar (it talks to the GCS).
    for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
        for c in pod_containers(group):
            assert_token_auth(env_of(c))
            assert env_of(c)["MLFLOW_TRACKING_URI"]["value"] == "http://mlflow.gene-ae.svc.cluster.local:5000"
        assert_volumes_resolve(group["template"]["spec"])
    assert_token_auth({e["name"]: e for e in spec["autoscalerOptions"]["env"]})
    assert_images(spec)


def test_rayjob_runs_the_training_module_and_cleans_up() -> None:
    from gene_ae.train import driver as train

    (doc,) = load_docs(KUBERAY / "rayjob.yaml")
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayJob")
    spec = doc["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] > 0
    argv = shlex.split(spec["entrypoint"])
    args = train.parse_args(train_argv(argv))
    assert Path(args.data).is_absolute() and Path(args.storage).is_absolute()
    assert args.gpu is True and args.alias == "production" and args.register == "gene-ae-encoder"
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == constraints()["ray"]
    gpus = sum(
        g["replicas"] * int(c["resources"]["limits"].get("nvidia.com/gpu", 0))
        for g in cluster["workerGroupSpecs"]
        for c in pod_containers(g)
    )
    assert args.workers == gpus == 2  # one DDP rank per GPU, all present from the start
    for g in cluster["workerGroupSpecs"]:
        assert g["minReplicas"] == g["replicas"] == g["maxReplicas"]
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        for c in pod_containers(group):
            assert_token_auth(env_of(c))
            # The paths the entrypoint uses exist in every pod.
            mounts = [m["mountPath"] for m in c["volumeMounts"]]
            assert any(args.data.startswith(m + "/") for m in mounts)
            assert any(args.storage.startswith(m + "/") for m in mounts)
        assert_volumes_resolve(group["template"]["spec"])
    (submitter,) = spec["submitterPodTemplate"]["spec"]["containers"]
    assert_token_auth(env_of(submitter))
    assert_images(cluster)


# ---------------------------------------------------------------- cluster launcher


def test_cluster_launcher_config_passes_rays_own_validation() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((REPO / "cluster/launcher/aws-gpu.yaml").read_text())
    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)  # Ray's cluster-config JSON schema plus its own checks
    assert raw["docker"]["image"] == f"ghcr.io/your-org/gene-ae:{project()['version']}-gpu"
    assert "--gpus all" in raw["docker"]["worker_run_options"]
    workers = [t for name, t in raw["available_node_types"].items() if name != raw["head_node_type"]]
    assert len(workers) == 1 and workers[0]["node_config"]["InstanceType"].startswith(("g", "p"))
    assert 0 <= workers[0]["min_workers"] < workers[0]["max_workers"] <= raw["max_workers"]
    assert raw["available_node_types"][raw["head_node_type"]]["resources"] == {"CPU": 0}
    # Token auth: the token file goes to every node and every `ray start` runs in token mode.
    assert raw["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    for cmds in (raw["head_start_ray_commands"], raw["worker_start_ray_commands"]):
        start = next(c for c in cmds if "ray start" in c)
        assert "RAY_AUTH_MODE=token" in start and "--disable-usage-stats" in start
