"""Kueue, executed: a RayJob rendered with QUEUE= (jobs/kube/render.py) run by
tests/support/runner/ playing Kueue: created suspended, admitted, preempted once while
its stage runs (KubeRay deletes that cluster and submitter, no failed attempt counted),
admitted again on a new cluster with a new job id, and the stage resumes its experiment
from the shared volume.

Needs podman, like tests/e2e/test_podman.py, whose runner helper it uses (the image fixture
is tests/e2e/conftest.py's)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.support import kueue, tune_files
from tests.support.podman_run import Run, experiment, wait_until
from tests.support.runs import CI_SIZE, REPO

STAGE = "checkpoint"
# CI-sized, as a user would pass them (--env): 2 trials of 3 epochs of ~10 s each, one at
# a time on kind's one fake GPU.
ENV = {**CI_SIZE, "TUNE_NUM_SAMPLES": "2", "TUNE_NUM_EPOCHS": "3"}


def mid_experiment(folder: Path) -> bool:
    """The event the preemption waits for: Tune's snapshot of the experiment is on the volume
    (what the next admission resumes) and the first trial has reported an epoch, so 5 of the
    6 trial-epochs are still to train when the runner next polls (2 s)."""
    epochs = tune_files.trial_epochs(folder)
    return bool(tune_files.snapshot_statuses(folder)) and any(
        e and e[-1] < int(ENV["TUNE_NUM_EPOCHS"]) for e in epochs.values()
    )


def queued_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The kind variant's RayJob of STAGE as `make manifests QUEUE=team-a` renders it."""
    monkeypatch.setenv("QUEUE", "team-a")
    from jobs.kube import render

    rendered = render.render_variant("kind")[REPO / "k8s" / "kind" / f"rayjob-{STAGE}.yaml"]
    path = tmp_path / f"rayjob-{STAGE}.yaml"
    path.write_text(rendered)
    return path


def test_a_preempted_rayjob_resumes_its_stage_on_a_new_cluster(
    image: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manifest = queued_manifest(tmp_path, monkeypatch)
    doc = yaml.safe_load(manifest.read_text())
    assert kueue.queue_name(doc) == "team-a" and "suspend" not in doc["spec"]  # Kueue's to set
    env = [f for k, v in ENV.items() for f in ("--env", f"{k}={v}")]
    preempt = tmp_path / "preempt-now"
    run = Run(
        manifest,
        tmp_path / "run",
        *("--preempt-when", str(preempt), "--admit-after-s", "2", "--keep-logs"),
        *env,
    )
    # Preempted on an event, not a clock: once the experiment is snapshotted mid-way.
    wait_until(lambda: mid_experiment(experiment(run, STAGE)), run, timeout_s=300)
    preempt.touch()
    outcome = run.wait(timeout_s=600)
    log = run.log.read_text()
    assert outcome.get("status") == "SUCCEEDED", run.explain()
    assert outcome["jobDeploymentStatus"] == "Complete" and outcome["queue"] == "team-a"
    # Suspended once; admitted at creation and again after the preemption.
    assert outcome["suspensions"] == 1 and outcome["admissions"] == 2, outcome
    # A suspension is not a failed attempt: backoffLimit is untouched.
    assert outcome["failed"] == 0 and outcome["succeeded"] == 1, outcome
    clusters = re.findall(r"Initializing \(cluster ([\w-]+)\)", log)
    job_ids = re.findall(r"submitter pod [\w-]+ \(job id ([\w-]+)\)", log)
    assert len(set(clusters)) == 2 == outcome["attempts"], clusters
    assert len(set(job_ids)) == 2, job_ids
    assert "attempt 1: Running -> Suspending (spec.suspend=true)" in log
    # The second attempt's driver found the experiment on the volume and resumed it.
    logs = Path(outcome["logs"])
    first, second = (
        "".join(
            p.read_text(errors="replace") for p in (logs / a).glob(f"ray-tune-{STAGE}-?????.log")
        )
        for a in ("attempt-1", "attempt-2")
    )
    assert "[experiment] resuming" not in first, first[-3000:]
    assert "[experiment] resuming" in second, second[-3000:]
    summary = json.loads((experiment(run, STAGE) / "results.json").read_text())
    assert len(summary["trials"]) == int(ENV["TUNE_NUM_SAMPLES"]), summary["trials"]
    assert summary["counts"]["errored"] == 0, summary["counts"]
    # Each admission's driver log is on the volume under its own job id; the preempted one
    # never reached its summary, so the experiment was not finished when it was suspended.
    kept = sorted((run.volume / f"{STAGE}.logs").glob("*.log"))
    assert [p.stem.split("_", 1)[1] for p in kept] == list(dict.fromkeys(job_ids)), kept
    assert f"[{STAGE}] summary: " not in kept[0].read_text()
    assert f"[{STAGE}] summary: " in kept[1].read_text()
    assert summary["compute"]["attempts"] == 2
