"""Spot T4 pools, executed: nodes reclaimed on GKE's terms while trials run (checkpoint,
asha in a stockout, a train run), KubeRay's replacement pods, the trials resumed from their
checkpoints in the same attempt, and what the reclaims cost.

Needs podman, like test_podman.py (the image fixture is conftest.py's)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.support import tune_files
from tests.support.manifests import spot_render
from tests.support.podman_run import (
    Run,
    cloud_run,
    experiment,
    trial_epochs,
    wait_until,
)

# The stages a reclaim test runs: checkpoint saves every epoch of its own; asha only
# because the render says Spot (SPOT=true). asha tries lr 0.1 first, which diverges, so the
# second trial (lr 1e-3) passes ASHA's rung at epoch 2 and is in flight when the node goes.
# asha's run also starts in a stockout that lifts after a minute (a zone out of T4s): the
# worker Ray's autoscaler asked for stays Pending, saying why, and lands on the node the pool
# adds once capacity is back (autoscaler v1 keeps it; the driver waits, GPU_WAIT_S).
SPOT_STAGES: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "checkpoint": ({}, ()),
    "asha": ({"TUNE_LR_POINTS": "0.1,0.001"}, ("--stockout-s", "60")),
}


def spot_run(stage: str, tmp_path: Path, image: str, *flags: str, **env: str) -> tuple[Run, Path]:
    """The default cloud's RayJob for `stage` as `spot: true` renders it (T4 workers on Spot
    nodes only, SPOT=true for the driver), on a Spot pool with GKE's reclaim terms (values
    spot_reclaim: the VM ends 30 s after the notice, pods get 15 s); the provider reclaims
    one node once the returned file exists."""
    text, spot_values = spot_render("gke", stage)
    manifest, values = tmp_path / f"rayjob-{stage}.yaml", tmp_path / "gke-spot.yaml"
    manifest.write_text(text)
    values.write_text(yaml.safe_dump(spot_values))
    reclaim_now = tmp_path / "reclaim-now"
    run = cloud_run(
        manifest,
        tmp_path / "run",
        image,
        *("--reclaim-when", str(reclaim_now)),
        *flags,
        values=values,
        **env,
    )
    return run, reclaim_now


@pytest.mark.parametrize("stage", SPOT_STAGES)
def test_a_reclaimed_spot_node_is_replaced_and_its_trial_resumes_in_the_same_attempt(
    stage: str, image: str, tmp_path: Path
) -> None:
    """One trial at a time, so the one T4 node in use holds the trial in flight: once the
    first trial finished and the second reported epoch 2 or 3 of 5 with its checkpoint, the
    test freezes the worker (so the trial cannot finish during the grace period, however
    fast the machine) and the provider reclaims its node."""
    env, flags = SPOT_STAGES[stage]
    epochs = 5
    run, reclaim_now = spot_run(
        stage,
        tmp_path,
        image,
        *flags,
        TUNE_NUM_SAMPLES="2",
        TUNE_NUM_EPOCHS=str(epochs),
        TUNE_MAX_CONCURRENT="1",
        **env,
    )

    def epochs_now() -> dict[str, list[int]]:
        return trial_epochs(run, stage)

    def finished(seen: dict[str, list[int]]) -> list[str]:
        return [name for name, e in seen.items() if e == list(range(1, epochs + 1))]

    def second_trial_mid_way() -> bool:
        seen = epochs_now()
        going = [n for n, e in seen.items() if n not in finished(seen) and e and 2 <= e[-1] <= 3]
        trial = experiment(run, stage) / going[0] if len(going) == 1 else None
        return len(finished(seen)) == 1 and trial is not None and tune_files.has_checkpoint(trial)

    wait_until(second_trial_mid_way, run)
    run.podman("pause", run.container("worker"))
    before = epochs_now()  # frozen: what the reclaim hits cannot change any more
    (first,) = finished(before)
    (hit_dir,) = [n for n in before if n != first]
    assert 2 <= before[hit_dir][-1] < epochs, before
    reclaim_now.touch()
    outcome = run.wait()
    log = run.log.read_text()
    assert outcome.get("status") == "SUCCEEDED", run.explain()
    (reclaim,) = outcome["reclaims"]
    (pod,) = reclaim["pods"]
    assert (reclaim["notice_s"], reclaim["grace_s"]) == (30, 15), reclaim
    # KubeRay deleted the Failed pod (shouldDeletePod) and replaced it under a new name, in
    # the same attempt, on a node the Spot pool added for it.
    assert outcome["attempts"] == 1 and outcome["workers_failed_deleted"] == [pod], outcome
    assert outcome["workers_created"] >= 2 and outcome["nodes_added"] >= 2, outcome
    if "--stockout-s" in flags:  # no node until the stockout lifted, then one as usual
        refused = log.index("(a stockout), for ")
        scaled_up = log.index("triggered scale-up of pool t4")
        assert refused < scaled_up < log.index("scheduled on t4-node")
        assert outcome["scale_ups_refused"] > 0, outcome
    after = log.split(f"Spot node {reclaim['node']} reclaimed")[1]
    assert f"pods {pod} Failed (Terminated)" in after and f"deleting worker pod {pod}" in after
    replaced = re.search(r"pod (\S+-worker-\w+) scheduled on (t4-node-\d+)", after)
    assert replaced and replaced.group(1) != pod and replaced.group(2) != reclaim["node"], after
    # Every trial TERMINATED; the one that finished before never reported again; the one hit
    # resumed from its last checkpoint, the epoch in flight (frozen) redone from there.
    summary = json.loads((experiment(run, stage) / "results.json").read_text())
    assert summary["counts"] == {"completed": 2, "early_stopped": 0, "errored": 0}, summary
    after_run = epochs_now()
    assert after_run[first] == list(range(1, epochs + 1)), after_run
    last_saved = before[hit_dir][-1]  # a checkpoint every epoch (the checkpoint stage)
    assert after_run[hit_dir] == [*before[hit_dir], *range(last_saved + 1, epochs + 1)], after_run
    (hit,) = [t for t in summary["trials"] if t["metrics"]["start_epoch"] > 0]
    assert hit["metrics"]["start_epoch"] == last_saved, hit
    assert len(list(experiment(run, stage).glob("train_trial_*/error.txt"))) == 1
    # What the reclaim cost, kept: one failure of that trial, the epoch in flight trained
    # again (none reported twice), its accelerator-hours and money at the GKE prices.
    compute = summary["compute"]
    retried = compute["retries"]
    assert [f["trial_id"] for f in retried["failures"]] == [hit["trial_id"]], retried
    assert (retried["trial_epochs_reported_twice"], retried["trial_epochs_redone"]) == (0, 1)
    assert compute["accelerator_hours_redone"]["T4"] > 0, compute
    assert compute["cost"]["redone_spot_usd"] < compute["cost"]["redone_on_demand_usd"]
    # Not asserted here: the attempt record's `left` (worker nodes Ray lists dead). Ray declares
    # a killed node dead only once its health checks have failed for tens of seconds, which a
    # CI-sized job can outrun (a full run failed on it); tests/unit/test_attempts.py proves the
    # record from a node table, and the runner's outcome above proves the reclaim.


def test_a_train_run_resumes_from_its_checkpoint_after_a_spot_node_is_reclaimed(
    image: str, tmp_path: Path
) -> None:
    """The train stage on Spot: one trial whose Ray Train run holds two T4 workers, one per
    node. Once the run reported epoch 2 or 3 of 5 (rank 0 checkpoints every epoch), the test
    freezes both workers (nothing trains on during the grace period, however fast the
    machine) and the provider reclaims the first T4 node; once its pod is Failed the other
    worker is thawed. The Train run goes on from its last checkpoint, on the node left and
    the one the pool adds for KubeRay's replacement pod, in the same RayJob attempt: through
    the Train controller's restart of its worker group (Train's FailureConfig: 1 +
    SPOT_RETRIES), or, where the reclaimed node also held the trial's own actor (Ray places
    it; the run measured here), through Tune's retry of the trial (1 + SPOT_RETRIES), whose
    Train run reloads its snapshot by its stable name. Either way no epoch before the
    checkpoint is trained again."""
    epochs = 5
    run, reclaim_now = spot_run(
        "train",
        tmp_path,
        image,
        TUNE_NUM_SAMPLES="1",
        TUNE_NUM_EPOCHS=str(epochs),
        TUNE_MAX_CONCURRENT="1",
    )
    train_runs = experiment(run, "train") / "ray_train"

    def mid_run_with_a_checkpoint() -> bool:
        seen = list(trial_epochs(run, "train").values())
        return (
            len(seen) == 1
            and bool(seen[0])
            and 2 <= seen[0][-1] <= epochs - 2
            and any(train_runs.glob("train-*/checkpoint_*"))
        )

    wait_until(mid_run_with_a_checkpoint, run)
    workers = run.containers("worker")
    assert len(workers) == 2, workers  # one T4 node each
    for name in workers:
        run.podman("pause", name)
    ((hit_dir, before),) = trial_epochs(run, "train").items()
    reclaim_now.touch()
    wait_until(lambda: "Failed (Terminated) after the node shutdown" in run.log.read_text(), run)
    paused = run.podman("ps", "--filter", "status=paused", "--format", "{{.Names}}").split()
    thawed = [name for name in workers if name in paused]  # the reclaimed one is stopped
    assert len(thawed) == 1, (workers, paused)
    run.podman("unpause", *thawed)
    outcome = run.wait()
    log = run.log.read_text()
    assert outcome.get("status") == "SUCCEEDED" and outcome["attempts"] == 1, run.explain()
    (reclaim,) = outcome["reclaims"]
    (pod,) = reclaim["pods"]
    assert outcome["workers_failed_deleted"] == [pod], outcome
    # Two nodes for the run, a third for the replacement of the reclaimed one.
    assert outcome["workers_created"] >= 3 and outcome["nodes_added"] >= 3, outcome
    after = log.split(f"Spot node {reclaim['node']} reclaimed")[1]
    replaced = re.search(r"pod (\S+-worker-\w+) scheduled on (t4-node-\d+)", after)
    assert replaced and replaced.group(1) != pod and replaced.group(2) != reclaim["node"], after
    # The Train run went on from its last checkpoint: the epoch in flight (frozen) trained
    # again, every earlier one kept, and the trial ended TERMINATED.
    summary = json.loads((experiment(run, "train") / "results.json").read_text())
    assert summary["counts"] == {"completed": 1, "early_stopped": 0, "errored": 0}, summary
    last_saved = before[-1]
    assert trial_epochs(run, "train")[hit_dir] == [*before, *range(last_saved + 1, epochs + 1)]
    ((trial,),) = [summary["trials"]]
    assert trial["metrics"]["start_epoch"] == last_saved, trial
    assert trial["metrics"]["world_size"] == 2, trial
