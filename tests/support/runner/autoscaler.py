"""The autoscaler sidecar of a head pod, run against the API stand-in."""

from __future__ import annotations

import json
import time

from tests.support.kuberay import pods
from tests.support.runner.api import KubeApi
from tests.support.runner.objects import raycluster_for_rayjob
from tests.support.runner.podman import (
    SERVICE_ACCOUNT_DIR,
    log,
)
from tests.support.runner.state import (
    Attempt,
    Container,
)


class AutoscalerSidecar:
    """Ray's KubeRay autoscaler in the head's network namespace (the sidecar), and the scale-ups
    it asks for, watched."""

    def _autoscaler(self, attempt: Attempt, head: Container) -> None:
        """The sidecar as BuildAutoscalerContainer builds it, with the manifest's
        autoscalerOptions merged (mergeAutoscalerOverrides), in the head's network namespace,
        and the stand-in API server it calls (started once the head's network exists)."""
        gateway = self.podman(
            "network", "inspect", attempt.network, "--format", "{{(index .Subnets 0).Gateway}}"
        )
        cluster = raycluster_for_rayjob(self.doc, attempt.cluster)
        api = KubeApi(
            cluster,
            pods=lambda: self._pod_objects(attempt),
            on_patch=lambda ops, obj: log(
                f"attempt {attempt.number}: autoscaler patched the RayCluster: "
                + json.dumps(ops, separators=(",", ":"))
            ),
            host=gateway,
            names=[gateway],
            credentials_dir=self.work / f"serviceaccount-{attempt.number}",
            log=lambda line: log(f"kube-api: {line}"),
        )
        api.start()
        attempt.api = api
        options = self.cluster_spec.get("autoscalerOptions", {})
        start = (
            f"ray kuberay-autoscaler --cluster-name {attempt.cluster} "
            f"--cluster-namespace {pods.NAMESPACE}"
        )  # $(RAY_CLUSTER_NAME) and $(RAY_CLUSTER_NAMESPACE), expanded as the kubelet does
        env = {
            "RAY_CLUSTER_NAME": attempt.cluster,
            "RAY_CLUSTER_NAMESPACE": pods.NAMESPACE,
            "RAY_HEAD_POD_NAME": head.name,
            "KUBERAY_CRD_VER": "v1",
            "KUBERAY_GEN_AUTOSCALER_START_CMD": start,
            **api.pod_env(gateway),  # what the kubelet gives every container
            **{e["name"]: str(e.get("value", "")) for e in options.get("env", [])},
        }
        secret = {}
        if self.token is not None:  # SetContainerTokenAuthEnvVars
            env["RAY_AUTH_MODE"] = "token"
            secret["RAY_AUTH_TOKEN"] = self.token
        sidecar = {
            "name": "autoscaler",
            "resources": options.get(
                "resources",
                {"limits": {"cpu": "500m", "memory": "512Mi"}},
            ),
            "securityContext": options.get("securityContext", {}),
        }
        pod = self.cluster_spec["headGroupSpec"]["template"]["spec"]
        name = f"{head.name}-autoscaler"
        image = self._image({"image": options.get("image") or pods.ray_container(pod)["image"]})
        self.podman.run(
            name,
            [
                "--network",
                f"container:{head.name}",
                *self._security(pod, sidecar),
                *self._limits(sidecar),
                *[f for k, v in env.items() for f in ("--env", f"{k}={v}")],
                "--volume",
                f"{api.credentials_dir}:{SERVICE_ACCOUNT_DIR}:ro",
                "--volume",
                f"{attempt.ray_logs}:/tmp/ray",
                "--entrypoint",
                "/bin/bash",
                image,
                "-c",
                "--",
                start,
            ],
            secret,
        )
        attempt.autoscaler = name
        log(
            f"attempt {attempt.number}: autoscaler sidecar {name}: {start} "
            f"(Kubernetes API stand-in at {api.url})"
        )

    def _watch_scale_up(self, attempt: Attempt) -> None:
        """Scale-up time: from the job's start to the first worker's Ray node alive."""
        if not self.autoscaling or self.scale_up_s is not None or attempt.running_at is None:
            return
        if not any(c.role == "worker" and c.phase == "Running" for c in attempt.ray):
            return
        alive = self._alive_nodes(attempt)
        if alive is not None and alive >= 2:  # the head and a worker
            self.scale_up_s = time.monotonic() - attempt.running_at
            log(
                f"attempt {attempt.number}: first worker's Ray node alive "
                f"{self.scale_up_s:.1f}s after the job started"
            )
