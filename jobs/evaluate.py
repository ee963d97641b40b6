"""`python -m jobs.evaluate PATH`: test-set accuracy and loss of an exported best_model.pt.

The model is evaluated on the dataset and validation split recorded in the file (override
with DATASET / VAL_LIMIT), from DATA_DIR, on the GPU when there is one.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from jobs.config import ConfigError, resolve
from jobs.data import batches, load_split
from jobs.engine import VAL_BATCH_SIZE
from jobs.model import build_model


@torch.no_grad()
def evaluate(
    path: Path, data_dir: str, dataset: str | None = None, val_limit: int | None = None
) -> tuple[float, float, dict]:
    saved = torch.load(path, map_location="cpu", weights_only=False)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build_model()
    model.load_state_dict(saved["model"])
    model.to(device).eval()
    split = load_split(
        data_dir,
        dataset or saved["dataset"],
        "test",
        val_limit if val_limit is not None else saved.get("val_limit"),
    ).to(device)
    criterion = torch.nn.CrossEntropyLoss(reduction="sum")
    loss, correct = 0.0, 0
    for images, labels in batches(split, VAL_BATCH_SIZE, shuffle=False, drop_last=False):
        logits = model(images)
        loss += float(criterion(logits, labels))
        correct += int((logits.argmax(dim=1) == labels).sum())
    return correct / len(split), loss / len(split), saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.evaluate", description=__doc__)
    parser.add_argument("path", type=Path, help="best_model.pt written by the checkpoint stage")
    args = parser.parse_args(argv)
    if not args.path.is_file():
        print(f"error: {args.path} does not exist", file=sys.stderr)
        return 2
    try:
        settings = resolve("baseline", [])
        dataset = os.environ.get("DATASET") and settings.dataset
        accuracy, loss, saved = evaluate(args.path, settings.data_dir, dataset, settings.val_limit)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"trial: {saved['trial_id']} (epoch {saved['epoch']}, config {saved['config']})")
    print(f"accuracy: {accuracy:.4f}")
    print(f"loss: {loss:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
