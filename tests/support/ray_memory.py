"""How Ray 2.60 splits a Ray container's memory: the object store, /dev/shm, what is left.

Read from the installed Ray (the version the manifests run, pyproject's pin):

- ray/_private/resource_and_label_spec.py, ResourceAndLabelSpec._resolve_memory_resources:
  unless `object_store_memory` is given (`ray start --object-store-memory`, which KubeRay
  passes from rayStartParams["object-store-memory"]), the store is
  utils.resolve_object_store_memory(available), with available = estimate_available_memory():
  the cgroup's memory (the container's memory limit, ray._common.utils.get_system_memory)
  less what is already used.
- ray/_private/utils.py, resolve_object_store_memory: int(available *
  DEFAULT_OBJECT_STORE_MEMORY_PROPORTION), the proportion 0.3 (ray_constants.py), capped at
  DEFAULT_OBJECT_STORE_MAX_MEMORY_BYTES (200 GB) and, on Linux, at
  max(REQUIRE_SHM_SIZE_THRESHOLD (10 GB), int(0.95 * the size of /dev/shm)). Below 10 GB a
  small /dev/shm therefore caps nothing: the store keeps its 30%.
- ray/_private/services.py, determine_plasma_store_config: the store lives in /dev/shm only
  when /dev/shm holds it; otherwise in the temp dir on disk (slow), or, for a store over
  REQUIRE_SHM_SIZE_THRESHOLD, `ray start` fails.

`available` is taken as the whole limit: the largest store Ray can choose (memory already
used at start only makes it smaller), so the checks built on it are the strict ones.
"""

from __future__ import annotations

from typing import Any

from ray._private import ray_constants

from tests.support.kuberay import pods

SHM = "/dev/shm"


def memory_limit(pod: dict[str, Any]) -> int:
    """The Ray container's memory limit in bytes: the cgroup Ray reads its memory from."""
    limits = pods.ray_container(pod).get("resources", {}).get("limits", {})
    assert "memory" in limits, "a Ray container without a memory limit: Ray sizes from the node"
    return pods.value(limits["memory"])


def shm_bytes(pod: dict[str, Any]) -> tuple[bool, int | None]:
    """The Ray container's /dev/shm as the pod spec mounts it: (memory-backed, sizeLimit).

    (False, None) when nothing memory-backed is mounted there (the runtime's 64 MiB
    default, or a disk-backed volume); a sizeLimit of None means no limit of its own."""
    container = pods.ray_container(pod)
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    if SHM not in mounts:
        return False, None
    volume = next(v for v in pod.get("volumes", []) if v["name"] == mounts[SHM])
    empty_dir = volume.get("emptyDir")
    if empty_dir is None or empty_dir.get("medium") != "Memory":
        return False, None
    limit = empty_dir.get("sizeLimit")
    return True, pods.value(limit) if limit else None


def object_store_bytes(params: dict[str, str], limit: int, shm: int | None) -> int:
    """The object store `ray start` with these parameters takes in a container with this
    memory limit and this /dev/shm (None: no limit of its own)."""
    if "object-store-memory" in params:
        return int(params["object-store-memory"])  # the user's value is kept as it is
    cap = ray_constants.DEFAULT_OBJECT_STORE_MAX_MEMORY_BYTES
    if shm is not None:
        cap = min(cap, max(ray_constants.REQUIRE_SHM_SIZE_THRESHOLD, int(shm * 0.95)))
    return min(int(limit * ray_constants.DEFAULT_OBJECT_STORE_MEMORY_PROPORTION), cap)
