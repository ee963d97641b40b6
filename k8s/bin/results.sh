#!/usr/bin/env bash
# Print results.json of a stage from the shared volume, read through the head pod.
#   k8s/bin/results.sh STAGE
set -euo pipefail
stage=${1:?usage: results.sh STAGE}
kubectl=${KUBECTL:-kubectl}
cluster=${CLUSTER:-ray-tune}
pod=$("$kubectl" get pods -l "ray.io/cluster=${cluster},ray.io/node-type=head" -o name | head -n 1)
[[ -n $pod ]] || { echo "error: no head pod of RayCluster ${cluster}" >&2; exit 1; }
"$kubectl" exec "$pod" -c ray-head -- cat "/mnt/cluster_storage/${stage}/results.json"
