"""The workstation's tools for a cluster (make manifests, preflight, results and submit with
TARGET=k8s) run in the small client venv of .ci/lock/client.txt: Ray's Jobs API client,
PyYAML and Jinja2, no training stack. So they import no torch, they work where the training
stack cannot be imported, and the client lock stays hashed, cross-platform and at dev.txt's
versions."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from collections.abc import Iterator

import pytest
from packaging.utils import canonicalize_name

from jobs import registry
from jobs.core import records as results
from jobs.core.reading import env_names, resolve
from tests.support.client_path import HEAVY, RECORD, WITHOUT_TRAINING_STACK, python
from tests.support.runs import REPO, TEST_ENV

LOCK = REPO / ".ci" / "lock"
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==(\S+)", re.M)


def heavy_modules(code: str) -> set[str]:
    """The training-stack modules a fresh interpreter holds after running `code`."""
    proc = python(f"{code}\n{RECORD}")
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stderr.strip().splitlines()[-1])
    return {m for m in loaded if m.partition(".")[0] in HEAVY}


@pytest.mark.parametrize(
    "code",
    [
        "import jobs.submit",
        "import jobs.results",
        "import jobs.logs",
        # The whole rendering, in memory: every variant's every manifest.
        "import runpy; import jobs.kube.render as r; r.render()",
        "import runpy; import jobs.kube.preflight",
        # What a submission to a cluster loads besides: every stage's module, as the job does.
        "from jobs import registry\nfor n in registry.names(): registry.load(n)",
        # What every Trainer is built from; pickled to trials, so it loads no torch itself.
        "import jobs.core.training_spec",
    ],
    ids=["submit", "results", "logs", "render", "preflight", "stages", "training-spec"],
)
def test_the_client_tools_import_no_training_stack(code: str) -> None:
    assert heavy_modules(code) == set()


@pytest.fixture
def listening() -> Iterator[str]:
    """A dashboard address something listens on (the submission checks it is reachable)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def run_module(module: str, *argv: str, **kwargs) -> subprocess.CompletedProcess:
    code = f"{WITHOUT_TRAINING_STACK}\nrunpy.run_module({module!r}, run_name='__main__')"
    return python(code, *argv, **kwargs)


def test_submit_help_without_the_training_stack() -> None:
    proc = run_module("jobs.submit", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "RAY_ADDRESS" in proc.stdout


@pytest.mark.parametrize("stage", registry.names())
def test_a_dry_run_against_a_cluster_without_the_training_stack(stage: str, listening) -> None:
    argv = ("--dry-run", "--num-epochs", "2")
    env = {"RAY_ADDRESS": listening, "STOP_ALL_AT": "0.05", "TUNE_NUM_SAMPLES": "3"}
    proc = run_module("jobs.submit", stage, *argv, **env)
    assert proc.returncode == 0, proc.stderr
    # What the full venv resolves from the imported stage, to the letter.
    expected = resolve(registry.load(stage), list(argv), {**TEST_ENV, **env})  # clean_env's
    assert json.loads(proc.stdout) == json.loads(expected.to_json())


def test_a_bad_value_fails_before_submission_without_the_training_stack(listening) -> None:
    proc = run_module("jobs.submit", "checkpoint", "--stop-trial-after", "0", RAY_ADDRESS=listening)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: --stop-trial-after must be >= 1")


def test_results_from_stdin_without_the_training_stack() -> None:
    history = [{"epoch": 1, "val_loss": 0.6, "val_accuracy": 0.8}]
    last = {**history[-1], "loss": 0.7, "time_total_s": 20.0, "training_iteration": 1}
    trial = results.record("aaaaaaaa", False, 1, {"lr": 0.01, "num_epochs": 1}, last, history)
    summary = results.Summary("tune", "val_loss", "min", [trial], 30.0)
    stdin = json.dumps(summary.as_dict())  # results.json, as the cluster's volume holds it
    proc = run_module("jobs.results", "-", "--format", "table", stdin=stdin)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{results.leaderboard(summary)}\n{results.best_report(summary)}\n"


def test_render_without_the_training_stack() -> None:
    code = f"{WITHOUT_TRAINING_STACK}\nrunpy.run_module('jobs.kube.render', run_name='__main__')"
    proc = python(code, "--folder", "gke")
    assert proc.returncode == 0, proc.stderr
    # Every variant's every manifest, in memory (what `make manifests` writes).
    code = f"{WITHOUT_TRAINING_STACK}\nprint(len(runpy.run_module('jobs.kube.render')['render']()))"
    proc = python(code)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) > 0


def test_preflight_help_without_the_training_stack() -> None:
    code = f"{WITHOUT_TRAINING_STACK}\nrunpy.run_module('jobs.kube.preflight', run_name='__main__')"
    proc = python(code, "--help")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name", registry.names())
def test_a_stage_module_is_read_without_the_training_stack(name: str) -> None:
    """The client venv reads a stage's declaration by importing its module, as the job does:
    its settings resolve, its flags and environment names are the job's, and nothing of Ray
    Tune, Ray Train or torch is imported on the way (they load inside what runs on the
    cluster). One way to read a stage: there is no second, partial reading to keep in step."""
    code = f"""{WITHOUT_TRAINING_STACK}
import json
from jobs import registry
from jobs.core.reading import env_names, resolve
stage = registry.load({name!r})
settings = resolve(stage, ["--seed", "5"], {{"TRAIN_LIMIT": "2048"}})
print(json.dumps([stage.name, stage.part, sorted(env_names(stage)), settings.seed]))
heavy = [m for m in sys.modules if m.partition(".")[0] in ("torch", "optuna")
         or m.startswith(("ray.tune", "ray.train"))]
assert not heavy, heavy
"""
    proc = python(code)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    loaded = registry.load(name)
    assert seen == [name, loaded.part, sorted(env_names(loaded)), 5]


def test_an_unknown_stage_is_the_registrys_error() -> None:
    with pytest.raises(registry.UnknownStage, match="unknown stage 'bayes'"):
        registry.load("bayes")


# --- the client lock --------------------------------------------------------------------------


def pins(name: str) -> dict[str, str]:
    return {canonicalize_name(n): v for n, v in PIN.findall((LOCK / name).read_text())}


def entries(name: str) -> dict[str, str]:
    """Each locked requirement's whole entry (its line, hashes and annotations) by name."""
    text = (LOCK / name).read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", text)[1:]
    return {canonicalize_name(PIN.match(b).group(1)): b for b in blocks}


def test_the_client_lock_holds_no_training_stack() -> None:
    locked = pins("client.txt")
    stack = {
        n
        for n in locked
        if n in {"torch", "torchvision", "triton", "optuna", "matplotlib"}
        or n.startswith(("nvidia-", "cuda-"))
    }
    assert stack == set()
    assert {"ray", "pyyaml", "jinja2"} <= set(locked)
    assert len(locked) < len(pins("runtime.txt"))


def test_the_client_lock_is_at_dev_versions() -> None:
    client, dev = pins("client.txt"), pins("dev.txt")
    shared = set(client) & set(dev)
    assert {"ray", "pyyaml", "jinja2", "filelock"} <= shared
    assert {n: (v, dev[n]) for n, v in client.items() if n in dev and dev[n] != v} == {}


def test_the_client_lock_is_universal_for_linux_and_macos() -> None:
    # `make lock` resolves it with --universal (not one --python-platform, as dev.txt) and
    # then requires a wheel of every package for macOS on Apple silicon.
    recipe = re.search(r"^lock:.*?\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), re.M)
    assert recipe, "the Makefile has a lock recipe"
    commands = re.split(r"(?<!\\)\n", recipe.group(1).strip())
    compile_client = [c for c in commands if "-o .ci/lock/client.txt" in c]
    assert len(compile_client) == 1
    assert "--universal" in compile_client[0] and "--python-platform" not in compile_client[0]
    assert '["optional-dependencies"]["client"]' in compile_client[0]
    assert "--generate-hashes" in compile_client[0] and "-c .ci/lock/dev.txt" in compile_client[0]
    assert any(
        ".ci/lock/client.txt" in c and "aarch64-apple-darwin" in c and "--only-binary :all:" in c
        for c in commands
    )
    # Only a universal resolution writes environment markers (Windows' colorama for click).
    markers = [e for e in entries("client.txt").values() if "sys_platform" in e.split("\n")[0]]
    assert markers, "no sys_platform markers: not a universal resolution"
