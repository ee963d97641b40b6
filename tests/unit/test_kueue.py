"""Kueue (`make manifests QUEUE=<local queue>`): the queue label on every RayJob and on
nothing else, `suspend` left to Kueue's webhook, each variant's choice (a cloud's fixed T4
workers with the autoscaler off, or an elastic job; kind as it is), what Kueue's webhook
(tests/support/kueue.py) and KubeRay's validation (tests/support/kuberay/validation.py) make
of the result, a bad QUEUE refused, and the podman runner's Kueue rules that need no
container."""

from __future__ import annotations

import copy
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobs import registry
from jobs.kube import render
from tests.support import kueue
from tests.support.kuberay.pods import cluster_pods
from tests.support.kuberay.reconcile import JobInfo
from tests.support.kuberay.validation import validate_rayjob
from tests.support.manifests import CLOUDS, K8S, VALUES, VARIANTS
from tests.support.runner import podman, rayjob, state

Docs = dict[Path, list[dict[str, Any]]]

# The T4s each stage can use at once at its walkthrough size: its trials at once times the
# GPUs of one (jobs/<stage>.py defaults), at most the 4 of every cloud's worker group.
AT_ONCE = {
    "baseline": 1,  # one Ray task
    "tune": 4,  # 4 trials of one GPU
    "asha": 4,  # 4 trials of one GPU (ASHA stops some early; the T4s stay held)
    "checkpoint": 4,  # 4 trials of one GPU
    "train": 4,  # 2 trials at once (max_concurrent), 2 Train workers of one GPU each
    "smoke": 1,  # make smoke: one GPU worker's checks
}


def rendered(monkeypatch: pytest.MonkeyPatch, queue: str | None) -> Docs:
    if queue is None:
        monkeypatch.delenv("QUEUE", raising=False)
    else:
        monkeypatch.setenv("QUEUE", queue)
    return {
        path: [d for d in yaml.safe_load_all(text) if d] for path, text in render.render().items()
    }


@pytest.fixture
def plain(monkeypatch: pytest.MonkeyPatch) -> Docs:
    return rendered(monkeypatch, None)


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> Docs:
    return rendered(monkeypatch, "team-a")


def rayjobs(files: Docs, variant: str | None = None) -> dict[Path, dict[str, Any]]:
    out = {}
    for path, docs in files.items():
        if path.name.startswith("rayjob-") and (
            variant is None or render.folder(variant) == path.parent
        ):
            (doc,) = docs
            out[path] = doc
    return out


def stage_of(path: Path) -> str:
    return path.stem.removeprefix("rayjob-")


def test_every_rayjob_names_the_queue_and_leaves_suspend_to_kueue(queued: Docs) -> None:
    jobs = rayjobs(queued)
    assert len(jobs) == len(VARIANTS) * (len(registry.names()) + 1)  # and make smoke's
    for path, doc in jobs.items():
        assert doc["kind"] == "RayJob"
        assert doc["metadata"]["labels"][kueue.QUEUE_LABEL] == "team-a", path
        assert "suspend" not in doc["spec"], path  # Kueue's webhook sets it
        assert doc["spec"]["shutdownAfterJobFinishes"] is True  # Kueue requires it
    # Nothing else is queued: not the long-lived RayCluster (it would hold its quota for as
    # long as it exists), not the storage, the reader pod or the NetworkPolicy.
    for path, docs in queued.items():
        if path not in jobs:
            for doc in docs:
                assert kueue.QUEUE_LABEL not in (doc["metadata"].get("labels") or {}), path


def test_queued_rayjobs_pass_kuberay_and_kueues_checks(queued: Docs) -> None:
    for path, doc in rayjobs(queued).items():
        # As written, and as Kueue's webhook leaves it: created suspended.
        assert validate_rayjob(doc) is None, path
        assert validate_rayjob(kueue.defaulted(doc)) is None, path
        # Accepted by Kueue's webhook even without the elastic-jobs gate (Kueue < 0.18).
        assert kueue.webhook_errors(doc, elastic_gate=False) == [], path


def test_an_autoscaling_rayjob_labelled_by_hand_is_refused_by_kueue(plain: Docs) -> None:
    # Why a cloud variant changes under QUEUE: its committed RayJobs autoscale from zero.
    doc = copy.deepcopy(rayjobs(plain, "gke")[render.folder("gke") / "rayjob-tune.yaml"])
    doc["metadata"]["labels"][kueue.QUEUE_LABEL] = "team-a"
    (error,) = kueue.webhook_errors(doc, elastic_gate=True)
    assert "only use autoscaling when workload slicing is enabled" in error
    # Kueue admits a workload's replicas as a whole: replicas 0 would admit no T4 at all.
    assert kueue.admitted_gpus(doc) == 0
    doc["metadata"]["annotations"] = {kueue.ELASTIC_ANNOTATION: "true"}
    assert kueue.webhook_errors(doc, elastic_gate=True) == []
    assert kueue.webhook_errors(doc, elastic_gate=False) != []  # the gate is needed too
    doc["metadata"]["annotations"] = {kueue.ELASTIC_ANNOTATION: "True"}  # case-sensitive
    assert kueue.webhook_errors(doc, elastic_gate=True) != []


@pytest.mark.parametrize("variant", CLOUDS)
def test_a_cloud_gets_the_t4s_its_stage_can_use_at_once_as_fixed_workers(
    variant: str, plain: Docs, queued: Docs
) -> None:
    v = VALUES[variant]
    assert v["autoscaling"] and v["kueue"] == {"elastic": False}
    before = rayjobs(plain, variant)
    for path, doc in rayjobs(queued, variant).items():
        workers = AT_ONCE[stage_of(path)]
        assert workers <= v["worker"]["max_replicas"]
        # What changes, and nothing else: the label; the autoscaler off (Kueue refuses it
        # without elastic jobs), so no sidecar and no service account token on the head;
        # the worker count fixed at what the stage uses at once; and the pre-running
        # deadline covering a cold T4 node, since the cluster is ready only with every worker.
        expected = copy.deepcopy(before[path])
        expected["metadata"]["labels"][kueue.QUEUE_LABEL] = "team-a"
        spec = expected["spec"]
        spec["preRunningDeadlineSeconds"] = v["cold_start_s"]["head"] + v["cold_start_s"]["t4"]
        cluster = spec["rayClusterSpec"]
        cluster["enableInTreeAutoscaling"] = False
        del cluster["autoscalerOptions"]
        cluster["headGroupSpec"]["template"]["spec"]["automountServiceAccountToken"] = False
        (group,) = cluster["workerGroupSpecs"]
        group.update(replicas=workers, minReplicas=workers, maxReplicas=workers)
        assert doc == expected, path
        assert kueue.admitted_gpus(doc) == workers, path  # what the queue reserves
        head = cluster_pods(doc)["head"]["spec"]["containers"]
        assert [c["name"] for c in head] == ["ray-head"], path  # no autoscaler sidecar
        assert "annotations" not in doc["metadata"]


def test_kind_keeps_its_fixed_workers_and_only_gains_the_label(plain: Docs, queued: Docs) -> None:
    assert not VALUES["kind"]["autoscaling"]
    before = rayjobs(plain, "kind")
    for path, doc in rayjobs(queued, "kind").items():
        expected = copy.deepcopy(before[path])
        expected["metadata"]["labels"][kueue.QUEUE_LABEL] = "team-a"
        assert doc == expected, path


def test_nothing_but_the_rayjobs_changes(plain: Docs, queued: Docs) -> None:
    for path, docs in queued.items():
        if not path.name.startswith("rayjob-"):
            assert docs == plain[path], path


def test_the_elastic_switch_keeps_the_autoscaler_and_annotates_the_rayjobs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = render.values

    def elastic(variant: str) -> dict[str, Any]:
        v = original(variant)
        return {**v, "kueue": {"elastic": True}} if variant == "gke" else v

    monkeypatch.delenv("QUEUE", raising=False)
    before = render.render_variant("gke")
    monkeypatch.setattr(render, "values", elastic)
    assert render.render_variant("gke") == before  # without QUEUE the switch changes nothing
    monkeypatch.setenv("QUEUE", "team-a")
    for path, text in render.render_variant("gke").items():
        if not path.name.startswith("rayjob-"):
            continue
        doc = yaml.safe_load(text)
        assert doc["metadata"]["annotations"] == {kueue.ELASTIC_ANNOTATION: "true"}, path
        cluster = doc["spec"]["rayClusterSpec"]
        assert cluster["enableInTreeAutoscaling"] is True
        assert cluster["workerGroupSpecs"][0]["replicas"] == 0  # scale-ups are slices
        assert doc["spec"]["preRunningDeadlineSeconds"] == VALUES["gke"]["cold_start_s"]["head"]
        assert kueue.webhook_errors(doc, elastic_gate=True) == []
        assert kueue.webhook_errors(doc, elastic_gate=False) != []
        assert validate_rayjob(kueue.defaulted(doc)) is None


def test_elastic_without_an_autoscaler_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    original = render.values
    monkeypatch.setattr(
        render, "values", lambda n: {**original(n), "kueue": {"elastic": n == "kind"}}
    )
    with pytest.raises(render.RenderError, match=r"kueue\.elastic needs autoscaling: true"):
        render.render_variant("kind")


def test_an_empty_queue_renders_the_committed_manifests() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.kube.render", "--check"],
        cwd=K8S.parent,
        capture_output=True,
        text=True,
        env={**render.os.environ, "QUEUE": ""},
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "bad", ["Team-A", "team_a", "-team", "team-", "team a", "q" * 64, "a..b", "a.-b"]
)
def test_a_bad_queue_is_one_error_line_and_nothing_is_written(
    bad: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    written: list[Path] = []
    monkeypatch.setattr(Path, "write_text", lambda self, *a, **k: written.append(self))
    monkeypatch.setenv("QUEUE", bad)
    assert render.main([]) == 2
    out, err = capsys.readouterr()
    assert out == "" and written == []
    (line,) = err.splitlines()
    assert line.startswith(f"error: QUEUE={bad!r} is not a Kueue LocalQueue name"), line


def test_a_bad_queue_exits_2_from_the_command_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.kube.render", "--check"],
        cwd=K8S.parent,  # --check never writes
        capture_output=True,
        text=True,
        env={**render.os.environ, "QUEUE": "Team_A"},
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("error: QUEUE=")


def test_kueues_webhook_refusals() -> None:
    (doc,) = [d for d in yaml.safe_load_all((K8S / "kind" / "rayjob-tune.yaml").read_text()) if d]
    assert kueue.webhook_errors(doc, elastic_gate=False) == []  # no queue: not Kueue's
    doc["metadata"]["labels"][kueue.QUEUE_LABEL] = "team-a"
    doc["spec"]["shutdownAfterJobFinishes"] = False
    doc["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["groupName"] = "head"
    errors = kueue.webhook_errors(doc, elastic_gate=False)
    assert any("should delete the cluster after finishing" in e for e in errors)
    assert any('"head" is reserved for the head group' in e for e in errors)
    # KubeRay refuses to suspend a RayJob that does not delete its cluster (ValidateRayJobSpec).
    doc["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["groupName"] = "t4"
    message = validate_rayjob(kueue.defaulted(doc))
    assert message is not None and "is not allowed to be suspended" in message


# --- The podman runner's Kueue, without containers ---------------------------------------


def queued_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **options: Any) -> rayjob.RayJobRun:
    monkeypatch.setenv("QUEUE", "team-a")
    path = tmp_path / "rayjob-checkpoint.yaml"
    path.write_text(render.render_variant("kind")[K8S / "kind" / "rayjob-checkpoint.yaml"])
    opts = state.Options(values=VALUES["kind"], **options)
    return rayjob.RayJobRun(path, tmp_path / "volume", tmp_path, "unit", opts)


def test_the_runner_preempts_once_after_the_job_has_run_that_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = queued_job(tmp_path, monkeypatch, preempt_after_s=30)
    assert run.queue == "team-a"
    a = state.Attempt(1, "ray-tune-checkpoint-abcde", "ray-tune-checkpoint-fghij", "net")
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    assert not run._preempted(a)  # not RUNNING yet
    monkeypatch.setattr(run, "_ask", lambda attempt, path: (JobInfo.FOUND, {"status": "RUNNING"}))
    run._job_status(a)
    clock[0] = 1029.0
    assert not run._preempted(a) and not run.spec.get("suspend")
    clock[0] = 1031.0
    assert run._preempted(a) and run.spec["suspend"] is True
    outcome = run._suspending(a, "Running")
    assert outcome.deployment == "Suspending"
    run.suspensions = 1
    assert not run._preempted(a)  # once per run


def test_the_runner_preempts_once_when_the_tests_file_appears_while_the_job_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = tmp_path / "preempt-now"
    run = queued_job(tmp_path, monkeypatch, preempt_when=event)
    a = state.Attempt(1, "ray-tune-checkpoint-abcde", "ray-tune-checkpoint-fghij", "net")
    event.touch()
    assert not run._preempted(a)  # not RUNNING yet
    monkeypatch.setattr(run, "_ask", lambda attempt, path: (JobInfo.FOUND, {"status": "RUNNING"}))
    run._job_status(a)
    event.unlink()
    assert not run._preempted(a) and not run.spec.get("suspend")  # no event, however long
    event.touch()
    assert run._preempted(a) and run.spec["suspend"] is True
    run.suspensions = 1
    assert not run._preempted(a)  # once per run


def test_the_runner_keeps_a_finished_jobs_cluster_until_its_workers_are_gone_or_the_ttl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The TTL window (--linger-s): a pass of the controllers every poll, ending once no
    # worker pod is left, at most min(linger_s, ttlSecondsAfterFinished) after the job.
    clock = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    run = queued_job(tmp_path, monkeypatch, linger_s=120)
    run.spec["ttlSecondsAfterFinished"] = 60
    a = state.Attempt(1, "ray-tune-checkpoint-abcde", "ray-tune-checkpoint-fghij", "net")
    a.api = object()  # an autoscaling cluster's API stand-in (its calls are the ticks')
    a.ray = [state.Container("w1", "worker"), state.Container("w2", "worker")]

    def tick(attempt: state.Attempt) -> None:  # the autoscaler gives one back per pass
        if attempt.ray:
            attempt.ray.pop()

    monkeypatch.setattr(run, "_tick", tick)
    run._linger(a)
    assert run.workers_left == 0 and a.ray == [] and clock[0] == podman.POLL_S
    # Workers that are never given back: the window ends at the TTL, with them counted.
    a.ray = [state.Container("w3", "worker")]
    monkeypatch.setattr(run, "_tick", lambda attempt: None)
    start = clock[0]
    run._linger(a)
    assert run.workers_left == 1 and clock[0] - start == pytest.approx(60, abs=podman.POLL_S)
    # No API stand-in (no autoscaler) or no --linger-s: the cluster goes at once.
    a.api = None
    run._linger(a)
    assert clock[0] - start == pytest.approx(60, abs=podman.POLL_S)


def test_the_runner_admits_a_queued_job_and_leaves_an_unqueued_one_suspended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "sleep", lambda s: None)
    run = queued_job(tmp_path, monkeypatch, admit_after_s=5)
    run.spec["suspend"] = True
    assert run._admit() is None and run.spec["suspend"] is False and run.admissions == 1
    run.queue = None
    run.spec["suspend"] = True
    outcome = run._admit()
    assert outcome is not None and outcome.deployment == "Suspended"


def test_the_runner_refuses_what_kueues_webhook_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = queued_job(tmp_path, monkeypatch)
    run.spec["shutdownAfterJobFinishes"] = False
    outcome, _ = run.run()
    assert outcome.deployment == "Rejected" and outcome.reason == "AdmissionWebhookDenied"
    assert "delete the cluster after finishing" in outcome.message
    assert not (tmp_path / "volume").exists()  # nothing was created
