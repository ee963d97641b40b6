"""A trial killed by Ray's memory monitor is a trial failure for Tune, not a crashed run
(jobs/core/oom.py), checked against Ray's own actor manager without a cluster."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from ray.air.execution._internal.actor_manager import RayActorManager
from ray.exceptions import OutOfMemoryError, RayActorError

from jobs.core import oom

MESSAGE = "1 worker(s) were killed due to the node running low on memory."


def _fail_a_task(method) -> tuple[list, list, set]:
    """Hand `method` (RayActorManager._actor_task_failed) a task whose actor the memory
    monitor killed; what the actor's and the task's error callbacks received."""
    actor_errors: list = []
    task_errors: list = []
    actor = SimpleNamespace(actor_id="a1", _on_error=lambda a, e: actor_errors.append(e))
    task = SimpleNamespace(_tracked_actor=actor, _on_error=lambda a, e: task_errors.append(e))
    manager = SimpleNamespace(_failed_actor_ids=set(), _cleanup_actor=lambda tracked_actor: None)
    method(manager, task, OutOfMemoryError(MESSAGE))
    return actor_errors, task_errors, manager._failed_actor_ids


def test_ray_itself_still_crashes_the_run_on_a_bare_memory_kill() -> None:
    # The bug the shim works around; when a Ray upgrade fixes it, this fails: drop the shim.
    with pytest.raises(RuntimeError, match="Caught unexpected exception: 1 worker"):
        _fail_a_task(oom._original_task_failed)


def test_with_the_shim_the_trial_fails_as_an_actor_that_died(monkeypatch) -> None:
    monkeypatch.setattr(RayActorManager, "_actor_task_failed", oom._original_task_failed)
    oom.tolerate_memory_kills()
    oom.tolerate_memory_kills()  # idempotent: still one wrapper
    assert RayActorManager._actor_task_failed is oom._task_failed
    actor_errors, task_errors, failed = _fail_a_task(RayActorManager._actor_task_failed)
    assert failed == {"a1"}  # Tune will not schedule on that actor again
    (error,) = actor_errors
    assert isinstance(error, RayActorError) and str(error) == MESSAGE  # Ray's words kept
    assert task_errors == [error]
