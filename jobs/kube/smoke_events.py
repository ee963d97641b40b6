#!/usr/bin/env python3
"""The cold-start timeline of a smoke RayJob from what only the cluster sees (make smoke).

    python -m jobs.kube.smoke_events [RAYJOB] [--into SMOKE_JSON]   # RAYJOB: ray-tune-smoke

--into adds the rows to a copy of the job's smoke.json (make smoke copies it to
results/k8s/smoke/ first) under "cold_start", so the report holds both sides.

jobs/smoke.py times what a pod can see (a GPU worker joining Ray, the probe's first result);
the node's creation and readiness, the pod's scheduling and its image pull are the cluster's
objects and events: read here with the user's kubectl, while the finished RayJob's cluster is
kept (ttlSecondsAfterFinished), as seconds from the RayJob's creation. Standard library only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

Row = tuple[str, "float | None", str]  # what, seconds from the RayJob's creation, detail


def _t(stamp: str | None) -> datetime | None:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None


def _condition(obj: dict[str, Any], kind: str) -> str | None:
    for c in obj.get("status", {}).get("conditions", []):
        if c.get("type") == kind and c.get("status") == "True":
            return c.get("lastTransitionTime")
    return None


def _event_time(events: list[dict[str, Any]], reason: str) -> tuple[str | None, str]:
    found = [e for e in events if e.get("reason") == reason]
    if not found:
        return None, ""
    first = min(found, key=lambda e: e.get("eventTime") or e.get("firstTimestamp") or "")
    return first.get("eventTime") or first.get("firstTimestamp"), first.get("message", "")


def timeline(
    rayjob: dict[str, Any],
    worker: dict[str, Any] | None,
    node: dict[str, Any] | None,
    events: list[dict[str, Any]],
) -> list[Row]:
    """The rows, in the order a cold start goes through them; None where not seen."""
    start = _t(rayjob["metadata"]["creationTimestamp"])
    assert start is not None

    def since(stamp: str | None) -> float | None:
        t = _t(stamp)
        return None if t is None else (t - start).total_seconds()

    pulled, pull_note = _event_time(events, "Pulled")
    started, _ = _event_time(events, "Started")
    node_made = node and node["metadata"].get("creationTimestamp")
    from_zero = node_made is not None and since(node_made) is not None and since(node_made) > 0
    return [
        ("rayjob created", 0.0, rayjob["metadata"]["name"]),
        ("job started", since(rayjob.get("status", {}).get("startTime")), ""),
        ("worker pod created", since(worker and worker["metadata"]["creationTimestamp"]), ""),
        (
            "gpu node created",
            since(node_made),
            ("new: scaled from zero" if from_zero else "already there") if node else "",
        ),
        ("gpu node ready", since(node and _condition(node, "Ready")), ""),
        ("worker pod scheduled", since(worker and _condition(worker, "PodScheduled")), ""),
        ("image pulled", since(pulled), pull_note),
        ("worker container started", since(started), ""),
        ("worker pod ready", since(worker and _condition(worker, "Ready")), ""),
        ("job ended", since(rayjob.get("status", {}).get("endTime")), ""),
    ]


def render(rows: list[Row]) -> str:
    lines = ["cold start (s from the RayJob's creation; from the cluster's objects and events)"]
    for what, seconds, detail in rows:
        shown = "-" if seconds is None else f"{seconds:.0f}"
        lines.append(f"  {what:<26}{shown:>6}  {detail}".rstrip())
    return "\n".join(lines)


def _kubectl(*args: str) -> dict[str, Any]:
    kubectl = os.environ.get("KUBECTL", "kubectl")
    out = subprocess.run([kubectl, *args, "-o", "json"], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip() or f"kubectl {' '.join(args)} failed")
    return json.loads(out.stdout)


def merge_into(path: Path, rows: list[Row]) -> None:
    """The rows, as {what: seconds}, under "cold_start" in the smoke report at `path`."""
    report = json.loads(path.read_text())
    report["cold_start"] = {what: seconds for what, seconds, _ in rows}
    path.write_text(json.dumps(report, indent=2))


def main(argv: list[str]) -> int:
    into = None
    if argv[-1:] == ["--into"]:
        print("error: --into needs the smoke report to add to (SMOKE_JSON)", file=sys.stderr)
        return 2
    if "--into" in argv[:-1]:
        at = argv.index("--into")
        into, argv = Path(argv[at + 1]), argv[:at] + argv[at + 2 :]
    if argv[:1] in (["-h"], ["--help"]) or len(argv) > 1 or (into and not into.is_file()):
        bad = len(argv) > 1 or (into is not None and not into.is_file())
        if into is not None and not into.is_file():
            print(f"error: --into {into}: no such smoke report", file=sys.stderr)
        else:
            print(__doc__, file=sys.stderr if bad else sys.stdout)
        return 2 if bad else 0
    name = argv[0] if argv else "ray-tune-smoke"
    try:
        rayjob = _kubectl("get", "rayjob", name)
        cluster = rayjob.get("status", {}).get("rayClusterName", "")
        pods = _kubectl("get", "pods", "-l", f"ray.io/cluster={cluster},ray.io/node-type=worker")
        worker = min(pods["items"], key=lambda p: p["metadata"]["creationTimestamp"], default=None)
        node, events = None, []
        if worker is not None:
            if worker["spec"].get("nodeName"):
                node = _kubectl("get", "node", worker["spec"]["nodeName"])
            selector = f"involvedObject.name={worker['metadata']['name']}"
            events = _kubectl("get", "events", "--field-selector", selector)["items"]
    except (RuntimeError, ValueError, KeyError) as err:
        print(f"error: cannot read the smoke RayJob's cluster: {err}", file=sys.stderr)
        return 1
    rows = timeline(rayjob, worker, node, events)
    print(render(rows))
    if into is not None:
        merge_into(into, rows)
        print(f"cold start added to {into}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
