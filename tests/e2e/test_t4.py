"""The variant users apply, executed: the default cloud's T4 RayJobs in the podman runner,
workers autoscaled from zero by Ray's autoscaler and a node pool; a head that fits no node,
a T4 node that never comes, the smoke RayJob.

Needs podman, like test_podman.py (the image fixture is conftest.py's)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.manifests import docs
from tests.support.podman_run import (
    K8S,
    RAY_UID,
    Run,
    cloud_run,
    cloud_variant,
    leftovers,
)
from tests.support.runs import REPO


def test_asha_on_the_t4_manifest_scales_from_zero_and_back(image: str, tmp_path: Path) -> None:
    (doc,) = [yaml.safe_load((K8S / "rayjob-asha.yaml").read_text())]
    group = doc["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    assert group["replicas"] == 0 and group["minReplicas"] == 0  # the committed manifest
    run = cloud_run(
        K8S / "rayjob-asha.yaml",
        tmp_path / "run",
        image,
        *("--idle-timeout-s", "10", "--node-idle-s", "5"),
        # Once the job ends every worker is idle by construction (no trial left, the GPU
        # request withdrawn) while KubeRay keeps the cluster for ttlSecondsAfterFinished:
        # the runner keeps it until the autoscaler has given every worker back, at most
        # 120 s (idle timeout 10 s + the autoscaler's loop + the runner's poll: ~20 s).
        *("--linger-s", "120"),
        TUNE_NUM_SAMPLES="3",
    )
    outcome = run.wait()
    log = run.log.read_text()
    assert outcome.get("status") == "SUCCEEDED", run.explain()
    # Ray's autoscaler asked for T4 workers through the API stand-in, never more than the
    # group allows, and the node pool grew from zero for them.
    assert outcome["refused_api_calls"] == [], outcome
    assert 1 <= outcome["max_workers"] <= group["maxReplicas"]
    assert outcome["nodes_added"] >= 1 and outcome["scale_up_s"] is not None
    assert "pod triggered scale-up of pool t4" in log
    assert "autoscaler patched the RayCluster" in log and "/replicas" in log
    # The driver waited for the first T4 (GPU_WAIT_S) while the autoscaler added it.
    driver_logs = "".join(
        p.read_text(errors="replace") for p in (run.work / "ray-logs-1").rglob("job-driver-*.log")
    )
    assert "no T4 GPU yet; asking the autoscaler for one" in driver_logs
    # And back to zero: each idle worker was given back, the autoscaler naming it in
    # workersToDelete and KubeRay deleting its pod (during the job or in the TTL window).
    assert outcome["workers_left"] == 0, run.explain()
    assert outcome["workers_deleted"] == outcome["workers_created"] >= 1, outcome
    assert "(workersToDelete)" in log
    summary = json.loads((run.volume / "asha" / "results.json").read_text())
    assert len(summary["trials"]) == 3 and summary["counts"]["errored"] == 0
    for trial in summary["trials"]:
        assert trial["metrics"]["assigned_gpus"] >= 1.0 and trial["metrics"]["on_cuda"] == 0.0
    # What the run cost, measured: the T4 worker pods' and the head's node-hours from Ray's
    # node table, priced at the values file's prices the manifest handed the driver.
    compute = summary["compute"]
    hours = compute["node_hours"]
    assert hours["T4"] > 0 and hours["head"] > 0 and compute["attempts"] == 1, compute
    assert compute["accelerator_hours"]["T4"] > 0
    prices = yaml.safe_load((REPO / "k8s" / "values" / "gke.yaml").read_text())["prices"]
    cost = compute["cost"]
    assert cost["source"] == prices["source"] and cost["gpu_node_hours"] == hours["T4"]
    expected = hours["T4"] * prices["t4_node"]["on_demand"]
    expected += hours["head"] * prices["head_node"]["on_demand"]
    assert cost["on_demand_usd"] == pytest.approx(expected, abs=1e-3)
    (record,) = (run.volume / "asha.logs").glob("*.json")
    assert json.loads(record.read_text())["exit_code"] == 0


def test_the_smoke_rayjob_proves_the_t4_path_and_skips_what_the_runner_cannot_check(
    image: str, tmp_path: Path
) -> None:
    """`make e2e-podman STAGE=smoke MANIFEST=k8s/rayjob-smoke.yaml`: the default cloud's smoke
    RayJob as committed. A T4 worker from zero, the volume and the GCS by Service name are
    real here; CUDA and the NetworkPolicy are not (the runner's RUNNER_CANNOT): skipped with
    the runner's reasons, never ok."""
    run = Run(
        K8S / "rayjob-smoke.yaml",
        tmp_path / "run",
        *("--image", image, "--idle-timeout-s", "10", "--node-idle-s", "5"),
        values="gke",
    )
    outcome = run.wait()
    assert outcome.get("status") == "SUCCEEDED", run.explain()
    assert outcome["attempts"] == 1 and outcome["nodes_added"] >= 1, outcome
    report = json.loads((run.volume / "smoke" / "smoke.json").read_text())
    checks = {c["name"]: c for c in report["checks"]}
    assert {n: c["status"] for n, c in checks.items()} == {
        "gpu_worker": "ok",
        "cuda": "skipped",
        "volume": "ok",
        "gcs_service": "ok",
        "network_policy": "skipped",
    }, report
    assert "scaled up from zero" in checks["gpu_worker"]["detail"]
    assert checks["volume"]["detail"].startswith(f"written by uid {RAY_UID} on the worker")
    assert "-head-svc" in checks["gcs_service"]["detail"]
    assert "does not enforce NetworkPolicies" in checks["network_policy"]["detail"]
    assert report["ok"] is True and report["timeline"]["first_result"] > 0
    driver_logs = "".join(
        p.read_text(errors="replace") for p in (run.work / "ray-logs-1").rglob("job-driver-*.log")
    )
    assert "gcs_service     ok" in driver_logs and "cuda            skipped" in driver_logs


def test_a_head_that_fits_no_node_fails_by_the_pre_running_deadline(
    image: str, tmp_path: Path
) -> None:
    def too_big(doc: dict[str, Any]) -> None:
        head = doc["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
        head["containers"][0]["resources"] = {
            "requests": {"cpu": "16", "memory": "64Gi"},
            "limits": {"cpu": "16", "memory": "64Gi"},
        }
        doc["spec"] |= {"preRunningDeadlineSeconds": 20, "backoffLimit": 0}

    run = cloud_run(cloud_variant(tmp_path, too_big), tmp_path / "run", image)
    outcome = run.wait()
    assert outcome["reason"] == "PreRunningDeadlineExceeded", run.explain()
    assert outcome["attempts"] == 1 and outcome["seconds"] < 120  # activeDeadline: 9000 s
    log = run.log.read_text()
    assert "Pending: 0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory" in log
    assert outcome["nodes_added"] == 0
    assert leftovers(run) == []


def wrong_label(doc: dict[str, Any]) -> None:
    """A T4 selector no pool's nodes carry (an L4 label)."""
    group = doc["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    group["template"]["spec"]["nodeSelector"] = {
        "cloud.google.com/gke-accelerator": "nvidia-tesla-l4"
    }


# Two ways no T4 node ever comes: a selector that matches no pool, and a pool that has no
# capacity for the whole run (a permanent stockout).
NO_NODE = {
    "selector": (wrong_label, (), "didn't match Pod's node affinity/selector"),
    "stockout": (lambda doc: None, ("--stockout-s", "inf"), "(a stockout), for ever"),
}


@pytest.mark.parametrize("cause", NO_NODE)
def test_a_t4_node_that_never_comes_fails_the_gpu_wait(
    cause: str, image: str, tmp_path: Path
) -> None:
    # KubeRay calls a cluster with zero workers Ready: the job starts, the autoscaler asks
    # for a worker, the worker's pod stays Pending (Ray's autoscaler v1 sets no timeout on
    # it), and the driver's GPU_WAIT_S ends the job, long before activeDeadlineSeconds.
    change, flags, said = NO_NODE[cause]

    def no_retry(doc: dict[str, Any]) -> None:
        change(doc)
        doc["spec"]["backoffLimit"] = 0

    manifest = cloud_variant(tmp_path, no_retry)
    run = cloud_run(manifest, tmp_path / "run", image, *flags, GPU_WAIT_S="30")
    outcome = run.wait()
    assert outcome.get("status") == "FAILED" and outcome["reason"] == "AppFailed", run.explain()
    assert said in run.log.read_text()
    assert outcome["nodes_added"] == 0, "no T4 node joined"
    assert (outcome["scale_ups_refused"] > 0) == (cause == "stockout"), outcome
    driver_logs = "".join(
        p.read_text(errors="replace") for p in (run.work / "ray-logs-1").rglob("job-driver-*.log")
    )
    assert "no node with accelerator_type:T4 joined within GPU_WAIT_S=30s" in driver_logs
    (doc,) = docs(manifest)
    assert outcome["seconds"] < 600 < doc["spec"]["activeDeadlineSeconds"]
