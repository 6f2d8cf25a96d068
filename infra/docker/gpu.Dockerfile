# syntax=docker/dockerfile:1
# gene-ae training/serving image for GPU nodes: NVIDIA CUDA base, Python 3.11, every Python package at the
# version constraints.txt pins (torch 2.13.0 from PyPI is the CUDA 13.0 build and brings its CUDA runtime
# libraries as wheels; the host needs an NVIDIA driver >= 580). Build from the repository root:
#
#   docker build -f infra/docker/gpu.Dockerfile -t ghcr.io/your-org/gene-ae:0.1.0-gpu .
#
# Used by the GPU worker group in cluster/kuberay/ and by the cluster launcher (cluster/launcher/).
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-base-ubuntu24.04
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

FROM ${CUDA_IMAGE}
ARG PYTHON_VERSION=3.11
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_PYTHON_INSTALL_DIR=/opt/python \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    MLFLOW_DISABLE_TELEMETRY=true \
    RAY_USAGE_STATS_ENABLED=0

# wget: KubeRay's readiness/liveness probes; rsync/openssh-client: the Ray cluster launcher; tini: PID 1.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates wget curl rsync openssh-client tini gcc libc6-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*

# Ubuntu 24.04 ships Python 3.12; uv installs a standalone CPython 3.11 (gene-ae's CI runs 3.11).
COPY --from=uv /uv /usr/local/bin/uv
RUN uv python install ${PYTHON_VERSION} \
 && uv venv --seed --python ${PYTHON_VERSION} /opt/venv \
 && chmod -R a+rX /opt/python /opt/venv

WORKDIR /opt/gene-ae
# Dependencies first (a layer that survives source edits): pyproject's dependencies, pinned by constraints.txt.
COPY pyproject.toml constraints.txt ./
COPY infra/docker/pins.py ./infra/docker/pins.py
RUN python infra/docker/pins.py requirements pyproject.toml > /tmp/requirements.txt \
 && pip install -c constraints.txt -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

COPY gene_ae ./gene_ae
COPY shard_tools ./shard_tools
COPY cluster ./cluster
RUN pip install --no-deps . \
 && python infra/docker/pins.py check constraints.txt gene-ae ray torch mlflow \
 && python -c "import gene_ae.train, gene_ae.registry.pyfunc_model, shard_tools.reader, ray.train.torch"

# KubeRay and the cluster launcher run commands in login shells, whose /etc/profile resets PATH.
RUN echo 'export PATH=/opt/venv/bin:$PATH' > /etc/profile.d/00-gene-ae-venv.sh \
 && (userdel --remove ubuntu 2>/dev/null || true) \
 && useradd --create-home --uid 1000 --shell /bin/bash ray
USER ray
WORKDIR /home/ray
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["python", "-m", "gene_ae.train", "--help"]
