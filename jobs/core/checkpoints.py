"""Checkpoints as files: the one place that saves and loads a trainer's state.

Used by the checkpoint stage's trials (Tune checkpoints), the train stage's workers (Ray
Train checkpoints) and the export of the best model. A checkpoint folder holds one file,
`model.pt`: model and optimizer state dicts, the epoch, the shuffling generator's state.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import torch

CHECKPOINT_FILE = "model.pt"


class _Checkpoint(Protocol):
    def as_directory(self) -> Any: ...


@contextmanager
def saved(state: dict[str, Any], checkpoint_cls: Any) -> Iterator[Any]:
    """A checkpoint of `checkpoint_cls` (tune.Checkpoint or ray.train.Checkpoint) holding
    `state`, valid inside the block (Ray copies it away when it is reported)."""
    with tempfile.TemporaryDirectory() as folder:
        torch.save(state, os.path.join(folder, CHECKPOINT_FILE))
        yield checkpoint_cls.from_directory(folder)


def load(checkpoint: _Checkpoint, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The state a `saved` checkpoint holds, its tensors on `device`."""
    with checkpoint.as_directory() as folder:
        return load_file(Path(folder) / CHECKPOINT_FILE, device)


def load_file(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    # weights_only=False: the state holds the generator's state and plain Python values;
    # these files are the project's own.
    return torch.load(path, map_location=device, weights_only=False)
