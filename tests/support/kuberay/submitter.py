"""The submitter pod of a RayJob in K8sJobMode (job.go BuildJobSubmitCommand,
rayjob_controller.go configureSubmitterContainer)."""

from __future__ import annotations

import json
from typing import Any

import yaml

from tests.support.kuberay.pods import DASHBOARD_PORT, head_fqdn

SUBMITTER_JOB_BACKOFF_LIMIT = 2  # createNewK8sJob: the submitter Job's own backoffLimit


def dashboard_address(cluster: str) -> str:
    """Status.DashboardURL: the head Service's FQDN and its `dashboard` port, no scheme."""
    return f"{head_fqdn(cluster)}:{DASHBOARD_PORT}"


def runtime_env_json(runtime_env_yaml: str) -> str:
    """getRuntimeEnvJson: YAMLToJSON goes through Go maps, so keys come out sorted."""
    return json.dumps(
        yaml.safe_load(runtime_env_yaml or "{}") or {}, sort_keys=True, separators=(",", ":")
    )


def _go_quote(text: str) -> str:
    """strconv.Quote for the ASCII JSON we pass: a double-quoted string with escapes."""
    return json.dumps(text)


def command(spec: dict[str, Any], *, cluster: str, job_id: str) -> list[str]:
    """The submitter's command: wait for the GCS through the dashboard, submit unless the
    job id already exists (a restarted submitter pod only follows), then follow the logs."""
    address = f"http://{dashboard_address(cluster)}"
    health = f"{address}/api/gcs_healthz"
    submit = ["ray", "job", "submit", "--address", address, "--no-wait"]
    if spec.get("runtimeEnvYAML"):
        submit += ["--runtime-env-json", _go_quote(runtime_env_json(spec["runtimeEnvYAML"]))]
    if spec.get("metadata"):
        metadata = json.dumps(spec["metadata"], sort_keys=True, separators=(",", ":"))
        submit += ["--metadata-json", _go_quote(metadata)]
    submit += ["--submission-id", job_id]
    if spec.get("entrypointNumCpus"):
        submit += ["--entrypoint-num-cpus", f"{float(spec['entrypointNumCpus']):f}"]
    if spec.get("entrypointNumGpus"):
        submit += ["--entrypoint-num-gpus", f"{float(spec['entrypointNumGpus']):f}"]
    if spec.get("entrypointResources"):
        submit += ["--entrypoint-resources", _go_quote(spec["entrypointResources"])]
    submit += ["--", spec["entrypoint"].strip()]
    script = " ".join(
        [
            "until",
            "python",
            "-c",
            f"\"import urllib.request; r=urllib.request.urlopen('{health}', timeout=10); "
            "exit(0 if b'success' in r.read() else 1)\"",
            ">/dev/null",
            "2>&1",
            ";",
            "do",
            "echo",
            f'"Waiting for Ray Dashboard GCS to become healthy at {address} ..."',
            ";",
            "sleep",
            "2",
            ";",
            "done",
            ";",
            "if",
            "!",
            *["ray", "job", "status", "--address", address, job_id],
            ">/dev/null",
            "2>&1",
            ";",
            "then",
            *submit,
            ";",
            "fi",
            ";",
            *["ray", "job", "logs", "--address", address, "--follow", job_id],
        ]
    )
    return ["/bin/bash", "-ce", "--", script]


def env(*, cluster: str, job_id: str, token: str | None) -> dict[str, str]:
    """configureSubmitterContainer appends these (and the auth variables) to the user's."""
    out = {
        "PYTHONUNBUFFERED": "1",
        "RAY_DASHBOARD_ADDRESS": dashboard_address(cluster),
        "RAY_JOB_SUBMISSION_ID": job_id,
    }
    if token is not None:
        out |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    return out
