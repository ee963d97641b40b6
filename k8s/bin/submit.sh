#!/usr/bin/env bash
# `make submit STAGE=... TARGET=k8s`: port-forward the RayCluster's dashboard, read the
# Ray token from the Secret KubeRay generated, and submit through the Ray Jobs API.
#   k8s/bin/submit.sh STAGE [stage args...]
set -euo pipefail
stage=${1:?usage: submit.sh STAGE [ARGS...]}
shift
kubectl=${KUBECTL:-kubectl}
cluster=${CLUSTER:-ray-tune}
port=${DASHBOARD_PORT:-8265}
python=${PY:-python3}

"$kubectl" port-forward "svc/${cluster}-head-svc" "${port}:8265" >/dev/null &
forward=$!
trap 'kill "$forward" 2>/dev/null || true' EXIT
for _ in $(seq 1 60); do
  (echo >"/dev/tcp/127.0.0.1/${port}") 2>/dev/null && break
  sleep 0.5
done

# authOptions.mode=token: KubeRay keeps the token in a Secret named after the cluster.
token=$("$kubectl" get secret "${AUTH_SECRET:-$cluster}" -o jsonpath='{.data.auth_token}' | base64 -d)
RAY_AUTH_MODE=token RAY_AUTH_TOKEN="$token" RAY_ADDRESS="http://127.0.0.1:${port}" \
  "$python" -m jobs.submit "$stage" "$@"
