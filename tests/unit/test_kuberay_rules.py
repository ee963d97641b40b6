"""Our manifests under KubeRay v1.7.0's own rules (tests/support/kuberay/, each citing its Go
function): what the controller accepts, the `ray start` and submitter commands it builds
from them, and the /dev/shm it gives each Ray container."""

from __future__ import annotations

import copy
import json
import shlex
from pathlib import Path
from typing import Any

import pytest
from ray.dashboard.modules.dashboard_sdk import parse_runtime_env_args
from ray.runtime_env import RuntimeEnv

from jobs import registry, smoke
from jobs.core.reading import env_names
from jobs.core.settings import Setting, Settings, settings_fields
from tests.support import ray_memory, runs
from tests.support.kuberay import go_messages, pods, submitter
from tests.support.kuberay.validation import validate_raycluster, validate_rayjob
from tests.support.manifests import (
    ALL_RAY,
    GPU_JOBS,
    K8S,
    KIND_JOBS,
    SHARED,
    VALUES,
    cluster_specs,
    docs,
    groups,
    ids,
    real_gpus,
    variant_of,
)
from tests.support.ray_memory import SHM


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


def _ray_pods(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, str]]]:
    """Each Ray pod as KubeRay builds it from the manifest (with the /dev/shm it adds):
    (group, pod spec, `ray start` parameters)."""
    spec = cluster_specs(doc)
    built = pods.cluster_pods(doc)
    out = [
        (
            "head",
            built["head"]["spec"],
            pods.start_params(spec["headGroupSpec"], head=True, fqdn="x"),
        )
    ]
    for group in spec["workerGroupSpecs"]:
        name = group["groupName"]
        params = pods.start_params(group, head=False, fqdn="x")
        out.append((name, built[f"worker-{name}"]["spec"], params))
    return out


def _shm_shortfalls(doc: dict[str, Any]) -> dict[str, str]:
    """The Ray pods whose /dev/shm cannot hold the object store Ray takes there (Ray then
    puts the store on disk, or refuses to start): group -> why."""
    short = {}
    for name, pod, params in _ray_pods(doc):
        memory_backed, shm = ray_memory.shm_bytes(pod)
        limit = ray_memory.memory_limit(pod)
        store = ray_memory.object_store_bytes(params, limit, shm)
        if not memory_backed:
            short[name] = "no memory-backed /dev/shm"
        elif shm is not None and shm < store:
            short[name] = f"/dev/shm {shm} B < object store {store} B (memory limit {limit} B)"
    return short


@pytest.mark.parametrize("path", ALL_RAY, ids=ids(ALL_RAY))
def test_no_manifest_shrinks_dev_shm_below_the_object_store(path: Path) -> None:
    """KubeRay's own /dev/shm is the memory limit; a volume of ours there would replace it."""
    doc = load(path)
    assert len(_ray_pods(doc)) >= 2  # the head and at least one worker group
    assert _shm_shortfalls(doc) == {}


def _old_two_gib_shm(doc: dict[str, Any]) -> None:
    """The dshm volume the first manifests mounted on every Ray container (ebd330b)."""
    volume = {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}
    for group in groups(cluster_specs(doc)):
        pod = group["template"]["spec"]
        container = pods.ray_container(pod)
        # New lists: the groups share theirs (YAML anchors load as one object).
        pod["volumes"] = [*pod["volumes"], volume]
        container["volumeMounts"] = [*container["volumeMounts"], {"name": "dshm", "mountPath": SHM}]


def test_the_old_two_gib_shm_volume_would_have_starved_the_t4_worker() -> None:
    doc = copy.deepcopy(load(K8S / "rayjob-tune.yaml"))
    _old_two_gib_shm(doc)
    for _, pod, _ in _ray_pods(doc):  # ours replaces KubeRay's: one /dev/shm, 2 GiB
        mounts = [m for m in pods.ray_container(pod)["volumeMounts"] if m["mountPath"] == SHM]
        assert [m["name"] for m in mounts] == ["dshm"]
        assert ray_memory.shm_bytes(pod) == (True, 2 * 2**30)
    # The head's 4 GiB limit makes a 1.2 GiB store, which fits; the T4 worker's 10 GiB makes
    # a 3 GiB one, which does not (Ray's cap is 10 GB at least, so nothing shrinks it).
    short = _shm_shortfalls(doc)
    assert set(short) == {"t4"}, short
    assert "object store 3221225472 B" in short["t4"], short


def _settings_by_env(stage: str) -> dict[str, tuple[str, Setting, bool]]:
    """Environment variable -> (field, its Setting, whether it is a stage option)."""
    options = registry.load(stage).options
    out = {s.env: (f.name, s, False) for f, s in settings_fields(Settings) if s.env}
    if options is not None:
        out |= {s.env: (f.name, s, True) for f, s in settings_fields(options) if s.env}
    return out


def _driver_env(doc: dict[str, Any], runtime_env: dict[str, Any]) -> dict[str, str]:
    """The environment the stage's driver starts with: the head's Ray container (the
    manifest's env plus what KubeRay adds, setContainerEnvVars), then the job's env_vars on
    top. Ray 2.60 runs the JobSupervisor actor in the job's runtime env
    (JobManager._get_supervisor_runtime_env; RuntimeEnvContext sets env_vars) and starts the
    entrypoint with a copy of that actor's environment (JobSupervisor.run)."""
    head = pods.ray_container(cluster_specs(doc)["headGroupSpec"]["template"]["spec"])
    user = {e["name"]: e["value"] for e in head.get("env", []) if "value" in e}
    fqdn = pods.head_fqdn("c-abcde")
    env = pods.container_env(
        user,
        cluster="c-abcde",
        group="headgroup",
        pod="c-abcde-head",
        head=True,
        fqdn=fqdn,
        port=pods.DEFAULT_HEAD_PORT,
        command="ray start --head",
        token="t0ken",
    )
    return {**env, **(runtime_env.get("env_vars") or {})}


STAGE_JOBS = [p for p in GPU_JOBS + KIND_JOBS if p.stem != f"rayjob-{smoke.NAME}"]
SMOKE_JOBS = [p for p in GPU_JOBS + KIND_JOBS if p.stem == f"rayjob-{smoke.NAME}"]


@pytest.mark.parametrize("path", SMOKE_JOBS, ids=ids(SMOKE_JOBS))
def test_the_smoke_driver_gets_its_variant_and_the_clusters_settings(path: Path) -> None:
    """make smoke's RayJob: the submitter runs jobs.smoke, whose driver reads its variant
    (make manifests COLD_START applies a report to it), the volume, the GPU model and the
    cold-start wait from what the head and the runtime env give it."""
    doc = load(path)
    variant = variant_of(path)
    values = VALUES[variant]
    words = shlex.split(submitter.command(doc["spec"], cluster="c", job_id="j")[3])
    assert words[words.index("--", words.index("submit")) + 1 :][:3] == [
        "python",
        "-m",
        smoke.MODULE,
    ]
    parsed = parse_runtime_env_args(runtime_env_json=words[words.index("--runtime-env-json") + 1])
    env = _driver_env(doc, RuntimeEnv(**parsed))
    settings = smoke.read_settings(env)
    assert settings.variant == variant and settings.skip == {}
    assert settings.storage_dir == Path(SHARED) / smoke.NAME
    assert settings.accelerator_type == values["worker"]["accelerator_type"]
    if real_gpus(variant):
        assert settings.gpu_wait_s == values["cold_start_s"]["t4"]


@pytest.mark.parametrize("path", STAGE_JOBS, ids=ids(STAGE_JOBS))
def test_the_submitter_submits_the_stage_with_its_runtime_env(path: Path) -> None:
    doc = load(path)
    values = VALUES[variant_of(path)]
    stage = path.stem.removeprefix("rayjob-")
    # BuildJobSubmitCommand (job.go), K8sJobMode: getRuntimeEnvJson turns runtimeEnvYAML
    # into JSON (sigs.k8s.io/yaml YAMLToJSON), passed strconv.Quote'd as --runtime-env-json.
    command = submitter.command(doc["spec"], cluster="c-abcde", job_id="j-fghij")
    assert command[:3] == ["/bin/bash", "-ce", "--"]
    words = shlex.split(command[3])  # the words bash hands to `ray job submit`
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
    assert words[words.index("--submission-id") + 1] == "j-fghij"
    assert words[-4:] == ["--address", address, "--follow", "j-fghij"]
    entry = words.index("--", submit)
    assert words[entry + 1 :] == [
        *["python", "-m", registry.STAGES[stage]],
        ";",
        "fi",
        ";",
        *["ray", "job", "logs", "--address", address, "--follow", "j-fghij"],
    ]
    # What `ray job submit` makes of the argument (its own parser), checked as the job
    # manager checks a runtime env (env_vars must be a Dict[str, str]).
    parsed = parse_runtime_env_args(runtime_env_json=words[words.index("--runtime-env-json") + 1])
    runtime_env = RuntimeEnv(**parsed)
    # The variant's settings for this stage, exactly: the values file, not the manifest.
    assert (runtime_env.get("env_vars") or {}) == values["env_vars"]
    env = _driver_env(doc, runtime_env)
    resolved = runs.settings(stage, env=env)
    every_stage = {name for s in registry.names() for name in env_names(registry.load(s))}
    reads = set(env_names(registry.load(stage)))
    declared = _settings_by_env(stage)
    for name, raw in values["env_vars"].items():
        assert name in every_stage, f"{name} is no setting of any stage"
        if name not in reads:
            continue  # another stage's (the baseline runs no search)
        field, setting, option = declared[name]
        got = getattr(resolved.options if option else resolved, field)
        assert got == setting.parse(raw, name), (name, raw, got)
    # The cluster-wide settings the containers carry reach the driver too.
    assert resolved.storage_path == SHARED
    assert resolved.accelerator == "gpu"
    assert resolved.accelerator_type == values["worker"]["accelerator_type"]
    if real_gpus(variant_of(path)):  # a cold T4 node from zero, the driver's wait for it
        assert resolved.gpu_wait_s == values["cold_start_s"]["t4"]


# validation.go's own refusals (the runtime env's comes from the dashboard client's YAML parser).
OWN = [(m, text) for m, text in REFUSALS if m is not _broken_runtime_env]


@pytest.mark.parametrize(("mutate", "message"), OWN, ids=[m.__name__ for m, _ in OWN])
def test_the_ports_messages_are_the_controllers_own(mutate, message: str) -> None:
    doc = copy.deepcopy(load(K8S / "kind" / "rayjob-tune.yaml"))
    mutate(doc)
    error = validate_rayjob(doc)
    assert error is not None
    # The message, less the spec-level prefix that wraps the cluster's errors, is one of the
    # Go source's own format strings filled in.
    inner = error.removeprefix("The RayJob spec is invalid: ")
    formats = json.loads(go_messages.MESSAGES.read_text())["formats"]
    patterns = [go_messages.as_pattern(f) for f in formats]
    assert any(p.match(error) or p.match(inner) for p in patterns), error


def test_every_message_of_the_port_is_one_of_validation_gos() -> None:
    # validation_messages.json holds validation.go's format strings (go_messages.py), so
    # this runs wherever the project does; each port message must fill one of them in.
    formats = json.loads(go_messages.MESSAGES.read_text())["formats"]
    # Formats that are mostly verbs ("%s", "%s: %w") would match anything: not messages.
    worded = [f for f in formats if len(go_messages.words(f)) >= 12]
    patterns = [go_messages.as_pattern(f) for f in worded]
    messages = go_messages.port_messages()
    assert len(messages) >= 30  # the extraction found the port's messages
    strays = [
        (line, message)
        for line, message in messages
        if not message.startswith(go_messages.NOT_VALIDATION_GO)
        and not any(p.match(message) for p in patterns)
    ]
    assert strays == [], "port messages that are not KubeRay's own:\n" + "\n".join(
        f"validation.py:{line}: {message}" for line, message in strays
    )


def test_the_message_list_is_validation_gos_own() -> None:
    if not go_messages.GO_SOURCE.is_file():
        pytest.skip(f"{go_messages.GO_SOURCE} is not beside the project; the JSON stands")
    assert json.loads(go_messages.MESSAGES.read_text()) == go_messages.snapshot()
