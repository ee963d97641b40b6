"""The podman runner's KubeRay rules that need no container: the dashboard-check timeout
(checkJobStatusCheckTimeoutAndUpdateStatusIfNeeded), the pre-running deadline, a user's
runtime-env settings and idle timeout applied without editing the manifest, and the values
file found from a manifest's folder."""

from __future__ import annotations

import yaml

from tests.e2e import podman_rayjob as runner
from tests.support.manifests import K8S, VALUES


def job(tmp_path, manifest=K8S / "rayjob-asha.yaml", **options) -> runner.RayJobRun:
    opts = runner.Options(values=VALUES["gke"], **options)
    return runner.RayJobRun(manifest, tmp_path / "volume", tmp_path, "unit", opts)


def attempt() -> runner.Attempt:
    return runner.Attempt(1, "ray-tune-asha-abcde", "ray-tune-asha-fghij", "net")


def test_dashboard_checks_failing_past_the_timeout_end_the_rayjob(tmp_path, monkeypatch) -> None:
    run = job(tmp_path, status_check_timeout_s=60)
    a = attempt()
    answers = [None, {"status": "RUNNING"}, None, None]
    monkeypatch.setattr(run, "_dashboard", lambda attempt, path: answers.pop(0))
    clock = [1000.0]
    monkeypatch.setattr(runner.time, "monotonic", lambda: clock[0])
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
    monkeypatch.setattr(runner.time, "monotonic", lambda: a.started + deadline - 1)
    assert not run._pre_running_deadline_passed(a)
    monkeypatch.setattr(runner.time, "monotonic", lambda: a.started + deadline + 1)
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
    assert runner.values_for(K8S / "eks" / "rayjob-asha.yaml").name == "eks.yaml"
    assert runner.values_for(K8S / "kind" / "rayjob-tune.yaml").name == "kind.yaml"
    assert runner.values_for(K8S / "rayjob-asha.yaml").name == "gke.yaml"  # the default
