"""Kubernetes manifests: KubeRay v1.7.0 CRD schemas (strict), core schemas, the project's
invariants, no drift from k8s/templates/ and k8s/values/. (Linters run in `make lint`.)"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from jobs import registry, smoke
from tests.support.kuberay.pods import KUBERAY_VERSION
from tests.support.manifests import (
    ALL_RAY,
    CLOUDS,
    CRDS,
    GPU_JOBS,
    K8S,
    KIND_JOBS,
    KUBERNETES_VERSION,
    READERS,
    REPO,
    SHARED,
    VALUES,
    VARIANTS,
    all_containers,
    cluster_specs,
    docs,
    folder,
    groups,
    ids,
    variant_of,
)


def _strict(schema: Any) -> Any:
    """Reject unknown fields, as `kubectl apply --validate=strict` does."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@cache
def crd_validator(kind: str) -> jsonschema.Draft7Validator:
    crd = yaml.safe_load((CRDS / f"ray.io_{kind.lower()}s.yaml").read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return jsonschema.Draft7Validator(_strict(version["schema"]["openAPIV3Schema"]))


CRD_LOCK = CRDS.parent / "kuberay.lock.json"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_crds_are_the_shared_kuberay_release() -> None:
    """The vendored CRDs are the release the lock names, byte for byte, everywhere; where
    ../shared holds that release (the project's machines, CI), they are its files too."""
    lock = json.loads(CRD_LOCK.read_text())
    version = lock["kuberay"]
    # One KubeRay version across the project: the folder, the port, `make operator`.
    assert CRDS.name == f"kuberay-v{version}"
    assert f"v{version}" == KUBERAY_VERSION  # tests/support/kuberay/pods.py
    make = re.search(r"^KUBERAY_VERSION \?= (\S+)$", (REPO / "Makefile").read_text(), re.M)
    assert make and make.group(1) == version, "the Makefile's KUBERAY_VERSION (make operator)"
    files = lock["files"]
    assert sorted(p.name for p in CRDS.iterdir()) == sorted(files)  # nothing unlisted
    assert {"ray.io_rayclusters.yaml", "ray.io_rayjobs.yaml"} <= set(files)
    for name, digest in files.items():
        assert _sha256(CRDS / name) == digest, f"{CRDS.name}/{name} is not the locked file"
    for kind in ("RayCluster", "RayJob"):
        (crd,) = docs(CRDS / f"ray.io_{kind.lower()}s.yaml")
        assert crd["kind"] == "CustomResourceDefinition" and crd["spec"]["group"] == "ray.io"
        assert crd["spec"]["names"]["kind"] == kind
    shared = REPO.parent / "shared" / f"kuberay-v{version}"
    if shared.is_dir():  # the release itself: crds/ and the LICENSE beside them
        for name, digest in files.items():
            source = shared / ("crds" if name.endswith(".yaml") else "") / name
            assert _sha256(source) == digest, f"{name} differs from {source}"


@pytest.mark.parametrize("path", ALL_RAY, ids=ids(ALL_RAY))
def test_validates_against_the_kuberay_crd_strictly(path: Path) -> None:
    (doc,) = docs(path)
    errors = sorted(crd_validator(doc["kind"]).iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


def test_strict_validation_catches_an_unknown_field() -> None:
    (doc,) = docs(K8S / "rayjob-tune.yaml")
    broken = copy.deepcopy(doc)
    broken["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0][
        "imagePullPolice"
    ] = "Always"
    assert list(crd_validator("RayJob").iter_errors(broken))
    broken = copy.deepcopy(doc)
    broken["spec"]["backofLimit"] = 1
    assert list(crd_validator("RayJob").iter_errors(broken))


@pytest.mark.parametrize(
    "path",
    CORE := [
        *(folder(v) / name for v in VARIANTS for name in ("storage.yaml", "networkpolicy.yaml")),
        *READERS,
    ],
    ids=ids(CORE),
)
def test_core_objects_validate_against_kubernetes(path: Path) -> None:
    for doc in docs(path):
        # The EKS class's file system id is filled in by `make storage` (k8s/bin/storage.sh).
        doc = json.loads(json.dumps(doc).replace("${EFS_FILE_SYSTEM_ID}", "fs-0123456789abcdef0"))
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def ray_pin() -> str:
    text = (REPO / "pyproject.toml").read_text()
    return re.search(r'"ray\[[^]]*\]==([^"]+)"', text).group(1)


@pytest.mark.parametrize("path", ALL_RAY, ids=ids(ALL_RAY))
def test_versions_follow_the_pyproject_pin(path: Path) -> None:
    (doc,) = docs(path)
    assert cluster_specs(doc)["rayVersion"] == ray_pin()
    for container in all_containers(doc):
        # Ours (-ray<pin>-gpu/cpu), or Ray's own image of the same version for the submitter.
        image = container["image"]
        assert f"-ray{ray_pin()}-" in image or f"rayproject/ray:{ray_pin()}-" in image, image


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_has_a_rayjob_per_stage_and_its_other_documents(variant: str) -> None:
    jobs = sorted(p.stem.removeprefix("rayjob-") for p in folder(variant).glob("rayjob-*.yaml"))
    assert jobs == sorted([*registry.names(), smoke.NAME])  # make smoke's, beside the stages
    for name in ("raycluster", "results-reader", "storage", "networkpolicy"):
        assert (folder(variant) / f"{name}.yaml").is_file(), name


def test_variants_are_the_values_files_and_kind_is_not_a_cloud() -> None:
    assert {"gke", "eks", "aks", "kind"} <= set(VARIANTS)
    assert [v for v in VARIANTS if VALUES[v].get("default")] == ["gke"]
    assert "kind" not in CLOUDS and {"gke", "eks", "aks"} <= set(CLOUDS)
    # Only the default variant sits at the top of k8s/; no stale variant folder is left.
    folders = {p.name for p in K8S.iterdir() if p.is_dir() and any(p.glob("rayjob-*.yaml"))}
    assert folders == set(VARIANTS) - {"gke"}


@pytest.mark.parametrize("path", GPU_JOBS + KIND_JOBS, ids=ids(GPU_JOBS + KIND_JOBS))
def test_deadlines_cover_the_variants_cold_starts(path: Path) -> None:
    (doc,) = docs(path)
    v = VALUES[variant_of(path)]
    stage = path.stem.removeprefix("rayjob-")
    # Fail fast while the cluster cannot come up; the whole attempt has room for a cold node.
    assert doc["spec"]["preRunningDeadlineSeconds"] == v["cold_start_s"]["head"] > 0
    own = (
        smoke.DEADLINE_S if stage == smoke.NAME else registry.kubernetes_facts(stage)["deadline_s"]
    )
    expected = v["deadline_s"] or own + v["cold_start_s"]["t4"]
    assert doc["spec"]["activeDeadlineSeconds"] == expected
    assert doc["spec"]["preRunningDeadlineSeconds"] < doc["spec"]["activeDeadlineSeconds"]


@pytest.mark.parametrize("path", GPU_JOBS + KIND_JOBS, ids=ids(GPU_JOBS + KIND_JOBS))
def test_rayjob_entrypoint_is_its_stage_and_a_failed_attempt_is_retried(path: Path) -> None:
    # Static: the retry itself, and the resume it leads to, run in tests/e2e (podman).
    (doc,) = docs(path)
    stage = path.stem.removeprefix("rayjob-")
    spec = doc["spec"]
    module = smoke.MODULE if stage == smoke.NAME else registry.STAGES[stage]
    assert spec["entrypoint"] == f"python -m {module}"
    assert (REPO / "jobs" / f"{stage}.py").is_file()
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] > 0
    # A stage's failed attempt is retried (it resumes); a failed smoke run is a finding.
    assert spec["activeDeadlineSeconds"] > 0
    assert spec["backoffLimit"] == 0 if stage == smoke.NAME else spec["backoffLimit"] >= 1
    assert "clusterSelector" not in spec
    env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert set(env) == {"env_vars"}


@pytest.mark.parametrize("path", ALL_RAY, ids=ids(ALL_RAY))
def test_every_ray_container_mounts_the_shared_volume(path: Path) -> None:
    (doc,) = docs(path)
    for group in groups(cluster_specs(doc)):
        pod = group["template"]["spec"]
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in pod["volumes"]
            if "persistentVolumeClaim" in v
        }
        for container in pod["containers"]:
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert claims.get(mounts.get(SHARED)) == "ray-tune-cluster-storage"
            env = {e["name"]: e.get("value") for e in container["env"]}
            assert env["STORAGE_PATH"] == SHARED and env["ACCELERATOR"] == "gpu"
            # The image names the dataset it staged (image/Dockerfile ENV): never override it.
            assert not {"DATA_DIR", "DATASET"} & set(env)


CLOUD_RAY = [folder(v) / "raycluster.yaml" for v in CLOUDS] + GPU_JOBS


@pytest.mark.parametrize("path", CLOUD_RAY, ids=ids(CLOUD_RAY))
def test_gpu_group_asks_for_its_clouds_t4(path: Path) -> None:
    (doc,) = docs(path)
    v = VALUES[variant_of(path)]
    spec = cluster_specs(doc)
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    (group,) = spec["workerGroupSpecs"]
    assert group["resources"]["accelerator_type:T4"] == "1"  # autoscale from zero
    pod = group["template"]["spec"]
    assert pod["nodeSelector"] == v["worker"]["node_selector"]
    assert pod["nodeSelector"].items() <= v["nodes"]["t4"]["labels"].items()
    resources = pod["containers"][0]["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == "1"
    assert spec["enableInTreeAutoscaling"] is True
    assert 0 == group["minReplicas"] < group["maxReplicas"] <= v["nodes"]["t4"]["max_nodes"]
    image = pod["containers"][0]["image"]
    assert ":" in image and image.endswith("-gpu")
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert int(env["GPU_WAIT_S"]) == v["cold_start_s"]["t4"] >= 1200  # a cold T4 from zero


@pytest.mark.parametrize("path", GPU_JOBS, ids=ids(GPU_JOBS))
def test_the_submitter_pulls_a_small_image_not_the_training_one(path: Path) -> None:
    (doc,) = docs(path)
    (submitter,) = doc["spec"]["submitterPodTemplate"]["spec"]["containers"]
    ray_version = cluster_specs(doc)["rayVersion"]
    assert submitter["image"] == f"rayproject/ray:{ray_version}-py311-cpu"


def _keys(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _keys(value)
    elif isinstance(node, list):
        for item in node:
            yield from _keys(item)


@pytest.mark.parametrize("path", KIND_JOBS, ids=ids(KIND_JOBS))
def test_kind_variant_has_fake_gpus_only(path: Path) -> None:
    (doc,) = docs(path)
    spec = cluster_specs(doc)
    keys = set(_keys(doc))
    assert not keys & {"nvidia.com/gpu", "nodeSelector", "tolerations"}, keys
    for group in spec["workerGroupSpecs"]:
        assert group["resources"] == {"GPU": "1", "accelerator_type:T4": "1"}
    for container in all_containers(doc):
        assert container["image"].endswith("-cpu")
    env = yaml.safe_load(doc["spec"]["runtimeEnvYAML"])["env_vars"]
    assert {"TRAIN_LIMIT", "VAL_LIMIT", "TUNE_NUM_SAMPLES", "TUNE_NUM_EPOCHS"} <= set(env)


@pytest.mark.parametrize("path", ALL_RAY, ids=ids(ALL_RAY))
def test_security_settings(path: Path) -> None:
    (doc,) = docs(path)
    spec = cluster_specs(doc)
    assert spec["authOptions"]["mode"] == "token"
    assert spec["headGroupSpec"]["serviceType"] == "ClusterIP"
    for group in groups(spec):
        assert group["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
        # Filestore and other fsGroup-honouring volumes: no recursive chown per pod start.
        assert (
            group["template"]["spec"]["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"
        )
    if doc["kind"] == "RayJob":
        assert doc["spec"]["submitterPodTemplate"]["spec"]["securityContext"]["runAsNonRoot"]
    for container in all_containers(doc):
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][kind]), container["name"]
        for env in container.get("env", []):  # the token is never written in a manifest
            assert not (env["name"] == "RAY_AUTH_TOKEN" and "value" in env)


def test_manifests_match_their_templates() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.kube.render", "--check"],
        capture_output=True,
        text=True,
        cwd=K8S.parent,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("variant", CLOUDS)
def test_one_cluster_shape_per_cloud(variant: str) -> None:
    (cluster,) = docs(folder(variant) / "raycluster.yaml")
    for path in folder(variant).glob("rayjob-*.yaml"):
        (job,) = docs(path)
        assert json.dumps(job["spec"]["rayClusterSpec"], sort_keys=True) == json.dumps(
            cluster["spec"], sort_keys=True
        ), path.name


def test_templates_leave_every_cloud_fact_to_the_values_files() -> None:
    # Adding a variant is a values file: no template names a cloud, a GPU model or kind.
    # (`v.nodes.t4`, `cold_start_s.t4`: the values' own keys, read, not decided, here)
    # Except the cluster-as-code scripts, one per cloud CLI (gcloud, eksctl and aws, az):
    # their commands are that cloud's; their values still come from its values file.
    words = re.compile(
        r"(?<![.\w])(T4|t4|kind|gke|GKE|eks|EKS|aks|AKS|nvidia-tesla|g4dn|Standard_NC)\b(?!:)"
    )
    per_cloud = {f"cloud-{c}.sh.j2" for c in ("gke", "eks", "aks")} | {"eksctl-cluster.yaml.j2"}
    for template in sorted((K8S / "templates").glob("*.j2")):
        if template.name in per_cloud:
            continue
        found = sorted({m.group(0) for m in words.finditer(template.read_text())})
        assert not found, f"{template.name}: {found}"


def test_manifests_can_name_images_by_the_pushed_digest(tmp_path: Path, monkeypatch) -> None:
    from jobs.kube import render

    digests = tmp_path / "digests.yaml"
    gpu = f"{render.IMAGE_REPO}@sha256:" + "a" * 64
    cpu = f"{render.IMAGE_REPO}@sha256:" + "b" * 64
    client = re.compile(r"rayproject/ray:[0-9.]+-py311-cpu")
    monkeypatch.setattr(render, "DIGESTS", digests)
    monkeypatch.setenv("DIGESTS", "1")
    with pytest.raises(render.RenderError, match="make push"):
        render.image("gpu")  # DIGESTS=1 without a recorded digest
    digests.write_text(f"gpu: {gpu}\ncpu: {cpu}\n")
    monkeypatch.setenv("DIGESTS", "")  # the default: the recorded digest wins over the tag
    render.values.cache_clear()
    files = render.render()
    for path, text in files.items():
        doc = yaml.safe_load(text) if "\n---" not in text else {"kind": "many"}
        if doc["kind"] in ("RayJob", "RayCluster"):
            ray = [c["image"] for c in all_containers(doc)][:2]  # head and worker
            assert all(i in (gpu, cpu) for i in ray), (path, ray)
            rest = [c["image"] for c in all_containers(doc)][2:]
        elif doc["kind"] == "Pod":
            rest = [c["image"] for c in doc["spec"]["containers"]]
        else:
            continue
        assert all(i in (gpu, cpu) or client.fullmatch(i) for i in rest), (path, rest)
    monkeypatch.setenv("DIGESTS", "0")  # tags on request
    assert render.image("gpu").endswith("-gpu") and "@" not in render.image("gpu")
    digests.write_text("gpu: elsewhere.example/other@sha256:" + "c" * 64 + "\n")
    monkeypatch.setenv("DIGESTS", "")  # a digest of another repository is not ours
    assert render.image("gpu").endswith("-gpu")


def test_a_pull_secret_reaches_every_pod(monkeypatch) -> None:
    from jobs.kube import render

    monkeypatch.setenv("IMAGE_PULL_SECRET", "regcred")
    files = render.render()
    for path, text in files.items():
        doc = yaml.safe_load_all(text)
        for d in doc:
            if d["kind"] == "Pod":
                specs = [d["spec"]]
            elif d["kind"] in ("RayJob", "RayCluster"):
                spec = cluster_specs(d)
                specs = [g["template"]["spec"] for g in groups(spec)]
                if d["kind"] == "RayJob":
                    specs.append(d["spec"]["submitterPodTemplate"]["spec"])
            else:
                continue
            for pod in specs:
                assert pod["imagePullSecrets"] == [{"name": "regcred"}], path
