# Two commands: `make run` (the quick start) and `make test` (lint, types, the whole suite).
# Both create .venv and install on first use; nothing else needs installing by hand.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
CONFIG ?= configs/quickstart.yaml
export PATH := $(BIN):$(PATH)

.PHONY: setup run test lint bench clean

setup: $(STAMP)

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
	ruff check ray_mlops tests benchmarks
	ruff format --check ray_mlops tests benchmarks
	mypy ray_mlops
	lint-imports

test: lint
	pytest

bench: setup
	@for script in benchmarks/[!_]*.py; do [ -e "$$script" ] || continue; echo "== $$script"; python $$script --quick || exit 1; done

clean:
	rm -rf .ray-mlops .pytest_cache .mypy_cache .ruff_cache
