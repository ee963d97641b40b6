"""The tuned model as a file: the best trial's best checkpoint, ready for jobs.evaluate."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from jobs.config import Settings
from jobs.trial import CHECKPOINT_FILE

BEST_MODEL_FILE = "best_model.pt"


def export_best_model(settings: Settings, grid: Any, summary: dict[str, Any]) -> list[Path]:
    """Save the best trial's best checkpoint as <experiment>/best_model.pt.

    The file holds the state dict plus what rebuilding and re-evaluating it needs: the
    trial's config, the dataset and validation split, and the metrics recorded for it.
    """
    if summary["best"] is None:
        return []
    best = summary["best"]
    result = next(r for r in grid if str(r.path).find(best["trial_id"]) != -1)
    checkpoints = [
        (c, m) for c, m in (result.best_checkpoints or []) if m.get(settings.metric) is not None
    ]
    if not checkpoints:
        return []
    better = min if settings.mode == "min" else max
    checkpoint, metrics = better(checkpoints, key=lambda cm: cm[1][settings.metric])
    with checkpoint.as_directory() as folder:
        state = torch.load(
            os.path.join(folder, CHECKPOINT_FILE), map_location="cpu", weights_only=False
        )
    path = settings.experiment_dir / BEST_MODEL_FILE
    torch.save(
        {
            "model": state["model"],
            "trial_id": best["trial_id"],
            "config": best["config"],
            "epoch": int(state["epoch"]),
            "dataset": settings.dataset,
            "val_limit": settings.val_limit,
            "metrics": {k: metrics.get(k) for k in ("epoch", "val_loss", "val_accuracy", "loss")},
        },
        path,
    )
    return [path]
