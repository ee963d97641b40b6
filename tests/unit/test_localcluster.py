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


class _answer:
    def __init__(self, url: str, timeout: float) -> None:
        pass

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
