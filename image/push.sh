#!/usr/bin/env bash
# Push one image and record its digest: `make manifests` then names the image by it.
#   image/push.sh VARIANT TAG        # VARIANT: gpu | cpu; DOCKER: docker or podman
# The digest goes to image/digests.yaml as `VARIANT: repo@sha256:...` (commit it with the
# manifests it renders).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
variant=${1:?usage: image/push.sh gpu|cpu TAG}
tag=${2:?usage: image/push.sh gpu|cpu TAG}
engine=${DOCKER:-docker}
digests=image/digests.yaml
[[ $variant == gpu || $variant == cpu ]] || { echo "error: VARIANT must be gpu or cpu" >&2; exit 2; }
if ! "$engine" image inspect "$tag" >/dev/null 2>&1; then
  echo "error: no local image $tag to push: build it first (make image for gpu, make image-cpu for cpu)" >&2
  exit 2
fi

if [[ $(basename "$engine") == podman ]]; then
  file=$(mktemp)
  trap 'rm -f "$file"' EXIT
  "$engine" push --digestfile "$file" "$tag"
  digest=$(cat "$file")
else
  "$engine" push "$tag"
  # The digest under this tag's repository (an image can carry others' too).
  digest=$("$engine" inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$tag" \
    | grep -F "${tag%:*}@" | head -n 1 | sed 's/.*@//')
fi
[[ $digest == sha256:* ]] || { echo "error: no digest for $tag (got '$digest')" >&2; exit 1; }
ref="${tag%:*}@${digest}"
touch "$digests"
grep -v "^${variant}:" "$digests" >"$digests.new" || true
echo "${variant}: ${ref}" >>"$digests.new"
mv "$digests.new" "$digests"
echo "recorded ${variant}: ${ref} in ${digests}"
