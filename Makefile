# ray-tune-k8s: run the walkthrough's stages locally or on KubeRay, and test them.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

##@ Settings (override on the command line: make submit STAGE=asha TUNE_NUM_SAMPLES=8)

STAGE ?= tune
STAGES := baseline tune asha checkpoint train
PYTHON ?= python3
# The virtual environment; .ci/run points it at a cache keyed by the pinned dependencies.
VENV ?= .venv
PY := $(VENV)/bin/python
DEPS_HASH := $(shell $(PYTHON) .ci/deps.py --hash)
STAMP := $(VENV)/.installed-$(DEPS_HASH)
# Where `make data` stages the dataset, and what the stages read (see README: Settings).
DATA_DIR ?= $(CURDIR)/data
DATASET ?= mnist
PYTEST_ARGS ?=
export DATA_DIR DATASET

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m [VAR=value]\n"} \
	  /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: install
install: $(STAMP) ## Create the virtualenv with the pinned dependencies (pip).

$(STAMP): pyproject.toml .ci/deps.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $$($(PYTHON) .ci/deps.py | tr '\n' ' ')
	@rm -f $(VENV)/.installed-*
	@touch $@

.PHONY: data
data: $(STAMP) ## Stage DATASET (mnist|fashion-mnist) into DATA_DIR once (needs network).
	$(PY) -m jobs.data

.PHONY: lint
lint: $(STAMP) ## Lint and check formatting (ruff).
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

.PHONY: format
format: $(STAMP) ## Format and auto-fix (ruff).
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

.PHONY: test
test: $(STAMP) ## Run every test: lint, unit, integration (e2e skip without Docker/kind).
	$(VENV)/bin/ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: $(STAMP) ## Run the fast tests only (no Ray cluster).
	$(PY) -m pytest -m "not integration and not e2e" $(PYTEST_ARGS)

##@ Run a stage

.PHONY: check-stage
check-stage:
	@case " $(STAGES) " in *" $(STAGE) "*) ;; \
	  *) echo "error: unknown STAGE '$(STAGE)'; choose one of: $(STAGES)" >&2; exit 2;; esac

.PHONY: submit
submit: check-stage $(STAMP) ## Run STAGE via the Ray Jobs API (RAY_ADDRESS, else a private local head).
	@if [[ -z "$${RAY_ADDRESS:-}" ]]; then $(PY) -m jobs.data; fi
	$(PY) -m jobs.submit $(STAGE) $(ARGS)

.PHONY: run
run: check-stage $(STAMP) ## Run STAGE in this process (python -m jobs.STAGE), no Jobs API.
	@if [[ -z "$${RAY_ADDRESS:-}" ]]; then $(PY) -m jobs.data; fi
	$(PY) -m jobs.$(STAGE) $(ARGS)

.PHONY: clean
clean: ## Remove caches (not the venv, data or results).
	rm -rf .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
