"""How KubeRay v1.7.0 turns a group spec into a Ray container (pod.go, service.go).

Ported, not copied: the rules below restate what the named Go functions do.
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass
from typing import Any

KUBERAY_VERSION = "v1.7.0"
NAMESPACE = "default"
CLUSTER_DOMAIN = "cluster.local"  # the operator's CLUSTER_DOMAIN default
DEFAULT_HEAD_PORT = "6379"  # GetHeadPort
DASHBOARD_PORT = 8265
SHM_VOLUME = "shared-mem"
# convertParamMap renders these as --key=value always (other booleans: bare flag or nothing).
KEEP_FALSE = {"log-color", "include-dashboard", "include-log-monitor"}
_MIG = re.compile(r"nvidia\.com/mig-\d+g\.\d+gb$")
_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_UNITS = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_UNITS |= {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(q: str | int | float) -> float:
    """A Kubernetes quantity ("500m", "3Gi", 2) as a number."""
    match = _QUANTITY.match(str(q))
    if not match or match.group(2) not in _UNITS:
        raise ValueError(f"not a Kubernetes quantity: {q!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def value(q: str | int | float) -> int:
    """resource.Quantity.Value(): the quantity as an integer, rounded up."""
    return math.ceil(quantity(q) - 1e-9)


def is_gpu_key(key: str) -> bool:
    """IsGPUResourceKey: a key ending in "gpu", or an NVIDIA MIG profile."""
    key = key.lower()
    return key.endswith("gpu") or bool(_MIG.fullmatch(key))


def _go_number(number: float) -> int | float:
    return int(number) if float(number).is_integer() else number


def head_port(group: dict[str, Any]) -> str:
    return str(group.get("rayStartParams", {}).get("port", DEFAULT_HEAD_PORT))


def head_service(cluster: str) -> str:
    """GenerateHeadServiceName: the head Service every pod and the submitter use."""
    return f"{cluster}-head-svc"


def head_fqdn(cluster: str) -> str:
    """GenerateFQDNServiceName: <service>.<namespace>.svc.<cluster domain>."""
    return f"{head_service(cluster)}.{NAMESPACE}.svc.{CLUSTER_DOMAIN}"


def ray_container(pod: dict[str, Any]) -> dict[str, Any]:
    """KubeRay treats the first container of a group's pod template as the Ray container."""
    return pod["containers"][0]


def start_params(
    group: dict[str, Any],
    *,
    head: bool,
    fqdn: str,
    port: str = DEFAULT_HEAD_PORT,
    autoscaling: bool = False,
) -> dict[str, str]:
    """The `ray start` parameters of one group, as DefaultHeadPodTemplate /
    DefaultWorkerPodTemplate and generateRayStartCommand derive them."""
    params = {k: str(v) for k, v in group.get("rayStartParams", {}).items()}
    container = ray_container(group["template"]["spec"])
    # updateRayStartParamsResources: the group `resources` map wins over everything.
    custom: dict[str, int | float] = {}
    for key, raw in group.get("resources", {}).items():
        try:
            amount = quantity(raw)
        except ValueError:
            continue  # ParseQuantity failed: the entry is skipped
        if key.lower() == "cpu":
            params["num-cpus"] = str(value(raw))
        elif key.lower() == "memory":
            params["memory"] = str(value(raw))
        elif is_gpu_key(key):
            params["num-gpus"] = str(value(raw))
        else:
            custom[key] = _go_number(amount)
    if custom:
        params["resources"] = "'" + json.dumps(custom, sort_keys=True, separators=(",", ":")) + "'"
    # updateRayStartParamsLabels
    if group.get("labels"):
        params["labels"] = ",".join(f"{k}={v}" for k, v in sorted(group["labels"].items()))
    # setMissingRayStartParams
    if head:
        params.setdefault("dashboard-host", "0.0.0.0")
        if autoscaling:
            params["no-monitor"] = "true"
    else:
        params.setdefault("address", f"{fqdn}:{port}")  # the head group's port (GetHeadPort)
    params.setdefault("metrics-export-port", "8080")
    params["block"] = "true"
    params.setdefault("dashboard-agent-listen-port", "52365")
    # generateRayStartCommand: what is still missing comes from the container's resources.
    resources = container.get("resources", {})
    limits, requests = resources.get("limits", {}), resources.get("requests", {})
    if "num-cpus" not in params:
        cpu = limits.get("cpu") or requests.get("cpu")
        if cpu and value(cpu) > 0:
            params["num-cpus"] = str(value(cpu))
    if "memory" not in params and limits.get("memory"):
        params["memory"] = str(value(limits["memory"]))
    if "num-gpus" not in params:  # addWellKnownAcceleratorResources: limits only, sorted keys
        for key in sorted(limits):
            if is_gpu_key(key) and value(limits[key]) > 0:
                params["num-gpus"] = str(value(limits[key]))
                break
    return params


def start_command(params: dict[str, str], *, head: bool) -> str:
    """convertParamMap + generateRayStartCommand: sorted flags, bare flags for true."""
    flags = ""
    for key in sorted(params):
        raw = params[key]
        if key in KEEP_FALSE:  # always --key=value, "true" included
            flags += f" --{key}={raw} "
        elif raw.lower() == "true":
            flags += f" --{key} "
        elif raw.lower() != "false":  # "false" drops the flag
            flags += f" --{key}={raw} "
    return ("ray start --head " if head else "ray start ") + flags


def container_args(command: str) -> list[str]:
    """BuildPod: the Ray container runs `bash -c` with the ulimit, then `ray start`."""
    return [
        "/bin/bash",
        "-c",
        "--",
        f"ulimit -n ${{RAY_START_ULIMIT_OPEN_FILES:-65536}}; {command}",
    ]


def wait_gcs_ready(fqdn: str, port: str) -> list[str]:
    """The worker's `wait-gcs-ready` init container (DefaultWorkerPodTemplate), shortened to
    its effect: poll `ray health-check` every 5 s until the head's GCS answers."""
    script = (
        "SECONDS=0; while true; do "
        f"if ray health-check --address {fqdn}:{port} > /dev/null 2>&1; then "
        'echo "GCS is ready."; break; fi; '
        'echo "$SECONDS seconds elapsed: Waiting for GCS to be ready."; sleep 5; done'
    )
    return ["/bin/bash", "-c", "--", script]


def container_env(
    user: dict[str, str],
    *,
    cluster: str,
    group: str,
    pod: str,
    head: bool,
    fqdn: str,
    port: str,
    command: str,
    token: str | None,
) -> dict[str, str]:
    """The Ray container's environment: the user's, then what KubeRay adds
    (SetContainerTokenAuthEnvVars, setContainerEnvVars). Some are set only when the user
    has not set them; the others are appended, and the last duplicate wins. fieldRefs are
    resolved to their values here."""
    env = dict(user)
    if token is not None:
        env.setdefault("RAY_AUTH_MODE", "token")
        env.setdefault("RAY_AUTH_TOKEN", token)
    if not head:
        env |= {"FQ_RAY_IP": fqdn, "RAY_IP": fqdn.split(".")[0]}
    env |= {
        "RAY_CLUSTER_NAME": cluster,
        "RAY_CLUSTER_NAMESPACE": NAMESPACE,
        "RAY_CLOUD_INSTANCE_ID": pod,
        "RAY_NODE_TYPE_NAME": group,
        "KUBERAY_GEN_RAY_START_CMD": command,
    }
    env.setdefault("RAY_PORT", port)
    env.setdefault("RAY_ADDRESS", f"127.0.0.1:{port}" if head else f"{fqdn}:{port}")
    env.setdefault("RAY_USAGE_STATS_KUBERAY_IN_USE", "1")
    if head:
        env["RAY_USAGE_STATS_EXTRA_TAGS"] = f"kuberay_version={KUBERAY_VERSION};kuberay_crd=RayJob"
    env.setdefault("RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE", "1")
    return env


@dataclass(frozen=True)
class Shm:
    """/dev/shm of a Ray container: KubeRay's own volume, or the user's."""

    size_bytes: int | None  # None: memory-backed with no limit
    added_by_kuberay: bool


def dev_shm(pod: dict[str, Any], params: dict[str, str]) -> Shm | None:
    """addEmptyDir / findMemoryReqOrLimit in BuildPod: a memory-backed emptyDir at /dev/shm,
    sized to the container's whole memory limit (else its request), unless the container
    already mounts something there or `plasma-directory` is set (then None or the user's)."""
    container = ray_container(pod)
    if "plasma-directory" in params:
        return None
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    if "/dev/shm" in mounts:
        volume = next(v for v in pod.get("volumes", []) if v["name"] == mounts["/dev/shm"])
        limit = volume.get("emptyDir", {}).get("sizeLimit")
        return Shm(value(limit) if limit else None, added_by_kuberay=False)
    resources = container.get("resources", {})
    memory = resources.get("limits", {}).get("memory") or resources.get("requests", {}).get(
        "memory"
    )
    return Shm(value(memory) if memory else None, added_by_kuberay=True)


def labels(
    template: dict[str, Any],
    *,
    cluster: str,
    group: str,
    head: bool,
    group_labels: dict[str, str] | None = None,
) -> dict[str, str]:
    """labelPod: the template's labels, then KubeRay's (which users cannot override for
    cluster, node-type and group)."""
    out = dict(template.get("metadata", {}).get("labels", {}))
    out |= group_labels or {}  # mergeLabels: the group's `labels` on top of the template's
    kuberay = {
        "ray.io/is-ray-node": "yes",
        "ray.io/identifier": f"{cluster}-{'head' if head else 'worker'}",
        "app.kubernetes.io/name": "kuberay",
        "app.kubernetes.io/created-by": "kuberay-operator",
    }
    for key, val in kuberay.items():
        out.setdefault(key, val)
    out |= {
        "ray.io/cluster": cluster,
        "ray.io/node-type": "head" if head else "worker",
        "ray.io/group": "headgroup" if head else group,
    }
    return out


INIT_RESOURCES = {"cpu": "200m", "memory": "256Mi"}  # DefaultWorkerPodTemplate's init container


def _add_shm(pod: dict[str, Any], params: dict[str, str]) -> None:
    """The shared-mem volume BuildPod adds when the Ray container has no /dev/shm mount."""
    shm = dev_shm(pod, params)
    if shm is None or not shm.added_by_kuberay:
        return
    size = {"sizeLimit": str(shm.size_bytes)} if shm.size_bytes else {}
    pod.setdefault("volumes", []).append(
        {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", **size}}
    )
    mounts = ray_container(pod).setdefault("volumeMounts", [])
    mounts.append({"name": SHM_VOLUME, "mountPath": "/dev/shm"})


def cluster_pods(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The pods KubeRay creates from a RayCluster or RayJob, as Pod manifests: the head with
    the autoscaler sidecar when autoscaling is on (BuildAutoscalerContainer), each worker
    group with its wait-gcs-ready init container, which copies the Ray container's security
    context (DefaultWorkerPodTemplate), and a RayJob's submitter; with KubeRay's labels."""
    spec = doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]
    cluster = doc["metadata"]["name"] + ("-xxxxx" if doc["kind"] == "RayJob" else "")

    def pod(name: str, template: dict[str, Any], pod_labels: dict[str, str]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": pod_labels},
            "spec": copy.deepcopy(template["spec"]),
        }

    def group_pod(name: str, group: dict[str, Any], group_name: str, head: bool) -> dict[str, Any]:
        template = group["template"]
        pod_labels = labels(
            template, cluster=cluster, group=group_name, head=head, group_labels=group.get("labels")
        )
        return pod(name, template, pod_labels)

    head_group = spec["headGroupSpec"]
    head = group_pod(f"{cluster}-head", head_group, "headgroup", head=True)
    if spec.get("enableInTreeAutoscaling"):
        # BuildAutoscalerContainer (500m/512Mi unless autoscalerOptions.resources), and the
        # ray-logs emptyDir BuildPod mounts at /tmp/ray in the head and the autoscaler.
        options = spec.get("autoscalerOptions", {})
        default = {"cpu": "500m", "memory": "512Mi"}
        logs = {"name": "ray-logs", "mountPath": "/tmp/ray"}
        head["spec"]["containers"].append(
            {
                "name": "autoscaler",
                "image": ray_container(head["spec"])["image"],
                "resources": options.get("resources", {"requests": default, "limits": default}),
                "securityContext": options.get("securityContext", {}),
                "volumeMounts": [logs],
            }
        )
        ray_container(head["spec"]).setdefault("volumeMounts", []).append(logs)
        head["spec"].setdefault("volumes", []).append({"name": "ray-logs", "emptyDir": {}})
    _add_shm(head["spec"], start_params(head_group, head=True, fqdn=""))
    out = {"head": head}
    for group in spec.get("workerGroupSpecs", []):
        name = group["groupName"]
        worker = group_pod(f"{cluster}-{name}-worker", group, name, head=False)
        ray = ray_container(worker["spec"])
        fqdn = head_fqdn(cluster)
        init = {  # wait-gcs-ready: a copy of the Ray container's user settings
            "name": "wait-gcs-ready",
            "image": ray["image"],
            "resources": {"limits": INIT_RESOURCES, "requests": INIT_RESOURCES},
            "securityContext": copy.deepcopy(ray.get("securityContext", {})),
            "volumeMounts": copy.deepcopy(ray.get("volumeMounts", [])),
            "env": [
                *copy.deepcopy(ray.get("env", [])),
                {"name": "FQ_RAY_IP", "value": fqdn},
                {"name": "RAY_IP", "value": fqdn.split(".")[0]},
            ],
        }
        worker["spec"]["initContainers"] = [*worker["spec"].get("initContainers", []), init]
        _add_shm(worker["spec"], start_params(group, head=False, fqdn=fqdn))
        out[f"worker-{name}"] = worker
    if doc["kind"] == "RayJob":
        template = doc["spec"]["submitterPodTemplate"]
        submitter_labels = {
            **template.get("metadata", {}).get("labels", {}),
            "ray.io/originated-from-cr-name": doc["metadata"]["name"],
            "ray.io/originated-from-crd": "RayJob",
            "app.kubernetes.io/created-by": "kuberay-operator",
        }
        out["submitter"] = pod(doc["metadata"]["name"] + "-submitter", template, submitter_labels)
    return out
