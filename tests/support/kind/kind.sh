#!/usr/bin/env bash
# The kind end-to-end test: a real KubeRay operator runs k8s/kind/rayjob-tune.yaml.
#   tests/support/kind/kind.sh run    # up, build + load the CPU image, run, check, always down
#   tests/support/kind/kind.sh up     # only create the cluster (operator, storage)
#   tests/support/kind/kind.sh down   # delete it
# Needs docker (with a running daemon), kind, kubectl and helm; exits 3 naming what is
# missing. tests/e2e/test_kind.py checks the same list before it runs this (and skips only
# when one is absent), so an exit 3 under it is a failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."

CLUSTER_NAME=${KIND_CLUSTER_NAME:-ray-tune-e2e}
STAGE=${STAGE:-tune}
WORK=${E2E_WORK_DIR:-/tmp/ray-tune-e2e}
OPERATOR_TIMEOUT_S=${OPERATOR_TIMEOUT_S:-300}
RAYJOB_TIMEOUT_S=${RAYJOB_TIMEOUT_S:-1800}
export STORAGE_HOST_DIR="$WORK/storage"

log() { printf '[e2e] %s\n' "$*"; }

preflight() {
  local missing=()
  for tool in docker kind kubectl helm; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  if ((${#missing[@]})); then
    echo "missing tools: ${missing[*]}" >&2
    exit 3
  fi
  if ! docker info >/dev/null 2>&1; then
    echo "no Docker daemon answers (docker info failed)" >&2
    exit 3
  fi
}

up() {
  mkdir -p "$STORAGE_HOST_DIR"
  chmod 0777 "$STORAGE_HOST_DIR"
  if ! kind get clusters | grep -qx "$CLUSTER_NAME"; then
    envsubst <tests/support/kind/kind-config.yaml >"$WORK/kind-config.yaml"
    kind create cluster --name "$CLUSTER_NAME" --config "$WORK/kind-config.yaml" --wait 120s
  fi
  kubectl config use-context "kind-$CLUSTER_NAME"
  log "installing the KubeRay operator (timeout ${OPERATOR_TIMEOUT_S}s)"
  make operator HELM=helm KUBECTL=kubectl
  kubectl -n kuberay-system rollout status deploy/kuberay-operator --timeout="${OPERATOR_TIMEOUT_S}s"
  kubectl apply -f k8s/kind/storage.yaml -f k8s/kind/networkpolicy.yaml
  # Every pod must pass Pod Security Standards "restricted": the namespace refuses others.
  kubectl label namespace default --overwrite pod-security.kubernetes.io/enforce=restricted
}

down() {
  kind delete cluster --name "$CLUSTER_NAME" || true
}

dump() {
  log "failure: dumping state"
  kubectl get rayjobs,rayclusters,pods,pvc -o wide || true
  kubectl describe rayjob "ray-tune-$STAGE" | tail -n 60 || true
  kubectl get events --sort-by=.lastTimestamp | tail -n 60 || true
  for pod in $(kubectl get pods -o name); do
    log "logs of $pod"
    kubectl logs "$pod" --all-containers --tail=100 || true
  done
}

run() {
  trap down EXIT
  up
  log "building and loading the CPU image"
  make image-cpu DOCKER=docker
  kind load docker-image --name "$CLUSTER_NAME" "$(make -s print-image-cpu)"
  log "running k8s/kind/rayjob-$STAGE.yaml (timeout ${RAYJOB_TIMEOUT_S}s)"
  if ! k8s/bin/rayjob.sh "k8s/kind/rayjob-$STAGE.yaml" "$RAYJOB_TIMEOUT_S"; then
    dump
    exit 1
  fi
  local results="$STORAGE_HOST_DIR/$STAGE/results.json"
  log "checking $results"
  python3 - "$results" <<'PY'
import json, math, sys
summary = json.load(open(sys.argv[1]))
trials = summary["trials"]
assert trials and summary["counts"]["errored"] == 0, summary["counts"]
assert all(math.isfinite(t["metrics"]["val_loss"]) for t in trials)
assert summary["best"]["metrics"]["val_accuracy"] > 0.3, summary["best"]
print(f"ok: {len(trials)} trials, best val_accuracy {summary['best']['metrics']['val_accuracy']:.3f}")
PY
}

mkdir -p "$WORK"
case "${1:-run}" in
  up) preflight; up ;;
  down) preflight; down ;;
  run) preflight; run ;;
  *) echo "usage: $0 run|up|down" >&2; exit 2 ;;
esac
