"""jobs/kube/smoke_events.py: the cold-start timeline `make smoke` prints, from a RayJob, its
first worker pod, that pod's node and events (as kubectl returns them)."""

from __future__ import annotations

from jobs.kube import smoke_events

RAYJOB = {
    "metadata": {"name": "ray-tune-smoke", "creationTimestamp": "2026-12-07T10:00:00Z"},
    "status": {"startTime": "2026-12-07T10:00:01Z", "endTime": "2026-12-07T10:07:30Z"},
}
WORKER = {
    "metadata": {"name": "w-1", "creationTimestamp": "2026-12-07T10:01:00Z"},
    "spec": {"nodeName": "gke-t4-1"},
    "status": {
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "True",
                "lastTransitionTime": "2026-12-07T10:03:40Z",
            },
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-07T10:06:50Z"},
        ]
    },
}
NODE = {
    "metadata": {"creationTimestamp": "2026-12-07T10:02:30Z"},
    "status": {
        "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-07T10:03:35Z"}
        ]
    },
}
EVENTS = [
    {"reason": "Pulling", "firstTimestamp": "2026-12-07T10:03:41Z"},
    {
        "reason": "Pulled",
        "firstTimestamp": "2026-12-07T10:06:10Z",
        "message": 'Successfully pulled image "x" in 2m29s',
    },
    {"reason": "Started", "eventTime": "2026-12-07T10:06:12Z"},
]


def test_a_cold_start_from_zero_in_the_order_it_happens() -> None:
    rows = {
        what: (s, detail) for what, s, detail in smoke_events.timeline(RAYJOB, WORKER, NODE, EVENTS)
    }
    assert rows["worker pod created"][0] == 60
    assert rows["gpu node created"] == (150, "new: scaled from zero")
    assert rows["gpu node ready"][0] == 215 and rows["worker pod scheduled"][0] == 220
    assert rows["image pulled"] == (370, 'Successfully pulled image "x" in 2m29s')
    assert rows["worker container started"][0] == 372 and rows["job ended"][0] == 450
    text = smoke_events.render(smoke_events.timeline(RAYJOB, WORKER, NODE, EVENTS))
    assert "image pulled" in text and "370" in text


def test_a_worker_that_never_came_shows_dashes_not_zeros() -> None:
    rows = smoke_events.timeline(RAYJOB, None, None, [])
    seen = {what: s for what, s, _ in rows}
    assert seen["worker pod created"] is None and seen["image pulled"] is None
    assert "  gpu node ready                 -" in smoke_events.render(rows)


def test_into_adds_the_cluster_side_to_the_smoke_report_beside_the_pods_side(tmp_path) -> None:
    """make smoke copies the job's smoke.json, then adds what only the cluster saw to it."""
    report = tmp_path / "smoke.json"
    report.write_text('{"ok": true, "timeline": {"gpu_worker_joined": 391.0}}')
    smoke_events.merge_into(report, smoke_events.timeline(RAYJOB, WORKER, NODE, EVENTS))
    import json

    merged = json.loads(report.read_text())
    assert merged["timeline"] == {"gpu_worker_joined": 391.0} and merged["ok"] is True
    assert merged["cold_start"]["gpu node ready"] == 215
    assert merged["cold_start"]["image pulled"] == 370


def test_into_a_report_that_is_not_there_is_an_error_line_and_exit_2(tmp_path, capsys) -> None:
    assert smoke_events.main(["--into", str(tmp_path / "none.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --into") and len(err.splitlines()) == 1


def test_into_without_a_report_named_is_an_error_line_and_exit_2(capsys) -> None:
    assert smoke_events.main(["ray-tune-smoke", "--into"]) == 2
    assert capsys.readouterr().err.startswith("error: --into needs the smoke report")
