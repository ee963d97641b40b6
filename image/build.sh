#!/usr/bin/env bash
# Build the image (image/Dockerfile) with docker or podman, then check it as a pod would run it.
#   image/build.sh VARIANT TAG          # VARIANT: gpu | cpu
# Settings (the Makefile passes them; all optional):
#   DOCKER           the engine: docker or podman (default: docker if its daemon answers, else podman)
#   RAY_VERSION      the Ray pin (default: the lock's, .ci/deps.py --pin ray)
#   BASE             official: rayproject/ray:<RAY_VERSION>-py311-<VARIANT> (default)
#                    debian: a stand-in built here from Debian's packages (image/base.Dockerfile),
#                    for machines that cannot pull the official image
#   TORCH_INDEX_URL  PyTorch's wheel index for this variant (the Makefile sets cu126 or cpu)
#   WHEELS           host: resolve every wheel with this machine's pip first and mount them into
#                    the build (podman), for machines that reach only PyPI; default: indexes
#   DATASET          mnist (default) | fashion-mnist
#   DATA_FROM        a local folder with the four IDX files to stage instead of downloading
#   IMAGE_CACHE      where the Debian root and wheels are kept between builds
#                    (default ~/.cache/ray-tune-k8s/image), keyed by what they are built from
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

variant=${1:?usage: image/build.sh gpu|cpu TAG}
tag=${2:?usage: image/build.sh gpu|cpu TAG}
log() { printf '[image] %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 2; }
[[ $variant == gpu || $variant == cpu ]] || die "VARIANT must be gpu or cpu, not '$variant'"

ray_version=${RAY_VERSION:-$(python3 .ci/deps.py --pin ray)}
base=${BASE:-official}
dataset=${DATASET:-mnist}
wheels_mode=${WHEELS:-}
cache=${IMAGE_CACHE:-$HOME/.cache/ray-tune-k8s/image}
python=${PYTHON:-python3}

engine=${DOCKER:-}
if [[ -z $engine ]]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then engine=docker
  elif command -v podman >/dev/null; then engine=podman
  else die "neither a Docker daemon nor podman is available: install one, or set DOCKER"
  fi
fi
engine_name=$(basename "$engine")
build=("$engine" build)
if [[ $engine_name == podman ]]; then
  # runc instead of crun, and rlimits runc accepts (tests/support/runner/containers.conf says why).
  export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/tests/support/runner/containers.conf}
  # docker format: OCI images drop SHELL, which the Dockerfiles rely on (bash, pipefail).
  build+=(--format docker --ignorefile image/Dockerfile.dockerignore)
fi
[[ -z $wheels_mode || $engine_name == podman ]] || die "WHEELS=host needs podman (build volumes)"
[[ $base == official || $base == debian ]] || die "BASE must be official or debian, not '$base'"
[[ $base == official || $engine_name == podman ]] || die "BASE=debian needs podman"

hash_of() { cat "$@" | sha256sum | cut -c1-12; }

# The lock's own wheels, downloaded by this machine's pip (its indexes, certificates and
# caches) and checked against the lock's hashes, in a folder keyed by the lock; pip inside
# the build then installs offline from it.
wheelhouse() {  # wheelhouse LOCK -> prints the folder
  local lock=$1 dir
  dir="$cache/wheels-$(sha256sum "$lock" | cut -c1-12)"
  if [[ ! -f $dir/.complete ]]; then
    log "downloading the wheels of $lock into $dir"
    rm -rf "$dir"; mkdir -p "$dir"
    "$python" -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
      --dest "$dir" -r "$lock" >&2
    touch "$dir/.complete"
    find "$cache" -maxdepth 1 -name 'wheels-*' ! -path "$dir" -exec rm -rf {} +  # older locks
  fi
  printf '%s\n' "$dir"
}

# Other tags of one of our own image names (older inputs), and nothing else.
drop_older() {  # drop_older REPOSITORY KEEP_TAG
  "$engine" images --format '{{.Repository}}:{{.Tag}}' "$1" | grep -vxF "$2" \
    | xargs -r "$engine" rmi >/dev/null 2>&1 || true
}

# The stand-in base: a Debian 12 root from debootstrap, then the `ray` user and Ray.
debian_base() {
  local packages=python3,python3-venv,ca-certificates,wget
  local rootfs_tag
  rootfs_tag="localhost/ray-tune-k8s/debian:bookworm-$(printf '%s' "$packages" | sha256sum | cut -c1-12)"
  if ! "$engine" image exists "$rootfs_tag"; then
    command -v debootstrap >/dev/null || die "BASE=debian needs debootstrap (apt-get install debootstrap)"
    local root
    root=$(mktemp -d "${TMPDIR:-/tmp}/rtk-rootfs.XXXXXX")
    log "debootstrap bookworm ($packages) into $root"
    debootstrap --variant=minbase --include="$packages" bookworm "$root/root" \
      "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$root/debootstrap.log" 2>&1 \
      || { tail -n 20 "$root/debootstrap.log" >&2; die "debootstrap failed"; }
    tar -C "$root/root" -c . | "$engine" import - "$rootfs_tag" >/dev/null
    rm -rf "$root"
    drop_older localhost/ray-tune-k8s/debian "$rootfs_tag"
  fi
  local base_tag
  base_tag="localhost/ray-tune-k8s/ray-base:${ray_version}-py311-cpu-$(hash_of image/base.Dockerfile)"
  if ! "$engine" image exists "$base_tag"; then
    local args=(--build-arg "ROOTFS=$rootfs_tag" --build-arg "RAY_VERSION=$ray_version")
    [[ -z $wheels_mode ]] || args+=(--volume "$wheels:/wheels:ro" --build-arg PIP_WHEELS=/wheels)
    log "building the stand-in base $base_tag"
    "${build[@]}" --network host -f image/base.Dockerfile "${args[@]}" -t "$base_tag" image >&2
    drop_older localhost/ray-tune-k8s/ray-base "$base_tag"
  fi
  printf '%s\n' "$base_tag"
}

wheels=""
if [[ -n $wheels_mode ]]; then
  [[ $wheels_mode == host ]] || die "WHEELS must be host or empty, not '$wheels_mode'"
  wheels=$(wheelhouse .ci/lock/runtime.txt)
fi

args=(--build-arg "RAY_VERSION=$ray_version" --build-arg "VARIANT=$variant"
      --build-arg "DATASET=$dataset")
[[ -n ${TORCH_INDEX_URL:-} ]] && args+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")
if [[ $base == debian ]]; then
  [[ $variant == cpu ]] || die "the Debian stand-in base has no CUDA: use it for VARIANT=cpu only"
  args+=(--build-arg "BASE_IMAGE=$(debian_base)")
fi
[[ -z $wheels ]] || args+=(--volume "$wheels:/wheels:ro" --build-arg PIP_WHEELS=/wheels)

# Stage a local IDX folder through image/idx/ for the length of the build.
staged=()
cleanup() { ((${#staged[@]})) && rm -f "${staged[@]}"; return 0; }
trap cleanup EXIT
if [[ -n ${DATA_FROM:-} ]]; then
  files=("$DATA_FROM"/*-ubyte*)
  ((${#files[@]} >= 4)) && [[ -f ${files[0]} ]] \
    || die "DATA_FROM=$DATA_FROM holds no IDX files (train/t10k images and labels)"
  for file in "${files[@]}"; do
    cp "$file" image/idx/
    staged+=("image/idx/$(basename "$file")")
  done
  log "staging $dataset from $DATA_FROM"
fi

start=$SECONDS
log "$engine_name build $tag (base: $base)"
"${build[@]}" -f image/Dockerfile "${args[@]}" -t "$tag" .
log "built $tag in $((SECONDS - start))s"
# Earlier builds of this image that the new one untagged, and nothing else.
"$engine" image prune -f --filter label=io.ray-tune-k8s.image >/dev/null

# Run it as the pods run it: its own user (which must be uid 1000, not root), every
# capability dropped, a read-only root with a writable /tmp.
ro=(--read-only --tmpfs /tmp)
[[ $engine_name == podman ]] && ro=(--read-only --read-only-tmpfs=false --tmpfs /tmp)
# shellcheck disable=SC2016  # $(id -u) expands in the container, not here
"$engine" run --rm --cap-drop ALL --security-opt no-new-privileges "${ro[@]}" "$tag" \
  bash -c 'test "$(id -u)" = 1000 && ray --version && python -c "import jobs.tune"'
