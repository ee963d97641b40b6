"""Write every pod the project makes Kubernetes run as a Pod manifest, for scanners.

    python -m tests.support.kuberay.export_pods OUT_DIR      # make lint runs checkov over OUT_DIR

Every variant's RayCluster and RayJob pods as KubeRay builds them (tests/support/kuberay/pods.py:
cluster_pods), the results readers and the preflight writer (jobs/kube/preflight.py).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from tests.support.kuberay.pods import cluster_pods
from tests.support.manifests import ALL_RAY, K8S, READERS


def _preflight_writer(reader: dict[str, Any]) -> dict[str, Any]:
    from jobs.kube import preflight as module

    return module._writer_pod(reader, 100)


def all_pods() -> dict[str, dict[str, Any]]:
    """Every pod, by a file-friendly name."""
    out: dict[str, dict[str, Any]] = {}
    for path in ALL_RAY:
        doc = yaml.safe_load(path.read_text())
        prefix = str(path.relative_to(K8S)).removesuffix(".yaml").replace("/", "-")
        for role, pod in cluster_pods(doc).items():
            out[f"{prefix}-{role}"] = pod
    for path in READERS:
        prefix = str(path.relative_to(K8S)).removesuffix(".yaml").replace("/", "-")
        out[prefix] = yaml.safe_load(path.read_text())
    out["preflight-writer"] = _preflight_writer(
        yaml.safe_load((K8S / "raycluster.yaml").read_text())
    )
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python -m tests.support.kuberay.export_pods OUT_DIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    for name, pod in all_pods().items():
        (out / f"{name}.yaml").write_text(yaml.safe_dump(pod, sort_keys=False))
    print(f"wrote {len(list(out.glob('*.yaml')))} pods to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
