#!/usr/bin/env bash
# `make device-plugin CLOUD=...`: NVIDIA's device plugin on the T4 pool, where the cloud does
# not install one (AKS). The chart, its version and the release come from the rendered Helm
# values file's header (k8s/<variant>/device-plugin.values.yaml, made from the values file by
# `make manifests`); a variant without that file has its plugin installed by the cloud.
#   k8s/bin/device-plugin.sh K8S_DIR CLOUD
# DRY_RUN=1 prints the command and runs nothing (no helm needed).
set -euo pipefail
dir=${1:?usage: device-plugin.sh K8S_DIR CLOUD}
cloud=${2:?usage: device-plugin.sh K8S_DIR CLOUD}
helm=${HELM:-helm}
values=$dir/device-plugin.values.yaml
if [[ ! -f $values ]]; then
  echo "[device-plugin] $cloud: nothing to install; the cloud runs the device plugin" \
    "(k8s/values/$cloud.yaml: device_plugin)"
  exit 0
fi
read -r repo chart version < <(sed -n 's/^# chart: //p' "$values")
read -r release namespace < <(sed -n 's/^# release: //p' "$values")
cmd=("$helm" upgrade --install "$release" "$chart" --repo "$repo" --version "$version"
  --namespace "$namespace" --create-namespace -f "$values")
echo "[device-plugin] ${cmd[*]}"
[[ ${DRY_RUN:-0} == 1 ]] && exit 0
"${cmd[@]}"
