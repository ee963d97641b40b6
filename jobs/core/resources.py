"""Per-trial resources and the device a trial trains on.

`plan_trials` is pure: it maps the settings and a snapshot of the cluster to the resource
request of one trial, so it is unit-tested without Ray. GPU mode asks for one GPU of the
configured model (`accelerator_type:T4`, which KubeRay/Ray declare on T4 nodes); CPU mode
sizes CPUs so that the trials run side by side.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from jobs.core.parsers import ConfigError
from jobs.core.settings import MIB, Settings

if TYPE_CHECKING:
    import torch

# Ray's convention: a node with a T4 offers the custom resource "accelerator_type:T4": 1.
# Asking for a sliver of it pins the trial to such a node without consuming it.
ACCELERATOR_SLIVER = 0.001


@dataclass(frozen=True)
class ClusterView:
    """What the planner needs to know of a cluster: totals and the largest node."""

    cpus: float
    gpus: float
    max_node_cpus: float
    resources: dict[str, float] = field(default_factory=dict)
    max_node_memory: float = float("inf")  # bytes of Ray's `memory` resource on the largest node

    def has_accelerator(self, accelerator_type: str) -> bool:
        return self.resources.get(f"accelerator_type:{accelerator_type}", 0) > 0


@dataclass(frozen=True)
class TrialPlan:
    use_gpu: bool
    resources: dict[str, float]  # the Tune trial's own request
    max_concurrent: int | None
    cpus_per_trial: int  # torch threads inside a trial (or each Train worker)
    worker_resources: dict[str, float] | None = None  # Train workers (train stage)
    num_workers: int = 1

    @property
    def device(self) -> str:
        return "gpu" if self.use_gpu else "cpu"

    def device_units(self) -> float:
        """GPUs (or CPUs) one trial holds, Train workers included."""
        key = "GPU" if self.use_gpu else "CPU"
        if self.worker_resources is not None:
            return self.num_workers * float(self.worker_resources.get(key, 0))
        return float(self.resources.get(key.lower(), 0))

    def describe(self) -> str:
        device = "GPU" if self.use_gpu else "CPU"
        text = f"{device} trials, request {self.resources}"
        if self.worker_resources is not None:
            text += f", {self.num_workers} Train workers x {self.worker_resources}"
        cap = self.max_concurrent if self.max_concurrent else "cluster-limited"
        return f"{text}, max concurrent trials: {cap}"


def wants_gpu(settings: Settings, cluster: ClusterView) -> bool:
    if settings.accelerator == "gpu":
        return True
    if settings.accelerator == "cpu":
        return False
    return cluster.gpus > 0


def memory_request(settings: Settings) -> dict[str, float]:
    """{"memory": bytes} for one trial or Train worker, as the walkthrough's Part 4 asks."""
    return {"memory": settings.trial_memory_mib * MIB} if settings.trial_memory_mib else {}


def gpu_bundle(accelerator_type: str, gpus: float = 1) -> dict[str, float]:
    """`gpus` of one GPU (GPUS_PER_TRIAL: a share packs trials onto a GPU) on a node of that
    model."""
    return {"gpu": gpus, f"accelerator_type:{accelerator_type}": ACCELERATOR_SLIVER}


def plan_trials(settings: Settings, cluster: ClusterView) -> TrialPlan:
    """One model per trial: a GPU or GPUS_PER_TRIAL of one (and one CPU) each, or the CPUs
    shared by the trials that run side by side. Stages with other needs declare their own
    (TuneRun.plan)."""
    use_gpu = wants_gpu(settings, cluster)
    if use_gpu:
        # One CPU beside the GPU keeps the Python side of the loop off a 0-thread budget.
        gpu = gpu_bundle(settings.accelerator_type, settings.gpus_per_trial)
        resources = {"cpu": 1, **gpu, **memory_request(settings)}
        return TrialPlan(True, resources, settings.max_concurrent, cpus_per_trial=1)
    concurrency = settings.max_concurrent or max(1, min(settings.num_samples, int(cluster.cpus)))
    cpus = max(1, min(int(cluster.max_node_cpus), int(cluster.cpus // concurrency)))
    resources = {"cpu": cpus, **memory_request(settings)}
    return TrialPlan(False, resources, concurrency, cpus_per_trial=cpus)


def check_placeable(plan: TrialPlan, settings: Settings, cluster: ClusterView) -> None:
    """Fail with one line instead of leaving trials PENDING forever (Tune only warns)."""
    if plan.use_gpu and not cluster.has_accelerator(settings.accelerator_type):
        raise ConfigError(
            f"ACCELERATOR=gpu but no node offers accelerator_type:{settings.accelerator_type} "
            f"(cluster: {cluster.gpus:g} GPUs); set ACCELERATOR_TYPE to the GPU model the nodes "
            "declare, or ACCELERATOR=cpu"
        )
    need = (plan.worker_resources or plan.resources).get("memory", 0)
    if need > cluster.max_node_memory:
        raise ConfigError(
            f"a trial reserves {need / MIB:.0f} MiB (TRIAL_MEMORY_MIB) but the largest node "
            f"offers {cluster.max_node_memory / MIB:.0f} MiB to Ray; lower TRIAL_MEMORY_MIB or "
            "use bigger nodes"
        )
    cpu_trial = not plan.use_gpu and plan.worker_resources is None
    if cpu_trial and plan.resources["cpu"] > cluster.max_node_cpus:
        raise ConfigError(
            f"a trial needs {plan.resources['cpu']} CPUs but the largest node "
            f"has {cluster.max_node_cpus:g}"
        )


# --- inside a trial -------------------------------------------------------------------------

_warned_fake_gpu = False


def trial_device(use_gpu: bool) -> torch.device:
    """cuda when the trial holds a GPU and CUDA works; otherwise cpu (said once per process)."""
    global _warned_fake_gpu
    import torch  # here, not at the top: the planner above is on the client tools' path

    if use_gpu and torch.cuda.is_available():
        return torch.device("cuda")
    if use_gpu and not _warned_fake_gpu:
        _warned_fake_gpu = True
        print(
            "[resources] this trial holds a GPU slot but CUDA is not available here "
            "(a fake GPU, as on kind); training on CPU",
            flush=True,
        )
    return torch.device("cpu")


def placement(device: torch.device) -> dict[str, float]:
    """Where the calling trial or Train worker runs: its GPU slots and whether CUDA is used."""
    import ray

    assigned = ray.get_runtime_context().get_assigned_resources()
    return {
        "assigned_gpus": float(assigned.get("GPU", 0.0)),
        "on_cuda": float(device.type == "cuda"),
    }


def set_threads(cpus: int) -> None:
    """Match torch's intra-op threads to the CPUs the trial was given (Ray sets OMP to that)."""
    import torch

    threads = max(1, int(cpus))
    torch.set_num_threads(threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
