"""jobs/core/localcluster.py: a head that exits while it starts is started again on new ports
(a picked port can be taken before Ray binds it: seen once in `make test`, the GCS could
not bind its port), up to START_ATTEMPTS, then the error is raised. Fake nodes, no Ray."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from jobs.core import localcluster


class FakeNode:
    started: ClassVar[list[FakeNode]] = []

    def __init__(self, spec: localcluster.NodeSpec, temp_dir: Path, dies: bool) -> None:
        self.spec, self.alive, self.stopped = spec, not dies, False
        self.log_path = temp_dir / "head.log"
        self.gcs_port = self.dashboard_port = 6000 + len(FakeNode.started)
        self.agent_port = 7000 + len(FakeNode.started)
        FakeNode.started.append(self)

    def stop(self) -> None:
        self.stopped, self.alive = True, False


def fake_nodes(monkeypatch: pytest.MonkeyPatch, deaths: int) -> None:
    FakeNode.started = []
    monkeypatch.setattr(
        localcluster,
        "RayNode",
        lambda spec, temp_dir: FakeNode(spec, temp_dir, dies=len(FakeNode.started) < deaths),
    )
    monkeypatch.setattr(localcluster.time, "sleep", lambda s: None)
    monkeypatch.setattr(localcluster.urllib.request, "urlopen", _answer)
    _answer.asked, _answer.refusals = [], 0


class _answer:
    asked: ClassVar[list[str]] = []
    refusals: ClassVar[int] = 0  # the agent's first answers: connection refused

    def __init__(self, url: str, timeout: float) -> None:
        _answer.asked.append(url)
        if "local_raylet_healthz" in url and _answer.refusals > 0:
            _answer.refusals -= 1
            raise ConnectionRefusedError(url)

    def __enter__(self) -> _answer:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def test_a_head_that_exits_while_starting_is_started_again_on_new_ports(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_nodes(monkeypatch, deaths=1)
    cluster = localcluster.LocalCluster(localcluster.NodeSpec("head", cpus=1), str(tmp_path))
    first, second = FakeNode.started
    assert first.stopped and second.alive and cluster.head is second
    assert cluster.gcs_address == f"127.0.0.1:{second.gcs_port}" != f"127.0.0.1:{first.gcs_port}"
    assert "starting it again on new ports" in capsys.readouterr().err


def test_a_head_that_never_starts_raises_after_the_last_attempt(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_nodes(monkeypatch, deaths=localcluster.START_ATTEMPTS)
    with pytest.raises(localcluster.ExitedEarly, match="exited early"):
        localcluster.LocalCluster(localcluster.NodeSpec("head", cpus=1), str(tmp_path))
    assert len(FakeNode.started) == localcluster.START_ATTEMPTS
    assert all(node.stopped for node in FakeNode.started)


def test_the_head_is_ready_only_once_its_job_agent_answers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The Jobs API gives a submission to the head's agent and waits 10 s for it: a cluster
    handed out before the agent is up failed `make submit` once in CI ("No available agent")."""
    fake_nodes(monkeypatch, deaths=0)
    _answer.refusals = 3
    cluster = localcluster.LocalCluster(localcluster.NodeSpec("head", cpus=1), str(tmp_path))
    agent = f"http://127.0.0.1:{cluster.head.agent_port}/api/local_raylet_healthz"
    assert _answer.asked[0].endswith("/api/version")
    assert _answer.asked[1:] == [agent] * 4  # refused 3 times, then it answered


def test_a_submission_waits_for_the_job_agent_then_goes_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from jobs import submit

    monkeypatch.setattr(submit.time, "sleep", lambda s: None)
    answers: list[str | Exception] = [
        RuntimeError(f"Request failed with status code 500: {submit.NO_AGENT}, try later."),
        RuntimeError(f"Request failed with status code 500: {submit.NO_AGENT}, try later."),
        "tune-1a2b",
    ]

    def post() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert submit.submit_when_agent_ready(post) == "tune-1a2b"
    assert answers == []


def test_a_submission_fails_at_once_on_other_errors_and_after_the_wait_on_no_agent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from jobs import submit

    monkeypatch.setattr(submit.time, "sleep", lambda s: None)
    calls = 0

    def refused() -> str:
        nonlocal calls
        calls += 1
        raise RuntimeError("Request failed with status code 400: bad runtime_env")

    with pytest.raises(RuntimeError, match="400"):
        submit.submit_when_agent_ready(refused)
    assert calls == 1

    def no_agent() -> str:
        raise RuntimeError(submit.NO_AGENT)

    with pytest.raises(RuntimeError, match=submit.NO_AGENT):
        submit.submit_when_agent_ready(no_agent, wait_s=0.0)
