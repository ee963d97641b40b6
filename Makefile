# ray-tune-k8s: run the walkthrough's stages locally or on KubeRay, and test them.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

##@ Settings (override on the command line: make submit STAGE=asha TUNE_NUM_SAMPLES=8)

STAGE ?= tune
PYTHON ?= python3
# The stages, from the registry (jobs/registry.py; standard library only).
STAGES := $(shell $(PYTHON) -m jobs.registry)
# The virtual environment; .ci/run points it at a cache keyed by the pinned dependencies.
VENV ?= .venv
PY := $(VENV)/bin/python
# The venv is named after the lock: a new lock builds a new one (.ci/run keeps them cached).
DEPS_HASH := $(shell $(PYTHON) .ci/deps.py --hash)
# The lock is for the images' and CI's platform: Linux x86_64, Python 3.11.
LOCK_FLAGS = --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
  --custom-compile-command "make lock" --quiet
STAMP := $(VENV)/.installed-$(DEPS_HASH)
# Where `make data` stages the dataset for local runs (jobs/README.md: Settings).
DATA_DIR ?= $(CURDIR)/data
DATASET ?= mnist
PYTEST_ARGS ?=
# local: a private Ray head on this machine; k8s: the RayCluster of `make cluster`.
TARGET ?= local
# Which variant's manifests the Kubernetes targets use: a values file of k8s/values/ (gke,
# eks, aks, kind). The default variant (`default: true`) lives in k8s/, the others in k8s/<CLOUD>/.
DEFAULT_CLOUD := $(basename $(notdir $(shell grep -l '^default: true' k8s/values/*.yaml)))
CLOUD ?= $(DEFAULT_CLOUD)
CLOUDS := $(basename $(notdir $(wildcard k8s/values/*.yaml)))
K8S_DIR = $(if $(filter $(DEFAULT_CLOUD),$(CLOUD)),k8s,k8s/$(CLOUD))
# The workstation's tools for a cluster (render, preflight, results, submit TARGET=k8s): a
# small venv from .ci/lock/client.txt (Ray's client, PyYAML, Jinja2; no torch, no CUDA).
CLIENT_VENV ?= .venv-client
CLIENT_PY := $(CLIENT_VENV)/bin/python
CLIENT_STAMP = $(CLIENT_VENV)/.installed-$(shell sha256sum .ci/lock/client.txt | cut -c1-12)
# A pull secret for a private registry, rendered into every pod (make manifests).
IMAGE_PULL_SECRET ?=
# A Kueue LocalQueue: make manifests labels every RayJob for it (k8s/README.md: Kueue).
QUEUE ?=
# EKS only: the EFS file system `make storage CLOUD=eks` names in its storage class.
EFS_FILE_SYSTEM_ID ?=
# 1: make teardown also deletes the shared volume (and with it every result and checkpoint).
DELETE_VOLUME ?=
# 1: make cloud-down also deletes the registry and its images.
DELETE_REGISTRY ?=
# 1: make cloud-up, cloud-down and device-plugin print their commands and run none.
DRY_RUN ?=
# GKE: the project make cloud-up creates in (gcloud's default project when empty).
GCP_PROJECT ?=
# Ray's version comes from the pin in pyproject.toml: the image tags and manifests follow it.
RAY_VERSION := $(shell $(PYTHON) .ci/deps.py --pin ray)
PROJECT_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE_REPO ?= ghcr.io/ray-tune-k8s/ray-tune-k8s
IMAGE_GPU ?= $(IMAGE_REPO):$(PROJECT_VERSION)-ray$(RAY_VERSION)-gpu
IMAGE_CPU ?= $(IMAGE_REPO):$(PROJECT_VERSION)-ray$(RAY_VERSION)-cpu
KUBECTL ?= kubectl
HELM ?= helm
# The container engine: docker when its daemon answers, else podman (image/build.sh).
DOCKER ?= $(shell docker info >/dev/null 2>&1 && echo docker || echo podman)
# official: FROM rayproject/ray; debian: a stand-in base built from Debian's packages.
BASE ?= official
# host: resolve wheels with this machine's pip and mount them into the build (podman).
WHEELS ?=
# A local folder with the four IDX files to stage instead of downloading IMAGE_DATASET.
DATA_FROM ?=
IMAGE_DATASET ?= mnist
# Images by the digest `make push` recorded (image/digests.yaml) where there is one; 0: tags
# only; 1: fail without a digest.
DIGESTS ?=
OFFLINE_DATA_DIR ?= /usr/share/datasets/fashion-mnist
IMAGE_ENV = DOCKER=$(DOCKER) BASE=$(BASE) WHEELS=$(WHEELS) DATA_FROM=$(DATA_FROM) \
  DATASET=$(IMAGE_DATASET) RAY_VERSION=$(RAY_VERSION) PYTHON=$(PY)
KUBERAY_VERSION ?= 1.7.0
OPERATOR_NAMESPACE ?= kuberay-system
CLUSTER ?= ray-tune
DASHBOARD_PORT ?= 8265
# A smoke.json of `make smoke` (make results STAGE=smoke TARGET=k8s copies it): its measured
# T4 cold start, doubled, replaces the values file's assumed one in that variant's manifests.
COLD_START ?=
# Empty: k8s/bin/rayjob.sh waits (backoffLimit + 1) x activeDeadlineSeconds + 10 min.
RAYJOB_TIMEOUT_S ?=
FORMAT ?= table
# `make results TARGET=k8s` copies a stage's outputs from the volume to RESULTS_DIR/<stage>.
RESULTS_DIR ?= results/k8s
# Benchmarks run on the real Fashion-MNIST Debian ships (offline, same format as MNIST).
BENCH_DATA_DIR ?= /usr/share/datasets/fashion-mnist
BENCH_DATASET ?= fashion-mnist
TENSORBOARD_PORT ?= 6006
export KUBECTL CLUSTER DASHBOARD_PORT

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m [VAR=value]\n"} \
	  /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: install
install: $(STAMP) ## Create the virtualenv with exactly the locked versions (.ci/lock/dev.txt).

.PHONY: client
client: $(CLIENT_STAMP) ## The small workstation venv for the Kubernetes targets (.ci/lock/client.txt; Linux, macOS).

$(CLIENT_VENV)/.installed-%: .ci/lock/client.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11) and f"error: the client needs Python 3.11 or newer (jobs/kube/render.py reads TOML with tomllib); $(PYTHON) is {sys.version.split()[0]}: pass PYTHON=python3.11")'
	@test -x $(CLIENT_PY) || $(PYTHON) -m venv $(CLIENT_VENV)
	$(CLIENT_PY) -m pip install -qq --require-hashes --no-deps -r .ci/lock/client.txt
	@rm -f $(CLIENT_VENV)/.installed-*
	@touch $@

# --require-hashes --no-deps: pip installs what the lock says and resolves nothing.
$(STAMP): .ci/lock/dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11) and f"error: the lock is for Python 3.11; $(PYTHON) is {sys.version.split()[0]}: pass PYTHON=python3.11")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq --require-hashes --no-deps -r .ci/lock/dev.txt
	@rm -f $(VENV)/.installed-*
	@touch $@

.PHONY: lock
lock: ## Resolve pyproject.toml's dependencies again into .ci/lock/ (uv, with hashes); commit it.
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@test -x $(VENV)/bin/uv || $(PY) -m pip install --quiet "$$(sed -n 's/.*"\(uv==[^"]*\)".*/\1/p' pyproject.toml)"
	$(VENV)/bin/uv pip compile --system-certs pyproject.toml --extra dev $(LOCK_FLAGS) -o .ci/lock/dev.txt
	$(VENV)/bin/uv pip compile --system-certs pyproject.toml -c .ci/lock/dev.txt $(LOCK_FLAGS) \
	  -o .ci/lock/runtime.txt
	$(VENV)/bin/uv pip compile --system-certs .ci/lock/tools.in $(LOCK_FLAGS) -o .ci/lock/tools.txt
	@# client.txt: only pyproject's `client` extra, at dev.txt's versions, for every platform
	@# (--universal); then every package must have a wheel for macOS on Apple silicon.
	$(PY) -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["client"], sep="\n")' \
	  | $(VENV)/bin/uv pip compile --system-certs - -c .ci/lock/dev.txt --universal --python-version 3.11 \
	  --generate-hashes --custom-compile-command "make lock" --quiet -o .ci/lock/client.txt
	$(VENV)/bin/uv pip compile --system-certs .ci/lock/client.txt --python-version 3.11 \
	  --python-platform aarch64-apple-darwin --only-binary :all: --quiet -o /dev/null

.PHONY: data
data: $(STAMP) ## Stage DATASET (mnist|fashion-mnist) into DATA_DIR once (needs network).
	DATA_DIR=$(DATA_DIR) DATASET=$(DATASET) $(PY) -m jobs.core.idx

# Tools that cannot share the venv (see .ci/lock/tools.in), in their own, beside it.
TOOLS := $(VENV)/tools
TOOLS_STAMP = $(TOOLS)/.installed-$(shell sha256sum .ci/lock/tools.txt | cut -c1-12)
LINT_PODS ?= build/lint-pods

$(TOOLS)/.installed-%: .ci/lock/tools.txt
	@test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -qq --require-hashes --no-deps -r .ci/lock/tools.txt
	@rm -f $(TOOLS)/.installed-*
	@touch $@

.PHONY: lint
lint: $(STAMP) $(TOOLS_STAMP) ## Lint: ruff (check, format), hadolint, shellcheck, checkov (pods, Dockerfiles).
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/hadolint image/Dockerfile image/base.Dockerfile
	$(VENV)/bin/shellcheck .ci/run k8s/bin/*.sh k8s/cloud.sh k8s/*/cloud.sh image/*.sh tests/support/kind/*.sh jobs/bench/*.sh
	@rm -rf $(LINT_PODS)
	$(PY) -m tests.support.kuberay.export_pods $(LINT_PODS)
	for f in $$(find k8s -name networkpolicy.yaml); do cp "$$f" "$(LINT_PODS)/$$(echo "$$f" | tr / -)"; done
	$(TOOLS)/bin/checkov --config-file tests/checkov.yaml --framework kubernetes -d $(LINT_PODS)
	$(TOOLS)/bin/checkov --config-file tests/checkov.yaml --framework dockerfile \
	  -f image/Dockerfile -f image/base.Dockerfile

.PHONY: format
format: $(STAMP) ## Format and auto-fix (ruff).
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

.PHONY: system-packages
system-packages: ## Install the Debian packages the tests need (root or sudo), else name them.
	.ci/system-packages

# pytest-xdist workers, each taking the next test as it frees up (--maxschedchunk 1: by
# default --dist load hands each worker a consecutive quarter of the list up front, which
# gave one worker every test that runs a stage or containers); those come first, the short
# ones last (tests/conftest.py, tests/README.md). 0: one process.
TEST_WORKERS ?= 2
XDIST = -n $(TEST_WORKERS)$(if $(filter 0,$(TEST_WORKERS)),, --dist load --maxschedchunk 1)

.PHONY: test
test: system-packages lint ## Everything (budget 25 min): lint, unit, every stage end to end, e2e in podman (kind skips without Docker); the 10 slowest last.
	$(PY) -m pytest $(XDIST) --durations=10 $(PYTEST_ARGS)

.PHONY: test-quick
test-quick: $(STAMP) ## The inner loop (budget 3 min): tests/unit and the integration tests that start no stage (bad input, data); no Ray cluster, no containers.
	$(PY) -m pytest $(XDIST) -m quick --durations=10 $(PYTEST_ARGS)

.PHONY: bench
bench: $(STAMP) ## Run the benchmarks (BENCH_QUICK=1: under 10 min); writes jobs/bench/results/.
	DATA_DIR=$(BENCH_DATA_DIR) DATASET=$(BENCH_DATASET) $(PY) -m jobs.bench.bench

.PHONY: bench-memory
bench-memory: $(STAMP) ## Measure trial memory at the default data size (~25 min on 2 cores); writes jobs/bench/results/memory.json.
	DATA_DIR=$(BENCH_DATA_DIR) DATASET=$(BENCH_DATASET) $(PY) -m jobs.bench.memory

.PHONY: clean
clean: ## Remove caches (not the venv, data or results).
	rm -rf .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

##@ Run a stage

.PHONY: check-stage
check-stage:
	@case " $(STAGES) " in *" $(STAGE) "*) ;; \
	  *) echo "error: unknown STAGE '$(STAGE)'; choose one of: $(STAGES)" >&2; exit 2;; esac

# submit and results also take STAGE=all: every stage, in walkthrough order.
.PHONY: check-stage-or-all
check-stage-or-all:
	@case " $(STAGES) all " in *" $(STAGE) "*) ;; \
	  *) echo "error: unknown STAGE '$(STAGE)'; choose one of: $(STAGES) all" >&2; exit 2;; esac

# results and e2e-podman also take STAGE=smoke: the smoke check (make smoke), not a stage.
.PHONY: check-stage-or-smoke check-results-stage
check-stage-or-smoke:
	@case " $(STAGES) smoke " in *" $(STAGE) "*) ;; \
	  *) echo "error: unknown STAGE '$(STAGE)'; choose one of: $(STAGES) smoke" >&2; exit 2;; esac
check-results-stage:
	@case " $(STAGES) all smoke " in *" $(STAGE) "*) ;; \
	  *) echo "error: unknown STAGE '$(STAGE)'; choose one of: $(STAGES) all smoke" >&2; exit 2;; esac

.PHONY: submit
ifeq ($(TARGET),k8s)
submit: check-stage-or-all $(CLIENT_STAMP) ## Run STAGE (or all five in order, STAGE=all) via the Ray Jobs API: a private local head, RAY_ADDRESS, or TARGET=k8s.
	PY=$(CLIENT_PY) k8s/bin/submit.sh $(STAGE) $(ARGS)
else
submit: check-stage-or-all $(STAMP)
	@if [[ -z "$${RAY_ADDRESS:-}" ]]; then DATA_DIR=$(DATA_DIR) DATASET=$(DATASET) $(PY) -m jobs.core.idx; fi
	DATA_DIR=$(DATA_DIR) DATASET=$(DATASET) $(PY) -m jobs.submit $(STAGE) $(ARGS)
endif

.PHONY: run
run: check-stage $(STAMP) ## Run STAGE in this process (python -m jobs.STAGE), no Jobs API.
	@if [[ -z "$${RAY_ADDRESS:-}" ]]; then DATA_DIR=$(DATA_DIR) DATASET=$(DATASET) $(PY) -m jobs.core.idx; fi
	DATA_DIR=$(DATA_DIR) DATASET=$(DATASET) $(PY) -m jobs.$(STAGE) $(ARGS)

# What `make results` reads: STAGE's outputs (all: every stage's).
comma := ,
RESULT_STAGES = $(if $(filter all,$(STAGE)),$(STAGES),$(STAGE))

.PHONY: results
ifeq ($(TARGET),k8s)
results: check-results-stage check-cloud $(CLIENT_STAMP) ## Print STAGE's leaderboard and cost (STAGE=all: a line per stage; TARGET=k8s: copy from the PVC first).
	READER=$(K8S_DIR)/results-reader.yaml k8s/bin/results.sh $(subst $(eval) ,$(comma),$(RESULT_STAGES)) \
	  $(RESULTS_DIR) >/dev/null
	$(CLIENT_PY) -m jobs.results $(addprefix $(RESULTS_DIR)/,$(RESULT_STAGES)) --format $(FORMAT)
else
results: check-results-stage $(STAMP)
	$(PY) -m jobs.results $(STAGE) --format $(FORMAT)
endif

# make compare: the run to compare STAGE's with (a run's folder, or an archived run's name);
# empty: the newest archived run beside it.
WITH ?=

.PHONY: report
ifeq ($(TARGET),k8s)
report: check-stage check-cloud $(CLIENT_STAMP) $(STAMP) ## Write STAGE's report.html (and index.html) from its run and print the path (TARGET=k8s: copy the run, its attempt logs and trial logs from the volume first).
	REPORT=1 READER=$(K8S_DIR)/results-reader.yaml k8s/bin/results.sh $(STAGE) $(RESULTS_DIR) >/dev/null
	@# Drawn with matplotlib, which the client venv leaves out (no training stack there).
	$(PY) -m jobs.report $(RESULTS_DIR)/$(STAGE)
else
report: check-stage $(STAMP)
	$(PY) -m jobs.report $(STAGE)
endif

.PHONY: compare
compare: check-stage $(STAMP) ## Print STAGE's run beside the one before it, or WITH=<run> (TARGET=k8s: the copy make results made), with the differences.
	$(PY) -m jobs.compare $(if $(filter k8s,$(TARGET)),$(RESULTS_DIR)/$(STAGE),$(STAGE)) $(if $(WITH),--with $(WITH))

# Empty: the last attempt; a number in the list (-2: the one before) or part of its job id.
ATTEMPT ?=

.PHONY: logs
ifeq ($(TARGET),k8s)
logs: check-stage check-cloud $(CLIENT_STAMP) ## List STAGE's attempts and print one's driver log (ATTEMPT; default the last), from the volume (TARGET=k8s: via the head or a reader pod).
	LOGS_ONLY=1 READER=$(K8S_DIR)/results-reader.yaml k8s/bin/results.sh $(STAGE) $(RESULTS_DIR)
	$(CLIENT_PY) -m jobs.logs $(RESULTS_DIR)/$(STAGE)/logs $(if $(ATTEMPT),--attempt=$(ATTEMPT))
else
logs: check-stage
	$(PYTHON) -m jobs.logs $(STAGE) $(if $(ATTEMPT),--attempt=$(ATTEMPT))
endif

.PHONY: tensorboard
tensorboard: check-stage $(STAMP) ## Serve STAGE's TensorBoard event files (Tune writes them per trial).
	$(VENV)/bin/tensorboard --logdir "$$($(PY) -m jobs.results $(STAGE) --folder)" --port $(TENSORBOARD_PORT)

##@ Image

.PHONY: image
image: ## Build the GPU image (CUDA 12.6 torch, T4) and check it (DOCKER: docker or podman); make push pushes it.
	$(IMAGE_ENV) TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 image/build.sh gpu $(IMAGE_GPU)

.PHONY: image-cpu
image-cpu: ## Build the CPU image (kind, CPU clusters, e2e-podman); BASE=debian where nothing can be pulled.
	$(IMAGE_ENV) TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu image/build.sh cpu $(IMAGE_CPU)

.PHONY: image-offline
image-offline: ## The CPU image on a machine that reaches only PyPI and Debian (CI here).
	$(MAKE) image-cpu DOCKER=podman BASE=debian WHEELS=host DATA_FROM=$(OFFLINE_DATA_DIR) \
	  IMAGE_DATASET=fashion-mnist

.PHONY: push
push: ## Push the GPU image `make image` built to IMAGE_REPO; record its digest (image/digests.yaml).
	DOCKER=$(DOCKER) image/push.sh gpu $(IMAGE_GPU)

.PHONY: push-cpu
push-cpu: ## Push the CPU image `make image-cpu` built (CPU-only clusters); record its digest.
	DOCKER=$(DOCKER) image/push.sh cpu $(IMAGE_CPU)

##@ Kubernetes

.PHONY: manifests
manifests: $(CLIENT_STAMP) ## Render every variant's manifests from k8s/templates/ and k8s/values/ (IMAGE_REPO, IMAGE_PULL_SECRET, DIGESTS, QUEUE, COLD_START).
	IMAGE_REPO=$(IMAGE_REPO) DIGESTS=$(DIGESTS) IMAGE_PULL_SECRET=$(IMAGE_PULL_SECRET) \
	  QUEUE=$(QUEUE) COLD_START=$(COLD_START) $(CLIENT_PY) -m jobs.kube.render

.PHONY: check-cloud
check-cloud:
	@case " $(CLOUDS) " in *" $(CLOUD) "*) ;; \
	  *) echo "error: unknown CLOUD '$(CLOUD)'; choose one of: $(CLOUDS)" >&2; exit 2;; esac

.PHONY: cloud-up
cloud-up: check-cloud ## Create CLOUD's cluster, pools, registry, file system, operator, volume and policy (K8S_DIR/cloud.sh; DRY_RUN=1 prints it).
	@[[ -f $(K8S_DIR)/cloud.sh ]] || { echo "error: CLOUD=$(CLOUD) has no cloud-up (kind: make kind-up)" >&2; exit 2; }
	DRY_RUN=$(DRY_RUN) PROJECT=$(GCP_PROJECT) MAKE="$(MAKE)" bash $(K8S_DIR)/cloud.sh up

.PHONY: cloud-down
cloud-down: check-cloud ## Delete what cloud-up made, the volume before the cluster (DELETE_REGISTRY=1: the registry too; DRY_RUN=1 prints it).
	@[[ -f $(K8S_DIR)/cloud.sh ]] || { echo "error: CLOUD=$(CLOUD) has no cloud-down (kind: make kind-down)" >&2; exit 2; }
	DRY_RUN=$(DRY_RUN) PROJECT=$(GCP_PROJECT) DELETE_REGISTRY=$(DELETE_REGISTRY) MAKE="$(MAKE)" \
	  PY=$(if $(wildcard $(CLIENT_PY)),$(CLIENT_PY),python3) bash $(K8S_DIR)/cloud.sh down

.PHONY: operator
operator: ## Install or upgrade the KubeRay operator (helm chart KUBERAY_VERSION).
	$(HELM) repo add kuberay https://ray-project.github.io/kuberay-helm/ --force-update
	$(HELM) upgrade --install kuberay-operator kuberay/kuberay-operator --version $(KUBERAY_VERSION) \
	  --namespace $(OPERATOR_NAMESPACE) --create-namespace --wait

.PHONY: storage
storage: check-cloud ## Create CLOUD's shared ReadWriteMany volume (K8S_DIR/storage.yaml; eks: EFS_FILE_SYSTEM_ID=fs-...).
	KUBECTL=$(KUBECTL) EFS_FILE_SYSTEM_ID=$(EFS_FILE_SYSTEM_ID) k8s/bin/storage.sh $(K8S_DIR)/storage.yaml

.PHONY: device-plugin
device-plugin: check-cloud ## NVIDIA's device plugin on CLOUD's T4 pool where the cloud has none (AKS: pinned chart, K8S_DIR/device-plugin.values.yaml; DRY_RUN=1 prints it).
	HELM=$(HELM) DRY_RUN=$(DRY_RUN) k8s/bin/device-plugin.sh $(K8S_DIR) $(CLOUD)

.PHONY: network-policy
network-policy: check-cloud ## Let only this project's pods (and the operator) reach the Ray pods; CLOUD's DNS rule.
	$(KUBECTL) apply -f $(K8S_DIR)/networkpolicy.yaml

.PHONY: preflight
ifeq ($(TARGET),k8s)
preflight: check-cloud $(CLIENT_STAMP) ## Before GPU hours: operator, head node, T4 pool, volume, image pull and a write as uid 1000 (TARGET=k8s).
	CLOUD=$(CLOUD) KUBECTL=$(KUBECTL) KUBERAY_VERSION=$(KUBERAY_VERSION) $(CLIENT_PY) -m jobs.kube.preflight
else
preflight:
	@echo "error: preflight checks a Kubernetes cluster: make preflight TARGET=k8s" >&2; exit 2
endif

.PHONY: cluster
cluster: check-cloud ## Create the long-lived RayCluster (K8S_DIR/raycluster.yaml) and wait until it is ready.
	$(KUBECTL) apply -f $(K8S_DIR)/raycluster.yaml
	$(KUBECTL) wait raycluster/$(CLUSTER) --for=jsonpath='{.status.state}'=ready --timeout=900s

.PHONY: port-forward
port-forward: ## Forward the RayCluster's dashboard to localhost:DASHBOARD_PORT.
	$(KUBECTL) port-forward svc/$(CLUSTER)-head-svc $(DASHBOARD_PORT):8265

.PHONY: rayjob
rayjob: check-stage check-cloud ## Apply K8S_DIR/rayjob-STAGE.yaml (CLOUD's), wait for it, print status and logs.
	k8s/bin/rayjob.sh $(K8S_DIR)/rayjob-$(STAGE).yaml $(RAYJOB_TIMEOUT_S)

.PHONY: smoke
smoke: check-cloud $(CLIENT_STAMP) ## Prove CLOUD's cluster in minutes and cents: K8S_DIR/rayjob-smoke.yaml (a T4 from zero, CUDA, the volume, the network), then the cold-start timeline from the cluster's events.
	@rc=0; k8s/bin/rayjob.sh $(K8S_DIR)/rayjob-smoke.yaml $(RAYJOB_TIMEOUT_S) || rc=$$?; \
	  READER=$(K8S_DIR)/results-reader.yaml k8s/bin/results.sh smoke $(RESULTS_DIR) >/dev/null || true; \
	  into=; if [[ -f $(RESULTS_DIR)/smoke/smoke.json ]]; then into="--into $(RESULTS_DIR)/smoke/smoke.json"; fi; \
	  $(CLIENT_PY) -m jobs.kube.smoke_events ray-tune-smoke $$into || true; exit $$rc

.PHONY: teardown
teardown: ## Delete what the walk created in the namespace: RayJobs, RayCluster, pods, policies (DELETE_VOLUME=1: the volume too).
	KUBECTL=$(KUBECTL) DELETE_VOLUME=$(DELETE_VOLUME) CLOUD=$(CLOUD) PY=$(CLIENT_PY) k8s/bin/teardown.sh

# The RayJob `make e2e-podman` runs: any variant's (k8s/rayjob-asha.yaml, k8s/eks/...); the
# kind one by default. Images it cannot have (GPU, Ray's CPU image) run as the local CPU image.
MANIFEST ?= k8s/kind/rayjob-$(STAGE).yaml
# CI-sized settings for a cloud manifest's runtime env (the committed file is not edited).
# Three trials on up to three T4 workers: the one left idle is given back before the end.
E2E_ENV ?= TRAIN_LIMIT=1024 VAL_LIMIT=512 TUNE_NUM_SAMPLES=3 TUNE_NUM_EPOCHS=3 GPU_WAIT_S=600

.PHONY: e2e-podman
e2e-podman: check-stage-or-smoke $(STAMP) image-offline ## Run MANIFEST (default k8s/kind/rayjob-STAGE.yaml) as KubeRay, a scheduler and the autoscaler would, in podman.
	$(PY) -m tests.support.runner $(MANIFEST) --image $(IMAGE_CPU) \
	  $(if $(filter k8s/kind/%,$(MANIFEST)),,$(foreach e,$(E2E_ENV),--env $(e)) \
	    --idle-timeout-s 10 --node-idle-s 5) \
	  $(ARGS)

##@ kind (a local Kubernetes in Docker)

.PHONY: kind-up
kind-up: ## Create the kind cluster with the operator and the shared volume.
	tests/support/kind/kind.sh up

.PHONY: kind-down
kind-down: ## Delete the kind cluster.
	tests/support/kind/kind.sh down

.PHONY: e2e-kind
e2e-kind: ## End to end on kind: build the CPU image, run k8s/kind/rayjob-tune.yaml, check results.
	tests/support/kind/kind.sh run


.PHONY: print-image-cpu
print-image-cpu:
	@echo $(IMAGE_CPU)
