#!/usr/bin/env bash
# Apply a RayJob manifest and follow it the way KubeRay v1.7.0's controller moves it
# (rayjob_controller.go): print each attempt's status as it changes, end only on a final
# jobDeploymentStatus, then print the logs.
#   k8s/bin/rayjob.sh k8s/rayjob-tune.yaml [timeout_s]
# Final states: Complete and Failed (IsJobDeploymentTerminal), and ValidationFailed, which
# the controller never leaves. A failed attempt with retries left goes to Retrying and a new
# cluster, with jobStatus FAILED in between: that is not the end. Exit 0 only when the RayJob
# is Complete with jobStatus SUCCEEDED; 1 on any other end; 2 on bad input.
# The default timeout covers every attempt: (backoffLimit + 1) x activeDeadlineSeconds,
# since each attempt gets its own deadline, plus 10 minutes for cluster starts.
set -euo pipefail
manifest=${1:?usage: rayjob.sh MANIFEST [TIMEOUT_S]}
kubectl=${KUBECTL:-kubectl}
poll_s=${RAYJOB_POLL_S:-10}
# Nothing moved from "" in this long: no operator is reconciling RayJobs.
pickup_s=${RAYJOB_PICKUP_S:-120}

[[ -f $manifest ]] || { echo "error: no such manifest: $manifest" >&2; exit 2; }
number() { sed -n "s/^  $1: *\([0-9][0-9]*\).*/\1/p" "$manifest" | head -n 1; }
name=$(sed -n 's/^  name: //p' "$manifest" | head -n 1)
[[ -n $name ]] || { echo "error: no metadata.name in $manifest" >&2; exit 2; }
deadline_s=$(number activeDeadlineSeconds)
backoff=$(number backoffLimit)
timeout_s=${2:-$(((${backoff:-0} + 1) * ${deadline_s:-3600} + 600))}
[[ $timeout_s =~ ^[0-9]+$ ]] || { echo "error: timeout must be whole seconds, not '$timeout_s'" >&2; exit 2; }

if ! "$kubectl" get crd rayjobs.ray.io >/dev/null 2>&1; then
  echo "error: the RayJob CRD is not installed: the KubeRay operator is missing (make operator)" >&2
  exit 1
fi
# A RayJob stays after its cluster is deleted; applying it again would change nothing and
# report the old result. A finished one is deleted first; a running one is left alone.
path='{.status.jobDeploymentStatus}|{.status.jobStatus}|{.status.failed}|{.status.succeeded}|{.status.reason}|{.status.message}'
if previous=$("$kubectl" get rayjob "$name" -o jsonpath="$path" 2>/dev/null); then
  case ${previous%%|*} in
    Complete | Failed | ValidationFailed)
      echo "deleting the finished RayJob/$name (${previous%%|*}) to run it again"
      "$kubectl" delete rayjob "$name" --wait=true ;;
    *)
      echo "error: RayJob/$name is still running (${previous%%|*}): wait for it, or" \
        "kubectl delete rayjob $name" >&2
      exit 1 ;;
  esac
fi
"$kubectl" apply -f "$manifest"
echo "following RayJob/$name for up to ${timeout_s}s (backoffLimit ${backoff:-0}, ${deadline_s:-no}s per attempt)"

start=$SECONDS
last="" deployment="" status="" seen=0 get_failures=0
while true; do
  if ! line=$("$kubectl" get rayjob "$name" -o jsonpath="$path" 2>&1); then
    # The API server may be briefly unreachable during a long run: retry, up to a point.
    get_failures=$((get_failures + 1))
    if ((get_failures >= 30)); then
      echo "error: kubectl get rayjob $name failed $get_failures times in a row: $line" >&2
      exit 1
    fi
    sleep "$poll_s"
    continue
  fi
  get_failures=0
  IFS='|' read -r deployment status failed succeeded reason message <<<"$line"
  [[ -n $deployment ]] && seen=1
  if [[ $line != "$last" ]]; then
    attempt=$((${failed:-0} + ${succeeded:-0} + 1))
    # After Complete, Failed or Retrying the counts already include the attempt just ended.
    case $deployment in Complete | Failed | Retrying) attempt=$((attempt - 1)) ;; esac
    printf '[%4ds] attempt %d: %s jobStatus=%s failed=%s succeeded=%s%s\n' \
      $((SECONDS - start)) "$attempt" "${deployment:-New}" "${status:-none}" "${failed:-0}" \
      "${succeeded:-0}" "${reason:+ reason=$reason}${message:+ message=$message}"
    last=$line
  fi
  case $deployment in
    Complete | Failed | ValidationFailed) break ;;
  esac
  # Never any status (an empty one between attempts is normal): no operator picked it up.
  if ((seen == 0)) && ((SECONDS - start >= pickup_s)); then
    echo "error: RayJob/$name still has no status after ${pickup_s}s: is the KubeRay operator running?" \
      "(kubectl get pods -A -l app.kubernetes.io/name=kuberay-operator)" >&2
    exit 1
  fi
  if ((SECONDS - start >= timeout_s)); then
    echo "error: RayJob/$name did not finish within ${timeout_s}s (last: ${deployment:-New})" >&2
    break
  fi
  sleep "$poll_s"
done

echo "--- logs of the last attempt's submitter (kubectl logs job/$name) ---"
"$kubectl" logs "job/$name" --tail=200 2>/dev/null || echo "(no submitter logs)"
if [[ $deployment == Complete && $status == SUCCEEDED ]]; then
  exit 0
fi
if [[ $deployment == ValidationFailed ]]; then
  echo "error: the controller refused the RayJob: $message (fix it, then kubectl delete and apply again)" >&2
else
  echo "--- events ---"
  "$kubectl" get events --sort-by=.lastTimestamp 2>/dev/null | tail -n 40 || true
fi
exit 1
