"""GPU_WAIT_S: on a remote autoscaling cluster without a GPU node yet, the run asks the
autoscaler for one and waits, then goes on when it joins or fails in one line when not."""

from __future__ import annotations

import pytest
import ray.autoscaler.sdk

from jobs.core import connection as runtime
from jobs.core.parsers import ConfigError
from jobs.core.resources import ClusterView
from tests.support.runs import settings

NO_GPU = ClusterView(cpus=2, gpus=0, max_node_cpus=2, resources={"CPU": 2})
T4 = ClusterView(cpus=6, gpus=1, max_node_cpus=4, resources={"GPU": 1, "accelerator_type:T4": 1})


class Clock:
    """Stands in for the time module: sleeping advances it."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def autoscaler(monkeypatch: pytest.MonkeyPatch) -> list:
    requests: list = []
    monkeypatch.setattr(ray.autoscaler.sdk, "request_resources", lambda **kw: requests.append(kw))
    monkeypatch.setattr(runtime, "time", Clock())
    return requests


def remote(**env: str):
    return settings("tune", env={"RAY_ADDRESS": "10.0.0.1:6379", "ACCELERATOR": "gpu", **env})


def test_waits_for_the_gpu_node_the_autoscaler_adds(monkeypatch, autoscaler) -> None:
    views = iter([NO_GPU, NO_GPU, T4])
    monkeypatch.setattr(runtime, "cluster_view", lambda: next(views))
    assert runtime.wait_for_accelerator(remote(GPU_WAIT_S="60"), NO_GPU) is T4
    # One T4 bundle asked for, then the request withdrawn.
    assert autoscaler == [{"bundles": [{"GPU": 1, "accelerator_type:T4": 0.001}]}, {"bundles": []}]
    assert runtime.time.now == 10  # two polls of 5 s before the node joined


def test_fails_in_one_line_when_no_gpu_joins_in_time(monkeypatch, autoscaler) -> None:
    monkeypatch.setattr(runtime, "cluster_view", lambda: NO_GPU)
    with pytest.raises(ConfigError, match="joined within GPU_WAIT_S=30s"):
        runtime.wait_for_accelerator(remote(GPU_WAIT_S="30"), NO_GPU)
    assert autoscaler[-1] == {"bundles": []}  # nothing left requested
    assert 30 <= runtime.time.now < 40


def test_no_wait_when_the_gpu_is_there_local_or_zero(monkeypatch, autoscaler) -> None:
    monkeypatch.setattr(runtime, "cluster_view", lambda: pytest.fail("polled"))
    assert runtime.wait_for_accelerator(remote(), T4) is T4
    assert runtime.wait_for_accelerator(remote(GPU_WAIT_S="0"), NO_GPU) is NO_GPU
    local = settings("tune", env={"ACCELERATOR": "gpu"})
    assert runtime.wait_for_accelerator(local, NO_GPU) is NO_GPU
    assert autoscaler == []
