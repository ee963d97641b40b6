"""The committed manifests, as the tests read them: every variant of k8s/values/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.support.runs import REPO

K8S = REPO / "k8s"
CRDS = REPO / "tests" / "support" / "crds" / "kuberay-v1.7.0"
KUBERNETES_VERSION = "1.33"
SHARED = "/mnt/cluster_storage"
VALUES = {p.stem: yaml.safe_load(p.read_text()) for p in sorted((K8S / "values").glob("*.yaml"))}
DEFAULT = next(name for name, v in VALUES.items() if v.get("default"))


def folder(variant: str) -> Path:
    """k8s/ for the default variant, k8s/<variant>/ for the others (jobs/kube/render.py)."""
    return K8S if variant == DEFAULT else K8S / variant


def real_gpus(variant: str) -> bool:
    """A cloud variant (nvidia.com/gpu limits) rather than kind's fake GPU."""
    return "nvidia.com/gpu" in VALUES[variant]["worker"]["resources"]


VARIANTS = sorted(VALUES)
CLOUDS = [v for v in VARIANTS if real_gpus(v)]
GPU_JOBS = sorted(p for v in CLOUDS for p in folder(v).glob("rayjob-*.yaml"))
KIND_JOBS = sorted((K8S / "kind").glob("rayjob-*.yaml"))
CLUSTERS = [folder(v) / "raycluster.yaml" for v in VARIANTS]
READERS = [folder(v) / "results-reader.yaml" for v in VARIANTS]
ALL_RAY = [*CLUSTERS, *GPU_JOBS, *KIND_JOBS]


def variant_of(path: Path) -> str:
    """The variant a rendered file belongs to."""
    relative = path.relative_to(K8S)
    return relative.parts[0] if len(relative.parts) > 1 else DEFAULT


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


def spot_render(variant: str, stage: str) -> tuple[str, dict[str, Any]]:
    """The variant's RayJob for `stage` as its values file renders it with `spot: true` (the
    T4 workers on Spot nodes only), and those values."""
    from jobs.kube import render

    values = {**VALUES[variant], "spot": True}
    text = render.render_variant(variant, {"spot": True})[folder(variant) / f"rayjob-{stage}.yaml"]
    return text, values
