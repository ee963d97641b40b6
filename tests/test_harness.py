"""Every kind RayJob manifest, run for real by tests/harness.py on local Ray nodes shaped by
the manifest: success per stage, head loss with a backoffLimit retry, worker loss with a
FailureConfig retry, and the fake-GPU scheduling path."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from jobs.config import STAGES
from jobs.localcluster import LocalCluster
from tests import harness
from tests.conftest import REPO

pytestmark = pytest.mark.integration
KIND = REPO / "k8s" / "kind"
CLAIM = "ray-tune-cluster-storage"


@pytest.fixture
def mapping(tmp_path: Path, fashion_mnist: Path) -> harness.Mapping:
    return harness.Mapping(tmp_path / "volumes", fashion_mnist, "fashion-mnist")


def experiment(mapping: harness.Mapping, stage: str) -> Path:
    return mapping.volumes_root / CLAIM / stage


def results(mapping: harness.Mapping, stage: str) -> dict:
    return json.loads((experiment(mapping, stage) / "results.json").read_text())


def reported_epochs(trial_dir: Path) -> list[int]:
    path = trial_dir / "result.json"
    if not path.exists():
        return []
    return [json.loads(line)["epoch"] for line in path.read_text().splitlines() if line.strip()]


def trial_epochs(mapping: harness.Mapping, stage: str) -> dict[str, list[int]]:
    folder = experiment(mapping, stage)
    if not folder.is_dir():
        return {}
    return {
        p.name: reported_epochs(p)
        for p in folder.iterdir()
        if p.is_dir() and p.name.startswith("train_trial_")
    }


def explain(result: harness.HarnessResult) -> str:
    return f"{[(a.status, round(a.seconds)) for a in result.attempts]}\n{result.logs()[-6000:]}"


@pytest.mark.parametrize("stage", STAGES)
def test_kind_rayjob_succeeds_on_fake_gpus(stage: str, mapping, tmp_path) -> None:
    job = harness.parse(KIND / f"rayjob-{stage}.yaml", mapping)
    assert job.head.cpus == 0 and all(w.gpus == 1 for w in job.workers)
    assert all(w.resources == {"accelerator_type:T4": 1.0} for w in job.workers)
    result = harness.run(job, tmp_path / "logs")
    assert result.status == "SUCCEEDED", explain(result)
    assert len(result.attempts) == 1
    summary = results(mapping, stage)
    planned = int(job.runtime_env["env_vars"]["TUNE_NUM_SAMPLES"]) if stage != "baseline" else 1
    assert len(summary["trials"]) == planned and summary["counts"]["errored"] == 0
    for trial in summary["trials"]:
        # Placed on a (fake) GPU slot, trained on CPU since CUDA is absent.
        assert trial["metrics"]["assigned_gpus"] == 1.0, trial
        assert trial["metrics"]["on_cuda"] == 0.0
    assert "CUDA is not available here" in result.logs()


def _kill_when(condition, kill, delay_s: float = 1.0):
    """A harness monitor: on the first attempt, once `condition()` holds, wait `delay_s`
    (the experiment snapshot that follows a trial checkpoint) and call `kill(cluster)`."""
    state = {"seen": None, "done": False}

    def monitor(attempt: int, cluster: LocalCluster) -> None:
        if attempt != 0 or state["done"]:
            return
        if state["seen"] is None and condition():
            state["seen"] = time.monotonic()
        if state["seen"] is not None and time.monotonic() - state["seen"] >= delay_s:
            state["done"] = True
            kill(cluster)

    return monitor, state


def test_head_loss_retries_on_a_new_cluster_and_resumes(mapping, tmp_path) -> None:
    job = harness.parse(KIND / "rayjob-checkpoint.yaml", mapping)
    epochs = int(job.runtime_env["env_vars"]["TUNE_NUM_EPOCHS"])
    assert job.backoff_limit >= 1
    snapshot: dict[str, list[int]] = {}

    def one_done_one_in_flight() -> bool:
        seen = trial_epochs(mapping, "checkpoint")
        done = [e for e in seen.values() if e and e[-1] == epochs]
        running = [e for e in seen.values() if e and e[-1] < epochs]
        return bool(done and running)

    def kill_everything(cluster: LocalCluster) -> None:
        snapshot.update(trial_epochs(mapping, "checkpoint"))
        cluster.kill()

    monitor, state = _kill_when(one_done_one_in_flight, kill_everything)
    result = harness.run(job, tmp_path / "logs", monitor=monitor)
    assert state["done"], "the kill never happened"
    assert [a.status for a in result.attempts] == ["LOST", "SUCCEEDED"], explain(result)
    summary = results(mapping, "checkpoint")
    assert summary["counts"] == {"completed": 2, "early_stopped": 0, "errored": 0}
    after = trial_epochs(mapping, "checkpoint")
    finished = {name for name, e in snapshot.items() if e and e[-1] == epochs}
    assert finished and all(after[name] == snapshot[name] for name in finished)  # not rerun
    for name, reported in after.items():
        assert reported[-1] == epochs
        assert len(reported) <= epochs + 1, (name, reported)  # at most the epoch in flight
    resumed = [t for t in summary["trials"] if t["metrics"]["start_epoch"] >= 1]
    assert resumed, "the in-flight trial did not resume from its checkpoint"


def test_worker_loss_retries_the_trial_on_another_node(mapping, tmp_path) -> None:
    job = harness.parse(KIND / "rayjob-checkpoint.yaml", mapping, worker_replicas=2)
    assert len(job.workers) == 2

    def both_trials_mid_run() -> bool:
        seen = [e for e in trial_epochs(mapping, "checkpoint").values() if e]
        return len(seen) == 2 and all(e[-1] == 1 for e in seen)

    monitor, state = _kill_when(both_trials_mid_run, lambda cluster: cluster.workers[0].kill())
    result = harness.run(job, tmp_path / "logs", monitor=monitor)
    assert state["done"], "the kill never happened"
    assert [a.status for a in result.attempts] == ["SUCCEEDED"], explain(result)
    summary = results(mapping, "checkpoint")
    assert summary["counts"] == {"completed": 2, "early_stopped": 0, "errored": 0}
    retried = [t for t in summary["trials"] if t["metrics"]["start_epoch"] >= 1]
    assert len(retried) == 1, summary["trials"]  # the trial on the lost node, from epoch 1
    errors = [p for p in experiment(mapping, "checkpoint").glob("train_trial_*/error.txt")]
    assert len(errors) == 1
