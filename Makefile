# Two entry points for a fresh machine (Python 3.11 + pip): `make demo` and `make test`.
# Both create .venv and install everything pinned in constraints.txt (torch 2.13.0 CPU build).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
NATIVE := setup.py gene_ae/core/kmers.c gene_ae/index/postings.c gene_ae/index/order.c gene_ae/search/chain.c  # compiled at install (setup.py)
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt $(NATIVE) | cksum | cut -d' ' -f1)
export MLFLOW_DISABLE_TELEMETRY := true
export RAY_USAGE_STATS_ENABLED := 0
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: demo demo-features test test-all lint bench venv clean

venv: $(STAMP)

# The package is byte-compiled at install, as pip does for a wheel: an editable install is not, and with
# PYTHONDONTWRITEBYTECODE every command compiled ~90 modules again (46 ms of a 0.3 s search).
$(STAMP): pyproject.toml constraints.txt $(NATIVE)
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	$(VENV)/bin/python -m compileall -q gene_ae shard_tools
	rm -f $(VENV)/.installed-* && touch $@

demo: $(STAMP)
	$(VENV)/bin/python -m gene_ae.demo

demo-features: $(STAMP)
	GENE_AE_DEMO_DIR=demo-features-out $(VENV)/bin/python -m gene_ae.demo_features

# Two test processes, one test file each at a time (module fixtures built once): most of the suite waits on
# process start-ups (Ray, MLflow servers, interpreters), so a second process cuts the wall time by about a third on
# 2 cores (412 -> 298 s of pytest with other work beside it; 265 s on a fresh clone).
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -m "not slow" -q -n 2 --dist loadfile

test-all: $(STAMP)
	GENE_AE_TEST_PROFILE=full $(VENV)/bin/python -m pytest -q -n 2 --dist loadfile

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/shard_bench.py

clean:
	rm -rf demo-out demo-features-out .pytest_cache
