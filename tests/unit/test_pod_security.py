"""Least privilege: every pod the project makes Kubernetes run, assembled the way KubeRay
assembles it (the autoscaler sidecar beside the head, the wait-gcs-ready init container
before each worker), meets Pod Security Standards "restricted"; tokens are mounted only
where the API is called; the NetworkPolicy selects exactly those pods."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.support.kuberay import pods
from tests.support.manifests import (
    ALL_RAY,
    K8S,
    KUBERNETES_VERSION,
    READERS,
    VARIANTS,
    cluster_specs,
    docs,
    folder,
)
from tests.support.pod_security import violations


def kuberay_pods(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Pod specs by role, as KubeRay builds them (tests/support/kuberay/pods.cluster_pods)."""
    return {role: pod["spec"] for role, pod in pods.cluster_pods(doc).items()}


def preflight_writer() -> dict[str, Any]:
    from jobs.kube import preflight as module

    # The pod preflight creates: built from the head of the default variant's RayCluster.
    return module._writer_pod(yaml.safe_load((K8S / "raycluster.yaml").read_text()), 100)


def all_pods() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in ALL_RAY:
        (doc,) = docs(path)
        for role, pod in kuberay_pods(doc).items():
            found.append((f"{path.relative_to(K8S)} {role}", pod))
    for reader in READERS:
        found.append((str(reader.relative_to(K8S)), yaml.safe_load(reader.read_text())["spec"]))
    found.append(("preflight writer", preflight_writer()["spec"]))
    return found


PODS = all_pods()


@pytest.mark.parametrize(("name", "pod"), PODS, ids=[n for n, _ in PODS])
def test_every_pod_meets_pod_security_restricted(name: str, pod: dict[str, Any]) -> None:
    assert violations(pod) == []


def test_the_check_catches_what_restricted_forbids() -> None:
    (doc,) = docs(K8S / "rayjob-tune.yaml")
    pod = copy.deepcopy(kuberay_pods(doc)["head"])
    del pod["securityContext"]["seccompProfile"]
    pod["containers"][0]["securityContext"]["capabilities"] = {"add": ["SYS_ADMIN"]}
    pod["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    found = "\n".join(violations(pod))
    for expected in ("seccompProfile is None", "beyond baseline", "hostPath", "do not drop ALL"):
        assert expected in found, found


@pytest.mark.parametrize("path", ALL_RAY, ids=[str(p.relative_to(K8S)) for p in ALL_RAY])
def test_service_account_tokens_only_where_the_api_is_called(path: Path) -> None:
    (doc,) = docs(path)
    spec = cluster_specs(doc)
    for role, pod in kuberay_pods(doc).items():
        calls_api = role == "head" and bool(spec.get("enableInTreeAutoscaling"))
        assert pod.get("automountServiceAccountToken") is calls_api, role


@pytest.mark.parametrize("path", ALL_RAY, ids=[str(p.relative_to(K8S)) for p in ALL_RAY])
def test_ray_containers_have_read_only_roots_and_a_writable_tmp(path: Path) -> None:
    (doc,) = docs(path)
    for role, pod in kuberay_pods(doc).items():
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in pod["containers"]:
            if container["name"] == "autoscaler":
                continue  # KubeRay's own container
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, role
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert "emptyDir" in volumes[mounts["/tmp"]], role


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_network_policy_covers_every_pod_and_admits_only_ours(variant: str) -> None:
    policies = docs(folder(variant) / "networkpolicy.yaml")
    for policy in policies:
        kubernetes_validate.validate(policy, KUBERNETES_VERSION, strict=True)
    main, head_api = policies
    (doc,) = docs(folder(variant) / "rayjob-tune.yaml")
    spec = doc["spec"]
    cluster = cluster_specs(doc)
    head_labels = pods.labels(
        cluster["headGroupSpec"]["template"], cluster="c", group="", head=True
    )
    worker = cluster["workerGroupSpecs"][0]
    worker_labels = pods.labels(worker["template"], cluster="c", group="t4", head=False)
    submitter_labels = spec["submitterPodTemplate"]["metadata"]["labels"]
    for labels in (head_labels, worker_labels, submitter_labels):
        assert _selects(main["spec"]["podSelector"], labels), labels
    sources = [rule["from"][0]["podSelector"] for rule in main["spec"]["ingress"]]
    assert _selects(sources[0], submitter_labels) and _selects(sources[0], worker_labels)
    assert not _selects(sources[0], {"app": "anything-else"})
    operator = main["spec"]["ingress"][1]
    assert operator["ports"] == [{"protocol": "TCP", "port": 8265}]  # the dashboard only
    dns = main["spec"]["egress"][1]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert _selects(head_api["spec"]["podSelector"], head_labels)
    assert not _selects(head_api["spec"]["podSelector"], worker_labels)
