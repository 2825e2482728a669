# Zephyr: `make run` starts a local cluster, `make test` runs the suite. Both set themselves up.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
PROTOS := $(wildcard proto/zephyr/v1/*.proto)
GENERATED := zephyr/v1/.generated
WORKERS ?= 2

.DEFAULT_GOAL := help
.PHONY: help venv proto run test test-fast lint bench clean

help: ## show this help
	@echo "Zephyr make targets:"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-10s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ required (set PYTHON=)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

venv: $(INSTALLED) ## create .venv and install Zephyr with its dev tools

$(GENERATED): $(INSTALLED) $(PROTOS)
	$(PY) -m grpc_tools.protoc -Iproto --python_out=. --grpc_python_out=. \
		--plugin=protoc-gen-mypy=$(VENV)/bin/protoc-gen-mypy --mypy_out=. \
		--plugin=protoc-gen-mypy_grpc=$(VENV)/bin/protoc-gen-mypy_grpc --mypy_grpc_out=. $(PROTOS)
	touch $@

proto: $(GENERATED) ## generate gRPC code from proto/ into zephyr/v1/

run: $(GENERATED) ## start scheduler, coordinator, $(WORKERS) workers and an embedded PostgreSQL (Ctrl-C stops)
	$(VENV)/bin/zephyr up --workers $(WORKERS)

test: $(GENERATED) ## run the whole test suite (real PostgreSQL, gRPC, SMTP, subprocesses)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(GENERATED) ## ruff and mypy
	$(VENV)/bin/ruff check zephyr cmd tests bench
	$(VENV)/bin/ruff format --check zephyr cmd tests bench
	$(VENV)/bin/mypy

bench: $(GENERATED) ## run the benchmarks (BENCH_ARGS="--quick" for a smoke run); figures to bench/results/
	@$(PY) -c 'import procrastinate, celery, matplotlib, psutil, pyinstrument' 2>/dev/null && test -x $(VENV)/bin/py-spy \
		|| $(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	$(PY) -m bench $(BENCH_ARGS)

clean: ## remove the virtualenv, generated code and local cluster data
	rm -rf $(VENV) zephyr/v1/*_pb2*.py* $(GENERATED) build dist zephyr/data .zephyr .pytest_cache .mypy_cache .ruff_cache
