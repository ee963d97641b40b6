"""k8s/bin/storage.sh (make storage CLOUD=...), k8s/bin/teardown.sh (make teardown) and
image/push.sh (make push) against a stand-in kubectl / container engine that answers from a
small state file and records every call."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.runs import REPO

STUB = r"""#!/usr/bin/env python3
import json, os, sys
state = json.loads(open(os.environ["STUB_STATE"]).read())
args = sys.argv[1:]
stdin = sys.stdin.read() if "-f" in args and "-" in args else ""
with open(os.environ["STUB_STATE"] + ".calls", "a") as log:
    log.write(json.dumps({"args": args, "stdin": stdin}) + "\n")
if args[:1] == ["apply"]:
    print("applied"); sys.exit(0)
if args[:1] == ["delete"]:
    print("deleted " + " ".join(args[1:])); sys.exit(0)
if args[:2] == ["get", "pvc"]:
    claim = state.get("pvc")
    if "--ignore-not-found" in args:
        print("persistentvolumeclaim/" + args[2] if claim else ""); sys.exit(0)
    if not claim:
        print("NotFound", file=sys.stderr); sys.exit(1)
    out = args[args.index("-o") + 1]
    print(claim["class"] if "storageClassName" in out else claim["phase"]); sys.exit(0)
if args[:1] == ["get"]:
    print("\n".join(state.get("objects", {}).get(args[1], []))); sys.exit(0)
if args[:2] == ["image", "inspect"]:
    sys.exit(0 if args[2] in state.get("images", []) else 1)
if args[:1] == ["push"]:
    open(args[args.index("--digestfile") + 1], "w").write("sha256:" + "d" * 64); sys.exit(0)
sys.exit(3)
"""


@pytest.fixture
def stub(tmp_path: Path):
    path = tmp_path / "stub"
    path.write_text(STUB)
    path.chmod(0o755)
    state = tmp_path / "state.json"

    def run(script: str, *args: str, state_data: dict, **env: str):
        state.write_text(json.dumps(state_data))
        proc = subprocess.run(
            ["bash", str(REPO / script), *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", "STUB_STATE": str(state), **env},
        )
        calls_file = Path(str(state) + ".calls")
        calls = (
            [json.loads(line) for line in calls_file.read_text().splitlines()]
            if (calls_file.exists())
            else []
        )
        calls_file.unlink(missing_ok=True)
        return proc, calls

    return path, run


def storage(variant: str) -> str:
    return str(REPO / "k8s" / ("" if variant == "gke" else variant) / "storage.yaml")


def test_storage_applies_the_clouds_claim(stub) -> None:
    kubectl, run = stub
    proc, calls = run("k8s/bin/storage.sh", storage("gke"), state_data={}, KUBECTL=str(kubectl))
    assert proc.returncode == 0, proc.stderr
    (applied,) = [c for c in calls if c["args"][:1] == ["apply"]]
    (claim,) = list(yaml.safe_load_all(applied["stdin"]))
    assert claim["spec"]["storageClassName"] == "standard-rwx"


def test_storage_refuses_a_claim_of_another_class_and_says_how_to_replace_it(stub) -> None:
    kubectl, run = stub
    pending = {"pvc": {"class": "standard-rwo", "phase": "Pending"}}
    proc, calls = run(
        "k8s/bin/storage.sh", storage("gke"), state_data=pending, KUBECTL=str(kubectl)
    )
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: claim ray-tune-cluster-storage exists (Pending)")
    assert "'standard-rwo'" in line and "'standard-rwx'" in line
    assert "kubectl delete pvc ray-tune-cluster-storage" in line
    assert not [c for c in calls if c["args"][:1] == ["apply"]], "nothing applied"


def test_storage_on_eks_needs_and_fills_in_the_file_system(stub) -> None:
    kubectl, run = stub
    proc, calls = run("k8s/bin/storage.sh", storage("eks"), state_data={}, KUBECTL=str(kubectl))
    assert proc.returncode == 2 and "EFS_FILE_SYSTEM_ID=fs-" in proc.stderr
    assert not [c for c in calls if c["args"][:1] == ["apply"]]
    proc, calls = run(
        "k8s/bin/storage.sh",
        storage("eks"),
        state_data={},
        KUBECTL=str(kubectl),
        EFS_FILE_SYSTEM_ID="fs-0123456789abcdef0",
    )
    assert proc.returncode == 0, proc.stderr
    (applied,) = [c for c in calls if c["args"][:1] == ["apply"]]
    klass, claim = yaml.safe_load_all(applied["stdin"])
    assert klass["parameters"]["fileSystemId"] == "fs-0123456789abcdef0"
    assert claim["spec"]["storageClassName"] == klass["metadata"]["name"] == "ray-tune-efs"


def test_teardown_deletes_ours_and_keeps_the_volume_unless_asked(stub) -> None:
    kubectl, run = stub
    objects = {
        "rayjobs.ray.io": ["rayjob.ray.io/ray-tune-asha"],
        "pods": ["pod/ray-tune-results-reader"],
        "networkpolicies": ["networkpolicy.networking.k8s.io/ray-tune-k8s"],
        "persistentvolumeclaims": ["persistentvolumeclaim/ray-tune-cluster-storage"],
    }
    proc, calls = run("k8s/bin/teardown.sh", state_data={"objects": objects}, KUBECTL=str(kubectl))
    assert proc.returncode == 0, proc.stderr
    deleted = [c["args"][-1] for c in calls if c["args"][:1] == ["delete"]]
    assert deleted == [
        "rayjob.ray.io/ray-tune-asha",
        "pod/ray-tune-results-reader",
        "networkpolicy.networking.k8s.io/ray-tune-k8s",
    ]
    gets = [c["args"] for c in calls if c["args"][:1] == ["get"]]
    assert all("app.kubernetes.io/" in " ".join(g) for g in gets), "only ours, by label"
    assert "kept: persistentvolumeclaim/ray-tune-cluster-storage" in proc.stdout
    assert "Still billing" in proc.stdout
    proc, calls = run(
        "k8s/bin/teardown.sh",
        state_data={"objects": objects},
        KUBECTL=str(kubectl),
        DELETE_VOLUME="1",
    )
    deleted = [c["args"][-1] for c in calls if c["args"][:1] == ["delete"]]
    assert "persistentvolumeclaim/ray-tune-cluster-storage" in deleted


def test_teardown_ends_with_what_still_bills_on_the_cloud_and_its_monthly_price(stub) -> None:
    kubectl, run = stub
    proc, _ = run(
        "k8s/bin/teardown.sh",
        state_data={"objects": {}},
        KUBECTL=str(kubectl),
        CLOUD="eks",
        PY=sys.executable,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    start = lines.index(
        "Still billing on EKS until you delete them (per month of 730 h; k8s/README.md: Teardown; "
        "make cloud-down deletes them all but the registry):"
    )
    billing = lines[start + 1 :]
    assert billing[0] == (
        "- the head's CPU node pool, m5.xlarge: $140.16 per node; a T4 pool at zero nodes: $0"
    )
    assert "- EKS control plane, standard support (extended: $0.60): $73.00" in billing
    assert any(line.startswith("- NAT gateway") and line.endswith("$32.85") for line in billing)
    assert "- ECR registry, the image's GBs: $0.10 per GB stored" in billing
    assert billing[-1].startswith("Delete the claim (DELETE_VOLUME=1) before the cluster")


def test_push_pushes_what_make_image_built_and_records_its_digest(stub, tmp_path) -> None:
    engine, run = stub
    podman = tmp_path / "podman"  # push.sh asks podman for a digest file
    podman.symlink_to(engine)
    tag = "registry.example/ray-tune-k8s:0.1.0-ray2.60.0-gpu"
    (tmp_path / "image").mkdir()
    proc, _ = run("image/push.sh", "gpu", tag, state_data={"images": []}, DOCKER=str(podman))
    assert proc.returncode == 2 and "make image" in proc.stderr  # nothing built: nothing pushed
    # push.sh writes image/digests.yaml under the repository: run it on a copy of the script.
    copy = tmp_path / "repo" / "image"
    copy.mkdir(parents=True)
    (copy / "push.sh").write_text((REPO / "image" / "push.sh").read_text())
    (tmp_path / "state.json").write_text(json.dumps({"images": [tag]}))
    proc = subprocess.run(
        ["bash", str(copy / "push.sh"), "gpu", tag],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "STUB_STATE": str(tmp_path / "state.json"),
            "DOCKER": str(podman),
        },
    )
    assert proc.returncode == 0, proc.stderr
    recorded = yaml.safe_load((copy / "digests.yaml").read_text())
    assert recorded == {"gpu": "registry.example/ray-tune-k8s@sha256:" + "d" * 64}


def test_device_plugin_installs_the_pinned_chart_with_the_rendered_values_where_the_cloud_has_none(
    tmp_path,
) -> None:
    """make device-plugin CLOUD=aks: NVIDIA's chart at the version kept beside the project
    (tests/support/charts/), with the values make manifests rendered; GKE and EKS install
    their own. DRY_RUN=1 runs nothing, so no helm is needed."""
    chart = yaml.safe_load(
        (REPO / "tests/support/charts/nvidia-device-plugin-0.20.0/Chart.yaml").read_text()
    )
    script = str(REPO / "k8s/bin/device-plugin.sh")
    env = {"PATH": "/usr/bin:/bin", "DRY_RUN": "1", "HELM": str(tmp_path / "no-helm")}
    proc = subprocess.run(
        [script, "k8s/aks", "aks"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        f"[device-plugin] {tmp_path / 'no-helm'} upgrade --install nvdp nvidia-device-plugin "
        f"--repo https://nvidia.github.io/k8s-device-plugin --version {chart['version']} "
        "--namespace nvidia-device-plugin --create-namespace -f k8s/aks/device-plugin.values.yaml"
    )
    for cloud, where in (("gke", "k8s"), ("eks", "k8s/eks")):
        proc = subprocess.run(
            [script, where, cloud], cwd=REPO, env=env, capture_output=True, text=True
        )
        assert proc.returncode == 0 and "nothing to install" in proc.stdout, proc.stdout
