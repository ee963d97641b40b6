"""Part 1 of the walkthrough: plain PyTorch training, no Tune.

ResNet18 for 2 epochs at batch 128 and lr 1e-3, run as one Ray task so that, on a
cluster, it lands on a GPU worker (one GPU of ACCELERATOR_TYPE) rather than on the head.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import ray

from jobs.core import cli, records
from jobs.core.connection import connect_and_plan
from jobs.core.outputs import archive, finish
from jobs.core.resources import TrialPlan, placement, plan_trials, set_threads, trial_device
from jobs.core.settings import Scope, Settings
from jobs.core.stage import Kubernetes, Stage
from jobs.core.training_spec import TrialSpec, hyperparameters, training_spec

TRIAL_ID = "baseline"


def train_baseline(spec: TrialSpec) -> list[dict[str, float]]:
    # torch and the model are imported here, in the Ray task that trains: the job's driver
    # only submits it, and starts ~6 s sooner without them.
    from jobs.core.trainer import Trainer, format_epoch

    set_threads(spec.cpus)
    device = trial_device(spec.use_gpu)
    trainer = Trainer(spec, device=device)
    history = []
    for epoch in range(1, spec.num_epochs + 1):
        result = trainer.run_epoch(epoch)
        print(format_epoch(TRIAL_ID, result, spec.num_epochs, device), flush=True)
        history.append({**result.metrics(), **placement(device)})
    return history


def task_options(plan: TrialPlan) -> dict[str, Any]:
    """The trial plan as @ray.remote options: GPU + accelerator sliver, or CPUs."""
    res = dict(plan.resources)
    options: dict[str, Any] = {"num_cpus": res.pop("cpu", 0), "num_gpus": res.pop("gpu", 0)}
    if "memory" in res:
        options["memory"] = res.pop("memory")
    if res:
        options["resources"] = res
    return options


def keep_previous(settings: Settings) -> None:
    """A rerun keeps the previous run's outputs: it moves them aside and says where."""
    if (settings.experiment_dir / records.RESULTS_FILE).exists():
        target = archive(settings.experiment_dir)
        print(f"[baseline] the previous run's results are kept in {target}", flush=True)


def run(settings: Settings) -> records.Summary:
    started = time.monotonic()
    plan = connect_and_plan(settings, plan_trials)
    print(f"[baseline] {plan.describe()}", flush=True)
    # The walkthrough's train_loop_torch(num_epochs, batch_size, lr), from the settings.
    config = hyperparameters(settings)
    spec = training_spec(settings, plan).for_trial(config)
    task = ray.remote(train_baseline).options(**task_options(plan))
    history = ray.get(task.remote(spec))
    metrics = {
        **history[-1],
        "training_iteration": len(history),
        "time_total_s": sum(h["epoch_s"] for h in history),
    }
    record = records.record(TRIAL_ID, False, settings.num_epochs, config, metrics, history)
    summary = records.Summary(
        "baseline", settings.metric, settings.mode, [record], time.monotonic() - started
    )
    keep_previous(settings)  # only now: a run that fails before this leaves them in place
    finish(settings, summary, {TRIAL_ID: history}, plan)
    return summary


STAGE = Stage(
    name="baseline",
    part=1,
    defaults={"num_epochs": 2},
    scopes=frozenset({Scope.SINGLE}),
    run=run,
    kubernetes=Kubernetes(deadline_s=1800),
)

if __name__ == "__main__":
    sys.exit(cli.main(STAGE))
