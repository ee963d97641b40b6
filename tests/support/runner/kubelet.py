"""How a pod of KubeRay's becomes a container here, and the kubelet that keeps it."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from tests.support.kuberay import pods
from tests.support.runner.objects import pod_object
from tests.support.runner.podman import (
    EMPTY_DIRS,
    FS_GROUP_DEFAULT,
    log,
    suffix,
)
from tests.support.runner.state import (
    Attempt,
    Container,
)


class Kubelet:
    """The kubelet's side of RayJobRun: a pod's image, security, limits and mounts as podman flags;
    its containers started, watched, restarted and deleted."""

    def _image(self, container: dict[str, Any]) -> str:
        """imagePullPolicy IfNotPresent on a node that cannot pull: the image must be here, or
        --image stands in for it (the GPU image cannot be built here, nor anything pulled)."""
        image = container["image"]
        if image in self.mapped:
            return self.mapped[image]
        exists = subprocess.run(["podman", "image", "exists", image], env=self.podman.env)
        if exists.returncode == 0:
            self.mapped[image] = image
        elif self.options.image:
            self.mapped[image] = self.options.image
            log(
                f"image {image} cannot be pulled or built here: running {self.options.image} "
                "(the local CPU image) in its place"
            )
        else:
            raise SystemExit(
                f"error: image {image} is not present and nothing can be pulled here: "
                "build it with `make image-offline` (or `make image-cpu` where images can be "
                "pulled), or name a local stand-in with --image"
            )
        return self.mapped[image]

    def _security(self, pod: dict[str, Any], container: dict[str, Any]) -> list[str]:
        pod_sc = pod.get("securityContext", {})
        sc = container.get("securityContext", {})
        uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
        gid = sc.get("runAsGroup", pod_sc.get("runAsGroup", FS_GROUP_DEFAULT))
        non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot", False))
        if non_root and (uid is None or int(uid) == 0):
            raise SystemExit(
                f"error: {container['name']}: runAsNonRoot without a non-zero runAsUser"
            )
        flags = ["--user", f"{uid}:{gid}"] if uid is not None else []
        if "fsGroup" in pod_sc:
            flags += ["--group-add", str(pod_sc["fsGroup"])]
        if sc.get("allowPrivilegeEscalation") is False:
            flags += ["--security-opt", "no-new-privileges"]
        for cap in sc.get("capabilities", {}).get("drop", []):
            flags += ["--cap-drop", cap]
        for cap in sc.get("capabilities", {}).get("add", []):
            flags += ["--cap-add", cap]
        if sc.get("readOnlyRootFilesystem"):
            # Only the pod's own writable mounts, not podman's default tmpfs at /tmp and /run.
            flags += ["--read-only", "--read-only-tmpfs=false"]
        profile = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
        if profile not in (None, "RuntimeDefault"):
            raise SystemExit(f"error: seccompProfile {profile} is not emulated (RuntimeDefault is)")
        return flags

    def _limits(self, container: dict[str, Any]) -> list[str]:
        limits = container.get("resources", {}).get("limits", {})
        flags = []
        if "cpu" in limits:
            cpus = pods.quantity(limits["cpu"])
            host = float(os.cpu_count() or 1)
            if cpus > host:  # runc refuses a quota above the machine's cores
                if container["name"] not in self.clamped:
                    self.clamped.add(container["name"])
                    log(
                        f"{container['name']}: cpu limit {limits['cpu']} capped at this "
                        f"machine's {host:g} cores (Ray still counts the limit's CPUs)"
                    )
                cpus = host
            flags += ["--cpus", f"{cpus:g}"]
        if "memory" in limits:
            # Kubernetes nodes run without swap: nothing beyond the memory limit.
            memory = str(pods.value(limits["memory"]))
            flags += ["--memory", memory, "--memory-swap", memory]
        return flags

    def _mounts(
        self, pod: dict[str, Any], pod_name: str, container: dict[str, Any], shm: pods.Shm | None
    ) -> list[str]:
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        flags = []
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            path = mount["mountPath"]
            if path == "/dev/shm":
                continue  # below, from `shm`
            if "persistentVolumeClaim" in volume:
                flags += ["--volume", f"{self.volume}:{path}"]
            elif volume.get("emptyDir", {}).get("medium") == "Memory":
                # A memory-backed emptyDir: a tmpfs, counted against the memory limit.
                flags += ["--mount", f"type=tmpfs,destination={path},tmpfs-mode=1777"]
            elif "emptyDir" in volume:
                # The default medium: a folder on the node's disk, shared by the pod's
                # containers (an init container's too), ephemeral storage and not memory (a
                # tmpfs here made Ray's /tmp/ray count against the memory limit), writable by
                # the pod's users, deleted with the pod.
                folder = self._empty_dir(pod_name, mount["name"])
                flags += ["--volume", f"{folder}:{path}"]
            else:
                raise SystemExit(
                    f"error: volume {mount['name']}: only PVCs and emptyDirs are emulated"
                )
        if shm is not None:
            size = shm.size_bytes or pods.value(
                container.get("resources", {}).get("limits", {}).get("memory", "1Gi")
            )
            flags += ["--shm-size", str(size)]
        return flags

    def _empty_dir(self, pod_name: str, volume: str) -> Path:
        folder = self.work / EMPTY_DIRS / pod_name / volume
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o1777)
        return folder

    def _remove_empty_dirs(self, pod_names: list[str]) -> None:
        for name in pod_names:
            shutil.rmtree(self.work / EMPTY_DIRS / name, ignore_errors=True)

    def _ray_pod(self, attempt: Attempt, group: dict[str, Any], *, head: bool) -> Container:
        pod = group["template"]["spec"]
        container = pods.ray_container(pod)
        fqdn = pods.head_fqdn(attempt.cluster)
        head_group = self.cluster_spec["headGroupSpec"]
        port = pods.head_port(head_group)
        params = pods.start_params(
            group, head=head, fqdn=fqdn, port=port, autoscaling=self.autoscaling
        )
        command = pods.start_command(params, head=head)
        group_name = "headgroup" if head else group["groupName"]
        name = (
            f"{attempt.cluster}-head-{suffix()}"
            if head
            else f"{attempt.cluster}-{group_name}-worker-{suffix()}"
        )
        user_env = {e["name"]: str(e.get("value", "")) for e in container.get("env", [])}
        env = pods.container_env(
            user_env,
            cluster=attempt.cluster,
            group=group_name,
            pod=name,
            head=head,
            fqdn=fqdn,
            port=port,
            command=command,
            token=self.token,
        )
        image = self._image(container)
        labels = pods.labels(
            group["template"],
            cluster=attempt.cluster,
            group=group_name,
            head=head,
            group_labels=group.get("labels"),
        )
        common = [
            "--network",
            attempt.network,
            *self._security(pod, container),
            *[f for k, v in labels.items() for f in ("--label", f"{k}={v}")],
        ]
        init = None
        if not head:
            # wait-gcs-ready polls the head's GCS through its Service: a copy of the Ray
            # container's user env and mounts, plus FQ_RAY_IP/RAY_IP and the auth variables,
            # with its own 200m/256Mi (DefaultWorkerPodTemplate, setInitContainerEnvVars).
            init_env = user_env | {"FQ_RAY_IP": fqdn, "RAY_IP": fqdn.split(".")[0]}
            if self.token is not None:
                init_env["RAY_AUTH_MODE"] = "token"
            init = (
                f"{name}-init",
                [
                    *common,
                    *self._limits(
                        {"name": "wait-gcs-ready", "resources": {"limits": pods.INIT_RESOURCES}}
                    ),
                    *[f for k, v in init_env.items() for f in ("--env", f"{k}={v}")],
                    *self._mounts(pod, name, container, None),
                    "--entrypoint",
                    "/bin/bash",
                    image,
                    *pods.wait_gcs_ready(fqdn, port)[1:],
                ],
                {"RAY_AUTH_TOKEN": self.token} if self.token else {},
            )
        secret = {k: env.pop(k) for k in list(env) if k == "RAY_AUTH_TOKEN"}
        args = [
            *common,
            *self._limits(container),
            "--hostname",
            name,
            *[f for k, v in env.items() for f in ("--env", f"{k}={v}")],
            *self._mounts(pod, name, container, pods.dev_shm(pod, params)),
        ]
        if head:
            args += ["--network-alias", pods.head_service(attempt.cluster), "--network-alias", fqdn]
            if attempt.ray_logs is not None:  # KubeRay's ray-logs emptyDir, shared with the sidecar
                args += ["--volume", f"{attempt.ray_logs}:/tmp/ray"]
        args += ["--entrypoint", "/bin/bash", image, *pods.container_args(command)[1:]]
        role = "head" if head else "worker"
        spec = self.pod_specs["head" if head else f"worker-{group_name}"]
        c = Container(
            name,
            role,
            group=group_name,
            spec=spec,
            labels=labels,
            args=args,
            secret=secret,
            init=init,
        )
        attempt.ray.append(c)
        root = "read-only root" if "--read-only" in args else "writable root"
        gpus = container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
        note = (
            f"; nvidia.com/gpu {gpus} -> --num-gpus (no device here: training falls back to CPU)"
            if gpus
            else ""
        )
        log(f"attempt {attempt.number}: {role} pod {name} ({root}): {command.strip()}{note}")
        return c

    def _pod_objects(self, attempt: Attempt) -> list[dict[str, Any]]:
        """The attempt's Ray pods as the API serves them to the autoscaler."""
        out = []
        with self._lock:
            containers = list(attempt.ray)
        for c in containers:
            state = {
                "Pending": None,
                "Initializing": "waiting",
                "Running": "running",
                "Terminating": "running",  # a node shutdown's grace period: still Running
                "Failed": "terminated",
            }[c.phase]
            if state == "running" and c.exited_at is not None:  # the kubelet's back-off
                state = "backoff"
            out.append(
                pod_object(
                    c.name,
                    c.labels,
                    state=state,
                    container="ray-head" if c.role == "head" else "ray-worker",
                )
            )
        return out

    def _run(self, attempt: Attempt, c: Container) -> None:
        self.podman.run(c.name, c.args, c.secret)
        c.phase, c.running_at = "Running", time.monotonic()
        if c.role == "head" and self.autoscaling and not attempt.autoscaler:
            self._autoscaler(attempt, c)

    def _delete_pods(self, attempt: Attempt, victims: list[Container], *, wait: bool) -> None:
        """A pod's deletion: its containers get SIGTERM, SIGKILL after the grace period; the
        node keeps the pod's requests until it is gone."""
        names = []
        for c in victims:
            names.append(c.name)
            if c.init is not None:
                names.append(c.init[0])
            if c.role == "head" and attempt.autoscaler:
                names.append(attempt.autoscaler)
            if c in attempt.ray:
                attempt.ray.remove(c)
        pod_names = [c.name for c in victims]

        def delete() -> None:
            self.podman.remove(names, grace_s=self.options.grace_s)
            self._remove_empty_dirs(pod_names)
            with self._lock:
                self.released.extend(pod_names)

        if wait:
            delete()
        else:
            thread = threading.Thread(target=delete, name=f"delete-{attempt.cluster}")
            thread.start()
            self.deleting.append(thread)

    def _kubelet(self, attempt: Attempt) -> None:
        """restartPolicy Always: an exited Ray container starts again in place. A worker pod
        that is gone (deleted by someone else, its node reclaimed) is no longer listed: the
        next reconcile replaces it under a new name (reconcile.workers_to_add)."""
        now = time.monotonic()
        for c in list(attempt.ray):
            if c.phase != "Running":
                continue
            status, code = self.podman.state(c.name)
            if status == "missing" and c.role == "worker":
                log(f"attempt {attempt.number}: worker pod {c.name} is gone (not listed)")
                attempt.ray.remove(c)
                attempt.vanished.append(c.name)
                if c.init is not None:
                    self.podman.remove([c.init[0]], grace_s=0)
                self._remove_empty_dirs([c.name])
                with self._lock:
                    self.released.append(c.name)
                continue
            if status not in ("exited", "stopped"):
                continue
            if c.exited_at is None:
                c.exited_at = now
                log(
                    f"attempt {attempt.number}: {c.role} {c.name} exited with {code}; restarting "
                    f"in {self.options.restart_delay_s:g}s"
                )
            elif now - c.exited_at >= self.options.restart_delay_s:
                self.podman("start", c.name, check=False)
                c.restarts += 1
                self.ray_restarts += 1
                c.exited_at = None
                attempt.head_ip = ""
        if attempt.autoscaler and self.podman.state(attempt.autoscaler)[0] == "exited":
            log(f"attempt {attempt.number}: autoscaler sidecar exited; restarting it")
            self.podman("start", attempt.autoscaler, check=False)
