# One entry point for everything a developer or CI does. `make test` works on a fresh machine:
# it creates the virtual environment, installs the project, builds the test binaries when missing
# (hack/build-test-binaries, cached outside the repo) and runs the whole suite.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LOCK := requirements.lock
# Parts of their own beside the handler (imds-simulator/, testkit/), installed editable for the
# tests, the demo and the benchmarks; none of them is in the handler's wheel or image.
PARTS := imds-simulator testkit
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) $(PARTS:%=%/pyproject.toml) | cksum | cut -d' ' -f1)
# Tools whose dependencies must stay out of the test venv (see the `tools` extra in pyproject.toml),
# so that the handler started from .venv imports exactly what the container image holds.
TOOLS_VENV ?= .venv-tools
TOOLS_BIN := $(TOOLS_VENV)/bin
TOOLS_STAMP := $(TOOLS_VENV)/.installed-$(shell cat pyproject.toml $(PARTS:%=%/pyproject.toml) | cksum | cut -d' ' -f1)
TEST_BIN_DIR := $(shell hack/build-test-binaries --print-dir)
export AKSNTH_TEST_BIN_DIR := $(TEST_BIN_DIR)
PYTEST_ARGS ?=

.PHONY: help venv imds-simulator-image lock test-binaries test-images test cluster unit compat integration e2e reliability lint fmt demo bench bench-zero-downtime soak audit clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

# The runtime dependencies come from the lock, hash-checked, as in the image; then the project itself
# and its test and lint tools (tests/unit/test_lock.py fails if these moved a locked version).
$(STAMP): pyproject.toml $(LOCK) $(PARTS:%=%/pyproject.toml)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes --only-binary=:all: -r $(LOCK)
	$(BIN)/python -m pip install --quiet -e '.[test,lint]' $(PARTS:%=-e ./%)
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP) ## create the virtual environment and install the project with its test tools

CONTAINER ?= docker
imds-simulator-image: ## the IMDS simulator's own container image (imds-simulator/Dockerfile), tagged imds-simulator:dev
	$(CONTAINER) build -t imds-simulator:dev imds-simulator

# The parts go in without their dependencies: import-linter only needs to find their sources.
$(TOOLS_STAMP): pyproject.toml $(PARTS:%=%/pyproject.toml)
	@test -x $(TOOLS_BIN)/python || $(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_BIN)/python -m pip install --quiet --upgrade pip
	$(TOOLS_BIN)/python -m pip install --quiet -e '.[tools]'
	$(TOOLS_BIN)/python -m pip install --quiet --no-deps $(PARTS:%=-e ./%)
	@rm -f $(TOOLS_VENV)/.installed-* && touch $@

lock: $(TOOLS_STAMP) ## re-resolve requirements.lock (runtime dependencies, hash-pinned) from pyproject.toml
	$(TOOLS_BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes \
	  --no-emit-package aks-node-termination-handler --custom-compile-command 'make lock' --quiet -o $(LOCK)

test-binaries: ## build kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl, etcd, helm, pushgateway (cached)
	hack/build-test-binaries

test-images: ## build the test images from docker/Dockerfile, amd64 and arm64 (emulated) (cached; needs root and apt-get, skipped elsewhere unless CI)
	hack/build-test-image --if-possible

test: venv test-binaries test-images ## the whole suite: unit, integration (real control plane), end-to-end and real nodes
	$(BIN)/pytest $(PYTEST_ARGS)

cluster: venv test-binaries test-images ## the real-node scenarios only: the image, the chart and the handler on real kubelets
	$(BIN)/pytest tests/cluster $(PYTEST_ARGS)

unit: venv ## unit tests only (no binaries, no network)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

compat: venv ## the compatibility suite: a Go-version user's payloads, flags, config files and metrics
	$(BIN)/pytest tests/compat $(PYTEST_ARGS)

integration: venv test-binaries ## integration tests against the real control plane
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

e2e: venv test-binaries ## end-to-end scenarios: the handler as a process
	$(BIN)/pytest tests/e2e $(PYTEST_ARGS)

reliability: venv test-binaries ## faults, bad input, load, a Spot pool preempted at once, least privilege (about 2.5 min; part of make test)
	$(BIN)/pytest tests/reliability $(PYTEST_ARGS)

lint: venv $(TOOLS_STAMP) ## ruff, mypy and the import layers
	$(BIN)/ruff check src tests bench demo $(PARTS)
	$(BIN)/ruff format --check src tests bench demo $(PARTS)
	$(BIN)/mypy
	$(TOOLS_BIN)/lint-imports

fmt: venv ## format and fix what ruff can
	$(BIN)/ruff format src tests bench demo $(PARTS)
	$(BIN)/ruff check --fix src tests bench demo $(PARTS)

demo: venv test-binaries ## a local control plane, the IMDS simulator and the handler draining a Spot node
	$(BIN)/python -m demo $(DEMO_ARGS)

bench: venv test-binaries ## benchmarks: reaction time, drain throughput, footprint, a Spot pool preempted at once (prints a table)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

bench-zero-downtime: venv test-binaries test-images ## requests lost through a Service while a Spot node goes, on real kubelets, ours beside the Go version
	$(BIN)/python -m bench.zero_downtime $(BENCH_ARGS)

soak: venv test-binaries ## an hour of polling, an event a minute, RSS and descriptors sampled (SOAK_ARGS="--minutes 5")
	$(BIN)/python -m tests.reliability.soak $(SOAK_ARGS)

audit: $(TOOLS_STAMP) ## audit the dependencies for known vulnerabilities (needs advisory data from the network)
	$(TOOLS_BIN)/pip-audit --skip-editable --progress-spinner off --format json --output $(TOOLS_VENV)/audit.json || true
	$(TOOLS_BIN)/python hack/audit-summary $(TOOLS_VENV)/audit.json

clean: ## remove the virtual environment and caches (the test binaries stay in their cache)
	rm -rf $(VENV) $(TOOLS_VENV) .pytest_cache .mypy_cache .ruff_cache build src/*.egg-info $(PARTS:%=%/src/*.egg-info)
