#!/usr/bin/env bash
# `make storage CLOUD=...`: create the shared volume of one variant (k8s/<variant>/storage.yaml).
#   k8s/bin/storage.sh STORAGE_YAML
# A claim's storage class cannot change once it exists: when a claim of the same name is
# there with another class (say, a Pending one on the cluster's default class), this says so
# and how to replace it, instead of letting `kubectl apply` fail on an immutable field.
# EKS: the class names your EFS file system; pass it as EFS_FILE_SYSTEM_ID=fs-....
set -euo pipefail
file=${1:?usage: storage.sh STORAGE_YAML}
kubectl=${KUBECTL:-kubectl}
claim=ray-tune-cluster-storage
[[ -f $file ]] || { echo "error: no such file: $file (make manifests)" >&2; exit 2; }
want=$(sed -n 's/^  storageClassName: "\(.*\)"$/\1/p' "$file" | tail -n 1)

if ! found=$("$kubectl" get pvc "$claim" --ignore-not-found -o name 2>&1); then
  echo "error: kubectl cannot read claims: $found" >&2
  exit 1
fi
if [[ -n $found ]]; then
  have=$("$kubectl" get pvc "$claim" -o jsonpath='{.spec.storageClassName}')
  phase=$("$kubectl" get pvc "$claim" -o jsonpath='{.status.phase}')
  if [[ $have != "$want" ]]; then
    echo "error: claim $claim exists ($phase) with storage class '${have}', and $file asks" \
      "for '${want}'; a claim's class cannot change. To replace it (its data goes with it):" \
      "kubectl delete pvc $claim, then make storage again" >&2
    exit 2
  fi
fi

text=$(<"$file")
# shellcheck disable=SC2016  # the literal the template writes, not an expansion
placeholder='${EFS_FILE_SYSTEM_ID}'
if [[ $text == *"$placeholder"* ]]; then
  if [[ ! ${EFS_FILE_SYSTEM_ID:-} =~ ^fs-[0-9a-f]{8,40}$ ]]; then
    echo "error: $file needs your EFS file system: make storage CLOUD=eks" \
      "EFS_FILE_SYSTEM_ID=fs-... (got '${EFS_FILE_SYSTEM_ID:-}')" >&2
    exit 2
  fi
  text=${text//"$placeholder"/$EFS_FILE_SYSTEM_ID}
fi
"$kubectl" apply -f - <<<"$text"
if [[ $("$kubectl" get pvc "$claim" -o jsonpath='{.status.phase}') == Pending ]]; then
  echo "note: $claim is Pending: classes that bind on first consumer (GKE's standard-rwx)" \
    "bind when a pod mounts it; make preflight TARGET=k8s runs one" >&2
fi
