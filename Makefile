# Two commands: `make run` (the quick start) and `make test` (lint, types, the whole suite).
# Both create .venv and install on first use; nothing else needs installing by hand.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
CONFIG ?= configs/quickstart.yaml
export PATH := $(BIN):$(PATH)

.PHONY: setup run test lint bench bench-setup bench-stale bench-figures bench-gpu clean cluster-up cluster-down

# PostgreSQL's server binaries (Debian's package) for the local cluster, when missing: the
# cluster runs a server of its own from them and leaves the package's service alone.
# Prometheus, promtool, Alertmanager and amtool (Debian's packages) for the alerting tests,
# which start servers of their own; the packages' services are turned off.
setup: $(STAMP)
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql; \
	  else \
	    echo "note: no PostgreSQL (apt-get install postgresql): make cluster-up and tests/cluster need it"; \
	  fi; }
	@{ command -v promtool && command -v amtool && { command -v prometheus-alertmanager || command -v alertmanager; }; } >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus prometheus-alertmanager && \
	    { systemctl disable --now prometheus prometheus-alertmanager 2>/dev/null || true; }; \
	  else \
	    echo "note: no Prometheus (apt-get install prometheus prometheus-alertmanager): tests/unit/test_monitoring_rules.py and tests/integration/test_alerting.py need it"; \
	  fi; }

# torch first, pinned to the CPU build: a range in pyproject.toml that 2.13.0 satisfies then
# installs nothing heavier (an unpinned torch would pull a multi-GB CUDA build).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

run: setup
	ray-mlops run $(CONFIG)
	ray-mlops serve $(CONFIG) --try

lint: setup
	ruff check ray_mlops tests benchmarks cluster
	ruff format --check ray_mlops tests benchmarks cluster
	mypy ray_mlops
	lint-imports
	bandit -q -r ray_mlops -ll
	python benchmarks/figures.py --check

test: lint
	pytest

# The serving benchmark's load generator is wrk (Debian's package), installed when missing.
bench-setup: setup
	@command -v wrk >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wrk; \
	  else echo "serve_load.py needs wrk: apt-get install wrk"; exit 1; fi; }

# Every benchmark with --quick (small sizes, about two minutes each): that they run, not figures.
# cluster_overhead.py needs the local cluster: make cluster-up, then run it by hand.
BENCH_TOOLS := benchmarks/stale.py benchmarks/figures.py benchmarks/cluster_overhead.py
bench: bench-setup
	@for script in $(filter-out $(BENCH_TOOLS),$(wildcard benchmarks/[!_]*.py)); do \
	  echo "== $$script"; python $$script --quick || exit 1; done

# Results older than the code they measure (exit 1 when any).
bench-stale: setup
	python benchmarks/stale.py

# Every GPU and 16-CPU case on a lent GPU node, about 5 minutes (benchmarks/gpu_suite.sh).
# No `setup`: the node cannot download; Ray, MLflow and Optuna come from the .gpu bundle
# (../shared/gpu/make-bundle.sh), results go to $$OUT as NAME-gpu-DEVICE.json.
bench-gpu:
	bash benchmarks/gpu_suite.sh

# The README tables and the plots, from benchmarks/results/*.json.
bench-figures: setup
	python benchmarks/figures.py

# A Ray head and two worker nodes (network and mount namespaces, root), PostgreSQL, moto's S3
# and MLflow on this machine; see cluster/local/README.md. `down` needs only the standard library.
cluster-up: setup
	$(BIN)/python cluster/local/cluster.py up

cluster-down:
	$(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON)) cluster/local/cluster.py down

clean:
	rm -rf .ray-mlops .pytest_cache .mypy_cache .ruff_cache
