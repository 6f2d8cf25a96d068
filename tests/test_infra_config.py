"""infra/: what can be checked without a container engine or a Kubernetes cluster.

The Dockerfiles are parsed and held to the constraints file; their build helper (infra/docker/pins.py)
runs for real here, and the project wheel is built from exactly the paths the Dockerfiles COPY. The
compose file and the Kubernetes manifests are parsed and cross-checked (selectors, ports, Secrets,
services the URIs name, the same server and serve commands in both). tests/test_infra_mlflow_server.py
runs the MLflow server and the model server themselves.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from shared import canonical, constraints, project

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "infra/docker"
K8S = REPO / "infra/k8s"
COMPOSE = REPO / "infra/mlflow/compose.yaml"
DEPLOY = REPO / "docs/DEPLOY.md"
IMAGES = {"gpu": DOCKER / "gpu.Dockerfile", "cpu": DOCKER / "cpu.Dockerfile"}


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with comments dropped and continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, f"{dockerfile}: dangling line continuation"
    return out


KNOWN = {"FROM", "ARG", "ENV", "RUN", "COPY", "WORKDIR", "USER", "ENTRYPOINT", "CMD", "EXPOSE", "HEALTHCHECK", "LABEL"}


def build_args(steps: list[tuple[str, str]]) -> dict[str, str]:
    args = {}
    for word, rest in steps:
        if word == "ARG" and "=" in rest:
            k, _, v = rest.partition("=")
            args[k] = v
    return args


def final_base(steps: list[tuple[str, str]]) -> str:
    args = build_args(steps)
    base = [rest.split()[0] for word, rest in steps if word == "FROM"][-1]
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)


def copies(steps: list[tuple[str, str]]) -> list[str]:
    """Source paths of COPY instructions that read the build context."""
    sources = []
    for word, rest in steps:
        if word == "COPY" and "--from=" not in rest:
            parts = [p for p in rest.split() if not p.startswith("--")]
            sources += parts[:-1]
    return sources


# ---------------------------------------------------------------- images


@pytest.mark.parametrize("variant", sorted(IMAGES))
def test_dockerfile_parses_and_installs_from_the_constraints_file(variant: str) -> None:
    steps = instructions(IMAGES[variant])
    assert {w for w, _ in steps} <= KNOWN
    runs = [rest for w, rest in steps if w == "RUN"]
    installs = [r for r in runs if re.search(r"\bpip install\b", r)]
    assert installs, "no pip install"
    for r in installs:
        for cmd in r.split("&&"):
            if re.search(r"\bpip install\b", cmd) and "--no-deps" not in cmd:
                assert "-c constraints.txt" in cmd, cmd
    assert any("pins.py check constraints.txt" in r for r in runs), "the build must fail on version drift"
    copied = copies(steps)
    for src in copied:
        assert (REPO / src).exists(), f"COPY {src}: not in the repository"
    # Copied before the dependency install, so that layer survives source edits.
    first_run_install = next(i for i, (w, r) in enumerate(steps) if w == "RUN" and "pip install -c" in r)
    assert steps.index(("COPY", "pyproject.toml constraints.txt ./")) < first_run_install
    assert any(w == "USER" and r != "root" for w, r in steps)


def test_gpu_image_is_cuda_based_and_cpu_image_is_slim() -> None:
    gpu, cpu = instructions(IMAGES["gpu"]), instructions(IMAGES["cpu"])
    python = ".".join(map(str, sys.version_info[:2]))
    # torch 2.13.0 from PyPI is built for CUDA 13.0 (it requires cuda-toolkit 13.0.x wheels).
    assert re.fullmatch(r"nvidia/cuda:13\.\d+\.\d+-(base|runtime|cudnn-runtime)-ubuntu\d+\.\d+", final_base(gpu))
    assert build_args(gpu)["PYTHON_VERSION"] == python  # the Python this suite and CI run
    assert final_base(cpu) == f"python:{python}-slim-bookworm"
    assert project()["requires-python"] == f">={python}"
    cpu_install = next(r for w, r in cpu if w == "RUN" and "pip install -c" in r)
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in cpu_install
    gpu_install = next(r for w, r in gpu if w == "RUN" and "pip install -c" in r)
    assert "download.pytorch.org" not in gpu_install  # PyPI's torch is the CUDA build
    for steps in (gpu, cpu):
        apt = next(r for w, r in steps if w == "RUN" and "apt-get install" in r)
        assert "wget" in apt.split()  # KubeRay's probes run wget inside the Ray containers


@pytest.mark.parametrize("dockerfile", [*IMAGES.values(), REPO / "infra/mlflow/Dockerfile"], ids=lambda p: p.name)
def test_dockerignore_keeps_everything_the_dockerfile_copies(dockerfile: Path) -> None:
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore").read_text().splitlines()
    rules = [ln.strip() for ln in ignore if ln.strip() and not ln.startswith("#")]
    assert rules[0] == "**"  # an allow-list: nothing else (.venv, data, .git) is sent to the builder
    allowed = [r[1:] for r in rules if r.startswith("!")]
    for src in copies(instructions(dockerfile)):
        assert any(src == a or a.startswith(src.rstrip("/") + "/") for a in allowed), f"{src} is ignored"


def test_pins_helper_runs_and_matches_this_environment(tmp_path: Path) -> None:
    helper = DOCKER / "pins.py"
    reqs = subprocess.run([sys.executable, helper, "requirements", REPO / "pyproject.toml"], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert reqs.returncode == 0
    assert reqs.stdout.split("\n")[:-1] == project()["dependencies"]
    ok = subprocess.run([sys.executable, helper, "check", REPO / "constraints.txt", "ray", "torch", "mlflow"],
                        capture_output=True, text=True, timeout=120)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    drifted = tmp_path / "constraints.txt"
    drifted.write_text((REPO / "constraints.txt").read_text().replace(f"ray=={constraints()['ray']}", "ray==0.0.1"))
    bad = subprocess.run([sys.executable, helper, "check", drifted, "no-such-dist"], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert bad.returncode == 1
    assert f"pins: ray: installed {constraints()['ray']}, constraints.txt pins 0.0.1" in bad.stderr
    assert "pins: no-such-dist: not installed" in bad.stderr


def test_the_copied_sources_build_a_complete_wheel(tmp_path: Path) -> None:
    """`pip install --no-deps .` in the image sees only what the Dockerfile copies: build that wheel here."""
    ctx = tmp_path / "context"
    for src in copies(instructions(IMAGES["cpu"])):
        target = ctx / src
        target.parent.mkdir(parents=True, exist_ok=True)
        if (REPO / src).is_dir():
            shutil.copytree(REPO / src, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(REPO / src, target)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "dist", ctx],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = (tmp_path / "dist").glob("gene_ae-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = ("gene_ae/train/driver.py", "gene_ae/registry/pyfunc_model.py", "gene_ae/registry/tracking.py")
    for module in (*modules, "shard_tools/reader.py"):
        assert module in names
    assert wheel.name.startswith(f"gene_ae-{project()['version']}-")


def test_mlflow_server_image_pins_agree_with_constraints() -> None:
    pins = constraints()
    reqs = {}
    for line in (REPO / "infra/mlflow/requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"{line}: not an exact pin"
            reqs[canonical(name)] = version
    for name, version in reqs.items():
        if name in pins:
            assert version == pins[name], f"{name}: {version} here, {pins[name]} in constraints.txt"
    assert {"mlflow", "psycopg2-binary", "flask-wtf", "boto3"} <= set(reqs)
    assert reqs["boto3"] == reqs["botocore"]
    steps = instructions(REPO / "infra/mlflow/Dockerfile")
    assert any(w == "RUN" and "-c /opt/mlflow/constraints.txt -r /opt/mlflow/requirements.txt" in r for w, r in steps)
    assert ("ENTRYPOINT", '["mlflow-server"]') in steps


# ---------------------------------------------------------------- compose


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_wires_postgres_minio_and_basic_auth() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "minio", "minio-bucket", "mlflow", "serve"}
    mlflow = services["mlflow"]
    env = mlflow["environment"]
    pg = services["postgres"]["environment"]
    for key, db in (("MLFLOW_BACKEND_STORE_URI", pg["POSTGRES_DB"]), ("MLFLOW_AUTH_DATABASE_URI", "mlflow_auth")):
        assert env[key] == f"postgresql+psycopg2://{pg['POSTGRES_USER']}:${{POSTGRES_PASSWORD}}@postgres:5432/{db}"
    # The auth database is created by the init script the postgres service mounts.
    init_dir = (COMPOSE.parent / services["postgres"]["volumes"][1].split(":")[0]).resolve()
    assert "CREATE DATABASE mlflow_auth OWNER mlflow;" in "".join(p.read_text() for p in init_dir.glob("*.sql"))
    # Artifacts: proxied by the server into the bucket the init service creates on MinIO.
    bucket = re.fullmatch(r"s3://([^/]+)/.+", env["MLFLOW_ARTIFACTS_DESTINATION"]).group(1)
    assert f"mc mb --ignore-existing local/{bucket}" in services["minio-bucket"]["command"][0]
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert services["minio-bucket"]["image"] == services["minio"]["image"]
    assert mlflow["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert mlflow["depends_on"]["minio-bucket"]["condition"] == "service_completed_successfully"
    # Authentication on: the entrypoint runs `mlflow server --app-name basic-auth`, the secrets are required.
    entry = (REPO / "infra/mlflow/entrypoint.sh").read_text()
    assert "exec mlflow server --app-name basic-auth --serve-artifacts" in entry
    for key in ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        assert re.fullmatch(r"\$\{\w+:\?.+\}", env[key]), f"{key} must be required, not defaulted"
    assert mlflow["image"] == f"ghcr.io/your-org/gene-ae-mlflow:{constraints()['mlflow']}"
    allowed = mlflow["command"][mlflow["command"].index("--allowed-hosts") + 1]
    assert {"localhost:*", "127.0.0.1:*", "mlflow:*"} <= set(allowed.split(","))


def test_compose_variables_are_all_in_the_env_example() -> None:
    used = set(re.findall(r"\$\{(\w+)", COMPOSE.read_text()))
    example = {
        ln.split("=", 1)[0]
        for ln in (COMPOSE.parent / ".env.example").read_text().splitlines()
        if "=" in ln and not ln.startswith("#")
    }
    assert used <= example, used - example


def test_compose_serves_the_production_alias_with_the_cpu_image() -> None:
    serve = compose()["services"]["serve"]
    assert serve["image"] == f"ghcr.io/your-org/gene-ae:{project()['version']}-cpu"
    assert serve["build"]["dockerfile"] == "infra/docker/cpu.Dockerfile"
    cmd = serve["command"]
    assert cmd[:3] == ["mlflow", "models", "serve"]
    assert cmd[cmd.index("--model-uri") + 1] == "models:/gene-ae-encoder@production"
    assert cmd[cmd.index("--env-manager") + 1] == "local"
    assert serve["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"


# ---------------------------------------------------------------- Kubernetes


def k8s_docs() -> list[dict]:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = []
    for name in kust["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    for d in docs:
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == kust["namespace"], d["metadata"]["name"]
    return docs


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def containers(workload: dict) -> list[dict]:
    return workload["spec"]["template"]["spec"]["containers"]


def test_k8s_workloads_services_and_ports_fit_together() -> None:
    docs = k8s_docs()
    workloads = {**by_kind(docs, "Deployment"), **by_kind(docs, "StatefulSet")}
    assert set(workloads) == {"mlflow-postgres", "mlflow-minio", "mlflow", "gene-ae-encoder"}
    for name, w in workloads.items():
        labels = w["spec"]["template"]["metadata"]["labels"]
        assert w["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
        tpl = w["spec"]["template"]["spec"]
        volumes = {v["name"] for v in tpl.get("volumes", [])} | {
            c["metadata"]["name"] for c in w["spec"].get("volumeClaimTemplates", [])
        }
        for c in tpl["containers"]:
            for m in c.get("volumeMounts", []):
                assert m["name"] in volumes, f"{name}: mount {m['name']}"
            for probe in ("readinessProbe", "livenessProbe"):
                port = c.get(probe, {}).get("httpGet", {}).get("port")
                if port is not None:
                    assert port in {p["name"] for p in c["ports"]}, f"{name} {probe} port {port}"
    for name, svc in by_kind(docs, "Service").items():
        sel = svc["spec"]["selector"]
        (target,) = [
            w for w in workloads.values() if sel.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        port_names = {p["name"] for c in containers(target) for p in c.get("ports", [])}
        for p in svc["spec"]["ports"]:
            assert p["targetPort"] in port_names, f"service {name} -> {p['targetPort']}"
    configmaps = by_kind(docs, "ConfigMap")
    for v in workloads["mlflow-postgres"]["spec"]["template"]["spec"]["volumes"]:
        if "configMap" in v:
            assert v["configMap"]["name"] in configmaps


def service_ports(docs: list[dict]) -> set[tuple[str, int]]:
    return {(n, p["port"]) for n, s in by_kind(docs, "Service").items() for p in s["spec"]["ports"]}


def test_k8s_uris_name_existing_services() -> None:
    docs = k8s_docs()
    ports = service_ports(docs)
    ns = yaml.safe_load((K8S / "kustomization.yaml").read_text())["namespace"]
    text = "\n".join(p.read_text() for p in [*K8S.glob("*.yaml"), *(REPO / "cluster/kuberay").glob("*.yaml")])
    for host, port in re.findall(r"(?:@|//)([a-z][a-z0-9-]*(?:\.[a-z0-9.-]+)?):(\d+)", text):
        short = host.split(".")[0]
        if host.count(".") and not host.endswith(f".{ns}.svc.cluster.local"):
            continue
        assert (short, int(port)) in ports, f"{host}:{port} is not a Service in {ns}"


def test_k8s_mlflow_matches_the_compose_server() -> None:
    (mlflow,) = containers(by_kind(k8s_docs(), "Deployment")["mlflow"])
    spec = compose()["services"]["mlflow"]
    assert mlflow["image"] == spec["image"]
    env = {e["name"]: e for e in mlflow["env"]}
    assert set(env) - {"POSTGRES_PASSWORD"} == set(spec["environment"])
    # $(VAR) references resolve to variables defined earlier in the list (Kubernetes' expansion rule).
    names = [e["name"] for e in mlflow["env"]]
    for i, e in enumerate(mlflow["env"]):
        for ref in re.findall(r"\$\((\w+)\)", e.get("value", "")):
            assert ref in names[:i], f"{e['name']} uses $({ref}) before it is defined"
    assert env["MLFLOW_BACKEND_STORE_URI"]["value"].startswith("postgresql+psycopg2://")
    flags = [a for a in mlflow["args"] if a.startswith("--")]
    assert flags == [a for a in spec["command"] if a.startswith("--")]
    allowed = mlflow["args"][mlflow["args"].index("--allowed-hosts") + 1].split(",")
    assert "mlflow.gene-ae.svc.cluster.local:*" in allowed


def test_k8s_serves_the_production_alias_like_compose() -> None:
    (encoder,) = containers(by_kind(k8s_docs(), "Deployment")["gene-ae-encoder"])
    assert encoder["command"] == compose()["services"]["serve"]["command"]
    assert encoder["image"] == f"ghcr.io/your-org/gene-ae:{project()['version']}-cpu"
    env = {e["name"]: e for e in encoder["env"]}
    assert env["MLFLOW_TRACKING_URI"]["value"] == "http://mlflow.gene-ae.svc.cluster.local:5000"
    assert env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "gene-ae-mlflow-client"


# ---------------------------------------------------------------- the guide


def secret_refs() -> set[tuple[str, str]]:
    refs = set()
    paths = [*K8S.glob("*.yaml"), *(REPO / "cluster/kuberay").glob("*.yaml")]
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            stack = [doc]
            while stack:
                node = stack.pop()
                if isinstance(node, dict):
                    if "secretKeyRef" in node:
                        refs.add((node["secretKeyRef"]["name"], node["secretKeyRef"]["key"]))
                    stack += node.values()
                elif isinstance(node, list):
                    stack += node
    return refs


def test_deploy_guide_creates_every_secret_the_manifests_read() -> None:
    joined = DEPLOY.read_text().replace("\\\n", " ")  # shell continuation lines
    commands = [" ".join(shlex.split(ln)) for ln in joined.splitlines() if ln.lstrip().startswith("kubectl ")]
    created = {}
    for c in commands:
        m = re.search(r"create secret generic (\S+)", c)
        if m:
            created[m.group(1)] = set(re.findall(r"--from-(?:literal|file)=([\w-]+)=", c))
    refs = secret_refs()
    assert refs
    for name, key in sorted(refs):
        assert name in created, f"docs/DEPLOY.md never creates Secret {name}"
        assert key in created[name], f"docs/DEPLOY.md: Secret {name} lacks key {key}"


def test_deploy_guide_covers_laptop_to_cluster() -> None:
    text = DEPLOY.read_text()
    for path in (
        "cluster/submit.py", "cluster/stage_shards.py", "cluster/runtime_env.yaml", "cluster/runtime_env.pip.yaml",
        "cluster/kuberay/raycluster.yaml", "cluster/kuberay/rayjob.yaml", "cluster/launcher/aws-gpu.yaml",
        "infra/docker/gpu.Dockerfile", "infra/docker/cpu.Dockerfile", "infra/mlflow/compose.yaml", "infra/k8s",
    ):  # fmt: skip
        assert path in text, path
        assert (REPO / path).exists(), path
    for term in ("RAY_AUTH_MODE=token", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "ray get-auth-token",
                 "models:/gene-ae-encoder@production", "python -m gene_ae.train"):  # fmt: skip
        assert term in text, term
