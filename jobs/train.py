"""Part 5 of the walkthrough: Ray Train inside Tune trials.

Each Tune trial is a driver that launches a Ray Train TorchTrainer with 2 workers (DDP:
NCCL on GPUs, gloo on CPUs). Workers shard the data by rank, average their metrics with an
all-reduce, and report through `TuneReportCallback`, which forwards rank 0's metrics to Tune.
The Train run is named after the Tune trial id and stored under the experiment folder, so a
retried or restored trial resumes its own Train run.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from jobs.core import cli, tune_run
from jobs.core.connection import gpu_nodes_have_cuda, quiet_known_noise
from jobs.core.resources import (
    ClusterView,
    TrialPlan,
    memory_request,
    placement,
    set_threads,
    trial_device,
    wants_gpu,
)
from jobs.core.search import random_search, search_space
from jobs.core.settings import MIB, SPOT_RETRIES, TRAIN_DRIVER_MEMORY_MIB, Scope, Settings
from jobs.core.stage import Kubernetes, Stage
from jobs.core.training_spec import TrainingSpec, training_spec

if TYPE_CHECKING:
    import torch
    from ray import tune

# Ray Train, Ray Tune and torch are imported inside the functions that run on the cluster:
# reading this stage's declaration (a workstation's client venv) needs none of them.

TRAIN_MAX_FAILURES = 1
TRAIN_WORKERS = 2  # the walkthrough's ScalingConfig(num_workers=2)
# A Train-inside-Tune trial only drives the Train run; 0 CPU is rejected by Tune.
DRIVER_CPU = 0.01
# Ray Train workers take slightly under a CPU each, so a 2-CPU node fits the 2 workers of
# one trial plus the trial's own sliver (findings: 1.0 each deadlocks on 2 cores).
TRAIN_WORKER_CPU = 0.99


def driver_resources(settings: Settings) -> dict[str, float]:
    """The trial itself: a CPU sliver, and its measured memory (TRAIN_DRIVER_MEMORY_MIB)
    unless TRIAL_MEMORY_MIB=0 turns reservations off."""
    if not settings.trial_memory_mib:
        return {"cpu": DRIVER_CPU}
    return {"cpu": DRIVER_CPU, "memory": TRAIN_DRIVER_MEMORY_MIB * MIB}


def plan_train(settings: Settings, cluster: ClusterView) -> TrialPlan:
    """A trial is a driver (a CPU sliver) plus TRAIN_WORKERS workers of a GPU or CPUs each."""
    use_gpu = wants_gpu(settings, cluster)
    if use_gpu:
        # 0.99 CPU, as on CPU: a 1-CPU GPU node then fits a worker beside a trial's sliver.
        worker = {"CPU": TRAIN_WORKER_CPU, "GPU": 1, **memory_request(settings)}
        # Tune does not count the Train workers: cap runs at GPUs / GPUs per run.
        caps = [c for c in (settings.max_concurrent, int(cluster.gpus // TRAIN_WORKERS)) if c]
        concurrency = min(caps) if caps else None
        return TrialPlan(
            True,
            driver_resources(settings),
            concurrency,
            cpus_per_trial=1,
            worker_resources=worker,
            num_workers=TRAIN_WORKERS,
        )
    per_worker = max(TRAIN_WORKER_CPU, float(int(cluster.max_node_cpus // TRAIN_WORKERS)) - 0.01)
    per_run = per_worker * TRAIN_WORKERS + DRIVER_CPU
    cap = max(1, int(cluster.cpus // per_run))
    concurrency = min(settings.max_concurrent or cap, cap)
    return TrialPlan(
        False,
        driver_resources(settings),
        concurrency,
        cpus_per_trial=max(1, round(per_worker)),
        worker_resources={"CPU": per_worker, **memory_request(settings)},
        num_workers=TRAIN_WORKERS,
    )


@dataclass(frozen=True)
class RunSpec:
    """A trial's Ray Train run: the training spec each worker completes with the trial's
    config, and how the workers are placed and stored."""

    training: TrainingSpec
    plan: TrialPlan
    accelerator_type: str
    cuda: bool  # GPU workers have working CUDA (NCCL); false on fake GPUs
    storage_path: str
    max_failures: int = TRAIN_MAX_FAILURES  # restarts from its checkpoint (more under Spot)


def _all_reduce(t: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist

    dist.all_reduce(t)
    return t


def train_loop_per_worker(config: dict[str, Any]) -> None:
    # The model (torchvision) is imported here, in the Train workers: the job's driver and
    # the Tune trial that drives the Train run never build one.
    import ray.train
    import ray.train.torch

    from jobs.core import checkpoints
    from jobs.core.trainer import Trainer, format_epoch
    from jobs.core.tune_trial import peak_rss_mib

    run: RunSpec = config["run"]
    # The trial's own config (what a plain Tune trial gets), without the RunSpec.
    config = {k: v for k, v in config.items() if k != "run"}
    spec = run.training.for_trial(config)
    quiet_known_noise()
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    set_threads(spec.cpus)
    device = ray.train.torch.get_device() if run.cuda else trial_device(spec.use_gpu)
    trainer = Trainer(
        spec,
        device=device,
        rank=rank,
        world_size=world,
        # On a fake GPU Train's own device choice would be cuda, which is absent here.
        wrap_model=partial(ray.train.torch.prepare_model, move_to_device=device),
        reduce=_all_reduce,
    )
    placed = placement(device)
    start = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        start = trainer.load_state(checkpoints.load(checkpoint, device))
    for epoch in range(start + 1, spec.num_epochs + 1):
        result = trainer.run_epoch(epoch)
        metrics = {**result.metrics(), "start_epoch": start, "world_size": world, **placed}
        metrics["peak_rss_mib"] = peak_rss_mib()  # this worker's
        if rank != 0:
            ray.train.report(metrics, checkpoint=None)  # every rank reports; rank 0 saves
            continue
        who = f"{ctx.get_experiment_name()} rank 0"
        print(format_epoch(who, result, spec.num_epochs, device), flush=True)
        with checkpoints.saved(trainer.state(epoch), ray.train.Checkpoint) as saved:
            ray.train.report(metrics, checkpoint=saved)


def train_driver(config: dict[str, Any], run: RunSpec) -> None:
    """The Tune trial: one Ray Train run per trial, named after the trial."""
    import ray.train
    from ray import tune
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    plan = run.plan
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={**config, "run": run},
        torch_config=TorchConfig(backend="nccl" if run.cuda else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=plan.num_workers,
            use_gpu=plan.use_gpu,
            resources_per_worker=plan.worker_resources,
            accelerator_type=run.accelerator_type if plan.use_gpu else None,
        ),
        run_config=ray.train.RunConfig(
            name=f"train-{tune.get_context().get_trial_id()}",
            storage_path=run.storage_path,  # Train does not inherit Tune's storage_path
            callbacks=[TuneReportCallback()],
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            failure_config=ray.train.FailureConfig(max_failures=run.max_failures),
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),
        ),
    )
    trainer.fit()


def trainable(settings: Settings, plan: TrialPlan) -> Any:
    from ray import tune

    cuda = plan.use_gpu and gpu_nodes_have_cuda(settings.accelerator_type)
    if plan.use_gpu and not cuda:
        print("[train] GPU workers have no CUDA (fake GPUs): DDP over gloo on CPU", flush=True)
    run = RunSpec(
        training=training_spec(settings, plan, checkpoint=True),  # rank 0 saves every epoch
        plan=plan,
        accelerator_type=settings.accelerator_type,
        cuda=cuda,
        storage_path=str(settings.experiment_dir / "ray_train"),
        # A Train worker's lost node restarts the run from its checkpoint: under Spot that
        # is not the run's fault, as for a Tune trial (SPOT_RETRIES).
        max_failures=TRAIN_MAX_FAILURES + (SPOT_RETRIES if settings.spot else 0),
    )
    return tune.with_parameters(train_driver, run=run)


def tuner(settings: Settings, plan: TrialPlan, trainable: Any) -> tune.Tuner:
    """Part 5's Tuner. The walkthrough hands Tune the TorchTrainer, searching its
    train_loop_config; here each trial is train_driver, which starts the TorchTrainer with
    the trial's config as its train_loop_config (a Train run named after the trial, that a
    retried trial resumes)."""
    from ray import tune

    return tune.Tuner(
        trainable,  # train_driver: one TorchTrainer run per trial
        param_space=search_space(settings),  # lr ~ loguniform(1e-4, 1e-1), epochs, batch
        tune_config=tune.TuneConfig(
            metric=settings.metric,
            mode=settings.mode,
            num_samples=settings.num_samples,
            search_alg=random_search(settings, plan),
        ),
        run_config=tune_run.run_config(
            settings,
            # A trial whose Train run fails past its own retries is retried once by Tune; the
            # Train run then resumes from its snapshot because its name is stable.
            failure_config=tune.FailureConfig(max_failures=1),
        ),
    )


STAGE = Stage(
    name="train",
    part=5,
    defaults={"num_samples": 2, "num_epochs": 3, "max_concurrent": 2},
    # No FAIL_AT_EPOCH: the Train workers run their own loop, not the shared trial.
    scopes=frozenset({Scope.TUNE}),
    run=tune_run.TuneRun(
        tuner=tuner,
        trainable=trainable,
        gpu_share=False,
        checkpoints=True,
        plan=plan_train,
    ),
    # Each trial's 2 Train workers hold a GPU each: kind runs 2 fixed (fake-GPU) workers.
    kubernetes=Kubernetes(deadline_s=3600, kind_workers=2),
)

if __name__ == "__main__":
    sys.exit(cli.main(STAGE))
