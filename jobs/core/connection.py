"""Connecting to Ray: the environment defaults every stage sets, and a view of the cluster."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from jobs.core.localcluster import API_SERVER_ENV, free_port
from jobs.core.parsers import ConfigError
from jobs.core.resources import ClusterView, TrialPlan, check_placeable, gpu_bundle
from jobs.core.settings import MIB, Settings

# Read by the Tune driver. Each is a measured fix (see jobs/README.md).
DRIVER_ENV = {
    # Snapshot the experiment state at least every second, so a killed driver's restore
    # does not re-run finished trials (the "auto" period is >= 10 s).
    "TUNE_GLOBAL_CHECKPOINT_S": "1",
    # Frequent snapshots are intended here; don't warn about them.
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
}
# Read inside trials (the Ray Train controller and workers): sent as the job's runtime_env.
WORKER_ENV = {
    # V2 is the default in Ray 2.60; its migration warnings are noise for this code.
    "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0",
    # Faster Train worker health checks: ~35% shorter Train-in-Tune runs on small nodes.
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
    # Two workers importing torch on a busy small node can take over the 60 s default,
    # and each timeout restarts the group from scratch.
    "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "180",
}


def apply_env_defaults() -> dict[str, str]:
    """Set the defaults the environment does not override; return the ones for workers."""
    added = {k: v for k, v in {**DRIVER_ENV, **WORKER_ENV}.items() if k not in os.environ}
    os.environ.update(added)
    return {k: v for k, v in added.items() if k in WORKER_ENV}


def local_init_kwargs(env: dict[str, str] | None = None) -> dict:
    """A local cluster sized to this machine, with a modest object store.

    Its dashboard's address is put in `env` (os.environ by default), which every process of
    the new cluster inherits: Ray Train's placement-group cleaner otherwise finds the State
    API by auto-detecting "the" local cluster, which raises ConnectionError ("Found multiple
    active Ray instances") when another Ray runs on the machine. That kills its monitor
    thread, so a dead trial's worker placement group is never freed and the retried trial
    waits for its Train workers forever (measured: under `make test`, two stages at once)."""
    env = os.environ if env is None else env
    port = free_port()
    env[API_SERVER_ENV] = f"http://127.0.0.1:{port}"  # this cluster's, whatever was there
    return {
        "num_cpus": os.cpu_count() or 1,
        "object_store_memory": 512 * MIB,
        "include_dashboard": True,  # Train-in-Tune needs the State API (findings 2f)
        "dashboard_port": port,
    }


# Tries at starting a local cluster: the free port picked for its dashboard can be taken by
# another process before Ray binds it (measured: two test workers starting Ray at once).
START_TRIES = 3


def init_local(**kwargs: Any) -> None:
    """ray.init of a new local cluster (local_init_kwargs), on a new dashboard port when the
    one picked was taken in between, as LocalCluster does for its head."""
    import ray

    for attempt in range(1, START_TRIES + 1):
        try:
            ray.init(**local_init_kwargs(), **kwargs)
            return
        except Exception as err:  # Ray raises a bare Exception with the dashboard's log
            if "address already in use" not in str(err) or attempt == START_TRIES:
                raise
            ray.shutdown()


def connect(settings: Settings) -> ClusterView:
    """ray.init against RAY_ADDRESS, or a new local cluster; returns the cluster's shape."""
    import ray

    worker_env = apply_env_defaults()
    # Keys a submitted job already sets are left out: Ray refuses conflicting env_vars.
    runtime_env = {"env_vars": worker_env} if worker_env else None
    options = {"runtime_env": runtime_env, "logging_level": logging.WARNING}
    if settings.ray_address:
        ray.init(address=settings.ray_address, **options, configure_logging=True)
    else:
        init_local(**options, configure_logging=True)
    return cluster_view()


def cluster_view() -> ClusterView:
    import ray

    total = ray.cluster_resources()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    max_node_cpus = max((n["Resources"].get("CPU", 0.0) for n in nodes), default=0.0)
    max_node_memory = max((n["Resources"].get("memory", 0.0) for n in nodes), default=0.0)
    return ClusterView(
        cpus=total.get("CPU", 0.0),
        gpus=total.get("GPU", 0.0),
        max_node_cpus=max_node_cpus,
        resources=dict(total),
        max_node_memory=max_node_memory,
    )


def wait_for_accelerator(settings: Settings, cluster: ClusterView) -> ClusterView:
    """On an autoscaling cluster, ask for a GPU node and wait up to GPU_WAIT_S for it."""
    if cluster.has_accelerator(settings.accelerator_type) or not settings.ray_address:
        return cluster
    if settings.gpu_wait_s == 0:
        return cluster
    from ray.autoscaler.sdk import request_resources

    bundle = {
        k.upper() if k == "gpu" else k: v for k, v in gpu_bundle(settings.accelerator_type).items()
    }
    print(
        f"[cluster] no {settings.accelerator_type} GPU yet; asking the autoscaler for one "
        f"and waiting up to {settings.gpu_wait_s}s",
        flush=True,
    )
    request_resources(bundles=[bundle])
    deadline = time.monotonic() + settings.gpu_wait_s
    try:
        while time.monotonic() < deadline:
            cluster = cluster_view()
            if cluster.has_accelerator(settings.accelerator_type):
                return cluster
            time.sleep(5)
    finally:
        request_resources(bundles=[])
    raise ConfigError(
        f"no node with accelerator_type:{settings.accelerator_type} joined "
        f"within GPU_WAIT_S={settings.gpu_wait_s}s"
    )


def gpu_nodes_have_cuda(accelerator_type: str, timeout_s: float = 300) -> bool:
    """Whether a GPU slot of this type has working CUDA (false on kind's fake GPUs)."""
    import ray

    @ray.remote(num_cpus=0, num_gpus=1, resources={f"accelerator_type:{accelerator_type}": 0.001})
    def probe() -> bool:
        import torch

        return torch.cuda.is_available()

    return bool(ray.get(probe.remote(), timeout=timeout_s))


def connect_and_plan(
    settings: Settings, planner: Callable[[Settings, ClusterView], TrialPlan]
) -> TrialPlan:
    """Connect, size the trials for this cluster, and fail fast if they cannot be placed."""
    cluster = connect(settings)
    plan = planner(settings, cluster)
    if plan.use_gpu:
        cluster = wait_for_accelerator(settings, cluster)
    check_placeable(plan, settings, cluster)
    return plan


# Per-epoch INFO lines that repeat what our own epoch line says, silenced by logger name.
NOISY_LOGGERS = (
    "ray.train._internal.storage",  # "Checkpoint successfully created at: ..." (Tune trials)
    "ray.train.v2._internal.execution.storage",  # the same, from Ray Train workers
)


def quiet_known_noise() -> None:
    """Called inside trials and Train workers: keeps `kubectl logs` to one line per epoch."""
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:  # "Reporting training result N: TrainingReport(...)", a logger named by file path
        from ray.train.v2._internal.execution import context

        logging.getLogger(context.__file__).setLevel(logging.WARNING)
    except ImportError:
        pass
