"""The committed manifests, as the tests read them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.support.runs import REPO

K8S = REPO / "k8s"
CRDS = REPO / "tests" / "support" / "crds" / "kuberay-v1.7.0"
KUBERNETES_VERSION = "1.33"
GPU_JOBS = sorted(K8S.glob("rayjob-*.yaml"))
KIND_JOBS = sorted((K8S / "kind").glob("rayjob-*.yaml"))
ALL_RAY = [K8S / "raycluster.yaml", *GPU_JOBS, *KIND_JOBS]
SHARED = "/mnt/cluster_storage"


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(K8S)) for p in paths]


def cluster_specs(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]


def groups(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield spec["headGroupSpec"]
    yield from spec["workerGroupSpecs"]


def containers(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for group in groups(cluster_specs(doc)):
        yield from group["template"]["spec"]["containers"]


def all_containers(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from containers(doc)
    if doc["kind"] == "RayJob":
        yield from doc["spec"]["submitterPodTemplate"]["spec"]["containers"]
