"""What a stage declares: the one object each stage file builds and the registry points to.

A stage file (jobs/<name>.py) says only what its part of the walkthrough adds; everything
else about running it (settings, command line, Ray connection, results) is shared.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobs.core.settings import Scope, Settings, settings_fields

if TYPE_CHECKING:
    from jobs.core.records import Summary


@dataclass(frozen=True, kw_only=True)
class Kubernetes:
    """The stage's facts for its RayJob manifests (jobs/kube/render.py reads them)."""

    # activeDeadlineSeconds of one attempt at walkthrough size on T4s, with slack for node
    # scale-up and image pulls. The kind values may override it for CI-sized runs.
    deadline_s: int
    # Fixed worker pods on kind (no autoscaler there): enough for one trial's GPU slots.
    kind_workers: int = 1


@dataclass(frozen=True, kw_only=True)
class Stage:
    name: str
    part: int  # the walkthrough part it implements
    # The walkthrough's numbers for settings the user leaves unset (num_epochs, ...).
    defaults: Mapping[str, Any]
    # Runs the stage once the settings are valid and the experiment is locked.
    run: Callable[[Settings], Summary]
    kubernetes: Kubernetes
    # Which shared settings the stage reads besides those of every stage (Scope.ALL).
    scopes: frozenset[Scope] = frozenset({Scope.TUNE, Scope.TRIAL})
    # A dataclass of `setting(...)` fields the stage adds (Settings.options), or None.
    options: type | None = None
    # Checks of the experiment folder that must fail before any cluster work.
    preflight: Callable[[Settings], None] | None = None

    def __post_init__(self) -> None:
        known = {f.name for f in dataclasses.fields(Settings)}
        unknown = set(self.defaults) - known
        if unknown:
            raise ValueError(f"stage {self.name}: defaults for unknown settings {unknown}")
        if self.options is not None:
            clash = {f.name for f, _ in settings_fields(self.options)} & known
            if clash:
                raise ValueError(f"stage {self.name}: options shadow shared settings {clash}")
