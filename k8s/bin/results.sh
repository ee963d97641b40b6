#!/usr/bin/env bash
# Copy a stage's outputs from the shared volume to a local folder and print results.json,
# whether or not a Ray cluster is running.
#   k8s/bin/results.sh STAGE [OUT_DIR]      # make results STAGE=... TARGET=k8s
# Through the head pod of the long-lived RayCluster when one runs; otherwise (a RayJob's
# cluster is deleted when it ends) through the variant's results-reader.yaml, a short-lived non-root
# pod that mounts the volume read-only and is deleted afterwards. Notes go to stderr,
# results.json to stdout (the Makefile pipes it into the leaderboard).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
stage=${1:?usage: results.sh STAGE [OUT_DIR]}
out=${2:-results/k8s}/$stage
kubectl=${KUBECTL:-kubectl}
cluster=${CLUSTER:-ray-tune}
reader=${READER:-k8s/results-reader.yaml} # the variant's (make results CLOUD=...)
files=(results.json results.csv learning_curves.png best_model.pt)
note() { printf '%s\n' "$*" >&2; }

if ! heads=$("$kubectl" get pods -l "ray.io/cluster=${cluster},ray.io/node-type=head" \
  --field-selector=status.phase=Running -o name 2>&1); then
  note "error: kubectl cannot list pods: $heads"
  exit 1
fi
pod=$(head -n 1 <<<"$heads")
container=ray-head
if [[ -z $pod ]]; then
  pod=pod/$(sed -n 's/^  name: //p' "$reader" | head -n 1)
  container=reader
  note "no running head of RayCluster ${cluster}: reading the volume through ${pod}"
  # A reader left by an interrupted run would answer with its old spec: start afresh.
  "$kubectl" delete "$pod" --ignore-not-found --wait=true >/dev/null
  "$kubectl" apply -f "$reader" >&2
  trap '"$kubectl" delete "$pod" --wait=false >/dev/null 2>&1 || true' EXIT
  "$kubectl" wait "$pod" --for=condition=Ready --timeout=180s >&2
fi

mkdir -p "$out"
for name in "${files[@]}"; do
  if "$kubectl" cp -c "$container" "${pod#pod/}:/mnt/cluster_storage/${stage}/${name}" \
    "$out/$name" >/dev/null 2>&1 && [[ -s $out/$name ]]; then
    note "copied $out/$name"
  else
    rm -f "$out/$name"
    [[ $name == results.json ]] && { note "error: no ${stage}/results.json on the volume"; exit 1; }
    note "(no ${stage}/${name} on the volume)"
  fi
done
cat "$out/results.json"
