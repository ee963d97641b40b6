"""`make submit` to a cluster that is already up (RAY_ADDRESS, as a port-forwarded KubeRay head)
rather than the private head jobs.submit starts itself: the working_dir upload and its
excludes, Ctrl-C stopping the job, and k8s/bin/submit.sh's port-forward and token.

One Ray head serves the module, started with the same helper as `make submit` (local_head),
with token authentication on, as KubeRay's authOptions.mode=token sets it up. A tiny run
(1 sample, 1 epoch, CI-size Fashion-MNIST) is submitted to it by address.
"""

from __future__ import annotations

import filecmp
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from jobs.core.localcluster import LocalCluster, free_port, process_tree
from jobs.submit import local_head
from tests.support.runs import REPO, explain, load_results
from tests.support.tune_files import wait_for

TOKEN = secrets.token_hex(16)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TINY = {"TUNE_NUM_SAMPLES": "1", "TUNE_NUM_EPOCHS": "1"}


@pytest.fixture(scope="module")
def head() -> Iterator[LocalCluster]:
    """A running head with token auth that the tests only reach by its address."""
    with ExitStack() as stack:
        with pytest.MonkeyPatch.context() as env:  # what `ray start` inherits
            env.setenv("RAY_AUTH_MODE", "token")
            env.setenv("RAY_AUTH_TOKEN", TOKEN)
            # The job writes no bytecode into its working dir: every .pyc there was uploaded.
            env.setenv("PYTHONDONTWRITEBYTECODE", "1")
            cluster = stack.enter_context(local_head(num_cpus=2))
        yield cluster


def remote_env(stage_env: dict[str, str], head: LocalCluster, **extra: str) -> dict[str, str]:
    """A workstation's shell pointed at the head: address and token, no local Ray."""
    return {
        **stage_env,
        "RAY_ADDRESS": head.dashboard_url,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": TOKEN,
        **extra,
    }


def job_client(head: LocalCluster):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(head.dashboard_url, headers=AUTH)


def head_processes(head: LocalCluster) -> dict[int, tuple[list[str], str]]:
    """argv and cwd of every living process of the head (raylet, workers, job drivers)."""
    out = {}
    for pid in process_tree(head.head.proc.pid):
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        argv = [a.strip() for a in raw.decode(errors="replace").split("\0") if a.strip()]
        if argv:  # empty while a process starts or exits
            out[pid] = (argv, cwd)
    return out


def is_driver(argv: list[str], stage: str = "tune") -> bool:
    return Path(argv[0]).name.startswith("python") and argv[1:3] == ["-m", f"jobs.{stage}"]


def is_trial(argv: list[str]) -> bool:
    return argv[0].startswith("ray::ImplicitFunc")  # a Tune trial's actor


def head_actors(head: LocalCluster) -> list[dict[str, Any]]:
    """Every actor the head's state API knows, live or dead."""
    request = urllib.request.Request(
        f"{head.dashboard_url}/api/v0/actors?limit=10000", headers=AUTH
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["data"]["result"]["result"]


def submission_id(output: str) -> str:
    found = re.search(r"^\[submit\] job (\S+): ", output, re.M)
    assert found, output[-3000:]
    return found.group(1)


# --- 1. the working_dir upload and its excludes ---------------------------------------------

# A checkout with something in every place a checkout can hold things that must stay on the
# workstation. Three lists keep them out: jobs/submit.py's WORKING_DIR_EXCLUDES, .gitignore
# (Ray reads it) and Ray's own default excludes (.git, .venv, venv, __pycache__ in 2.60).
PLANTED = {
    ".git": "HEAD",  # also a Ray default
    ".venv": "bin/python",  # make install's venv; also .gitignore and a Ray default
    ".venv-client": "bin/ray",  # the client venv of make submit TARGET=k8s; also .gitignore
    ".venv-py311": "lib/site.py",  # another venv: only ".venv*" keeps it out
    "data": "train-images-idx3-ubyte.gz",  # also .gitignore
    "tests": "test_planted.py",  # only WORKING_DIR_EXCLUDES, as image and k8s
    "image": "Dockerfile",
    "k8s": "rayjob-tune.yaml",
    "results": "k8s/tune/results.json",  # make results' downloads: only .gitignore
    "build": "lint-pods/pod.yaml",  # only .gitignore
}
STRAY_BYTECODE = ("jobs/__pycache__/planted.cpython-311.pyc", "jobs/core/planted.pyc")


def checkout_copy(root: Path) -> Path:
    """The project's code (jobs/, pyproject.toml, .gitignore) plus the PLANTED folders."""
    pyc = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "jobs", root / "jobs", ignore=pyc)
    for name in ("pyproject.toml", ".gitignore"):
        shutil.copy2(REPO / name, root / name)
    for path in [f"{folder}/{file}" for folder, file in PLANTED.items()] + list(STRAY_BYTECODE):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("planted by the test: must not be uploaded\n")
    return root


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_submit_by_address_uploads_the_code_without_the_excluded_paths(
    stage_env, head, tmp_path
) -> None:
    checkout = checkout_copy(tmp_path / "checkout")
    # Run from the copy: jobs.submit uploads the folder it lives in.
    env = remote_env(stage_env, head, PYTHONPATH=str(checkout), **TINY)
    cmd = [sys.executable, "-m", "jobs.submit", "tune"]
    driver_cwds = set()
    with open(tmp_path / "submit.log", "w+") as log:
        proc = subprocess.Popen(cmd, cwd=checkout, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 600
            while proc.poll() is None and time.monotonic() < deadline:
                running = head_processes(head).values()
                driver_cwds |= {cwd for argv, cwd in running if is_driver(argv)}
                time.sleep(0.2)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        log.seek(0)
        output = log.read()
    done = subprocess.CompletedProcess(cmd, proc.returncode, output, "")
    assert proc.returncode == 0, explain(done)
    job = submission_id(output)
    assert f"[submit] job {job} SUCCEEDED" in output
    assert load_results(env, "tune")["counts"]["completed"] == 1  # in STORAGE_PATH

    # The job's driver ran in the package Ray unpacked on the head from the upload.
    info = job_client(head).get_job_info(job)
    uri = info.runtime_env["working_dir"]
    assert re.fullmatch(r"gcs://_ray_pkg_\w+\.zip", uri), uri
    assert len(driver_cwds) == 1, driver_cwds
    (cwd,) = driver_cwds
    package = Path(cwd)
    assert package.name == uri.removeprefix("gcs://").removesuffix(".zip")
    assert package.parent.name == "working_dir_files"
    assert package.is_relative_to(head.temp_dir)
    uploaded = files_under(package)

    # The code arrived, byte for byte.
    code = {p for p in files_under(checkout) if p.startswith("jobs/") and not p.endswith(".pyc")}
    code.add("pyproject.toml")
    assert code - uploaded == set()
    assert all(filecmp.cmp(checkout / p, package / p, shallow=False) for p in code)
    # And nothing of the PLANTED folders or any bytecode did.
    kept_out = [f"{folder}/" for folder in PLANTED]
    leaked = sorted(p for p in uploaded if p.startswith(tuple(kept_out)) or p.endswith(".pyc"))
    assert leaked == []


# --- 2. Ctrl-C ----------------------------------------------------------------------------


def test_ctrl_c_stops_the_job_on_the_cluster(stage_env, head, tmp_path) -> None:
    from ray.job_submission import JobStatus

    client = job_client(head)
    # Long enough to be interrupted mid-trial (1 sample of 50 epochs).
    env = remote_env(stage_env, head, TUNE_NUM_SAMPLES="1", TUNE_NUM_EPOCHS="50")
    log_path = tmp_path / "submit.log"
    job = None
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jobs.submit", "tune"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    alive = lambda: proc.poll() is None  # noqa: E731
    try:
        wait_for(lambda: "[submit] job " in log_path.read_text(), "the submission", 300, alive)
        job = submission_id(log_path.read_text())

        def trial_training() -> bool:
            # This job's own trial past its first epoch, from this job's driver log: a trial
            # process of another job on this head, still exiting, once let the interrupt land
            # before this trial existed (any `ray::ImplicitFunc` process counted then).
            return bool(re.search(r"\] epoch 1/50 loss=", log_path.read_text()))

        try:
            wait_for(trial_training, "this job's trial past its first epoch", 300, alive)
        except AssertionError as err:  # say what the head held instead
            actors = [(a["class_name"], a["state"], a["job_id"]) for a in head_actors(head)]
            raise AssertionError(
                f"{err}; the head's actors: {actors}\n{log_path.read_text()[-3000:]}"
            ) from None
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            # Where each of its threads is (py-spy is in the venv), for whoever reads this.
            spy = Path(sys.executable).parent / "py-spy"
            stacks = subprocess.run(
                [str(spy), "dump", "--pid", str(proc.pid)], capture_output=True, text=True
            )
            status = Path(f"/proc/{proc.pid}/status").read_text()
            signals = [line for line in status.splitlines() if line.startswith("Sig")]
            pytest.fail(
                f"jobs.submit still runs 60 s after SIGINT; {signals}\n"
                f"{stacks.stdout}{stacks.stderr}\n{log_path.read_text()[-2000:]}"
            )
        output = log_path.read_text()
        # jobs/submit.py: "The exit status follows the job's status" (0 for SUCCEEDED, else 1).
        assert proc.returncode == 1, output[-3000:]
        assert "Traceback" not in output and f"Ctrl-C: stopping job {job}" in output, output
        assert output.rstrip().endswith(f"job {job} STOPPED"), output[-3000:]
        assert client.get_job_status(job) == JobStatus.STOPPED
        # Nothing of the job keeps running: no driver and no trial process on the head. (Read
        # from the processes, not Ray's actor table: in a CI run of the whole suite the state
        # API listed none of this job's actors, live or dead, under the job client's job id.)
        wait_for(
            lambda: not any(is_trial(a) or is_driver(a) for a, _ in head_processes(head).values()),
            "the driver and trial processes gone",
            60,
        )
    finally:  # leave the shared head idle whatever happened
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if job is not None and not client.get_job_status(job).is_terminal():
            client.stop_job(job)


# --- 3. k8s/bin/submit.sh ---------------------------------------------------------------------

# A stand-in kubectl: `port-forward svc/NAME LOCAL:8265` forwards LOCAL to the head's dashboard
# (FAKE_HEAD_PORT) and `get secret NAME -o jsonpath={.data.auth_token}` answers the token,
# base64-encoded as in a Secret. Every call is logged with its pid.
FAKE_KUBECTL = """
import base64, json, os, socket, sys, threading

argv, log = sys.argv[1:], os.environ["FAKE_KUBECTL_LOG"]
with open(log, "a") as out:
    out.write(json.dumps({"pid": os.getpid(), "argv": argv}) + "\\n")


def pipe(src, dst):
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


if argv[:1] == ["port-forward"] and len(argv) == 3 and argv[2].endswith(":8265"):
    server = socket.create_server(("127.0.0.1", int(argv[2].split(":")[0])))
    while True:
        conn, _ = server.accept()
        with open(log + ".connections", "a") as out:
            out.write("1\\n")
        upstream = socket.create_connection(("127.0.0.1", int(os.environ["FAKE_HEAD_PORT"])))
        for a, b in ((conn, upstream), (upstream, conn)):
            threading.Thread(target=pipe, args=(a, b), daemon=True).start()
elif argv[:2] == ["get", "secret"] and argv[3:] == ["-o", "jsonpath={.data.auth_token}"]:
    if argv[2] != os.environ["FAKE_SECRET"]:
        sys.exit(f'Error from server (NotFound): secrets "{argv[2]}" not found')
    print(base64.b64encode(os.environ["FAKE_TOKEN"].encode()).decode(), end="")
else:
    sys.exit(f"fake kubectl: unexpected call {argv}")
"""


def test_submit_sh_port_forwards_reads_the_token_and_stops_the_forwarder(
    stage_env, head, tmp_path
) -> None:
    kubectl = tmp_path / "kubectl"
    kubectl.write_text(f"#!{sys.executable}\n{FAKE_KUBECTL}")
    kubectl.chmod(0o755)
    calls = tmp_path / "kubectl.log"
    port = free_port()  # the local end of the port-forward; the head listens elsewhere
    env = {
        **stage_env,  # no RAY_ADDRESS and no token: the script supplies them
        **TINY,
        "KUBECTL": str(kubectl),
        "CLUSTER": "rtk-demo",
        "DASHBOARD_PORT": str(port),
        "PY": sys.executable,
        "FAKE_KUBECTL_LOG": str(calls),
        "FAKE_HEAD_PORT": str(head.head.dashboard_port),
        "FAKE_SECRET": "rtk-demo",
        "FAKE_TOKEN": TOKEN,
    }
    assert env["RAY_AUTH_MODE"] == "disabled" and "RAY_AUTH_TOKEN" not in env
    cmd = ["k8s/bin/submit.sh", "tune"]
    out, err = tmp_path / "submit.out", tmp_path / "submit.err"
    try:
        # Files, not pipes: a port-forward left running would hold a pipe open.
        with open(out, "w") as stdout, open(err, "w") as stderr:
            run = subprocess.run(cmd, cwd=REPO, env=env, stdout=stdout, stderr=stderr, timeout=600)
        proc = subprocess.CompletedProcess(cmd, run.returncode, out.read_text(), err.read_text())
        assert proc.returncode == 0, explain(proc)
        assert [c["argv"] for c in kubectl_calls(calls)] == [
            ["port-forward", "svc/rtk-demo-head-svc", f"{port}:8265"],
            ["get", "secret", "rtk-demo", "-o", "jsonpath={.data.auth_token}"],
        ]
        # The job ran on the head, reached through the forward with the token (the head
        # refuses requests without it), and its results are in STORAGE_PATH.
        job = submission_id(proc.stdout)
        assert f"[submit] job {job} SUCCEEDED" in proc.stdout
        assert job_client(head).get_job_info(job).status == "SUCCEEDED"
        assert Path(f"{calls}.connections").read_text().count("1") >= 2
        assert load_results(env, "tune")["counts"]["completed"] == 1
        # The port-forward ends with the script.
        wait_for(lambda: not forwarders(calls), "the port-forward gone", 10)
    finally:
        for pid in forwarders(calls):
            os.kill(pid, signal.SIGKILL)


def kubectl_calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def forwarders(log: Path) -> list[int]:
    """The fake port-forwards that still run."""
    calls = kubectl_calls(log)
    return [c["pid"] for c in calls if c["argv"][0] == "port-forward" and process_tree(c["pid"])]
