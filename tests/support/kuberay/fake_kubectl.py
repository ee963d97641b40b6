#!/usr/bin/env python3
"""A stand-in `kubectl` that replays one of the controller's status sequences
(tests/support/kuberay/controller.py), for testing k8s/bin scripts without a cluster.

    KUBECTL=tests/support/kuberay/fake_kubectl.py FAKE_KUBECTL_SCENARIO=retry_then_success \
    FAKE_KUBECTL_STATE=/tmp/state k8s/bin/rayjob.sh k8s/rayjob-tune.yaml

Each `get rayjob` answers the next status of the scenario and then stays on the last one.
FAKE_KUBECTL_SCENARIO=operator_missing makes `get crd` fail as on a cluster without
KubeRay. FAKE_KUBECTL_HEAD names a running head pod (none when unset), and
FAKE_KUBECTL_PVC is a folder standing for the volume that `cp` copies from.
FAKE_KUBECTL_OBJECTS is a JSON file of what `get KIND[/NAME] -o json` answers (a missing
key answers NotFound), plus `pod_phase` and `pod_logs` for the pods a script creates
(`logs/<target>`: what `kubectl logs <target>` prints, e.g. `logs/deploy/NAME`).
Every call is appended to FAKE_KUBECTL_STATE.calls for the tests to read.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tests.support.kuberay.controller import SCENARIOS


def environment(state_dir: Path, **settings: str) -> dict[str, str]:
    """The environment for a script under test: KUBECTL is this stand-in, its state and the
    log of its calls live in `state_dir`, and `settings` add FAKE_KUBECTL_* and the like."""
    import os

    state = {
        "KUBECTL": str(Path(__file__).resolve()),
        "FAKE_KUBECTL_STATE": str(state_dir / "state"),
    }
    return os.environ | state | settings


def calls(state_dir: Path) -> list[str]:
    """Every kubectl command line the script ran, in order."""
    return (state_dir / "state.calls").read_text().splitlines()


FIELDS = ("jobDeploymentStatus", "jobStatus", "failed", "succeeded", "reason", "message")


def main(argv: list[str]) -> int:
    import os

    scenario = os.environ.get("FAKE_KUBECTL_SCENARIO", "success")
    state = Path(os.environ["FAKE_KUBECTL_STATE"])
    with state.with_suffix(".calls").open("a") as calls:
        calls.write(" ".join(argv) + "\n")
    objects = (
        json.loads(Path(os.environ["FAKE_KUBECTL_OBJECTS"]).read_text())
        if os.environ.get("FAKE_KUBECTL_OBJECTS")
        else None
    )
    if objects is not None:
        if argv[:1] == ["get"] and argv[-2:] == ["-o", "json"]:
            key = argv[1] + (f"/{argv[2]}" if argv[2][0] != "-" else "")
            if objects.get(key) is None:
                print(f"Error from server (NotFound): {key} not found", file=sys.stderr)
                return 1
            print(json.dumps(objects[key]))
            return 0
        if argv[:2] == ["get", "pod"]:
            print(objects.get("pod_phase", "Pending"), end="")
            return 0
        if argv[:1] == ["logs"]:  # `logs/<target>` answers for that target, if given
            print(objects.get(f"logs/{argv[1]}", objects.get("pod_logs", "")))
            return 0
        if argv[:3] == ["apply", "-f", "-"]:
            state.with_suffix(".applied").write_text(sys.stdin.read())
            print("pod/ray-tune-preflight created")
            return 0
    if argv[:2] == ["get", "crd"]:
        if scenario == "operator_missing":
            print(
                "Error from server (NotFound): customresourcedefinitions "
                '"rayjobs.ray.io" not found',
                file=sys.stderr,
            )
            return 1
        print("rayjobs.ray.io")
        return 0
    applied = state.with_suffix(".applied-rayjob")
    if argv[:1] == ["apply"]:
        applied.touch()
        print("rayjob.ray.io/ray-tune-stage created")
        return 0
    if argv[:2] == ["delete", "rayjob"]:
        state.with_suffix(".deleted").touch()
        return 0
    if argv[:2] == ["get", "rayjob"] and not applied.exists():
        # Before our apply: a RayJob of an earlier run (FAKE_KUBECTL_PREVIOUS, its status
        # fields joined by |) or none; a deleted one is gone.
        previous = os.environ.get("FAKE_KUBECTL_PREVIOUS", "")
        if not previous or state.with_suffix(".deleted").exists():
            print('Error from server (NotFound): rayjobs.ray.io "x" not found', file=sys.stderr)
            return 1
        print(previous, end="")
        return 0
    if argv[:2] == ["get", "rayjob"]:
        failures = state.with_suffix(".get-failures")
        failed = int(failures.read_text()) if failures.exists() else 0
        if failed < int(os.environ.get("FAKE_KUBECTL_GET_FAILURES", "0")):
            failures.write_text(str(failed + 1))
            print("Unable to connect to the server: i/o timeout", file=sys.stderr)
            return 1
        steps = SCENARIOS[scenario]
        index = int(state.read_text()) if state.exists() else 0
        state.write_text(str(index + 1))
        status = dict(zip(FIELDS, steps[min(index, len(steps) - 1)], strict=True)) if steps else {}
        template = next(a.split("=", 1)[1] for a in argv if a.startswith("jsonpath="))
        print(
            re.sub(r"{\.status\.(\w+)}", lambda m: str(status.get(m.group(1), "")), template),
            end="",
        )
        return 0
    if argv[:2] == ["get", "pods"]:
        head = os.environ.get("FAKE_KUBECTL_HEAD", "")
        print(head if head and "ray.io/node-type=head" in " ".join(argv) else "")
        return 0
    if argv[:1] in (["wait"], ["delete"]):
        return 0
    if argv[:1] == ["cp"]:
        args = argv[1:]
        positional = [a for i, a in enumerate(args) if a[0] != "-" and args[i - 1] != "-c"]
        source, dest = positional[-2:]
        inside = source.split(":", 1)[1].removeprefix("/mnt/cluster_storage/")
        path = Path(os.environ["FAKE_KUBECTL_PVC"]) / inside
        if path.is_dir():  # a folder becomes `dest` (kubectl cp when dest does not exist)
            shutil.copytree(path, dest, dirs_exist_ok=True)
            return 0
        if not path.is_file():
            print(f"tar: {inside}: Cannot stat: No such file or directory", file=sys.stderr)
            return 1
        Path(dest).write_bytes(path.read_bytes())
        return 0
    if argv[:1] == ["exec"]:  # runs the command here, the volume at FAKE_KUBECTL_PVC
        command = argv[argv.index("--") + 1 :]
        pvc = os.environ["FAKE_KUBECTL_PVC"]
        sys.stdout.flush()
        return subprocess.run(
            [part.replace("/mnt/cluster_storage", pvc) for part in command], check=False
        ).returncode
    if argv[:1] == ["logs"]:
        print("(submitter log of the last attempt)")
        return 0
    if argv[:2] == ["get", "events"]:
        print("LAST SEEN   TYPE      REASON   OBJECT   MESSAGE")
        return 0
    print(f"fake kubectl: unexpected call: {argv}", file=sys.stderr)
    return 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
