#!/usr/bin/env bash
# Copy stages' outputs and attempt logs from the shared volume to a local folder and print
# results.json, whether or not a Ray cluster is running.
#   k8s/bin/results.sh STAGE[,STAGE...] [OUT_DIR]   # make results|logs STAGE=... TARGET=k8s
# Through the head pod of the long-lived RayCluster when one runs; otherwise (a RayJob's
# cluster is deleted when it ends) through the variant's results-reader.yaml, a short-lived
# non-root pod that mounts the volume read-only and is deleted afterwards. Each stage's files
# land in OUT_DIR/<stage>/, its `<stage>.logs/` (every attempt's driver log) in
# OUT_DIR/<stage>/logs/. Notes go to stderr; for one stage its results.json goes to stdout.
# With several stages, one without results is noted and skipped instead of an error;
# LOGS_ONLY=1 copies the logs only; REPORT=1 also each trial folder's logs and results (make
# report reads a run that never wrote results.json from them).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
IFS=, read -r -a stages <<<"${1:?usage: results.sh STAGE[,STAGE...] [OUT_DIR]}"
root=${2:-results/k8s}
kubectl=${KUBECTL:-kubectl}
cluster=${CLUSTER:-ray-tune}
reader=${READER:-k8s/results-reader.yaml} # the variant's (make results CLOUD=...)
# (report.html is not among them: make report draws it again where the copy is, as its links
# and the index follow the copy's layout.)
files=(results.json results.csv learning_curves.png best_model.pt curves.json)
# make report: each trial's logs and results too (what the report links and reads), not its
# checkpoints: the small files of every trial folder, through tar in the pod.
trial_files=(stdout stderr error.txt result.json params.json)
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

main_file() { # STAGE: the file it must have: make smoke's report, or a stage's results
  if [[ $1 == smoke ]]; then echo smoke.json; else echo results.json; fi
}

copy_stage() { # STAGE: its files into $root/STAGE; 1 when it has no main_file
  local stage=$1 out=$root/$1 name
  local -a wanted=("${files[@]}")
  [[ $stage == smoke ]] && wanted=(smoke.json) # make smoke's check (jobs/smoke.py)
  mkdir -p "$out"
  for name in "${wanted[@]}"; do
    if "$kubectl" cp -c "$container" "${pod#pod/}:/mnt/cluster_storage/${stage}/${name}" \
      "$out/$name" >/dev/null 2>&1 && [[ -s $out/$name ]]; then
      note "copied $out/$name"
    else
      rm -f "$out/$name"
      [[ $name == "${wanted[0]}" ]] && { note "(no ${stage}/${name} on the volume)"; return 1; }
      note "(no ${stage}/${name} on the volume)"
    fi
  done
}

copy_logs() { # STAGE: its attempts' logs into $root/STAGE/logs
  local stage=$1
  rm -rf "${root:?}/$stage/logs"
  mkdir -p "$root/$stage"
  if "$kubectl" cp -c "$container" "${pod#pod/}:/mnt/cluster_storage/${stage}.logs" \
    "$root/$stage/logs" >/dev/null 2>&1 && [[ -n $(ls -A "$root/$stage/logs" 2>/dev/null) ]]; then
    note "copied $root/$stage/logs/ (make logs STAGE=$stage TARGET=k8s)"
  else
    note "(no ${stage}.logs on the volume)"
  fi
}

copy_trials() { # STAGE: its trial folders' small files into $root/STAGE/<trial folder>/
  local stage=$1 names=() name
  # An earlier copy's trial folders would join this run's report.
  find "$root/$stage" -mindepth 1 -maxdepth 1 -type d ! -name logs -exec rm -rf {} +
  for name in "${trial_files[@]}"; do names+=(-o -name "$name"); done
  if "$kubectl" exec -c "$container" "${pod#pod/}" -- sh -c \
    "cd /mnt/cluster_storage/${stage} && find . -mindepth 2 -maxdepth 2 -type f \\( ${names[*]:1} \\) -print0 | tar -cf - --null -T -" \
    2>/dev/null | tar -C "$root/$stage" -xf - 2>/dev/null; then
    note "copied ${stage}'s trial logs into $root/$stage/"
  else
    note "(no trial logs of ${stage} on the volume)"
  fi
}

for stage in "${stages[@]}"; do
  copy_logs "$stage"
  [[ -n ${LOGS_ONLY:-} ]] && continue # make logs: a failed attempt may have no results
  if ! copy_stage "$stage" && [[ ${#stages[@]} -eq 1 && -z ${REPORT:-} ]]; then
    note "error: no ${stage}/$(main_file "$stage") on the volume"
    exit 1
  fi
  [[ -n ${REPORT:-} ]] && copy_trials "$stage" # a failed run's report reads its trials
done
if [[ ${#stages[@]} -eq 1 && -z ${LOGS_ONLY:-} && -z ${REPORT:-} ]]; then
  cat "$root/${stages[0]}/$(main_file "${stages[0]}")"
fi
