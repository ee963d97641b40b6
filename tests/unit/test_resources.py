"""Per-trial resources: GPU bundles, CPU sizing, Train-in-Tune caps, fail-fast checks."""

from __future__ import annotations

import json

import pytest
import torch

from jobs import train
from jobs.core import resources
from jobs.core.parsers import ConfigError
from jobs.core.resources import ClusterView, check_placeable, plan_trials
from jobs.core.settings import TRAIN_DRIVER_MEMORY_MIB, TRIAL_MEMORY_MIB, reservation_mib
from tests.support import ray_memory, runs
from tests.support.kuberay.pods import cluster_pods, start_params
from tests.support.manifests import VARIANTS, cluster_specs, docs, folder
from tests.support.runs import REPO

MEM = TRIAL_MEMORY_MIB * 1024**2  # the default reservation, in bytes
MEMORY = {"memory": MEM}
CPU_2 = ClusterView(cpus=2, gpus=0, max_node_cpus=2, resources={"CPU": 2})
CPU_8 = ClusterView(cpus=8, gpus=0, max_node_cpus=8, resources={"CPU": 8})
T4_X4 = ClusterView(
    cpus=20, gpus=4, max_node_cpus=4, resources={"CPU": 20, "GPU": 4, "accelerator_type:T4": 4}
)


def settings(stage: str = "tune", **env: str):
    return runs.settings(stage, env=env)


def test_auto_picks_gpu_when_the_cluster_has_gpus() -> None:
    plan = plan_trials(settings(), T4_X4)
    assert plan.use_gpu
    assert plan.resources == {"cpu": 1, "gpu": 1, "accelerator_type:T4": 0.001, "memory": MEM}


@pytest.mark.parametrize("stage", ["baseline", "tune", "asha", "checkpoint"])
def test_gpus_per_trial_packs_trials_onto_a_gpu_and_counts_its_share(stage: str) -> None:
    """GPUS_PER_TRIAL=0.5: each trial asks Ray for half a T4 (so the autoscaler packs two per
    node) and its accelerator-hours count half a GPU."""
    plan = plan_trials(settings(stage, GPUS_PER_TRIAL="0.5"), T4_X4)
    assert plan.resources["gpu"] == 0.5 and plan.resources["accelerator_type:T4"] == 0.001
    assert plan.device_units() == 0.5 and plan.resources["cpu"] == 1
    assert plan.resources["memory"] == MEM  # each trial's memory still reserved
    assert plan_trials(settings(stage), T4_X4).device_units() == 1


def test_train_refuses_a_gpu_share_before_anything_runs() -> None:
    s = settings("train", GPUS_PER_TRIAL="0.5")
    with pytest.raises(ConfigError, match="Train workers each need a whole GPU"):
        train.STAGE.run.preflight(s)


@pytest.mark.parametrize("raw", ["0", "1.5", "-0.5", "half", "nan"])
def test_gpus_per_trial_is_a_share_of_one_gpu(raw: str) -> None:
    with pytest.raises(ConfigError, match=r"GPUS_PER_TRIAL must be a number in \(0, 1\]"):
        settings(GPUS_PER_TRIAL=raw)


def test_auto_falls_back_to_cpu_and_sizes_cpus_for_concurrency() -> None:
    plan = plan_trials(settings(), CPU_2)  # 4 samples on 2 CPUs: 2 at a time, 1 CPU each
    assert (plan.use_gpu, plan.resources, plan.max_concurrent) == (False, {"cpu": 1, **MEMORY}, 2)
    plan = plan_trials(settings(), CPU_8)  # 4 samples on 8 CPUs: all 4 at once, 2 CPUs each
    assert (plan.resources, plan.max_concurrent, plan.cpus_per_trial) == (
        {"cpu": 2, **MEMORY},
        4,
        2,
    )


def test_max_concurrent_setting_wins() -> None:
    plan = plan_trials(settings(TUNE_MAX_CONCURRENT="1"), CPU_8)
    assert (plan.resources, plan.max_concurrent) == ({"cpu": 8, **MEMORY}, 1)


def test_accelerator_type_is_configurable() -> None:
    plan = plan_trials(settings(ACCELERATOR="gpu", ACCELERATOR_TYPE="A10G"), CPU_2)
    assert plan.resources["accelerator_type:A10G"] == 0.001 and plan.resources["gpu"] == 1


def test_gpu_without_that_accelerator_fails_fast() -> None:
    s = settings(ACCELERATOR="gpu")
    with pytest.raises(ConfigError, match="no node offers accelerator_type:T4"):
        check_placeable(plan_trials(s, CPU_2), s, CPU_2)
    check_placeable(plan_trials(s, T4_X4), s, T4_X4)  # placeable: no error


def test_train_stage_keeps_the_trial_tiny_and_caps_runs() -> None:
    plan = train.plan_train(settings("train"), CPU_2)
    # The trial only drives its Train run: a CPU sliver and its own measured memory.
    assert plan.resources == {"cpu": 0.01, "memory": TRAIN_DRIVER_MEMORY_MIB * 1024**2}
    off = train.plan_train(settings("train", TRIAL_MEMORY_MIB="0"), CPU_2)
    assert off.resources == {"cpu": 0.01} and "memory" not in off.worker_resources
    assert plan.worker_resources == {"CPU": 0.99, **MEMORY} and plan.num_workers == 2
    assert plan.max_concurrent == 1  # 2 CPUs fit one run of 2 workers, never two
    gpu = train.plan_train(settings("train"), T4_X4)
    assert gpu.use_gpu and gpu.worker_resources == {"CPU": 0.99, "GPU": 1, **MEMORY}
    assert gpu.max_concurrent == 2  # 4 GPUs / 2 per run


def test_cpu_mode_ignores_gpus() -> None:
    assert not plan_trials(settings(ACCELERATOR="cpu"), T4_X4).use_gpu


def test_fake_gpu_picks_the_cpu_device_and_says_so_once(monkeypatch, capsys) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(resources, "_warned_fake_gpu", False)
    assert resources.trial_device(True).type == "cpu"
    assert resources.trial_device(True).type == "cpu"
    assert capsys.readouterr().out.count("CUDA is not available") == 1
    assert resources.trial_device(False).type == "cpu"


def test_reservations_are_the_measured_peaks_plus_headroom() -> None:
    # make bench-memory measured the peaks at the default data size (the whole splits).
    measured = json.loads((REPO / "jobs" / "bench" / "results" / "memory.json").read_text())
    assert measured["train_images"] == 60000 and measured["val_images"] == 10000
    biggest = max(measured["tune_trial_peak_rss_mib"], measured["train_worker_peak_rss_mib"])
    assert TRIAL_MEMORY_MIB == reservation_mib(biggest) == measured["trial_memory_mib"]
    driver = measured["train_driver_peak_rss_mib"]
    assert TRAIN_DRIVER_MEMORY_MIB == reservation_mib(driver) == measured["train_driver_memory_mib"]
    readme = (REPO / "jobs" / "README.md").read_text()
    for key in ("tune_trial", "train_worker", "train_driver"):
        assert f"{round(measured[f'{key}_peak_rss_mib']):,} MiB" in readme, key
    for mib in (TRIAL_MEMORY_MIB, TRAIN_DRIVER_MEMORY_MIB):
        assert f"{mib:,} MiB" in readme


def test_reservation_is_the_peak_plus_a_quarter_rounded_up_to_64_mib() -> None:
    assert reservation_mib(1024) == 1280
    assert reservation_mib(1025) == 1344  # 1281.25 rounds up to the next 64
    assert reservation_mib(1560.6) == 1984


def test_trials_and_train_workers_reserve_trial_memory_mib() -> None:
    s = settings()
    plan = plan_trials(s, T4_X4)
    assert plan.resources["memory"] == s.trial_memory_mib * 1024**2
    assert "memory" not in plan_trials(settings(TRIAL_MEMORY_MIB="0"), T4_X4).resources
    workers = train.plan_train(settings("train"), T4_X4).worker_resources
    assert workers["memory"] == s.trial_memory_mib * 1024**2  # each Train worker holds a model


def test_a_trial_bigger_than_every_node_fails_fast() -> None:
    small = ClusterView(
        cpus=2, gpus=0, max_node_cpus=2, resources={"CPU": 2}, max_node_memory=1024 * 1024**2
    )
    s = settings()
    with pytest.raises(ConfigError, match=rf"reserves {TRIAL_MEMORY_MIB} MiB .* offers 1024 MiB"):
        check_placeable(plan_trials(s, small), s, small)


@pytest.mark.parametrize("variant", VARIANTS)  # every k8s/values/*.yaml
def test_worker_pods_hold_the_memory_of_the_trials_their_gpus_run(variant: str) -> None:
    # One GPU trial (or Train worker) per GPU, each reserving TRIAL_MEMORY_MIB; where the
    # train stage may run (its RayJob, the long-lived RayCluster), also the Train trial that
    # drives them (TRAIN_DRIVER_MEMORY_MIB): the head takes no trials (num-cpus 0), so it
    # lands on a worker beside a Train worker. The worker pod's memory limit is shared with
    # Ray's object store (tests/support/ray_memory.py): what is left must hold them all.
    trial = settings().trial_memory_mib * 2**20
    paths = [folder(variant) / "raycluster.yaml", *sorted(folder(variant).glob("rayjob-*.yaml"))]
    checked = 0
    for path in paths:
        (doc,) = docs(path)
        built = cluster_pods(doc)
        for group in cluster_specs(doc)["workerGroupSpecs"]:
            pod = built[f"worker-{group['groupName']}"]["spec"]  # with KubeRay's /dev/shm
            params = start_params(group, head=False, fqdn="x")
            gpus = int(params.get("num-gpus", 0))  # what Ray counts: the limit or the map
            limit = ray_memory.memory_limit(pod)
            _, shm = ray_memory.shm_bytes(pod)
            store = ray_memory.object_store_bytes(params, limit, shm)
            left = limit - store
            assert gpus >= 1, (path.name, group["groupName"])
            train = path.name in ("raycluster.yaml", "rayjob-train.yaml")
            driver = TRAIN_DRIVER_MEMORY_MIB * 2**20 if train else 0
            assert left >= gpus * trial + driver, (
                f"{path.relative_to(REPO)} {group['groupName']}: limit {limit / 2**20:.0f} MiB "
                f"- object store {store / 2**20:.0f} MiB = {left / 2**20:.0f} MiB < "
                f"{gpus} GPU(s) x {trial / 2**20:.0f} MiB + a Train trial {driver / 2**20:.0f} MiB"
            )
            checked += 1
    assert checked >= len(paths)  # every manifest has a worker group
