"""jobs/smoke.py's verdicts: every check `ok` on a sound cluster; each break turns its own
check into a `problem` line with a fix; SMOKE_SKIP's checks say `skipped`, never `ok`.
What a worker sees is handed in as a Probe (the podman e2e test runs the real one)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jobs import smoke
from jobs.core.parsers import ConfigError
from tests.support.runs import REPO, clean_env

SETTINGS = smoke.SmokeSettings(Path("/mnt/cluster_storage/smoke"), "T4", 600, {})
SOUND = smoke.Probe(
    node_id="ab" * 28,
    uid=1000,
    started=100.0,
    cuda=True,
    device_name="Tesla T4",
    matmul_error=1e-4,
    volume_file="/mnt/cluster_storage/smoke/volume-probe-abab",
    token="cafe",
    gcs="ray-head-svc.default.svc.cluster.local:6379",
    api_error="TimeoutError: timed out",
    finished=104.0,
)


def verdicts(
    probe: smoke.Probe | None = SOUND,
    read_back: tuple[str, int] | None = ("cafe", 1000),
    settings: smoke.SmokeSettings = SETTINGS,
    joined_s: float | None = 212.0,
) -> dict[str, smoke.Check]:
    checks = smoke.judge(settings, probe, joined_s, True, lambda path: read_back)
    assert [c.name for c in checks] == list(smoke.CHECKS)
    return {c.name: c for c in checks}


def test_a_sound_cluster_passes_every_check() -> None:
    checks = verdicts()
    assert {name: c.status for name, c in checks.items()} == dict.fromkeys(smoke.CHECKS, "ok")
    assert "scaled up from zero, 212 s in" in checks["gpu_worker"].detail
    assert "uid 1000" in checks["volume"].detail


@pytest.mark.parametrize(
    ("broken", "probe", "read_back"),
    [
        ("cuda", dataclasses.replace(SOUND, cuda=False, device_name=""), ("cafe", 1000)),
        ("cuda", dataclasses.replace(SOUND, device_name="NVIDIA A10G"), ("cafe", 1000)),
        ("cuda", dataclasses.replace(SOUND, matmul_error=3.0), ("cafe", 1000)),
        ("volume", dataclasses.replace(SOUND, volume_error="PermissionError: denied"), None),
        ("volume", SOUND, None),  # the head does not see the file: not the same volume
        ("volume", SOUND, ("stale", 1000)),
        ("volume", SOUND, ("cafe", 65534)),  # the volume maps the worker's uid to nobody
        # The worker ran as root (say a pod template without runAsUser): its files are root's.
        ("volume", dataclasses.replace(SOUND, uid=0), ("cafe", 0)),
        ("network_policy", dataclasses.replace(SOUND, api_error=""), ("cafe", 1000)),
    ],
)
def test_each_break_is_a_problem_of_its_own_check_with_a_fix(
    broken: str, probe: smoke.Probe, read_back: tuple[str, int] | None
) -> None:
    checks = verdicts(probe, read_back)
    assert checks[broken].status == "problem" and checks[broken].fix
    assert all(c.status == "ok" for name, c in checks.items() if name != broken)


def test_an_unreachable_gcs_fails_the_service_and_the_policy_checks() -> None:
    checks = verdicts(dataclasses.replace(SOUND, gcs_error="TimeoutError: timed out"))
    assert checks["gcs_service"].status == checks["network_policy"].status == "problem"
    assert "ray-head-svc" in checks["gcs_service"].detail


def test_no_worker_is_a_problem_everywhere_with_the_pool_to_look_at() -> None:
    checks = verdicts(probe=None, joined_s=None)
    assert {c.status for c in checks.values()} == {"problem"}
    assert "no T4 worker joined within GPU_WAIT_S=600s" in checks["gpu_worker"].detail
    assert "make preflight" in checks["gpu_worker"].fix


def test_skipped_checks_say_why_whatever_they_found() -> None:
    skip = {"cuda": "no CUDA here", "network_policy": "not enforced here"}
    settings = dataclasses.replace(SETTINGS, skip=skip)
    broken = dataclasses.replace(SOUND, cuda=False, api_error="")
    checks = verdicts(broken, settings=settings)
    assert checks["cuda"] == smoke.Check("cuda", "skipped", "no CUDA here")
    assert checks["network_policy"] == smoke.Check("network_policy", "skipped", "not enforced here")
    report = smoke.Report("T4", 0.0, list(checks.values()), {"first_result": 4.0})
    assert report.ok
    assert "skipped  no CUDA here" in smoke.table(report)


def test_a_problem_prints_its_fix_and_fails_the_report() -> None:
    checks = list(verdicts(dataclasses.replace(SOUND, cuda=False)).values())
    report = smoke.Report("T4", 0.0, checks, {"gpu_worker_joined": None})
    text = smoke.table(report)
    assert not report.ok and "fix: the NVIDIA driver and device plugin" in text
    assert json.loads(json.dumps(report.as_dict()))["ok"] is False


def test_smoke_skip_names_only_known_checks() -> None:
    env = {"SMOKE_SKIP": "cuda=no GPU here, volume", "STORAGE_PATH": "/tmp/s"}
    assert smoke.read_settings(env).skip == {"cuda": "no GPU here", "volume": "SMOKE_SKIP"}
    with pytest.raises(ConfigError, match="SMOKE_SKIP names 'cdua'"):
        smoke.read_settings({"SMOKE_SKIP": "cdua"})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SMOKE_SKIP": "gpu"}, "error: SMOKE_SKIP names 'gpu'"),
        ({"GPU_WAIT_S": "-1"}, "error: GPU_WAIT_S"),
        ({"ACCELERATOR_TYPE": "T4 GPU"}, "error: ACCELERATOR_TYPE"),
    ],
)
def test_bad_input_is_one_error_line_exit_2_nothing_written(
    env: dict[str, str], message: str, tmp_path: Path
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.smoke"],
        env=clean_env(**{"STORAGE_PATH": str(tmp_path), **env}),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(message) and proc.stderr.count("\n") == 1, proc.stderr
    assert not list(tmp_path.iterdir())


def test_help_and_dry_run(tmp_path: Path) -> None:
    env = clean_env(STORAGE_PATH=str(tmp_path), SMOKE_SKIP="cuda=none here")
    run = [sys.executable, "-m", "jobs.smoke"]
    helped = subprocess.run([*run, "--help"], env=env, cwd=REPO, capture_output=True, text=True)
    assert helped.returncode == 0 and "network_policy" in helped.stdout
    dry = subprocess.run([*run, "--dry-run"], env=env, cwd=REPO, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    shown = json.loads(dry.stdout)
    assert shown["storage_dir"] == str(tmp_path / "smoke") and shown["skip"] == {
        "cuda": "none here"
    }
    assert not list(tmp_path.iterdir())


# --- make manifests COLD_START=<smoke.json>: measured over assumed -------------------------


def _render_with(monkeypatch: pytest.MonkeyPatch, report: Path) -> dict[Path, str]:
    from jobs.kube import render

    monkeypatch.setenv("COLD_START", str(report))
    return render.render()


def _doc(files: dict[Path, str], path: str) -> dict:
    return yaml.safe_load(files[REPO / path])


def _gpu_wait(doc: dict) -> str:
    head = doc["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    return next(e["value"] for e in head["env"] if e["name"] == "GPU_WAIT_S")


def test_a_measured_cold_start_replaces_the_assumed_one_for_its_variant_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    report = tmp_path / "smoke.json"
    report.write_text(json.dumps({"variant": "gke", "timeline": {"gpu_worker_joined": 212.4}}))
    files = _render_with(monkeypatch, report)
    tune = _doc(files, "k8s/rayjob-tune.yaml")
    # 212 s measured, doubled, up to whole minutes: 480 s instead of the assumed 1,800.
    assert _gpu_wait(tune) == "480" and tune["spec"]["activeDeadlineSeconds"] == 3600 + 480
    assert "measured 212 s by make smoke" in files[REPO / "k8s/rayjob-tune.yaml"]
    eks = _doc(files, "k8s/eks/rayjob-tune.yaml")  # another variant: as its values file says
    assert _gpu_wait(eks) == str(
        yaml.safe_load((REPO / "k8s/values/eks.yaml").read_text())["cold_start_s"]["t4"]
    )


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        json.dumps({"variant": "gke"}),
        json.dumps({"variant": "gke", "timeline": {"gpu_worker_joined": None}}),
    ],
)
def test_a_cold_start_that_is_not_a_measurement_is_one_error_line(
    content: str, tmp_path: Path
) -> None:
    report = tmp_path / "smoke.json"
    report.write_text(content)
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.kube.render"],
        env=clean_env(COLD_START=str(report)),
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and proc.stderr.startswith("error: COLD_START=")
    assert proc.stderr.count("\n") == 1, proc.stderr


def test_make_results_stage_smoke_prints_the_stored_checks(tmp_path: Path) -> None:
    """`make results STAGE=smoke` (python -m jobs.results smoke): the table again from
    <STORAGE_PATH>/smoke/smoke.json; exit 1 while a check is a problem."""
    checks = list(verdicts(dataclasses.replace(SOUND, cuda=False)).values())
    report = smoke.Report("T4", 0.0, checks, {"first_result": 4.0}, "gke")
    (tmp_path / "smoke").mkdir()
    (tmp_path / "smoke" / smoke.REPORT_FILE).write_text(json.dumps(report.as_dict()))
    env = clean_env(STORAGE_PATH=str(tmp_path))
    run = [sys.executable, "-m", "jobs.results"]
    shown = subprocess.run([*run, "smoke"], env=env, cwd=REPO, capture_output=True, text=True)
    assert shown.returncode == 1 and shown.stdout.strip() == smoke.table(report), shown.stderr
    copied = subprocess.run(  # a folder make results TARGET=k8s copied from the volume
        [*run, str(tmp_path / "smoke"), "--format", "json"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert json.loads(copied.stdout)["variant"] == "gke"
    empty = clean_env(STORAGE_PATH=str(tmp_path / "none"))
    missing = subprocess.run([*run, "smoke"], env=empty, cwd=REPO, capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.startswith("error: no smoke check results")
