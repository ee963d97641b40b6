#!/usr/bin/env python3
"""A stand-in `kubectl` that replays one of the controller's status sequences
(tests/kuberay/controller.py), for testing k8s/bin scripts without a cluster.

    KUBECTL=tests/kuberay/fake_kubectl.py FAKE_KUBECTL_SCENARIO=retry_then_success \
    FAKE_KUBECTL_STATE=/tmp/state k8s/bin/rayjob.sh k8s/rayjob-tune.yaml

Each `get rayjob` answers the next status of the scenario and then stays on the last one.
FAKE_KUBECTL_SCENARIO=operator_missing makes `get crd` fail as on a cluster without
KubeRay. Every call is appended to FAKE_KUBECTL_STATE.calls for the tests to read.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.kuberay.controller import SCENARIOS

FIELDS = ("jobDeploymentStatus", "jobStatus", "failed", "succeeded", "reason", "message")


def main(argv: list[str]) -> int:
    import os

    scenario = os.environ["FAKE_KUBECTL_SCENARIO"]
    state = Path(os.environ["FAKE_KUBECTL_STATE"])
    with state.with_suffix(".calls").open("a") as calls:
        calls.write(" ".join(argv) + "\n")
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
    if argv[:1] == ["apply"]:
        print("rayjob.ray.io/ray-tune-stage created")
        return 0
    if argv[:2] == ["get", "rayjob"]:
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
