"""Trials killed by Ray's memory monitor: errored trials with a reason, not a crashed run.

Ray 2.60's Tune treats only `RayActorError` and `RayTaskError` from a trial actor's task as
a trial failure (`RayActorManager._actor_task_failed` in ray/air/execution/_internal/
actor_manager.py). When the memory monitor kills a trial's actor, the pending task can
resolve to a bare `OutOfMemoryError` instead; Tune then raises "RuntimeError: Caught
unexpected exception" out of `Tuner.fit()`, the driver dies with a traceback and no trial's
results are written. `tolerate_memory_kills()` hands that error on as what it is for Tune,
an actor that died, so the trial ends errored (and is retried as FailureConfig allows).

The line a stage prints for such a trial comes from `jobs.core.records.error_line`.
"""

from __future__ import annotations

from ray.air.execution._internal.actor_manager import RayActorManager
from ray.exceptions import OutOfMemoryError, RayActorError

_original_task_failed = RayActorManager._actor_task_failed


def _task_failed(self: RayActorManager, tracked_actor_task: object, exception: Exception):
    if isinstance(exception, OutOfMemoryError):
        exception = RayActorError(error_msg=str(exception))
    return _original_task_failed(self, tracked_actor_task, exception)


def tolerate_memory_kills() -> None:
    """Make a memory-monitor kill a trial failure in this driver (idempotent)."""
    RayActorManager._actor_task_failed = _task_failed  # type: ignore[method-assign]
