"""k8s/bin/results.sh (make results TARGET=k8s): a stage's outputs copied from the volume,
through the head pod while a cluster runs, else through a short-lived reader pod that is
deleted afterwards. A stand-in kubectl (tests/support/kuberay/fake_kubectl.py) plays the cluster."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.kuberay.fake_kubectl import calls, environment
from tests.support.runs import REPO

SCRIPT = REPO / "k8s" / "bin" / "results.sh"
SUMMARY = {"stage": "tune", "best": None, "trials": [], "counts": {}}


@pytest.fixture
def pvc(tmp_path: Path) -> Path:
    stage = tmp_path / "pvc" / "tune"
    stage.mkdir(parents=True)
    (stage / "results.json").write_text(json.dumps(SUMMARY))
    (stage / "results.csv").write_text("trial_id,lr\n")
    (stage / "learning_curves.png").write_bytes(b"\x89PNG fake")
    return stage.parent


def results(
    tmp_path: Path, pvc: Path, head: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), "tune", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment(tmp_path, FAKE_KUBECTL_PVC=str(pvc), FAKE_KUBECTL_HEAD=head, **env),
    )


def test_without_a_cluster_a_reader_pod_copies_the_outputs(tmp_path: Path, pvc: Path) -> None:
    proc = results(tmp_path, pvc)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == SUMMARY
    out = tmp_path / "out" / "tune"
    assert sorted(p.name for p in out.iterdir()) == [
        "learning_curves.png",
        "results.csv",
        "results.json",
    ]
    assert "(no tune/best_model.pt on the volume)" in proc.stderr
    log = calls(tmp_path)
    assert "apply -f k8s/results-reader.yaml" in log
    assert any(c.startswith("cp -c reader ray-tune-results-reader:") for c in log)
    assert log[-1].startswith("delete pod/ray-tune-results-reader"), "the reader is removed"


def test_with_a_running_cluster_it_reads_through_the_head(tmp_path: Path, pvc: Path) -> None:
    proc = results(tmp_path, pvc, head="pod/ray-tune-head-abcde")
    assert proc.returncode == 0, proc.stderr
    log = calls(tmp_path)
    assert not [c for c in log if c.startswith(("apply", "delete"))]
    assert any(c.startswith("cp -c ray-head ray-tune-head-abcde:") for c in log)


def test_for_a_report_it_copies_each_trials_logs_and_results_not_its_checkpoints(
    tmp_path: Path, pvc: Path
) -> None:
    """make report TARGET=k8s: a run that died before results.json is read from its trials."""
    (pvc / "tune" / "results.json").unlink()
    trial = pvc / "tune" / "train_trial_1a2b3_00000_0_lr=0.01_2026-12-08"
    (trial / "checkpoint_000000").mkdir(parents=True)
    (trial / "checkpoint_000000" / "model.pt").write_bytes(b"weights")
    for name in ("stdout", "stderr", "result.json", "params.json"):
        (trial / name).write_text(name)
    proc = results(tmp_path, pvc, REPORT="1")
    assert proc.returncode == 0, proc.stderr
    copied = tmp_path / "out" / "tune" / trial.name
    assert sorted(p.name for p in copied.iterdir()) == [
        "params.json",
        "result.json",
        "stderr",
        "stdout",
    ]
    assert (copied / "stdout").read_text() == "stdout"
    assert "copied tune's trial logs" in proc.stderr


def test_a_stage_without_results_is_an_error(tmp_path: Path, pvc: Path) -> None:
    (pvc / "tune" / "results.json").unlink()
    proc = results(tmp_path, pvc)
    assert proc.returncode == 1
    assert "error: no tune/results.json on the volume" in proc.stderr
    assert calls(tmp_path)[-1].startswith("delete pod/"), "removed on failure too"


def test_the_reader_pod_is_read_only_and_non_root() -> None:
    pod = yaml.safe_load((REPO / "k8s" / "results-reader.yaml").read_text())
    spec = pod["spec"]
    assert (
        spec["securityContext"]["runAsNonRoot"] is True
        and spec["securityContext"]["runAsUser"] == 1000
    )
    assert spec["automountServiceAccountToken"] is False and spec["activeDeadlineSeconds"] > 0
    (container,) = spec["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert all(m["readOnly"] for m in container["volumeMounts"])
    assert spec["volumes"][0]["persistentVolumeClaim"]["readOnly"] is True


def test_several_stages_and_their_attempt_logs_in_one_pod_session(
    tmp_path: Path, pvc: Path
) -> None:
    """make results STAGE=all TARGET=k8s: every stage through one reader pod; a stage not run
    yet is noted, not an error; each stage's `<stage>.logs/` lands in <stage>/logs/."""
    logs = pvc / "tune.logs"
    logs.mkdir()
    (logs / "20261201T100000Z_ray-tune-tune-aaaaa.log").write_text("attempt 1 failed\n")
    proc = subprocess.run(
        ["bash", str(SCRIPT), "tune,asha", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment(tmp_path, FAKE_KUBECTL_PVC=str(pvc), FAKE_KUBECTL_HEAD=""),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "", "several stages: the files, not one results.json"
    assert (tmp_path / "out" / "tune" / "results.json").is_file()
    copied = tmp_path / "out" / "tune" / "logs" / "20261201T100000Z_ray-tune-tune-aaaaa.log"
    assert copied.read_text() == "attempt 1 failed\n"
    assert "(no asha/results.json on the volume)" in proc.stderr
    assert "(no asha.logs on the volume)" in proc.stderr
    assert sum(c.startswith("apply") for c in calls(tmp_path)) == 1, "one reader pod"


def test_logs_only_copies_a_failed_stages_logs_without_results(tmp_path: Path, pvc: Path) -> None:
    """make logs TARGET=k8s: a stage whose every attempt failed has logs but no results."""
    (pvc / "tune" / "results.json").unlink()
    (pvc / "tune.logs").mkdir()
    (pvc / "tune.logs" / "20261201T100000Z_x.log").write_text("error: a reason\n")
    proc = subprocess.run(
        ["bash", str(SCRIPT), "tune", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment(tmp_path, FAKE_KUBECTL_PVC=str(pvc), FAKE_KUBECTL_HEAD="", LOGS_ONLY="1"),
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "tune" / "logs" / "20261201T100000Z_x.log").is_file()
