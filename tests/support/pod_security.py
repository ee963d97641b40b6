"""Pod Security Standards, "baseline" and "restricted" profiles, as the Kubernetes
documentation's published table states them (Pod Security Standards, v1.33): a pod that
passes `violations` is admitted by a namespace labelled
`pod-security.kubernetes.io/enforce: restricted`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}  # fmt: skip
SELINUX_TYPES = {
    None,
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
}
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}  # fmt: skip
SECCOMP_OK = {"RuntimeDefault", "Localhost"}


def containers(pod: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from pod.get(key, []) or []


def violations(pod: dict[str, Any]) -> list[str]:
    """Every rule of both profiles that this pod spec breaks, one line each."""
    out: list[str] = []
    psc = pod.get("securityContext", {}) or {}
    every = list(containers(pod))

    def sc(c: dict[str, Any]) -> dict[str, Any]:
        return c.get("securityContext", {}) or {}

    # --- baseline ---
    for c in every:
        if (sc(c).get("windowsOptions") or {}).get("hostProcess"):
            out.append(f"{c['name']}: HostProcess")
    if (psc.get("windowsOptions") or {}).get("hostProcess"):
        out.append("pod: HostProcess")
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            out.append(f"pod: host namespaces ({key})")
    for c in every:
        if sc(c).get("privileged"):
            out.append(f"{c['name']}: privileged")
        added = set((sc(c).get("capabilities") or {}).get("add", []) or [])
        if added - BASELINE_CAPABILITIES:
            out.append(
                f"{c['name']}: capabilities beyond baseline {sorted(added - BASELINE_CAPABILITIES)}"
            )
        for port in c.get("ports", []) or []:
            if port.get("hostPort"):
                out.append(f"{c['name']}: host port {port['hostPort']}")
        if sc(c).get("procMount", "Default") != "Default":
            out.append(f"{c['name']}: procMount")
    for v in pod.get("volumes", []) or []:
        if "hostPath" in v:
            out.append(f"volume {v['name']}: hostPath")
    for ctx, who in [(psc, "pod"), *[(sc(c), c["name"]) for c in every]]:
        apparmor = (ctx.get("appArmorProfile") or {}).get("type")
        if apparmor not in (None, "RuntimeDefault", "Localhost"):
            out.append(f"{who}: AppArmor {apparmor}")
        selinux = ctx.get("seLinuxOptions") or {}
        if selinux.get("type") not in SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
            out.append(f"{who}: SELinux options")
        if (ctx.get("seccompProfile") or {}).get("type") == "Unconfined":
            out.append(f"{who}: seccomp Unconfined")
    for sysctl in psc.get("sysctls", []) or []:
        if sysctl["name"] not in SAFE_SYSCTLS:
            out.append(f"pod: unsafe sysctl {sysctl['name']}")
    # --- restricted ---
    for v in pod.get("volumes", []) or []:
        kinds = set(v) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            out.append(f"volume {v['name']}: type {sorted(kinds)} not allowed")
    for c in every:
        if sc(c).get("allowPrivilegeEscalation") is not False:
            out.append(f"{c['name']}: allowPrivilegeEscalation is not false")
        non_root = sc(c).get("runAsNonRoot", psc.get("runAsNonRoot"))
        if non_root is not True:
            out.append(f"{c['name']}: runAsNonRoot is not true")
        if sc(c).get("runAsUser", psc.get("runAsUser")) == 0:
            out.append(f"{c['name']}: runAsUser 0")
        seccomp = (sc(c).get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in SECCOMP_OK:
            out.append(f"{c['name']}: seccompProfile is {seccomp}, not RuntimeDefault or Localhost")
        caps = sc(c).get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{c['name']}: capabilities do not drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            out.append(f"{c['name']}: capabilities add more than NET_BIND_SERVICE")
    if psc.get("runAsUser") == 0:
        out.append("pod: runAsUser 0")
    return out
