"""Our manifests under KubeRay v1.7.0's own rules (tests/support/kuberay/, each citing its Go
function): what the controller accepts, the `ray start` and submitter commands it builds
from them, and the /dev/shm it gives each Ray container."""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from ray._private import ray_constants

from tests.support.kuberay import pods, submitter
from tests.support.kuberay.validation import validate_raycluster, validate_rayjob
from tests.support.manifests import ALL_RAY, GPU_JOBS, K8S, KIND_JOBS, cluster_specs, docs, ids
from tests.support.runs import REPO


def load(path: Path) -> dict[str, Any]:
    (doc,) = docs(path)
    return doc


@pytest.mark.parametrize("path", ALL_RAY, ids=ids(ALL_RAY))
def test_the_controller_accepts_every_manifest(path: Path) -> None:
    doc = load(path)
    error = validate_rayjob(doc) if doc["kind"] == "RayJob" else validate_raycluster(doc)
    assert error is None, error


def _worker(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]


def _num_gpus_beside_resources(doc: dict[str, Any]) -> None:
    _worker(doc)["rayStartParams"] = {"num-gpus": "1"}  # the kind variant before the fix


def _long_name(doc: dict[str, Any]) -> None:
    doc["metadata"]["name"] = "ray-tune-" + "x" * 40


def _old_ray_with_token_auth(doc: dict[str, Any]) -> None:
    doc["spec"]["rayClusterSpec"]["rayVersion"] = "2.50.0"


def _min_above_max(doc: dict[str, Any]) -> None:
    _worker(doc)["minReplicas"], _worker(doc)["maxReplicas"] = 3, 2


def _labels_in_start_params(doc: dict[str, Any]) -> None:
    _worker(doc)["rayStartParams"] = {"labels": "zone=a"}


def _zero_deadline(doc: dict[str, Any]) -> None:
    doc["spec"]["activeDeadlineSeconds"] = 0


def _priority_without_autoscaler_v2(doc: dict[str, Any]) -> None:
    _worker(doc)["priority"] = 5


def _zero_pre_running_deadline(doc: dict[str, Any]) -> None:
    doc["spec"]["preRunningDeadlineSeconds"] = 0


def _ttl_without_shutdown(doc: dict[str, Any]) -> None:
    doc["spec"]["shutdownAfterJobFinishes"] = False


def _broken_runtime_env(doc: dict[str, Any]) -> None:
    doc["spec"]["runtimeEnvYAML"] = "env_vars: {A: [1, 2"


REFUSALS = [
    (
        _num_gpus_beside_resources,
        "resource fields should not be set in both rayStartParams and Resources for t4 group",
    ),
    (_long_name, "RayJob name should be no more than 47 characters"),
    (_old_ray_with_token_auth, "minimum Ray version is 2.52.0, got 2.50.0"),
    (_min_above_max, "worker group t4 has minReplicas 3 greater than maxReplicas 2"),
    (_labels_in_start_params, "rayStartParams['labels'] is not supported for t4 group"),
    (_zero_deadline, "activeDeadlineSeconds must be a positive integer"),
    (_zero_pre_running_deadline, "preRunningDeadlineSeconds must be a positive integer"),
    (
        _priority_without_autoscaler_v2,
        "worker group t4: priority is set to 5, but autoscaler v2 is not enabled. Priority is "
        "only supported with autoscaler v2 enabled",
    ),
    (
        _ttl_without_shutdown,
        "shutdownAfterJobFinishes set to false cannot have TTLSecondsAfterFinished",
    ),
    (_broken_runtime_env, "failed to unmarshal RuntimeEnvYAML"),
]


@pytest.mark.parametrize(("mutate", "message"), REFUSALS, ids=[m.__name__ for m, _ in REFUSALS])
def test_the_controller_refuses_a_broken_rayjob(mutate, message: str) -> None:
    doc = copy.deepcopy(load(K8S / "kind" / "rayjob-tune.yaml"))
    mutate(doc)
    error = validate_rayjob(doc)
    assert error is not None and message in error, error


def _start(doc: dict[str, Any], group: dict[str, Any], head: bool) -> str:
    params = pods.start_params(
        group,
        head=head,
        fqdn=pods.head_fqdn("c-abcde"),
        autoscaling=bool(cluster_specs(doc).get("enableInTreeAutoscaling")),
    )
    return pods.start_command(params, head=head)


def test_ray_start_on_a_t4_pool() -> None:
    doc = load(K8S / "rayjob-tune.yaml")
    spec = cluster_specs(doc)
    head = shlex.split(_start(doc, spec["headGroupSpec"], head=True))
    assert head[:3] == ["ray", "start", "--head"]
    assert {"--num-cpus=0", "--dashboard-host=0.0.0.0", "--block", "--no-monitor"} <= set(head)
    assert f"--memory={4 * 2**30}" in head  # the head's memory limit
    worker = shlex.split(_start(doc, spec["workerGroupSpecs"][0], head=False))
    # num-gpus from the nvidia.com/gpu limit, the T4 tag from the group's resources map.
    assert {"--num-gpus=1", "--num-cpus=3", f"--memory={10 * 2**30}"} <= set(worker)
    assert '--resources={"accelerator_type:T4":1}' in worker
    assert "--address=c-abcde-head-svc.default.svc.cluster.local:6379" in worker


@pytest.mark.parametrize("path", KIND_JOBS, ids=ids(KIND_JOBS))
def test_ray_start_on_kind_gives_each_worker_a_fake_gpu(path: Path) -> None:
    doc = load(path)
    for group in cluster_specs(doc)["workerGroupSpecs"]:
        flags = set(shlex.split(_start(doc, group, head=False)))
        assert {"--num-gpus=1", "--num-cpus=1", '--resources={"accelerator_type:T4":1}'} <= flags


@pytest.mark.parametrize("path", ALL_RAY, ids=ids(ALL_RAY))
def test_no_manifest_shrinks_dev_shm_below_the_object_store(path: Path) -> None:
    """KubeRay's own /dev/shm is the memory limit; a volume of ours there would replace it."""
    doc = load(path)
    spec = cluster_specs(doc)
    for head, group in [(True, spec["headGroupSpec"])] + [
        (False, g) for g in spec["workerGroupSpecs"]
    ]:
        pod = group["template"]["spec"]
        params = pods.start_params(group, head=head, fqdn="x")
        shm = pods.dev_shm(pod, params)
        assert shm is not None and shm.size_bytes, "no sized /dev/shm"
        memory = int(params["memory"])
        # resolve_object_store_memory: 30% of the node's memory, capped at 95% of /dev/shm.
        wanted = memory * ray_constants.DEFAULT_OBJECT_STORE_MEMORY_PROPORTION
        assert shm.size_bytes * 0.95 >= wanted, (group.get("groupName", "head"), shm, wanted)


def test_a_small_shm_volume_of_our_own_would_cap_the_head() -> None:
    doc = copy.deepcopy(load(K8S / "rayjob-tune.yaml"))
    head = cluster_specs(doc)["headGroupSpec"]
    pod = head["template"]["spec"]
    pod["volumes"].append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}})
    pods.ray_container(pod)["volumeMounts"].append({"name": "dshm", "mountPath": "/dev/shm"})
    shm = pods.dev_shm(pod, {})
    assert shm == pods.Shm(2**30, added_by_kuberay=False)
    assert shm.size_bytes * 0.95 < 4 * 2**30 * ray_constants.DEFAULT_OBJECT_STORE_MEMORY_PROPORTION


@pytest.mark.parametrize("path", GPU_JOBS, ids=ids(GPU_JOBS))
def test_the_submitter_submits_the_stage_with_its_runtime_env(path: Path) -> None:
    doc = load(path)
    command = submitter.command(doc["spec"], cluster="c-abcde", job_id="j-fghij")
    assert command[:3] == ["/bin/bash", "-ce", "--"]
    words = shlex.split(command[3])
    address = "http://c-abcde-head-svc.default.svc.cluster.local:8265"
    submit = words.index("submit")
    assert words[submit - 2 : submit + 4] == [
        "ray",
        "job",
        "submit",
        "--address",
        address,
        "--no-wait",
    ]
    env_json = words[words.index("--runtime-env-json") + 1]
    assert json.loads(env_json) == yaml.safe_load(doc["spec"]["runtimeEnvYAML"])
    assert words[words.index("--submission-id") + 1] == "j-fghij"
    assert words[-4:] == ["--address", address, "--follow", "j-fghij"]
    stage = path.stem.removeprefix("rayjob-")
    entry = words.index("--", submit)
    assert words[entry + 1 : entry + 4] == ["python", "-m", f"jobs.{stage}"]


GO_VALIDATION = REPO.parent / "shared" / "kuberay-v1.7.0" / "src" / "validation.go"


def _go_formats() -> list[re.Pattern[str]]:
    """Every fmt.Errorf message of validation.go as a pattern (%s, %d, %v, %w: anything)."""
    text = GO_VALIDATION.read_text()
    formats = re.findall(r'fmt\.Errorf\(\s*"((?:[^"\\]|\\.)*)"', text)
    return [
        re.compile(".*".join(re.escape(part) for part in re.split(r"%[sdvwq]", f)) + "$")
        for f in formats
    ]


# validation.go's own refusals (the runtime env's comes from the dashboard client's YAML parser).
OWN = [(m, text) for m, text in REFUSALS if m is not _broken_runtime_env]


@pytest.mark.parametrize(("mutate", "message"), OWN, ids=[m.__name__ for m, _ in OWN])
def test_the_ports_messages_are_the_controllers_own(mutate, message: str) -> None:
    if not GO_VALIDATION.is_file():
        pytest.skip(f"{GO_VALIDATION} (KubeRay's source) is not beside the project")
    doc = copy.deepcopy(load(K8S / "kind" / "rayjob-tune.yaml"))
    mutate(doc)
    error = validate_rayjob(doc)
    assert error is not None
    # The message, less the spec-level prefix that wraps the cluster's errors, is one of the
    # Go source's own format strings filled in.
    inner = error.removeprefix("The RayJob spec is invalid: ")
    patterns = _go_formats()
    assert any(p.match(error) or p.match(inner) for p in patterns), error
