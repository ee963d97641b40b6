"""The podman runner's KubeRay rules that need no container: the dashboard-check timeout
(checkJobStatusCheckTimeoutAndUpdateStatusIfNeeded), the pre-running deadline, a user's
runtime-env settings and idle timeout applied without editing the manifest, and the values
file found from a manifest's folder."""

from __future__ import annotations

import time

import pytest
import yaml

from tests.support.kuberay.reconcile import NOT_FOUND_AFTER_SUBMITTER, JobInfo
from tests.support.manifests import K8S, VALUES
from tests.support.runner import cli, podman, rayjob, state


def job(tmp_path, manifest=K8S / "rayjob-asha.yaml", **options) -> rayjob.RayJobRun:
    opts = state.Options(values=VALUES["gke"], **options)
    return rayjob.RayJobRun(manifest, tmp_path / "volume", tmp_path, "unit", opts)


def attempt() -> state.Attempt:
    return state.Attempt(1, "ray-tune-asha-abcde", "ray-tune-asha-fghij", "net")


def test_dashboard_checks_failing_past_the_timeout_end_the_rayjob(tmp_path, monkeypatch) -> None:
    run = job(tmp_path, status_check_timeout_s=60)
    a = attempt()
    none, running = (JobInfo.UNREACHABLE, None), (JobInfo.FOUND, {"status": "RUNNING"})
    answers = [none, running, none, none]
    monkeypatch.setattr(run, "_ask", lambda attempt, path: answers.pop(0))
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    run._job_status(a)  # fails: the clock starts
    assert a.status_failing_since == 1000.0 and run._status_checks_timed_out(a) is None
    clock[0] = 1030.0
    assert run._job_status(a) == "RUNNING" and a.status_failing_since is None  # reset
    clock[0] = 1040.0
    run._job_status(a)
    clock[0] = 1099.0
    run._job_status(a)
    assert run._status_checks_timed_out(a) is None  # 59 s of failures
    clock[0] = 1101.0
    outcome = run._status_checks_timed_out(a)
    assert outcome is not None and outcome.reason == "JobStatusCheckTimeoutExceeded"
    assert outcome.deployment == "Failed" and "exceeded timeout of 60s" in outcome.message


def test_the_pre_running_deadline_counts_from_the_attempts_start(tmp_path, monkeypatch) -> None:
    run = job(tmp_path)
    a = attempt()
    deadline = run.spec["preRunningDeadlineSeconds"]
    monkeypatch.setattr(time, "monotonic", lambda: a.started + deadline - 1)
    assert not run._pre_running_deadline_passed(a)
    monkeypatch.setattr(time, "monotonic", lambda: a.started + deadline + 1)
    assert run._pre_running_deadline_passed(a)
    outcome = run._pre_running_deadline(a)
    assert outcome.reason == "PreRunningDeadlineExceeded"
    assert f"PreRunningDeadlineSeconds: {deadline}" in outcome.message


def test_settings_reach_the_runtime_env_and_the_manifest_stays_as_committed(tmp_path) -> None:
    before = (K8S / "rayjob-asha.yaml").read_text()
    run = job(tmp_path, env={"TRAIN_LIMIT": "2048"}, idle_timeout_s=10)
    env = yaml.safe_load(run.spec["runtimeEnvYAML"])["env_vars"]
    assert env == {"TRAIN_LIMIT": "2048"}
    assert run.cluster_spec["autoscalerOptions"]["idleTimeoutSeconds"] == 10
    assert (K8S / "rayjob-asha.yaml").read_text() == before
    assert run.autoscaling and run.pod_specs["head"]["containers"][-1]["name"] == "autoscaler"


def test_a_manifest_names_its_variants_values_by_its_folder() -> None:
    assert cli.values_for(K8S / "eks" / "rayjob-asha.yaml").name == "eks.yaml"
    assert cli.values_for(K8S / "kind" / "rayjob-tune.yaml").name == "kind.yaml"
    assert cli.values_for(K8S / "rayjob-asha.yaml").name == "gke.yaml"  # the default


def test_a_404_waits_for_the_submitter_and_fails_the_rayjob_once_it_finished(
    tmp_path, monkeypatch
) -> None:
    """GetJobInfo's 404 is a BadRequest: no status-check clock (it would end the RayJob after
    300 s while the submitter is still submitting); after the submitter, AppFailed."""
    run = job(tmp_path, status_check_timeout_s=60)
    a = attempt()
    monkeypatch.setattr(run, "_ask", lambda attempt, path: (JobInfo.NOT_FOUND, None))
    monkeypatch.setattr(time, "monotonic", lambda: 1000.0)
    assert run._job_status(a) == "" and a.status_failing_since is None
    assert a.job_not_found and a.job_info_failure is None
    monkeypatch.setattr(time, "monotonic", lambda: 5000.0)
    assert run._status_checks_timed_out(a) is None  # never started
    run._job_status(a, submitter_finished=True)
    assert a.job_info_failure == NOT_FOUND_AFTER_SUBMITTER
    # A 404 leaves a running clock as it is (the controller neither records nor resets).
    b = attempt()
    b.status_failing_since = 900.0
    run._job_status(b)
    assert b.status_failing_since == 900.0


def test_an_exited_ray_container_is_served_as_crash_loop_back_off_not_running(tmp_path) -> None:
    run = job(tmp_path)
    a = attempt()
    up = state.Container("w-up", "worker", phase="Running")
    down = state.Container("w-down", "worker", phase="Running", exited_at=1.0)
    a.ray += [up, down]
    served = {p["metadata"]["name"]: p["status"] for p in run._pod_objects(a)}
    assert served["w-up"]["containerStatuses"][0]["state"].keys() == {"running"}
    # The pod stays Running (restartPolicy Always: KubeRay's shouldDeletePod keeps it), its
    # container waiting in CrashLoopBackOff: Ray's autoscaler counts it as not running.
    status = served["w-down"]
    assert status["phase"] == "Running"
    (container,) = status["containerStatuses"]
    assert container["state"] == {"waiting": {"reason": "CrashLoopBackOff"}}
    assert not container["ready"] and "terminated" in container["lastState"]


def test_an_empty_dir_is_a_folder_on_disk_unless_its_medium_is_memory(tmp_path) -> None:
    """In Kubernetes only a medium: Memory emptyDir is a tmpfs (KubeRay's /dev/shm); Ray's
    /tmp on the default medium is disk, not memory counted against the limit."""
    run = job(tmp_path)
    pod = {
        "volumes": [
            {"name": "tmp", "emptyDir": {}},
            {"name": "m", "emptyDir": {"medium": "Memory"}},
        ]
    }
    container = {
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "m", "mountPath": "/m"}]
    }
    flags = run._mounts(pod, "pod-a", container, None)
    folder = tmp_path / podman.EMPTY_DIRS / "pod-a" / "tmp"
    assert flags == [
        "--volume",
        f"{folder}:/tmp",
        "--mount",
        "type=tmpfs,destination=/m,tmpfs-mode=1777",
    ]
    assert folder.is_dir() and folder.stat().st_mode & 0o1777 == 0o1777
    # The same pod's init container shares the folder; another pod has its own.
    assert run._mounts(pod, "pod-a", container, None)[1] == f"{folder}:/tmp"
    assert "pod-b" in run._mounts(pod, "pod-b", container, None)[1]
    run._remove_empty_dirs(["pod-a"])
    assert not folder.exists()


def replacing(tmp_path, monkeypatch) -> tuple[rayjob.RayJobRun, list[str]]:
    """The kind checkpoint RayJob's run whose new worker pods are only named (new-0, ...)."""
    run = job(tmp_path, manifest=K8S / "kind" / "rayjob-checkpoint.yaml")
    created: list[str] = []

    def new_pod(attempt: state.Attempt, group: dict, head: bool) -> None:
        created.append(f"new-{len(created)}")
        attempt.ray.append(state.Container(created[-1], "worker", group=group["groupName"]))

    monkeypatch.setattr(run, "_ray_pod", new_pod)
    return run, created


def test_a_worker_pod_that_is_gone_is_replaced_under_a_new_name(tmp_path, monkeypatch) -> None:
    """A worker whose container vanished (its node reclaimed) is no longer listed; the next
    reconcile creates a new pod for the group's replicas, under a new name."""
    run, created = replacing(tmp_path, monkeypatch)
    a = attempt()
    group = run.cluster_spec["workerGroupSpecs"][0]
    old = state.Container("old-worker", "worker", group=group["groupName"], phase="Running")
    a.ray.append(old)
    run._reconcile_workers(a)
    assert group["replicas"] == 1 and created == []  # the group has its pod
    monkeypatch.setattr(run.podman, "state", lambda name: ("missing", 0))
    run._kubelet(a)
    assert old not in a.ray and a.vanished == ["old-worker"] and "old-worker" in run.released
    run._reconcile_workers(a)
    assert created == ["new-0"] and [c.name for c in a.ray] == ["new-0"]


def test_a_failed_worker_pod_is_deleted_and_replaced_a_terminating_one_is_not(
    tmp_path, monkeypatch
) -> None:
    """shouldDeletePod: a pod the kubelet's graceful node shutdown left Failed is deleted by
    the next reconcile and replaced under a new name; one still in its grace period
    (Terminating, phase Running) is kept, and is served to Ray's autoscaler as running."""
    run, created = replacing(tmp_path, monkeypatch)
    a = attempt()

    def delete(attempt: state.Attempt, victims: list, wait: bool) -> None:
        for c in victims:
            attempt.ray.remove(c)

    monkeypatch.setattr(run, "_delete_pods", delete)
    group = run.cluster_spec["workerGroupSpecs"][0]
    old = state.Container("old", "worker", group=group["groupName"], phase="Terminating")
    a.ray.append(old)
    run._reconcile_workers(a)
    assert [c.name for c in a.ray] == ["old"] and created == []
    assert run._pod_objects(a)[0]["status"]["phase"] == "Running"
    old.phase = "Failed"
    assert run._pod_objects(a)[0]["status"]["phase"] == "Failed"
    run._reconcile_workers(a)
    assert a.failed_deleted == ["old"] and created == ["new-0"]
    assert [c.name for c in a.ray] == ["new-0"]


@pytest.mark.parametrize(
    "flags", [("--reclaim-when", "now"), ("--reclaim-schedule", "7:60:2")], ids=["when", "schedule"]
)
def test_a_reclaim_needs_a_spot_pool(flags, tmp_path, capsys) -> None:
    """A reclaim against a values file without spot: true is refused: exit 2, one line."""
    flag, value = flags
    value = str(tmp_path / value) if flag == "--reclaim-when" else value
    code = cli.main([str(K8S / "rayjob-checkpoint.yaml"), flag, value])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: --reclaim-when and --reclaim-schedule need a Spot pool")
    assert list(tmp_path.iterdir()) == []


def test_a_bad_reclaim_schedule_is_one_error_line(tmp_path, capsys) -> None:
    values = tmp_path / "spot.yaml"
    values.write_text(yaml.safe_dump({**VALUES["gke"], "spot": True}))
    code = cli.main(
        [
            str(K8S / "rayjob-checkpoint.yaml"),
            "--values",
            str(values),
            "--reclaim-schedule",
            "7:0:2",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "mean above 0" in err


def test_a_new_nodes_boot_time_comes_from_the_flag_then_the_values_file() -> None:
    booting = {**VALUES["gke"], "nodes": {**VALUES["gke"]["nodes"]}}
    booting["nodes"]["t4"] = {**VALUES["gke"]["nodes"]["t4"], "boot_s": 120}
    assert state.boot_seconds(None, booting) == 120.0
    assert state.boot_seconds(3.0, booting) == 3.0
    assert VALUES["gke"]["nodes"]["t4"]["boot_s"] is None  # no provider states one
    assert state.boot_seconds(None, VALUES["gke"]) == 5.0
