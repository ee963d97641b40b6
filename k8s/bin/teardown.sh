#!/usr/bin/env bash
# `make teardown`: delete what the walk created in the current namespace, by the label every
# object of ours carries (app.kubernetes.io/name=ray-tune-k8s): RayJobs (their clusters go
# with them), the RayCluster, the results reader and preflight pods, the NetworkPolicies.
# The shared volume stays unless DELETE_VOLUME=1 (every result and checkpoint is on it).
# What bills outside the namespace (node pools, the cluster, a Filestore instance or EFS
# file system behind the claim) is listed at the end: k8s/README.md's teardown section.
set -euo pipefail
kubectl=${KUBECTL:-kubectl}
label=app.kubernetes.io/name=ray-tune-k8s

delete() { # KIND [LABEL]: delete ours
  local names
  names=$("$kubectl" get "$1" -l "${2:-$label}" -o name 2>/dev/null || true)
  if [[ -z $names ]]; then
    echo "no $1 of ray-tune-k8s"
    return
  fi
  # shellcheck disable=SC2086  # one name per word
  "$kubectl" delete --wait=false $names
}

delete rayjobs.ray.io
delete rayclusters.ray.io
delete pods app.kubernetes.io/part-of=ray-tune-k8s # the reader, preflight and any Ray pod left
delete networkpolicies
if [[ ${DELETE_VOLUME:-} == 1 ]]; then
  delete persistentvolumeclaims
  delete storageclasses # ours only (EKS, AKS): GKE's standard-rwx is GKE's
else
  echo "kept: persistentvolumeclaim/ray-tune-cluster-storage (results, checkpoints);" \
    "make teardown DELETE_VOLUME=1 deletes it"
fi
# What still bills, with the cloud's prices (k8s/values/<CLOUD>.yaml), when CLOUD is a cloud.
repo=$(cd "$(dirname "$0")/../.." && pwd)
if [[ -n ${CLOUD:-} ]] && PYTHONPATH="$repo" "${PY:-python3}" -m jobs.kube.estimate --still-billing "$CLOUD" 2>/dev/null; then
  :
else
  cat <<'NOTE'
Still billing until you delete them (k8s/README.md: Teardown): the node pools (a T4 pool at zero
nodes costs nothing; the head's CPU pool does), the cluster itself, and the storage behind
the claim while it exists (EKS: the EFS file system outlives the claim too).
NOTE
fi
echo "Delete the claim (DELETE_VOLUME=1) before the cluster: deleting the cluster first" \
  "leaves the file system or share behind it billing, with nothing left to delete it."
