"""`make cloud-up` / `make cloud-down` (k8s/<variant>/cloud.sh, rendered from k8s/templates/
cloud-<cloud>.sh.j2 and the values file): the commands, their order, and their values.

DRY_RUN=1 runs on a machine with no cloud CLI (PATH below has none); the idempotent run is
checked against stand-in CLIs that answer every `describe` as found, or as missing."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.runs import REPO

K8S = REPO / "k8s"
CLOUDS = ("gke", "eks", "aks")


def values(cloud: str) -> dict[str, Any]:
    return yaml.safe_load((K8S / "values" / f"{cloud}.yaml").read_text())


def script(cloud: str) -> Path:
    return K8S / ("" if values(cloud).get("default") else cloud) / "cloud.sh"


def bare_path(tmp_path: Path) -> str:
    """A PATH with the few tools the scripts use themselves, and no cloud CLI at all."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("dirname", "grep", "sleep"):
        if not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(shutil.which(tool))
    return str(bin_dir)


def run(path: Path, action: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/bash", str(path), action],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": bare_path(tmp_path),
            "HOME": str(tmp_path),
            "MAKE": "make",
            "PY": sys.executable,  # jobs/kube/estimate.py's, for cloud-down's last lines
            **env,
        },
    )


def commands(out: str) -> list[str]:
    """The commands a dry run prints (not its comments)."""
    return [line for line in out.splitlines() if line and not line.startswith("#")]


def index(lines: list[str], pattern: str) -> int:
    (found,) = [i for i, line in enumerate(lines) if re.search(pattern, line)] or [None]
    assert found is not None, f"no line matches {pattern!r}:\n" + "\n".join(lines)
    return found


@pytest.mark.parametrize("cloud", CLOUDS)
def test_a_dry_run_needs_no_cloud_cli_and_creates_in_order(cloud: str, tmp_path: Path) -> None:
    proc = run(script(cloud), "up", tmp_path, DRY_RUN="1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = commands(proc.stdout)
    v = values(cloud)
    registry = index(lines, r"(artifacts repositories|ecr|acr) create")
    cluster = index(lines, r"(clusters create|create cluster|aks create)")
    operator, storage, policy = (
        index(lines, r"^make operator$"),
        index(lines, rf"^make storage CLOUD={cloud}"),
        index(lines, rf"^make network-policy CLOUD={cloud}$"),
    )
    assert registry < cluster < operator < storage < policy
    # The T4 pool from zero, bounded as the values file says, on the declared machine.
    t4 = v["nodes"]["t4"]
    if cloud == "eks":  # in the eksctl config cloud-up hands eksctl
        config = yaml.safe_load((K8S / "eks" / "eksctl-cluster.yaml").read_text())
        (group,) = [g for g in config["managedNodeGroups"] if g["name"] == "t4"]
        assert group["minSize"] == 0 and group["maxSize"] == t4["max_nodes"]
        assert group["instanceType"] == t4["machine"].split()[0]
        assert group["taints"] == t4["taints"]
        # The autoscaler's rights on its own service account (IRSA), not a node group's role.
        (account,) = config["iam"]["serviceAccounts"]
        assert account["wellKnownPolicies"] == {"autoScaler": True}
        helm = lines[index(lines, r"helm upgrade --install cluster-autoscaler")]
        assert "rbac.serviceAccount.create=false" in helm
        assert f"rbac.serviceAccount.name={account['metadata']['name']}" in helm
        # Pinned: the chart, and the autoscaler's image at the cluster's pinned minor.
        chart = v["cloud"]["autoscaler_chart"]
        assert f"--version {chart['version']} " in helm
        minor = v["cloud"]["kubernetes_version"]
        assert config["metadata"]["version"] == minor
        assert f"image.tag={chart['image_tag']}" in helm
        assert chart["image_tag"].startswith(f"v{minor}.")
        # EFS: group, rule, file system, mount targets, then the claim naming it.
        order = [
            index(lines, r"create-security-group"),
            index(lines, r"authorize-security-group-ingress .* --port 2049"),
            index(lines, r"efs create-file-system"),
            index(lines, r"efs create-mount-target"),
            index(lines, r"make storage CLOUD=eks EFS_FILE_SYSTEM_ID=\$FS"),
        ]
        assert order == sorted(order)
    else:
        pool = lines[index(lines, r"(node-pools create|nodepool add)")]
        assert re.search(rf"--(max-nodes|max-count) {t4['max_nodes']}\b", pool)
        assert re.search(r"--(min-nodes|min-count) 0\b", pool)
        assert t4["machine"].split()[0] in pool
        assert cluster < index(lines, r"(node-pools create|nodepool add)")
    if cloud == "aks":  # the device plugin AKS does not install, before any trial
        assert cluster < index(lines, r"^make device-plugin CLOUD=aks$") < operator


@pytest.mark.parametrize("cloud", CLOUDS)
def test_cloud_down_deletes_the_volume_before_the_cluster(cloud: str, tmp_path: Path) -> None:
    proc = run(script(cloud), "down", tmp_path, DRY_RUN="1")
    assert proc.returncode == 0, proc.stderr
    lines = commands(proc.stdout)
    claim = index(lines, rf"^make teardown DELETE_VOLUME=1 CLOUD={cloud}$")
    cluster = index(lines, r"(clusters delete|delete cluster|aks delete)")
    # kubectl is pointed at this cluster before anything is deleted through it.
    credentials = index(lines, r"(get-credentials|update-kubeconfig)")
    assert credentials < claim < cluster
    if cloud == "eks":  # the file system outlives the claim: its targets, then it, then the group
        order = [
            claim,
            index(lines, r"efs delete-mount-target"),
            index(lines, r"describe-mount-targets .* do sleep"),
            index(lines, r"efs delete-file-system"),
            index(lines, r"delete-security-group"),
            cluster,
        ]
        assert order == sorted(order)
    else:  # the instance or share behind the claim is gone before the cluster goes
        assert claim < index(lines, r"kubectl wait --for=delete pv/") < cluster
    # The registry stays unless asked, and the run says it still bills.
    registry = r"(repositories delete|delete-repository|group delete)"
    assert not any(re.search(registry, line) for line in lines)
    # Its last lines: what it kept, and what that costs a month (or by the GBs stored).
    title = values(cloud)["title"]
    tail = proc.stdout.split(f"# Still billing on {title} from what cloud-up made")[1]
    assert re.search(r"registry.*: \$\d+\.\d\d.*DELETE_REGISTRY=1 deletes it", tail, re.I), tail
    asked = run(script(cloud), "down", tmp_path, DRY_RUN="1", DELETE_REGISTRY="1")
    last = commands(asked.stdout)[-1]
    assert re.search(registry, last), last
    assert f"Still billing on {title} from what cloud-up made: nothing." in asked.stdout


@pytest.mark.parametrize("cloud", CLOUDS)
def test_cloud_up_states_what_the_cpu_node_holds_within_its_allocatable(
    cloud: str, tmp_path: Path
) -> None:
    """The head, its sidecar, the submitter, the reader and the cluster's own pods, summed
    from the rendered manifests and the values file, beside the node's allocatable CPU; a
    heavier system_pods entry moves the sum."""

    def budget(out: str) -> tuple[list[int], int, int]:
        line = re.search(r"holds at once: (.*) = (\d+)m of (\d+)m allocatable", out)
        assert line, out
        parts = [int(m) for m in re.findall(r"(\d+)m", line.group(1))]
        return parts, int(line.group(2)), int(line.group(3))

    parts, total, allocatable = budget(run(script(cloud), "up", tmp_path, DRY_RUN="1").stdout)
    assert len(parts) == 5 and sum(parts) == total <= allocatable, (parts, total)
    heavier = rendered(
        cloud, lambda v: v["nodes"]["head"]["system_pods"].update(cpu="1500m"), tmp_path
    )
    _, total_after, _ = budget(run(heavier, "up", tmp_path, DRY_RUN="1").stdout)
    assert total_after == total - parts[-1] + 1500


@pytest.mark.parametrize("cloud", ["eks", "aks"])
def test_image_streaming_is_refused_where_it_would_not_stream_the_image(cloud: str) -> None:
    from jobs.kube import render

    changed = copy.deepcopy(values(cloud))
    changed["cloud"]["image_streaming"] = True
    real = render.values
    render.values = lambda variant: changed if variant == cloud else real(variant)
    try:
        with pytest.raises(render.RenderError, match="image_streaming: true is not offered"):
            render.cloud_scripts()
    finally:
        render.values = real


def rendered(cloud: str, change: Any, tmp_path: Path) -> Path:
    """cloud.sh rendered from the values file with one entry changed, beside a copy of the
    library it sources."""

    from jobs.kube import render

    changed = copy.deepcopy(values(cloud))
    change(changed)
    real = render.values
    render.values = lambda variant: changed if variant == cloud else real(variant)
    try:
        files = render.cloud_scripts()
    finally:
        render.values = real
    root = tmp_path / "repo"
    (root / "k8s" / "bin").mkdir(parents=True)
    shutil.copy(K8S / "bin" / "cloud-lib.sh", root / "k8s" / "bin")
    for path, text in files.items():
        target = root / path.relative_to(REPO)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return root / script(cloud).relative_to(REPO)


@pytest.mark.parametrize(
    ("cloud", "change", "expected"),
    [
        ("gke", lambda v: v["cloud"].update(zone="europe-west4-b"), "--zone europe-west4-b"),
        ("gke", lambda v: v["nodes"]["t4"].update(max_nodes=8), "--max-nodes 8"),
        ("gke", lambda v: v.update(spot=True), "--num-nodes 0 --spot"),
        ("gke", lambda v: v["cloud"].update(image_streaming=False), None),
        # A Spot pool's quota: GKE's preemptible GPUs beside the regular ones, AWS's Spot requests.
        (
            "gke",
            lambda v: v.update(spot=True),
            "quotas.metric=(PREEMPTIBLE_NVIDIA_T4_GPUS NVIDIA_T4_GPUS)",
        ),
        ("eks", lambda v: v.update(spot=True), "--quota-code L-3819A6DF"),
        ("aks", lambda v: v.update(spot=True), "name.value=='lowPriorityCores'"),
        ("aks", lambda v: v.update(spot=True), "--priority Spot --eviction-policy Delete"),
        ("aks", lambda v: v["cloud"].update(registry="myacr"), "--attach-acr myacr"),
        ("eks", lambda v: v["cloud"].update(region="eu-west-1"), "--region eu-west-1"),
    ],
)
def test_a_changed_values_entry_changes_the_command(
    cloud: str, change: Any, expected: str | None, tmp_path: Path
) -> None:
    before = commands(run(script(cloud), "up", tmp_path, DRY_RUN="1").stdout)
    after_script = rendered(cloud, change, tmp_path)
    proc = run(after_script, "up", tmp_path, DRY_RUN="1")
    assert proc.returncode == 0, proc.stderr
    after = commands(proc.stdout)
    assert after != before
    if expected is None:  # image streaming off: no such flag left
        assert not any("--enable-image-streaming" in line for line in after)
        assert any("--enable-image-streaming" in line for line in before)
    else:
        assert any(expected in line for line in after), "\n".join(after)
        assert not any(expected in line for line in before)


def test_eks_spot_renders_a_spot_group_in_the_eksctl_config(tmp_path: Path) -> None:
    path = rendered("eks", lambda v: v.update(spot=True), tmp_path)
    config = yaml.safe_load((path.parent / "eksctl-cluster.yaml").read_text())
    (group,) = [g for g in config["managedNodeGroups"] if g["name"] == "t4"]
    assert group["spot"] is True and group["instanceTypes"] == ["g4dn.xlarge"]


def stand_in_clis(
    tmp_path: Path, found: bool, quota: str = "16", list_fails: bool = False
) -> tuple[str, Path]:
    """gcloud and make that log their calls; every `describe` answers found (exit 0) or not,
    a cluster `list` names the cluster when found (or fails, as without credentials), and
    the T4 quota read prints `quota`'s lines (or fails where it says "fail")."""
    bin_dir = Path(bare_path(tmp_path))
    log = tmp_path / "calls"
    answer = "exit 1" if quota == "fail" else f"printf '{quota}\\n'; exit"
    for tool in ("gcloud", "make", "kubectl"):
        stub = bin_dir / tool
        stub.write_text(
            "#!/bin/bash\n"
            f'echo "{tool} $*" >> {log}\n'
            'if [[ " $* " == *" --format=value(projectNumber) "* ]]; then echo 123; exit; fi\n'
            f'if [[ " $* " == *"quotas.limit"* ]]; then {answer}; fi\n'
            f'if [[ " $* " == *" clusters list "* ]]; then {"exit 1" if list_fails else ""}\n'
            f"  {'echo ray-tune' if found else ':'}; exit; fi\n"
            f'if [[ " $* " == *" describe "* ]]; then exit {0 if found else 1}; fi\n'
        )
        stub.chmod(0o755)
    return str(bin_dir), log


def run_gke(
    tmp_path: Path, action: str, found: bool, quota: str = "16", list_fails: bool = False
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """GKE's script run against the stand-in CLIs: the process and the calls they logged."""
    path, log = stand_in_clis(tmp_path, found, quota, list_fails)
    proc = subprocess.run(
        ["/bin/bash", str(script("gke")), action],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": path, "HOME": str(tmp_path), "MAKE": "make", "PROJECT": "p"},
    )
    return proc, log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize("found", [False, True])
def test_cloud_up_creates_only_what_is_missing(found: bool, tmp_path: Path) -> None:
    proc, calls = run_gke(tmp_path, "up", found)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    creates = [c for c in calls if re.search(r" create( |$)", c)]
    if found:
        assert creates == [] and out.count("exists already: kept") == 3
    else:
        assert [c.split()[1:4] for c in creates] == [
            ["artifacts", "repositories", "create"],
            ["container", "clusters", "create"],
            ["container", "node-pools", "create"],
        ]
    # The project number read once, handed to the binding; the operator, claim and policy last.
    assert any("serviceAccount:123-compute@" in c for c in calls)
    last = ["make operator", "make storage CLOUD=gke", "make network-policy CLOUD=gke"]
    assert calls[-3:] == last


def test_an_unknown_action_is_an_error_line_and_exit_2(tmp_path: Path) -> None:
    proc = run(script("gke"), "sideways", tmp_path, DRY_RUN="1")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("usage:")
    assert os.access(K8S / "bin" / "cloud-lib.sh", os.R_OK)


@pytest.mark.parametrize(
    ("quota", "said"),
    [
        ("0", "problem: the T4 quota"),
        ("8", "ok: 8"),
        ("0\\n8", "ok: 8"),  # two quotas (GKE Spot: preemptible, regular): the larger counts
        ("fail", "problem: the T4 quota NVIDIA_T4_GPUS in us-central1 is unknown"),
    ],
)
def test_cloud_up_reads_the_t4_quota_first_and_says_when_it_is_short(
    quota: str, said: str, tmp_path: Path
) -> None:
    """A new project often has no T4 quota: cloud-up reads it before creating anything and
    prints a problem line with the request to make, then goes on (a request takes days)."""
    proc, calls = run_gke(tmp_path, "up", found=False, quota=quota)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert said in out
    if quota == "0":
        assert "is 0, under the 4 the T4 pool can use" in out
        assert "--quota-id=NVIDIA-T4-GPUS-per-project-region" in out  # the fix
    read = next(i for i, c in enumerate(calls) if "quotas.limit" in c)
    assert read < next(i for i, c in enumerate(calls) if " create " in c)


def test_cloud_down_of_a_cluster_that_is_gone_touches_no_kubectl_context(tmp_path: Path) -> None:
    """Without the cluster there is nothing to point kubectl at: cloud-down must not run
    teardown against whatever cluster the current context names."""
    proc, calls = run_gke(tmp_path, "down", found=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert not [c for c in calls if c.startswith(("kubectl", "make"))], calls
    assert "the cluster ray-tune is gone already" in out


def test_cloud_down_deletes_a_cluster_without_a_claim(tmp_path: Path) -> None:
    """No claim (nothing made with make storage, or deleted already): no volume to wait for,
    and the cluster still goes."""
    proc, calls = run_gke(tmp_path, "down", found=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [c for c in calls if c.startswith("gcloud container clusters delete ray-tune")], calls
    assert not [c for c in calls if c.startswith("kubectl wait")], calls


def test_cloud_down_that_cannot_list_clusters_deletes_nothing(tmp_path: Path) -> None:
    """A CLI that fails (credentials, project) says nothing about the cluster being gone."""
    proc, calls = run_gke(tmp_path, "down", found=True, list_fails=True)
    assert proc.returncode == 1 and "error: cannot tell whether it exists" in proc.stderr
    assert not [c for c in calls if " delete " in c or c.startswith(("make", "kubectl"))]
