"""tests/support/runner/api.py, the stand-in Kubernetes API server for KubeRay's autoscaler sidecar:
Ray 2.60's own KubeRay client, config producer and node providers (v2, the default under
KubeRay, and v1) run in this process against it over TLS on 127.0.0.1, with the RayCluster
KubeRay makes from k8s/rayjob-asha.yaml."""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.support.manifests import CRDS, docs
from tests.support.runner.api import JSON_PATCH, KubeApi
from tests.support.runner.json_patch import PatchError, apply_json_patch
from tests.support.runner.objects import crd_validator, pod_object, raycluster_for_rayjob
from tests.support.runs import REPO

CLUSTER = "ray-tune-asha-abcde"
HEAD = f"{CLUSTER}-head-x7k2p"
CLUSTER_PATH = f"/apis/ray.io/v1/namespaces/default/rayclusters/{CLUSTER}"
REPLICAS = "/spec/workerGroupSpecs/0/replicas"
SCALE_STRATEGY = "/spec/workerGroupSpecs/0/scaleStrategy"


def labels(group: str, cluster: str = CLUSTER) -> dict[str, str]:
    """KubeRay's labels on a Ray pod (labelPod)."""
    return {
        "ray.io/cluster": cluster,
        "ray.io/group": group,
        "ray.io/node-type": "head" if group == "headgroup" else "worker",
        "ray.io/is-ray-node": "yes",
        "app.kubernetes.io/created-by": "kuberay-operator",
        "app.kubernetes.io/name": "kuberay",
    }


def head_pod() -> dict[str, Any]:
    return pod_object(HEAD, labels("headgroup"), ip="10.89.0.2", container="ray-head")


def worker(name: str, **kwargs: Any) -> dict[str, Any]:
    return pod_object(name, labels("t4"), ip="10.89.0.9", **kwargs)


class KubeRay:
    """The runner's on_patch callback, acting as KubeRay's controller: deletes the pods in a
    group's workersToDelete, then creates worker pods up to its replicas."""

    def __init__(self) -> None:
        self.api: KubeApi | None = None
        self.seen: list[tuple[list[dict[str, Any]], dict[str, Any]]] = []
        self.created = 0
        self._done = threading.Condition()

    def __call__(self, ops: list[dict[str, Any]], cluster: dict[str, Any]) -> None:
        assert self.api is not None
        pods = self.api.current_pods()
        for group in cluster["spec"]["workerGroupSpecs"]:
            doomed = set(group.get("scaleStrategy", {}).get("workersToDelete", []))
            pods = [p for p in pods if p["metadata"]["name"] not in doomed]
            name = group["groupName"]
            have = [p for p in pods if p["metadata"]["labels"].get("ray.io/group") == name]
            for _ in range(group["replicas"] - len(have)):
                self.created += 1
                pods.append(worker(f"{CLUSTER}-{name}-worker-{self.created:05d}"))
        self.api.set_pods(pods)
        with self._done:
            self.seen.append((ops, cluster))
            self._done.notify_all()

    def wait(self, patches: int) -> None:
        """Until the callback has run for that many PATCHes (it runs after the response)."""
        with self._done:
            assert self._done.wait_for(lambda: len(self.seen) >= patches, timeout=10)


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def rayjob() -> dict[str, Any]:
    (doc,) = docs(REPO / "k8s" / "rayjob-asha.yaml")
    return doc


@pytest.fixture(scope="module")
def validate() -> Any:
    return crd_validator(CRDS / "ray.io_rayclusters.yaml")


@pytest.fixture
def kuberay() -> KubeRay:
    return KubeRay()


@pytest.fixture
def api(
    rayjob: dict[str, Any], kuberay: KubeRay, validate: Any, tmp_path: Any, no_proxy: None
) -> Iterator[KubeApi]:
    server = KubeApi(
        raycluster_for_rayjob(rayjob, CLUSTER, "default"),
        on_patch=kuberay,
        credentials_dir=tmp_path / "serviceaccount",
        validate=validate,
    )
    kuberay.api = server
    server.set_pods([head_pod()])
    with server:
        yield server
    assert server.callback_errors == []


@pytest.fixture
def in_cluster(api: KubeApi, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Ray's KubeRay client as inside the head pod, pointed at the stand-in: the service-account
    files, the API server's address (Ray builds it at import from KUBERNETES_SERVICE_HOST and
    _PORT_HTTPS: test_ray_finds_the_stand_in_from_the_pod_env covers that path), and
    RAY_HEAD_POD_NAME, which KubeRay sets on the sidecar."""
    from ray.autoscaler._private.kuberay import node_provider
    from ray.autoscaler.v2.instance_manager.cloud_providers.kuberay import cloud_provider

    monkeypatch.setattr(node_provider, "IN_CLUSTER_TOKEN_PATH", str(api.token_path))
    monkeypatch.setattr(node_provider, "IN_CLUSTER_CA_CERT_PATH", str(api.ca_path))
    monkeypatch.setattr(node_provider, "KUBERAY_CA_CERT_PATH", None)
    monkeypatch.setattr(node_provider, "KUBERAY_CLIENT_CERT_PATH", None)
    monkeypatch.setattr(node_provider, "KUBERAY_CLIENT_KEY_PATH", None)
    monkeypatch.setattr(
        node_provider,
        "url_from_resource",
        functools.partial(node_provider.url_from_resource, kubernetes_host=api.address),
    )
    monkeypatch.setattr(node_provider, "RAY_HEAD_POD_NAME", HEAD)
    monkeypatch.setattr(cloud_provider, "RAY_HEAD_POD_NAME", HEAD)
    return node_provider


def autoscaling_config() -> dict[str, Any]:
    from ray.autoscaler._private.kuberay.autoscaling_config import AutoscalingConfigProducer

    return AutoscalingConfigProducer(CLUSTER, "default")()


def v2_provider() -> Any:
    """What the v2 autoscaler builds (Autoscaler._init_cloud_instance_provider)."""
    from ray.autoscaler.v2.instance_manager.cloud_providers.kuberay.cloud_provider import (
        KubeRayProvider,
    )

    config = autoscaling_config()
    provider = dict(config["provider"], head_node_type=config["head_node_type"])
    return KubeRayProvider(config["cluster_name"], provider, gcs_client=None)


def group(api: KubeApi) -> dict[str, Any]:
    return api.cluster()["spec"]["workerGroupSpecs"][0]


def request(api: KubeApi, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {api.token}"} | kwargs.pop("headers", {})
    kwargs.setdefault("verify", str(api.ca_path))
    return requests.request(method, api.url + path, headers=headers, timeout=10, **kwargs)


def test_the_provider_reads_the_raycluster_and_the_cluster_pods_as_its_nodes(
    api: KubeApi, in_cluster: Any
) -> None:
    from ray.autoscaler.v2.instance_manager.node_provider import NodeKind

    api.set_pods(
        [
            head_pod(),
            worker(f"{CLUSTER}-t4-worker-aaaaa"),
            worker(f"{CLUSTER}-t4-worker-bbbbb", state=None),  # no container status: pending
            worker(f"{CLUSTER}-t4-worker-ccccc", deleting=True),  # Ray skips these
            pod_object("other-head", labels("headgroup", cluster="ray-tune-tune-zzzzz")),
        ]
    )
    provider = v2_provider()
    nodes = provider.get_non_terminated()

    assert set(nodes) == {HEAD, f"{CLUSTER}-t4-worker-aaaaa", f"{CLUSTER}-t4-worker-bbbbb"}
    assert (nodes[HEAD].node_kind, nodes[HEAD].node_type) == (NodeKind.HEAD, "headgroup")
    running = nodes[f"{CLUSTER}-t4-worker-aaaaa"]
    assert (running.node_kind, running.node_type, running.is_running) == (
        NodeKind.WORKER,
        "t4",
        True,
    )
    assert nodes[f"{CLUSTER}-t4-worker-bbbbb"].is_running is False
    assert provider.ray_cluster == api.cluster()  # the RayCluster it read, as stored

    # The calls: the config producer's GET, then per sync the RayCluster, the head pod (for a
    # resourceVersion) and the cluster's pods at that version or newer.
    calls = api.calls
    assert [(c.method, c.path, c.status) for c in calls] == [
        ("GET", CLUSTER_PATH, 200),
        ("GET", CLUSTER_PATH, 200),
        ("GET", f"/api/v1/namespaces/default/pods/{HEAD}", 200),
        ("GET", "/api/v1/namespaces/default/pods", 200),
    ]
    head_version = request(api, "GET", f"/api/v1/namespaces/default/pods/{HEAD}").json()
    assert calls[3].query == {
        "labelSelector": [f"ray.io/cluster={CLUSTER}"],
        "resourceVersion": [head_version["metadata"]["resourceVersion"]],
        "resourceVersionMatch": ["NotOlderThan"],
    }
    assert api.refused == []


def test_a_scale_up_becomes_a_patch_raising_the_groups_replicas(
    api: KubeApi, in_cluster: Any, kuberay: KubeRay
) -> None:
    provider = v2_provider()
    before = api.cluster()["metadata"]
    provider.launch({"t4": 2}, "launch-1")

    assert provider.poll_errors() == []
    assert group(api)["replicas"] == 2
    (patch,) = api.patches
    assert patch.content_type == JSON_PATCH
    assert patch.body == [{"op": "replace", "path": REPLICAS, "value": 2}]
    after = api.cluster()["metadata"]
    assert int(after["resourceVersion"]) > int(before["resourceVersion"])
    assert after["generation"] == before["generation"] + 1
    kuberay.wait(1)  # the runner's callback got the ops and the patched object
    assert kuberay.seen[0][0] == patch.body
    assert kuberay.seen[0][1]["spec"]["workerGroupSpecs"][0]["replicas"] == 2

    provider.launch({"t4": 2}, "launch-1")  # a replayed request id changes nothing
    assert len(api.patches) == 1

    # Beyond maxReplicas (4): capped, and the rest reported as a launch error.
    kuberay.wait(1)
    provider.launch({"t4": 5}, "launch-2")
    assert group(api)["replicas"] == 4
    (error,) = provider.poll_errors()
    assert (error.node_type, error.count) == ("t4", 3)
    assert "maxReplicas" in str(error)
    assert api.refused == []


def test_terminating_a_node_names_its_pod_in_workers_to_delete_and_lowers_replicas(
    api: KubeApi, in_cluster: Any, kuberay: KubeRay
) -> None:
    provider = v2_provider()
    provider.launch({"t4": 2}, "launch-1")
    kuberay.wait(1)  # the controller made two worker pods
    first, second = sorted(provider.get_non_terminated().keys() - {HEAD})

    kuberay_holds = []  # the controller is slow this time: the pod stays a while

    def hold(ops: list[dict[str, Any]], cluster: dict[str, Any]) -> None:
        kuberay_holds.append(ops)

    api.on_patch = hold
    provider.terminate([first], "terminate-1")
    assert provider.poll_errors() == []
    assert group(api)["replicas"] == 1
    assert group(api)["scaleStrategy"]["workersToDelete"] == [first]
    assert api.patches[-1].body == [
        {"op": "replace", "path": REPLICAS, "value": 1},
        {"op": "replace", "path": SCALE_STRATEGY, "value": {"workersToDelete": [first]}},
    ]

    # While that pod still exists, Ray sends nothing and reports the launch as failed.
    patches = len(api.patches)
    provider.launch({"t4": 1}, "launch-2")
    (error,) = provider.poll_errors()
    assert "workers to be deleted" in str(error)
    assert len(api.patches) == patches

    # Once the controller removed it, the next scale request also clears workersToDelete.
    api.on_patch = kuberay
    api.set_pods([head_pod(), worker(second)])
    provider.launch({"t4": 1}, "launch-3")
    assert provider.poll_errors() == []
    assert api.patches[-1].body == [
        {"op": "replace", "path": REPLICAS, "value": 2},
        {"op": "replace", "path": SCALE_STRATEGY, "value": {"workersToDelete": []}},
    ]
    assert (group(api)["replicas"], group(api)["scaleStrategy"]) == (2, {"workersToDelete": []})
    assert api.refused == []


def test_the_v1_node_provider_makes_the_same_calls(
    api: KubeApi, in_cluster: Any, kuberay: KubeRay
) -> None:
    """autoscalerOptions.version: v1 (or RAY_enable_autoscaler_v2=false) runs this one."""
    from ray.autoscaler.tags import TAG_RAY_USER_NODE_TYPE

    provider = in_cluster.KubeRayNodeProvider(autoscaling_config()["provider"], CLUSTER)
    assert provider.non_terminated_nodes({}) == [HEAD]
    provider.create_node({}, {TAG_RAY_USER_NODE_TYPE: "t4"}, 2)
    provider.post_process()
    assert api.patches[-1].body == [{"op": "replace", "path": REPLICAS, "value": 2}]
    kuberay.wait(1)

    workers = sorted(set(provider.non_terminated_nodes({})) - {HEAD})
    assert len(workers) == 2 and provider.safe_to_scale()
    provider.terminate_node(workers[0])
    provider.post_process()
    assert api.patches[-1].body == [
        {"op": "replace", "path": REPLICAS, "value": 1},
        {"op": "replace", "path": SCALE_STRATEGY, "value": {"workersToDelete": [workers[0]]}},
    ]
    kuberay.wait(2)  # the controller deleted it: the next update clears the list
    assert workers[0] not in provider.non_terminated_nodes({})
    assert provider.safe_to_scale()
    assert api.patches[-1].body == [
        {"op": "replace", "path": SCALE_STRATEGY, "value": {"workersToDelete": []}}
    ]
    assert api.refused == []


def test_an_unserved_call_is_refused_and_recorded(api: KubeApi, in_cluster: Any) -> None:
    client = in_cluster.KubernetesHttpApiClient("default")
    before = api.cluster()
    unserved = [
        # The idle-termination paths of newer Rays (RayCluster DELETE, merge patch), and the
        # in-place pod resize; neither is in KubeRay v1.7.0's CRD nor in this project's spec.
        (lambda: client.delete(f"rayclusters/{CLUSTER}"), 405),
        (
            lambda: client.patch(
                f"rayclusters/{CLUSTER}",
                {"spec": {"idleSuspend": True}},
                content_type="application/merge-patch+json",
            ),
            415,
        ),
        (lambda: client.patch(f"pods/{HEAD}/resize", [{"op": "replace", "path": "/x"}]), 404),
        (lambda: client.get("pods?watch=true"), 400),
        (lambda: client.get("pods?labelSelector=ray.io%2Fgroup%20in%20(t4)"), 400),
    ]
    for call, status in unserved:
        with pytest.raises(requests.HTTPError) as error:
            call()
        assert error.value.response.status_code == status
        assert error.value.response.json()["kind"] == "Status"
    assert request(api, "GET", "/api/v1/namespaces/default/services").status_code == 404

    refused = api.refused
    assert [(c.method, c.status) for c in refused] == [
        ("DELETE", 405),
        ("PATCH", 415),
        ("PATCH", 404),
        ("GET", 400),
        ("GET", 400),
        ("GET", 404),
    ]
    assert refused[1].body == {"spec": {"idleSuspend": True}}
    summary = api.summary()
    assert "6 refused" in summary
    assert f"REFUSED DELETE {CLUSTER_PATH} -> 405" in summary
    assert api.cluster() == before  # nothing refused changed anything


def test_a_wrong_token_gets_401(api: KubeApi, in_cluster: Any) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer not-the-token"},
        {"Authorization": api.token},  # no Bearer
        {"Authorization": f"Bearer {api.token}x"},
        {"Authorization": f"Basic {api.token}"},
    ):
        response = requests.get(
            api.url + CLUSTER_PATH, headers=headers, verify=str(api.ca_path), timeout=10
        )
        assert response.status_code == 401
        assert response.json()["reason"] == "Unauthorized"
        assert "spec" not in response.json()
    ops = [{"op": "replace", "path": REPLICAS, "value": 3}]
    response = requests.patch(
        api.url + CLUSTER_PATH,
        json.dumps(ops),
        headers={"Authorization": "Bearer nope", "Content-Type": JSON_PATCH},
        verify=str(api.ca_path),
        timeout=10,
    )
    assert response.status_code == 401
    assert group(api)["replicas"] == 0 and api.patches == []

    # Ray's own client, reading a token file that holds another token.
    api.token_path.write_text("a-stale-token")
    with pytest.raises(requests.HTTPError) as error:
        in_cluster.KubernetesHttpApiClient("default").get(f"rayclusters/{CLUSTER}")
    assert error.value.response.status_code == 401
    assert [c.status for c in api.calls] == [401] * 7
    assert api.refused == []  # refused is for unserved calls, not bad credentials


@pytest.mark.parametrize("backend", ["openssl", "cryptography"])
def test_tls_verifies_with_the_generated_ca_only(
    backend: str, rayjob: dict[str, Any], tmp_path: Any, no_proxy: None
) -> None:
    if backend == "openssl" and not shutil.which("openssl"):
        pytest.skip("no openssl CLI")
    if backend == "cryptography":
        pytest.importorskip("cryptography")
    cluster = raycluster_for_rayjob(rayjob, CLUSTER)
    names = ["10.89.0.1", "fd00::1"]
    with (
        KubeApi(cluster, names=names, credentials_dir=tmp_path / "a", tls_backend=backend) as api,
        KubeApi(cluster, credentials_dir=tmp_path / "b", tls_backend=backend) as other,
    ):
        assert api.tls_backend == backend
        assert request(api, "GET", CLUSTER_PATH).json()["metadata"]["name"] == CLUSTER
        for verify in (True, str(other.ca_path)):  # the system's CAs; another stand-in's CA
            with pytest.raises(requests.exceptions.SSLError):
                request(api, "GET", CLUSTER_PATH, verify=verify)

        context = ssl.create_default_context(cafile=str(api.ca_path))
        for hostname in ("kubernetes.default", "kubernetes.default.svc", "127.0.0.1"):
            with (
                socket.create_connection(("127.0.0.1", api.port), timeout=10) as raw,
                context.wrap_socket(raw, server_hostname=hostname) as tls,
            ):
                sans = set(tls.getpeercert()["subjectAltName"])
        assert {
            ("DNS", "kubernetes.default"),
            ("DNS", "kubernetes.default.svc"),
            ("IP Address", "127.0.0.1"),
            ("IP Address", "10.89.0.1"),
        } <= sans
        assert any(
            kind == "IP Address" and value.lower().startswith("fd00:") for kind, value in sans
        )
        with (
            socket.create_connection(("127.0.0.1", api.port), timeout=10) as raw,
            pytest.raises(ssl.SSLCertVerificationError, match="match"),
        ):
            context.wrap_socket(raw, server_hostname="example.com")

        deadline = time.monotonic() + 5  # the server side saw the failed handshakes
        while len(api.handshake_failures) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(api.handshake_failures) >= 2
        assert api.calls[0].status == 200 and len(api.calls) == 1


def test_auto_picks_the_openssl_cli_when_present(api: KubeApi) -> None:
    assert api.tls_backend == ("openssl" if shutil.which("openssl") else "cryptography")


def test_the_in_cluster_files_are_written_as_the_kubelet_projects_them(api: KubeApi) -> None:
    folder = api.credentials_dir
    assert sorted(p.name for p in folder.iterdir()) == ["ca.crt", "namespace", "token"]
    assert api.token_path.read_text() == api.token  # no newline: Ray sends the whole text
    assert (folder / "namespace").read_text() == "default"
    assert api.ca_path.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY" not in "".join(p.read_text() for p in folder.iterdir())
    for path in [folder, *folder.iterdir()]:
        wanted = 0o005 if path.is_dir() else 0o004  # the container's user is not the owner
        assert path.stat().st_mode & wanted == wanted, path


def test_ray_finds_the_stand_in_from_the_pod_env(api: KubeApi) -> None:
    """The sidecar's own path: a fresh Ray reads KUBERNETES_SERVICE_HOST/_PORT_HTTPS at import,
    and AutoscalingConfigProducer derives the autoscaling config from the served RayCluster."""
    script = (
        "import json, sys\n"
        "from ray.autoscaler._private.kuberay import node_provider as n\n"
        "n.IN_CLUSTER_TOKEN_PATH, n.IN_CLUSTER_CA_CERT_PATH = sys.argv[1], sys.argv[2]\n"
        "from ray.autoscaler._private.kuberay.autoscaling_config import "
        "AutoscalingConfigProducer\n"
        "config = AutoscalingConfigProducer(sys.argv[3], 'default')()\n"
        "print(json.dumps({'host': n.KUBERNETES_HOST, 'config': config}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_KUBERAY_")}
    env |= api.pod_env("127.0.0.1") | {"RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.run(
        [sys.executable, "-c", script, str(api.token_path), str(api.ca_path), CLUSTER],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["host"] == api.address
    config = out["config"]
    assert config["cluster_name"] == CLUSTER
    assert config["provider"]["type"] == "kuberay"
    assert config["provider"]["namespace"] == "default"
    t4 = config["available_node_types"]["t4"]
    assert (t4["min_workers"], t4["max_workers"]) == (0, 4)
    assert t4["resources"]["GPU"] == 1 and t4["resources"]["CPU"] == 3
    assert t4["resources"]["accelerator_type:T4"] == 1
    assert config["idle_timeout_minutes"] == 5.0  # autoscalerOptions.idleTimeoutSeconds: 300
    assert [(c.method, c.path, c.status) for c in api.calls] == [("GET", CLUSTER_PATH, 200)]


def test_patches_apply_as_the_api_server_applies_them(api: KubeApi, kuberay: KubeRay) -> None:
    def patch(ops: list[dict[str, Any]]) -> requests.Response:
        data = json.dumps(ops)
        return request(api, "PATCH", CLUSTER_PATH, data=data, headers={"Content-Type": JSON_PATCH})

    version = api.cluster()["metadata"]["resourceVersion"]
    # Atomic: a failing op (here a test, as Ray guards its finalizer patch) applies nothing.
    failing = [
        {"op": "replace", "path": REPLICAS, "value": 3},
        {"op": "test", "path": "/metadata/resourceVersion", "value": "0"},
    ]
    assert patch(failing).status_code == 422
    assert (
        patch(
            [{"op": "replace", "path": "/spec/workerGroupSpecs/7/replicas", "value": 1}]
        ).status_code
        == 422
    )
    # The CRD's schema: replicas is an integer.
    bad = patch([{"op": "replace", "path": REPLICAS, "value": "two"}])
    assert bad.status_code == 422 and "replicas" in bad.json()["message"]
    assert api.cluster()["metadata"]["resourceVersion"] == version and api.patches == []

    # A no-op patch leaves resourceVersion alone; `replace` of a missing object member sets it.
    assert patch([{"op": "replace", "path": REPLICAS, "value": 0}]).status_code == 200
    assert api.cluster()["metadata"]["resourceVersion"] == version
    api.update_cluster(lambda c: c["spec"]["workerGroupSpecs"][0].pop("scaleStrategy"))
    ok = patch([{"op": "replace", "path": SCALE_STRATEGY, "value": {"workersToDelete": ["w"]}}])
    assert ok.status_code == 200
    assert ok.json()["spec"]["workerGroupSpecs"][0]["scaleStrategy"] == {"workersToDelete": ["w"]}
    kuberay.wait(2)

    assert apply_json_patch({"a": [1]}, [{"op": "add", "path": "/a/-", "value": 2}]) == {
        "a": [1, 2]
    }
    moved = apply_json_patch({"a": {"b": 1}}, [{"op": "move", "from": "/a/b", "path": "/c"}])
    assert moved == {"a": {}, "c": 1}
    for ops in (
        [{"op": "remove", "path": "/missing"}],
        [{"op": "add", "path": "/a/b/c", "value": 1}],
        [{"op": "replace", "path": "/a/5", "value": 1}],
        [{"op": "frobnicate", "path": "/a"}],
    ):
        with pytest.raises(PatchError):
            apply_json_patch({"a": [1]}, ops)


def test_pods_come_from_the_runners_callable_with_label_selectors(
    rayjob: dict[str, Any], tmp_path: Any, no_proxy: None
) -> None:
    pods = [head_pod(), worker("w1"), pod_object("x", labels("t4", cluster="other"))]
    cluster = raycluster_for_rayjob(rayjob, CLUSTER)
    with KubeApi(cluster, pods=lambda: pods, credentials_dir=tmp_path / "sa") as api:

        def names(selector: str) -> list[str]:
            params = {"labelSelector": selector}
            listed = request(api, "GET", "/api/v1/namespaces/default/pods", params=params)
            return [p["metadata"]["name"] for p in listed.json()["items"]]

        assert names(f"ray.io/cluster={CLUSTER}") == [HEAD, "w1"]
        assert names(f"ray.io/cluster=={CLUSTER},ray.io/node-type!=head") == ["w1"]
        assert names("ray.io/group,!ray.io/missing") == [HEAD, "w1", "x"]
        first = request(api, "GET", "/api/v1/namespaces/default/pods/w1").json()
        pods[1] = worker("w1", state="terminated")  # the runner's view changed
        second = request(api, "GET", "/api/v1/namespaces/default/pods/w1").json()
        assert int(second["metadata"]["resourceVersion"]) > int(
            first["metadata"]["resourceVersion"]
        )
        assert "terminated" in second["status"]["containerStatuses"][0]["state"]
        assert request(api, "GET", "/api/v1/namespaces/default/pods/nope").status_code == 404
        assert request(api, "GET", "/api/v1/namespaces/other/pods").json()["items"] == []
        assert api.refused == []
