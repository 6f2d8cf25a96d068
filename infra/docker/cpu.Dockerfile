# syntax=docker/dockerfile:1
# gene-ae training/serving image for CPU nodes (Ray head, CPU workers, the model server): Debian slim with
# Python 3.11, torch 2.13.0 from PyTorch's CPU-only index (2.13.0+cpu, no CUDA libraries), everything
# else at the version constraints.txt pins. Build from the repository root:
#
#   docker build -f infra/docker/cpu.Dockerfile -t ghcr.io/your-org/gene-ae:0.1.0-cpu .
#
# Serve the production encoder from a tracking server (infra/k8s/serve.yaml does the same):
#   docker run -p 8080:8080 -e MLFLOW_TRACKING_URI=... -e MLFLOW_TRACKING_USERNAME=... \
#     -e MLFLOW_TRACKING_PASSWORD=... ghcr.io/your-org/gene-ae:0.1.0-cpu \
#     mlflow models serve -m models:/gene-ae-encoder@production --env-manager local -h 0.0.0.0 -p 8080
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    MLFLOW_DISABLE_TELEMETRY=true \
    RAY_USAGE_STATS_ENABLED=0

# wget: KubeRay's readiness/liveness probes; rsync/openssh-client: the Ray cluster launcher; tini: PID 1.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates wget curl rsync openssh-client tini gcc libc6-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/* \
 && python -m venv /opt/venv

WORKDIR /opt/gene-ae
COPY pyproject.toml constraints.txt ./
COPY infra/docker/pins.py ./infra/docker/pins.py
# pip picks 2.13.0+cpu from the extra index over PyPI's CUDA build (a local version sorts higher, and
# the constraint torch==2.13.0 admits it).
RUN python infra/docker/pins.py requirements pyproject.toml > /tmp/requirements.txt \
 && pip install -c constraints.txt -r /tmp/requirements.txt \
      --extra-index-url https://download.pytorch.org/whl/cpu \
 && rm /tmp/requirements.txt \
 && python -c "import torch; assert torch.version.cuda is None, torch.__version__"

COPY gene_ae ./gene_ae
COPY shard_tools ./shard_tools
COPY cluster ./cluster
RUN pip install --no-deps . \
 && python infra/docker/pins.py check constraints.txt gene-ae ray torch mlflow \
 && python -c "import gene_ae.train, gene_ae.registry.pyfunc_model, shard_tools.reader, ray.train.torch"

# KubeRay and the cluster launcher run commands in login shells, whose /etc/profile resets PATH.
RUN echo 'export PATH=/opt/venv/bin:$PATH' > /etc/profile.d/00-gene-ae-venv.sh \
 && useradd --create-home --uid 1000 --shell /bin/bash ray
USER ray
WORKDIR /home/ray
EXPOSE 8080
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["python", "-m", "gene_ae.train", "--help"]
