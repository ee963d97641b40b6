#!/usr/bin/env bash
# Apply a RayJob manifest, wait for it to end, print its status and logs.
#   k8s/bin/rayjob.sh k8s/rayjob-tune.yaml [timeout_s]
# Exit 0 only when the job SUCCEEDED; on failure also prints the cluster's events.
set -euo pipefail
manifest=${1:?usage: rayjob.sh MANIFEST [TIMEOUT_S]}
timeout_s=${2:-7200}
kubectl=${KUBECTL:-kubectl}

name=$(sed -n 's/^  name: //p' "$manifest" | head -n 1)
[[ -n $name ]] || { echo "error: no metadata.name in $manifest" >&2; exit 2; }

"$kubectl" apply -f "$manifest"
echo "waiting up to ${timeout_s}s for RayJob/$name"
deadline=$((SECONDS + timeout_s))
status="" deployment=""
while ((SECONDS < deadline)); do
  status=$("$kubectl" get rayjob "$name" -o jsonpath='{.status.jobStatus}' 2>/dev/null || true)
  deployment=$("$kubectl" get rayjob "$name" -o jsonpath='{.status.jobDeploymentStatus}' 2>/dev/null || true)
  case "$status/$deployment" in
    SUCCEEDED/* | FAILED/* | STOPPED/* | */Failed | */Complete) break ;;
  esac
  sleep 10
done
echo "RayJob/$name: jobStatus=${status:-none} jobDeploymentStatus=${deployment:-none}"
echo "--- logs (submitter) ---"
"$kubectl" logs "job/$name" --tail=200 2>/dev/null || echo "(no submitter logs)"
if [[ $status != SUCCEEDED ]]; then
  echo "--- events ---"
  "$kubectl" get events --sort-by=.lastTimestamp | tail -n 40 || true
  ((SECONDS < deadline)) || echo "error: timed out after ${timeout_s}s" >&2
  exit 1
fi
