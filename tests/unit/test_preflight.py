"""k8s/bin/preflight.py (make preflight TARGET=k8s) against clusters played by the stand-in
kubectl: a healthy one, and one broken thing at a time, each named with its fix."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.kuberay.fake_kubectl import calls, environment
from tests.support.runs import REPO

SCRIPT = REPO / "k8s" / "bin" / "preflight.py"
CRD = {"spec": {"versions": [{"name": "v1", "served": True}]}}
T4 = {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}


def node(name: str, gpus: str = "1", taints: list[dict[str, str]] | None = None) -> dict:
    return {
        "metadata": {"name": name, "labels": T4},
        "spec": {"taints": taints or [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]},
        "status": {"allocatable": {"nvidia.com/gpu": gpus}},
    }


HEALTHY: dict[str, Any] = {
    "crd/rayjobs.ray.io": CRD,
    "crd/rayclusters.ray.io": CRD,
    "deployments": {
        "items": [
            {
                "spec": {
                    "template": {
                        "spec": {"containers": [{"image": "quay.io/kuberay/operator:v1.7.0"}]}
                    }
                }
            }
        ]
    },
    "pvc/ray-tune-cluster-storage": {
        "spec": {"accessModes": ["ReadWriteMany"]},
        "status": {"phase": "Bound", "accessModes": ["ReadWriteMany"]},
    },
    "nodes": {"items": [node("t4-a")]},
    "pod_phase": "Succeeded",
    "pod_logs": "1000",
}


def preflight(tmp_path: Path, objects: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    (tmp_path / "objects.json").write_text(json.dumps(objects))
    return subprocess.run(
        [sys.executable, str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment(
            tmp_path,
            FAKE_KUBECTL_OBJECTS=str(tmp_path / "objects.json"),
            PREFLIGHT_WRITE_TIMEOUT_S="3",
        ),
    )


def test_a_ready_cluster_passes_every_check(tmp_path: Path) -> None:
    proc = preflight(tmp_path, HEALTHY)
    assert proc.returncode == 0, proc.stdout
    lines = proc.stdout.splitlines()
    assert all(line.startswith("ok: ") for line in lines), lines
    assert "ok: KubeRay operator 1.7.0 (quay.io/kuberay/operator:v1.7.0)" in lines
    assert "ok: 1 T4 node(s) ready for workers: t4-a" in lines
    applied = json.loads((tmp_path / "state.applied").read_text())
    assert applied["spec"]["securityContext"]["runAsUser"] == 1000
    assert applied["spec"]["securityContext"]["fsGroup"] == 100
    assert "delete pod ray-tune-preflight --wait=false" in calls(tmp_path)


def _without(key: str) -> dict[str, Any]:
    broken = copy.deepcopy(HEALTHY)
    broken[key] = None
    return broken


def _with(key: str, value: Any) -> dict[str, Any]:
    broken = copy.deepcopy(HEALTHY)
    broken[key] = value
    return broken


CASES = {
    "no operator CRDs": (
        _without("crd/rayjobs.ray.io"),
        "CRD rayjobs.ray.io is not installed (fix: make operator)",
    ),
    "old operator": (
        _with(
            "deployments",
            {
                "items": [
                    {
                        "spec": {
                            "template": {
                                "spec": {"containers": [{"image": "kuberay/operator:v1.1.0"}]}
                            }
                        }
                    }
                ]
            },
        ),
        "the manifests are written for KubeRay 1.7.0",
    ),
    "no claim": (
        _without("pvc/ray-tune-cluster-storage"),
        "ray-tune-cluster-storage does not exist (fix: make storage)",
    ),
    "pending claim": (
        _with("pvc/ray-tune-cluster-storage", {"spec": {}, "status": {"phase": "Pending"}}),
        "is Pending, not Bound",
    ),
    "single-node claim": (
        _with(
            "pvc/ray-tune-cluster-storage",
            {"spec": {}, "status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"]}},
        ),
        "not ReadWriteMany",
    ),
    "volume not writable": (
        _with("pod_phase", "Failed"),
        "could not write to the volume as uid 1000",
    ),
    "no device plugin": (
        _with("nodes", {"items": [node("t4-a", gpus="0")]}),
        "offer no allocatable nvidia.com/gpu",
    ),
    "foreign taint": (
        _with(
            "nodes",
            {
                "items": [
                    node(
                        "t4-a", taints=[{"key": "dedicated", "value": "ml", "effect": "NoSchedule"}]
                    )
                ]
            },
        ),
        "have taints the workers do not tolerate",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_each_problem_is_named_with_its_fix(tmp_path: Path, case: str) -> None:
    objects, expected = CASES[case]
    proc = preflight(tmp_path, objects)
    assert proc.returncode == 1, proc.stdout
    problems = [line for line in proc.stdout.splitlines() if line.startswith("problem: ")]
    assert len(problems) == 1 and expected in problems[0] and "(fix: " in problems[0], problems


def test_scale_from_zero_is_not_a_problem(tmp_path: Path) -> None:
    proc = preflight(tmp_path, _with("nodes", {"items": []}))
    assert proc.returncode == 0, proc.stdout
    assert "no node matches cloud.google.com/gke-accelerator=nvidia-tesla-t4 yet" in proc.stdout
