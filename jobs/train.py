"""Part 5 of the walkthrough: Ray Train inside Tune trials.

Each Tune trial is a driver that launches a Ray Train TorchTrainer with 2 workers (DDP:
NCCL on GPUs, gloo on CPUs). Workers shard the data by rank, average their metrics with an
all-reduce, and report through `TuneReportCallback`, which forwards rank 0's metrics to Tune.
The Train run is named after the Tune trial id and stored under the experiment folder, so a
retried or restored trial resumes its own Train run.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from functools import partial
from typing import Any

import ray.train
import torch
import torch.distributed as dist
from ray import tune
from ray.train.torch import TorchConfig, TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback

from jobs import cli, experiment
from jobs.config import Settings
from jobs.engine import DataSpec, Trainer, format_epoch
from jobs.resources import TrialPlan, placement, set_threads, trial_device
from jobs.runtime import gpu_nodes_have_cuda, quiet_known_noise
from jobs.trial import CHECKPOINT_FILE
from jobs.tune import tune_config as random_search

TRAIN_MAX_FAILURES = 1


@dataclass(frozen=True)
class RunSpec:
    data: DataSpec
    plan: TrialPlan
    accelerator_type: str
    cuda: bool  # GPU workers have working CUDA (NCCL); false on fake GPUs
    seed: int
    storage_path: str


def _all_reduce(t: torch.Tensor) -> torch.Tensor:
    dist.all_reduce(t)
    return t


def train_loop_per_worker(config: dict[str, Any]) -> None:
    run: RunSpec = config["run"]
    quiet_known_noise()
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    set_threads(run.plan.cpus_per_trial)
    device = ray.train.torch.get_device() if run.cuda else trial_device(run.plan.use_gpu)
    trainer = Trainer(
        run.data,
        lr=config["lr"],
        batch_size=config["batch_size"],
        seed=run.seed,
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
        with checkpoint.as_directory() as folder:
            start = trainer.load_state(
                torch.load(
                    os.path.join(folder, CHECKPOINT_FILE), map_location=device, weights_only=False
                )
            )
    for epoch in range(start + 1, config["num_epochs"] + 1):
        result = trainer.run_epoch(epoch)
        metrics = {**result.metrics(), "start_epoch": start, **placed}
        with tempfile.TemporaryDirectory() as folder:
            ckpt = None
            if rank == 0:
                print(
                    format_epoch(
                        f"{ctx.get_experiment_name()} rank 0", result, config["num_epochs"], device
                    ),
                    flush=True,
                )
                torch.save(trainer.state(epoch), os.path.join(folder, CHECKPOINT_FILE))
                ckpt = ray.train.Checkpoint.from_directory(folder)
            ray.train.report(metrics, checkpoint=ckpt)  # every rank reports


def train_driver(config: dict[str, Any], run: RunSpec) -> None:
    """The Tune trial: one Ray Train run per trial, named after the trial."""
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
            failure_config=ray.train.FailureConfig(max_failures=TRAIN_MAX_FAILURES),
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),
        ),
    )
    trainer.fit()


def trainable(settings: Settings, plan: TrialPlan) -> Any:
    cuda = plan.use_gpu and gpu_nodes_have_cuda(settings.accelerator_type)
    if plan.use_gpu and not cuda:
        print("[train] GPU workers have no CUDA (fake GPUs): DDP over gloo on CPU", flush=True)
    run = RunSpec(
        data=experiment.data_spec(settings),
        plan=plan,
        accelerator_type=settings.accelerator_type,
        cuda=cuda,
        seed=settings.seed,
        storage_path=str(settings.experiment_dir / "ray_train"),
    )
    return tune.with_parameters(train_driver, run=run)


STAGE = experiment.TuneStage(
    "train",
    random_search,
    trainable=trainable,
    # A trial whose Train run fails past its own retries is retried once by Tune; the Train
    # run then resumes from its snapshot because its name is stable.
    run_config=lambda settings: {"failure_config": tune.FailureConfig(max_failures=1)},
)

if __name__ == "__main__":
    sys.exit(cli.main("train", partial(experiment.run, STAGE), experiment.preflight))
