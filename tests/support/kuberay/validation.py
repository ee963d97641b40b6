"""The KubeRay v1.7.0 controller's checks of a RayJob and its cluster (validation.go).

`kubectl apply` accepts a RayJob that breaks these (the webhook checks metadata only); the
controller then writes jobDeploymentStatus ValidationFailed with the first error as the
message and never creates a cluster. Ported here are the rules that can apply to a RayJob
with an embedded rayClusterSpec in K8sJobMode and no feature gates (GCS fault tolerance,
deletion strategies, TLS, history server and network policies are not used by this
project, and a manifest using them is refused here so that a port is written first).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

MAX_RAYJOB_NAME = 47  # MaxRayJobNameLength: 53 (a cluster name) minus "-xxxxx"
MAX_RAYCLUSTER_NAME = 53
TOKEN_AUTH_MIN_RAY = (2, 52, 0)
_DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_LABEL_KEY = re.compile(
    r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
)
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
# What apimachinery's IsQualifiedName / IsValidLabelValue say, shortened (Go appends each).
_LABEL_KEY_RULE = "a qualified name: an optional DNS-subdomain prefix and '/', then a name part"
_LABEL_VALUE_RULE = "a valid label must be an empty string or consist of alphanumeric characters"
# apimachinery's IsDNS1035Label message, shortened (Go prints the list of problems).
_DNS_1035_RULE = "a DNS-1035 label must consist of lower case alphanumeric characters or '-'"
_RESOURCE_PARAMS = ("num-cpus", "num-gpus", "memory", "resources")
# Fields whose rules need a feature gate or a mode this port does not cover.
_NOT_PORTED = {
    "spec": ("deletionStrategy", "clusterSelector"),
    "rayClusterSpec": (
        "gcsFaultToleranceOptions",
        "historyServerOptions",
        "networkPolicy",
        "tlsOptions",
    ),
}


class Invalid(Exception):
    pass


def _version(text: str) -> tuple[int, ...] | None:
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+).*", text or "")
    return tuple(int(x) for x in match.groups()) if match else None


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: str(e.get("value", "")) for e in container.get("env", [])}


def validate_group_resources(group: dict[str, Any], name: str) -> None:
    """validateRayGroupResources: resource fields in rayStartParams and a group
    `resources` map exclude each other."""
    params = group.get("rayStartParams", {}) or {}
    if group.get("resources") and any(str(params.get(k, "")) for k in _RESOURCE_PARAMS):
        raise Invalid(
            f"resource fields should not be set in both rayStartParams and Resources for "
            f"{name} group; please use only one"
        )


def validate_group_labels(group: dict[str, Any], name: str) -> None:
    """validateRayGroupLabels: labels go in the group's `labels`, not in rayStartParams."""
    if "labels" in (group.get("rayStartParams", {}) or {}):
        raise Invalid(
            f"rayStartParams['labels'] is not supported for {name} group; please use the "
            "top-level Labels field instead"
        )
    problems = []
    for key, val in (group.get("labels") or {}).items():
        if not _LABEL_KEY.fullmatch(key):
            problems.append(
                f"invalid label key for {name} group: '{key}', error: {_LABEL_KEY_RULE}"
            )
        if not _LABEL_VALUE.fullmatch(str(val)) or len(str(val)) > 63:
            problems.append(
                f"invalid label value for key '{key}' in {name} group: '{val}', error: "
                f"{_LABEL_VALUE_RULE}"
            )
    if problems:
        raise Invalid("; ".join(problems))


def _unparsable(text: str) -> str:
    """The error apimachinery's version.ParseGeneric wraps (%w) for a bad version."""
    return f'could not parse "{text}" as version'


def _v2(spec: dict[str, Any], head_env: dict[str, str]) -> bool:
    """IsAutoscalingV2Enabled, or the head's RAY_enable_autoscaler_v2 set to exactly "1" or
    "true" (the Go code compares the string as it is)."""
    options = spec.get("autoscalerOptions") or {}
    enabled = bool(spec.get("enableInTreeAutoscaling")) and options.get("version") == "v2"
    return enabled or head_env.get("RAY_enable_autoscaler_v2") in ("1", "true")


def _version(text: str) -> tuple[int, ...] | None:
    parts = text.lstrip("v").split("-")[0].split("+")[0].split(".")
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else None


def validate_group_priority(
    group: dict[str, Any], name: str, spec: dict[str, Any], head_env: dict[str, str]
) -> None:
    """validateWorkerGroupPriority: a non-zero priority needs Ray 2.56.0+ and autoscaler v2."""
    priority = group.get("priority")
    if not priority:
        return
    ray = spec.get("rayVersion", "")
    if not ray:
        raise Invalid(
            f"worker group {name}: priority is set, but RayVersion was not specified. Ray "
            "version 2.56.0 or later is required"
        )
    parsed = _version(ray)
    if parsed is None:
        raise Invalid(
            f"worker group {name}: priority is set, but RayVersion format is invalid: {ray}, "
            f"{_unparsable(ray)}"
        )
    if parsed < (2, 56, 0):
        raise Invalid(
            f"worker group {name}: priority is set, but minimum Ray version is 2.56.0, got {ray}"
        )
    if not _v2(spec, head_env):
        raise Invalid(
            f"worker group {name}: priority is set to {priority}, but autoscaler v2 is not "
            "enabled. Priority is only supported with autoscaler v2 enabled"
        )


def validate_cluster_spec(spec: dict[str, Any]) -> None:
    """ValidateRayClusterSpec, in its order, for the fields this project can use."""
    for key in _NOT_PORTED["rayClusterSpec"]:
        if key in spec:
            raise Invalid(f"{key}: not ported to tests/support/kuberay/validation.py yet")
    head = spec["headGroupSpec"]
    head_containers = head["template"]["spec"].get("containers", [])
    if not head_containers:
        raise Invalid("headGroupSpec should have at least one container")
    validate_group_resources(head, "Head")
    validate_group_labels(head, "Head")
    autoscaling = bool(spec.get("enableInTreeAutoscaling"))
    head_env = _env(head_containers[0])
    for group in spec.get("workerGroupSpecs", []) or []:
        name = group["groupName"]
        if not group["template"]["spec"].get("containers"):
            raise Invalid("workerGroupSpec should have at least one container")
        low, high = group.get("minReplicas", 0), group.get("maxReplicas", 2**31 - 1)
        if low < 0:
            raise Invalid(f"worker group {name} has negative minReplicas {low}")
        if high < 0:
            raise Invalid(f"worker group {name} has negative maxReplicas {high}")
        if low > high:
            raise Invalid(
                f"worker group {name} has minReplicas {low} greater than maxReplicas {high}"
            )
        validate_group_resources(group, name)
        validate_group_labels(group, name)
        # validateWorkerGroupIdleTimeout
        idle = group.get("idleTimeoutSeconds")
        if idle is not None:
            if idle < 0:
                raise Invalid(
                    f"worker group {name}: idleTimeoutSeconds must be non-negative, got {idle}"
                )
            if not _v2(spec, head_env):
                raise Invalid(
                    f"worker group {name}: idleTimeoutSeconds is set, but autoscaler v2 is not "
                    "enabled. Please set .spec.autoscalerOptions.version to 'v2' (or set "
                    "RAY_enable_autoscaler_v2 environment variable to 'true' in the head pod if "
                    "using KubeRay < 1.4.0)"
                )
        validate_group_priority(group, name, spec, head_env)
        if group.get("suspend"):
            raise Invalid(
                f"worker group {name} can be suspended only when the RayJobDeletionPolicy feature "
                f"gate is enabled"
            )
    if "RAY_REDIS_ADDRESS" in head_env:
        raise Invalid(
            "RAY_REDIS_ADDRESS is set which implicitly enables GCS fault tolerance, but "
            "GcsFaultToleranceOptions is not set. Please set GcsFaultToleranceOptions to enable "
            "GCS fault tolerance"
        )
    params = head.get("rayStartParams", {}) or {}
    if "redis-username" in params or "REDIS_USERNAME" in head_env:
        raise Invalid(
            "cannot set redis username in rayStartParams or environment variables - use "
            "GcsFaultToleranceOptions.RedisUsername instead"
        )
    v2_env = head_env.get("RAY_enable_autoscaler_v2")
    if not autoscaling and v2_env in ("1", "true"):  # exactly these two, as in Go
        raise Invalid(
            f"environment variable RAY_enable_autoscaler_v2 cannot be set to '{v2_env}' when "
            "enableInTreeAutoscaling is false. Please set enableInTreeAutoscaling: true to use "
            "autoscaler v2"
        )
    options = spec.get("autoscalerOptions", {}) or {}
    if autoscaling and "version" in options and v2_env is not None:
        raise Invalid(
            "both .spec.autoscalerOptions.version and head Pod env var RAY_enable_autoscaler_v2 "
            "are set, please only use the former"
        )
    if options.get("idleTimeoutSeconds", 0) < 0:
        raise Invalid(
            f"autoscalerOptions.idleTimeoutSeconds must be non-negative, got "
            f"{options['idleTimeoutSeconds']}"
        )
    if any(e["name"] == "KUBERAY_GEN_AUTOSCALER_START_CMD" for e in options.get("env", [])):
        raise Invalid(
            "autoscalerOptions.env must not contain KUBERAY_GEN_AUTOSCALER_START_CMD: it is "
            "managed by KubeRay and injected automatically into the autoscaler container"
        )
    auth = spec.get("authOptions", {}) or {}
    if auth.get("mode", "disabled") == "token":  # IsAuthEnabled
        version = spec.get("rayVersion", "")
        if not version:
            raise Invalid(
                "authOptions.mode is 'token' but RayVersion was not specified. Ray version "
                "2.52.0 or later is required"
            )
        parsed = _version(version)
        if parsed is None:
            raise Invalid(
                f"authOptions.mode is 'token' but RayVersion format is invalid: {version}, "
                f"{_unparsable(version)}"
            )
        if parsed < TOKEN_AUTH_MIN_RAY:
            raise Invalid(
                f"authOptions.mode is 'token' but minimum Ray version is 2.52.0, got {version}"
            )


def validate_rayjob(doc: dict[str, Any]) -> str | None:
    """validateRayJob: ValidateRayJobMetadata then ValidateRayJobSpec. Returns the message
    the controller would write with ValidationFailed, or None when it accepts the RayJob."""
    name = doc.get("metadata", {}).get("name", "")
    if len(name) > MAX_RAYJOB_NAME:
        return (
            f"The RayJob metadata is invalid: RayJob name should be no more than "
            f"{MAX_RAYJOB_NAME} characters"
        )
    if not _DNS_1035.fullmatch(name) or len(name) > 63:
        return (
            "The RayJob metadata is invalid: RayJob name should be a valid DNS1035 label: "
            f"[{_DNS_1035_RULE}]"
        )
    spec = doc.get("spec", {})
    prefix = "The RayJob spec is invalid: "
    for key in _NOT_PORTED["spec"]:
        if key in spec:
            return prefix + f"{key}: not ported to tests/support/kuberay/validation.py yet"
    shutdown = bool(spec.get("shutdownAfterJobFinishes"))
    # Kueue's webhook sets suspend on a queued RayJob; KubeRay then deletes the cluster on
    # every suspension, so it must own it (clusterSelector is not ported: refused above).
    if spec.get("suspend") and not shutdown:
        return (
            prefix + "a RayJob with shutdownAfterJobFinishes set to false is not allowed to "
            "be suspended"
        )
    ttl = spec.get("ttlSecondsAfterFinished", 0)
    if ttl < 0:
        return prefix + "TTLSecondsAfterFinished must be a non-negative integer"
    if not shutdown and ttl > 0:
        return (
            prefix + "a RayJob with shutdownAfterJobFinishes set to false cannot have "
            "TTLSecondsAfterFinished"
        )
    if "rayClusterSpec" not in spec:
        return prefix + "one of RayClusterSpec or ClusterSelector must be set"
    mode = spec.get("submissionMode", "K8sJobMode")
    if mode == "InteractiveMode" and spec.get("backoffLimit", 0) > 0:
        return prefix + "BackoffLimit is incompatible with InteractiveMode"
    if mode == "SidecarMode" and "submitterPodTemplate" in spec:
        return "Currently, SidecarMode doesn't support SubmitterPodTemplate"  # no prefix in Go
    if (spec["rayClusterSpec"].get("authOptions") or {}).get("enableK8sTokenAuth"):
        return prefix + "K8s token auth mode is currently not supported for RayJob"
    try:
        validate_cluster_spec(spec["rayClusterSpec"])
    except Invalid as err:
        return prefix + str(err)
    runtime_env = spec.get("runtimeEnvYAML", "")
    if runtime_env:
        try:
            parsed = yaml.safe_load(runtime_env)
        except yaml.YAMLError as err:
            return f"failed to unmarshal RuntimeEnvYAML: {err}"
        if parsed is not None and not isinstance(parsed, dict):
            return "failed to unmarshal RuntimeEnvYAML: not a mapping"
    if "activeDeadlineSeconds" in spec and spec["activeDeadlineSeconds"] <= 0:
        return prefix + "activeDeadlineSeconds must be a positive integer"
    if "preRunningDeadlineSeconds" in spec and spec["preRunningDeadlineSeconds"] <= 0:
        return prefix + "preRunningDeadlineSeconds must be a positive integer"
    if spec.get("backoffLimit", 0) < 0:
        return prefix + "backoffLimit must be a positive integer"
    return None


def validate_raycluster(doc: dict[str, Any]) -> str | None:
    """ValidateRayClusterMetadata + ValidateRayClusterSpec for a standalone RayCluster."""
    name = doc.get("metadata", {}).get("name", "")
    if len(name) > MAX_RAYCLUSTER_NAME:
        return f"RayCluster name should be no more than {MAX_RAYCLUSTER_NAME} characters"
    if not _DNS_1035.fullmatch(name):
        return f"RayCluster name should be a valid DNS1035 label: [{_DNS_1035_RULE}]"
    try:
        validate_cluster_spec(doc["spec"])
    except Invalid as err:
        return str(err)
    return None
