"""A stand-in for the Kubernetes API server, serving exactly the calls that KubeRay's autoscaler
sidecar (Ray 2.60) makes, so that the podman runner can run the real sidecar against it.

What Ray 2.60's autoscaler calls (ray/autoscaler/_private/kuberay/node_provider.py,
KubernetesHttpApiClient; used by autoscaling_config.AutoscalingConfigProducer, by the v2
KubeRayProvider that KubeRay clusters get by default, and by the v1 KubeRayNodeProvider):

    GET   /apis/ray.io/v1/namespaces/{ns}/rayclusters/{name}            the RayCluster
    PATCH /apis/ray.io/v1/namespaces/{ns}/rayclusters/{name}            JSON patch, content
          type application/json-patch+json: `replace` of /spec/workerGroupSpecs/{i}/replicas
          and of /spec/workerGroupSpecs/{i}/scaleStrategy (value {"workersToDelete": [...]})
    GET   /api/v1/namespaces/{ns}/pods/{RAY_HEAD_POD_NAME}                 for its resourceVersion
    GET   /api/v1/namespaces/{ns}/pods?labelSelector=ray.io%2Fcluster%3D{name}
          &resourceVersion={rv}&resourceVersionMatch=NotOlderThan        the cluster's pods

Every request carries `Authorization: Bearer <the token file>`; the CA is the in-cluster
ca.crt; the server is https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT_HTTPS.
Anything else (a DELETE, a merge or strategic-merge patch, the pods/{name}/resize calls of
in-place pod resizing, a watch, another resource) is answered 404/405/415/400 and recorded in
`refused`, so that a Ray that needs more fails loudly instead of passing silently.

The certificates come from the `openssl` CLI when it is on PATH, else from the `cryptography`
package (`tls_backend` says which). Standard library only otherwise: importable without Ray.
"""

from __future__ import annotations

import contextlib
import copy
import hmac
import json
import re
import secrets
import shutil
import socket
import ssl
import tempfile
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support.runner.certificates import make_certificates
from tests.support.runner.json_patch import PatchError, apply_json_patch

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
# The names the real API server's certificate carries for in-cluster clients.
DNS_NAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "localhost",
)
JSON_PATCH = "application/json-patch+json"
HANDSHAKE_TIMEOUT_S = 30

_RAYCLUSTER = re.compile(r"^/apis/ray\.io/v1/namespaces/([^/]+)/rayclusters/([^/]+)$")
_PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods$")
_POD = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)$")


@dataclass
class Call:
    """One request as the stand-in saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str | None
    body: Any  # the parsed JSON body, the raw text when it is not JSON, None when empty
    status: int
    message: str = ""
    refused: bool = False  # a call the stand-in does not serve (unknown to it)
    client: str = ""
    at: float = field(default_factory=time.time)

    def line(self) -> str:
        query = urllib.parse.urlencode(self.query, doseq=True)
        target = self.path + (f"?{query}" if query else "")
        text = f"{self.method} {target} -> {self.status}"
        if self.content_type:
            text += f" ({self.content_type})"
        return text + (f": {self.message}" if self.message else "")


class _Reply(Exception):
    def __init__(self, status: int, reason: str, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.status, self.reason, self.message, self.refused = status, reason, message, refused


def status_object(code: int, reason: str, message: str) -> dict[str, Any]:
    """A metav1.Status, as the API server answers an error."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


# ---------------------------------------------------------------------------------------------
# JSON patch (RFC 6902) as the API server applies it (evanphx/json-patch): atomically, and with
# its one leniency that Ray relies on: `replace` of a missing member of an object sets it (Ray
# replaces /spec/workerGroupSpecs/N/scaleStrategy, which a hand-written RayCluster may lack).


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], api: KubeApi) -> None:
        self.api = api
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake happens in the request's thread, so that a slow or failing client
        # never holds up the others.
        request.settimeout(HANDSHAKE_TIMEOUT_S)
        try:
            tls = self.api._tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as e:
            self.api._handshake_failed(client_address, e)
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            with contextlib.suppress(OSError):
                tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.api._log(f"request from {client_address} failed: {traceback.format_exc(limit=3)}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kube-api-stand-in"
    server: _Server

    def __getattr__(self, name: str) -> Any:
        # do_GET, do_PATCH, do_DELETE, ... and any other method: all go to the stand-in, which
        # records what it does not serve.
        if name.startswith("do_"):
            return lambda: self.server.api._handle(self, name[3:])
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class KubeApi:
    """The stand-in API server for one RayCluster.

    cluster: the RayCluster object (e.g. raycluster_for_rayjob(...)); its metadata.name and
        metadata.namespace are the ones served. The stand-in sets metadata.resourceVersion
        (bumped on every change, as one counter shared with the pods) and generation.
    pods: a callable returning the current Pod objects (pod_object(...)), called on each pod
        request; or None, and set_pods() supplies them.
    on_patch: called as on_patch(ops, cluster) after each applied PATCH, in the request's
        thread after the response is sent (the autoscaler does not wait for it; keep it short
        or hand the work to the runner's loop). What it raises is kept in callback_errors.
        An attribute: the runner may set it after construction.
    host, port: where to listen (port 0: any free port; `port` and `address` say which).
    names: the IP addresses and DNS names the server certificate carries besides `host`
        and DNS_NAMES: the address the autoscaler connects to must be one of them.
    credentials_dir: where start() writes token, ca.crt and namespace, the folder to mount at
        SERVICE_ACCOUNT_DIR; a temporary folder (removed by stop()) when None.
    token: the bearer token to require (a fresh random one when None).
    validate: called with each patched RayCluster; a ValueError rejects the patch with 422, as
        the API server's schema validation does (crd_validator(...)).
    tls_backend: "auto" (openssl CLI, else cryptography), "openssl" or "cryptography".
    log: called with one line per notable event (refused calls, handshake failures).
    """

    def __init__(
        self,
        cluster: dict[str, Any],
        *,
        pods: Callable[[], list[dict[str, Any]]] | None = None,
        on_patch: Callable[[list[dict[str, Any]], dict[str, Any]], None] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        names: Sequence[str] = (),
        credentials_dir: Path | None = None,
        token: str | None = None,
        validate: Callable[[dict[str, Any]], None] | None = None,
        tls_backend: str = "auto",
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.name = cluster["metadata"]["name"]
        self.namespace = cluster["metadata"].get("namespace", "default")
        self.token = token or secrets.token_urlsafe(32)
        self.host, self._port = host, port
        self._names = [n for n in (host, "127.0.0.1", *names) if n not in ("0.0.0.0", "::")]
        self._names += DNS_NAMES
        self._pods_source = pods
        self._pods: list[dict[str, Any]] = []
        self.on_patch = on_patch
        self._validate = validate
        self._tls_backend = tls_backend
        self.tls_backend = ""
        self._log_fn = log
        self._lock = threading.Lock()
        self._version = 0
        self._pod_versions: dict[str, tuple[str, str]] = {}
        cluster = copy.deepcopy(cluster)
        cluster.setdefault("apiVersion", "ray.io/v1")
        cluster.setdefault("kind", "RayCluster")
        cluster["metadata"].setdefault("namespace", self.namespace)
        cluster["metadata"].setdefault("generation", 1)
        cluster["metadata"]["resourceVersion"] = self._bump()
        self._cluster = cluster
        self._calls: list[Call] = []
        self._handshake_failures: list[str] = []
        self._callback_errors: list[str] = []
        self._own_credentials = credentials_dir is None
        self.credentials_dir = Path(credentials_dir or tempfile.mkdtemp(prefix="kube-api-sa-"))
        self._private: Path | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> KubeApi:
        self._private = Path(tempfile.mkdtemp(prefix="kube-api-tls-"))  # keys stay here
        try:
            self.tls_backend = make_certificates(self._private, self._names, self._tls_backend)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(self._private / "server.crt", self._private / "server.key")
            self._tls = context
            self.credentials_dir.mkdir(parents=True, exist_ok=True)
            self.credentials_dir.chmod(0o755)
            # As the kubelet projects them: no trailing newline (Ray sends the token file's
            # whole text after "Bearer "), readable by the container's non-root user.
            files = {
                "token": self.token,
                "ca.crt": (self._private / "ca.crt").read_text(),
                "namespace": self.namespace,
            }
            for name, text in files.items():
                path = self.credentials_dir / name
                path.write_text(text)
                path.chmod(0o644)
            self._server = _Server((self.host, self._port), self)
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.2},
                name="kube-api",
                daemon=True,
            )
            self._thread.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._private is not None:
            shutil.rmtree(self._private, ignore_errors=True)
            self._private = None
        if self._own_credentials:
            shutil.rmtree(self.credentials_dir, ignore_errors=True)

    def __enter__(self) -> KubeApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- where and how to reach it ------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the stand-in API server is not started")
        return self._server.server_address[1]

    @property
    def address(self) -> str:
        """host:port, as Ray builds it from KUBERNETES_SERVICE_HOST/_PORT_HTTPS."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"https://{self.address}"

    @property
    def ca_path(self) -> Path:
        return self.credentials_dir / "ca.crt"

    @property
    def token_path(self) -> Path:
        return self.credentials_dir / "token"

    def pod_env(self, host: str | None = None) -> dict[str, str]:
        """The variables the kubelet gives every container for the `kubernetes` Service, with
        `host` (an address in the certificate; default: the listening host) as its address.
        Ray reads KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT_HTTPS."""
        host = host or self.host
        port = str(self.port)
        return {
            "KUBERNETES_SERVICE_HOST": host,
            "KUBERNETES_SERVICE_PORT": port,
            "KUBERNETES_SERVICE_PORT_HTTPS": port,
            "KUBERNETES_PORT": f"tcp://{host}:{port}",
        }

    # -- state the runner reads and sets --------------------------------------------------------

    def cluster(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._cluster)

    def update_cluster(self, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Changes the RayCluster as a controller would (`change` edits a copy in place); bumps
        resourceVersion when something changed. Returns the new object."""
        with self._lock:
            new = copy.deepcopy(self._cluster)
            change(new)
            self._store(new)
            return copy.deepcopy(self._cluster)

    def current_pods(self) -> list[dict[str, Any]]:
        """The pods as the stand-in serves them (with namespace and resourceVersion)."""
        return self._current_pods()

    def set_pods(self, pods: list[dict[str, Any]]) -> None:
        with self._lock:
            self._pods = copy.deepcopy(pods)

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    @property
    def refused(self) -> list[Call]:
        """The calls the stand-in does not serve: a runner prints them, a test asserts none."""
        with self._lock:
            return [c for c in self._calls if c.refused]

    @property
    def patches(self) -> list[Call]:
        with self._lock:
            return [c for c in self._calls if c.method == "PATCH" and c.status == 200]

    @property
    def handshake_failures(self) -> list[str]:
        with self._lock:
            return list(self._handshake_failures)

    @property
    def callback_errors(self) -> list[str]:
        with self._lock:
            return list(self._callback_errors)

    def summary(self) -> str:
        """A few lines for the runner's log: calls by status, then every refused call."""
        calls = self.calls
        lines = [f"kube-api stand-in: {len(calls)} calls, {len(self.refused)} refused"]
        lines += [f"  REFUSED {c.line()}" for c in calls if c.refused]
        lines += [f"  {c.line()}" for c in calls if not c.refused and c.status >= 400]
        return "\n".join(lines)

    # -- internals ----------------------------------------------------------------------------

    def _log(self, line: str) -> None:
        if self._log_fn is not None:
            self._log_fn(line)

    def _bump(self) -> str:
        self._version += 1
        return str(self._version)

    def _store(self, new: dict[str, Any]) -> bool:
        """Stores a changed RayCluster (lock held); False when nothing changed, and then, as
        the API server does for a no-op patch, resourceVersion stays."""
        old = self._cluster

        def content(obj: dict[str, Any]) -> dict[str, Any]:
            meta = {
                k: v
                for k, v in obj.get("metadata", {}).items()
                if k not in ("resourceVersion", "generation")
            }
            return obj | {"metadata": meta}

        if content(new) == content(old):
            return False
        spec_changed = new.get("spec") != old.get("spec")
        new["metadata"]["generation"] = old["metadata"].get("generation", 1) + spec_changed
        new["metadata"]["resourceVersion"] = self._bump()
        self._cluster = new
        return True

    def _current_pods(self) -> list[dict[str, Any]]:
        """The pods, each with namespace and a resourceVersion that changes when it does."""
        source = self._pods_source() if self._pods_source is not None else None
        with self._lock:
            pods = copy.deepcopy(source if source is not None else self._pods)
            out = []
            for pod in pods:
                meta = pod.setdefault("metadata", {})
                meta.setdefault("namespace", self.namespace)
                meta.pop("resourceVersion", None)
                fingerprint = json.dumps(pod, sort_keys=True)
                seen = self._pod_versions.get(meta["name"])
                if seen is None or seen[0] != fingerprint:
                    seen = (fingerprint, self._bump())
                    self._pod_versions[meta["name"]] = seen
                meta["resourceVersion"] = seen[1]
                out.append(pod)
            return out

    def _handshake_failed(self, client: Any, error: Exception) -> None:
        line = f"TLS handshake with {client[0]} failed: {error}"
        with self._lock:
            self._handshake_failures.append(line)
        self._log(f"kube-api: {line}")

    def _handle(self, h: _Handler, method: str) -> None:
        split = urllib.parse.urlsplit(h.path)
        path = split.path
        query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        content_type = h.headers.get("Content-Type")
        call = Call(method, path, query, content_type, None, 0, client=h.client_address[0])
        after: Callable[[], None] | None = None
        try:
            if h.headers.get("Transfer-Encoding"):
                raise _Reply(400, "BadRequest", "chunked bodies are not served", refused=True)
            length = int(h.headers.get("Content-Length") or 0)
            raw = h.rfile.read(length) if length else b""
            if raw:
                try:
                    call.body = json.loads(raw)
                except ValueError:
                    call.body = raw.decode(errors="replace")
            if not self._authorized(h.headers.get("Authorization")):
                raise _Reply(401, "Unauthorized", "Unauthorized")
            status, body, after = self._route(method, path, query, content_type, call.body)
            call.status = status
        except _Reply as reply:
            status = reply.status
            body = status_object(reply.status, reply.reason, reply.message)
            call.status, call.message, call.refused = reply.status, reply.message, reply.refused
        with self._lock:
            self._calls.append(call)
        if call.refused:
            self._log(f"kube-api: REFUSED {call.line()}")
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        if method == "HEAD":
            h.send_header("Connection", "close")
            h.close_connection = True
        h.end_headers()
        if method != "HEAD":
            h.wfile.write(data)
        h.wfile.flush()
        if after is not None:
            after()

    def _authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        return hmac.compare_digest(header[len("Bearer ") :].encode(), self.token.encode())

    def _route(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        content_type: str | None,
        body: Any,
    ) -> tuple[int, Any, Callable[[], None] | None]:
        unquote = urllib.parse.unquote
        if m := _RAYCLUSTER.match(path):
            namespace, name = unquote(m[1]), unquote(m[2])
            self._only(method, ("GET", "PATCH"), query, ())
            if (namespace, name) != (self.namespace, self.name):
                raise _Reply(404, "NotFound", f'rayclusters.ray.io "{name}" not found')
            if method == "GET":
                return 200, self.cluster(), None
            return self._patch(content_type, body)
        if m := _PODS.match(path):
            self._only(method, ("GET",), query, ("labelSelector", "resourceVersion",
                                                 "resourceVersionMatch"))  # fmt: skip
            return 200, self._list_pods(unquote(m[1]), query), None
        if m := _POD.match(path):
            namespace, name = unquote(m[1]), unquote(m[2])
            self._only(method, ("GET",), query, ())
            for pod in self._current_pods():
                meta = pod["metadata"]
                if (meta["namespace"], meta["name"]) == (namespace, name):
                    return 200, pod, None
            raise _Reply(404, "NotFound", f'pods "{name}" not found')
        raise _Reply(404, "NotFound", f"the stand-in does not serve {path}", refused=True)

    @staticmethod
    def _only(
        method: str, methods: Sequence[str], query: dict[str, list[str]], params: Sequence[str]
    ) -> None:
        if method not in methods:
            raise _Reply(
                405, "MethodNotAllowed", f"the stand-in serves {'/'.join(methods)} here only",
                refused=True,
            )  # fmt: skip
        extra = sorted(set(query) - set(params))
        if extra:
            raise _Reply(
                400, "BadRequest", f"query parameters not served: {', '.join(extra)}",
                refused=True,
            )  # fmt: skip

    def _patch(
        self, content_type: str | None, body: Any
    ) -> tuple[int, Any, Callable[[], None] | None]:
        media = (content_type or "").split(";")[0].strip().lower()
        if media != JSON_PATCH:
            raise _Reply(
                415, "UnsupportedMediaType",
                f"the stand-in serves {JSON_PATCH} patches only, not {content_type!r}",
                refused=True,
            )  # fmt: skip
        with self._lock:
            old = self._cluster
            try:
                new = apply_json_patch(old, body)
            except PatchError as e:
                raise _Reply(422, "Invalid", str(e)) from None
            meta, old_meta = new.get("metadata", {}), old["metadata"]
            for key in ("name", "namespace"):
                if meta.get(key) != old_meta.get(key):
                    raise _Reply(422, "Invalid", f"metadata.{key} is immutable")
            if meta.get("resourceVersion") != old_meta["resourceVersion"]:
                raise _Reply(409, "Conflict", "the object has been modified")
            if self._validate is not None:
                try:
                    self._validate(new)
                except ValueError as e:
                    raise _Reply(422, "Invalid", f"RayCluster is invalid: {e}") from None
            self._store(new)
            stored = copy.deepcopy(self._cluster)
        ops = copy.deepcopy(body)

        def after() -> None:
            if self.on_patch is None:
                return
            try:
                self.on_patch(ops, copy.deepcopy(stored))
            except Exception:
                error = traceback.format_exc()
                with self._lock:
                    self._callback_errors.append(error)
                self._log(f"kube-api: on_patch failed: {error}")

        return 200, stored, after

    def _list_pods(self, namespace: str, query: dict[str, list[str]]) -> dict[str, Any]:
        selector = query.get("labelSelector", [""])[-1]
        wanted = _parse_selector(selector)
        version = query.get("resourceVersion", [None])[-1]
        match = query.get("resourceVersionMatch", [None])[-1]
        if match is not None:
            if match != "NotOlderThan":
                raise _Reply(
                    400, "BadRequest", f"resourceVersionMatch={match} not served", refused=True
                )
            if not version:
                raise _Reply(400, "BadRequest", "resourceVersionMatch requires resourceVersion")
        pods = [
            p
            for p in self._current_pods()
            if p["metadata"]["namespace"] == namespace
            and all(test(p["metadata"].get("labels", {})) for test in wanted)
        ]
        with self._lock:
            current = self._version
        if version and version.isdigit() and int(version) > current:
            raise _Reply(504, "Timeout", f"Too large resource version: {version}")
        return {
            "kind": "PodList",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": str(current)},
            "items": pods,
        }


def _parse_selector(selector: str) -> list[Callable[[dict[str, str]], bool]]:
    """An equality-based label selector (k=v, k==v, k!=v, k, !k; comma-separated). Set-based
    requirements (in, notin) are not served: Ray does not send them."""
    tests: list[Callable[[dict[str, str]], bool]] = []
    for part in filter(None, (p.strip() for p in selector.split(","))):
        if re.search(r"\s(in|notin)\s|\(", part):
            raise _Reply(400, "BadRequest", f"set-based selector not served: {part}", refused=True)
        if "!=" in part:
            key, value = (s.strip() for s in part.split("!=", 1))
            tests.append(lambda labels, k=key, v=value: labels.get(k) != v)
        elif "=" in part:
            key, value = (s.strip() for s in re.split("==?", part, maxsplit=1))
            tests.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif part.startswith("!"):
            absent = part[1:].strip()
            tests.append(lambda labels, k=absent: k not in labels)
        else:
            tests.append(lambda labels, k=part: k in labels)
    return tests
