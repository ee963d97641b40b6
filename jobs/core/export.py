"""The tuned model as a file: the best trial's best checkpoint, ready for jobs.evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jobs.core.records import Summary
from jobs.core.settings import Settings

BEST_MODEL_FILE = "best_model.pt"


def export_best_model(settings: Settings, grid: Any, summary: Summary) -> list[Path]:
    """Save the best trial's best checkpoint as <experiment>/best_model.pt.

    The file holds the state dict plus what rebuilding and re-evaluating it needs: the
    trial's config, the dataset and validation split, and the metrics recorded for it.
    """
    # Imported here, at the end of a run: the driver needs torch for this file only.
    import torch

    from jobs.core import checkpoints

    best = summary.best
    if best is None:
        return []
    result = next(r for r in grid if best.trial_id in str(r.path))
    candidates = [
        (c, m) for c, m in (result.best_checkpoints or []) if m.get(settings.metric) is not None
    ]
    if not candidates:
        return []
    better = min if settings.mode == "min" else max
    checkpoint, metrics = better(candidates, key=lambda cm: cm[1][settings.metric])
    state = checkpoints.load(checkpoint)
    path = settings.experiment_dir / BEST_MODEL_FILE
    torch.save(
        {
            "model": state["model"],
            "trial_id": best.trial_id,
            "config": best.config,
            "epoch": int(state["epoch"]),
            "dataset": settings.dataset,
            "val_limit": settings.val_limit,
            "metrics": {k: metrics.get(k) for k in ("epoch", "val_loss", "val_accuracy", "loss")},
        },
        path,
    )
    print(
        f"[{settings.stage}] best checkpoint: {checkpoint.path} (trial {best.trial_id}, epoch "
        f"{int(state['epoch'])}, {settings.metric}={metrics[settings.metric]:.4g})",
        flush=True,
    )
    return [path]
