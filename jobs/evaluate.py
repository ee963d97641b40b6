"""`python -m jobs.evaluate PATH`: test-set accuracy and loss of an exported best_model.pt.

The model is evaluated on the dataset and validation split recorded in the file (override
with DATASET / VAL_LIMIT), from DATA_DIR, on the GPU when there is one.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from jobs import registry
from jobs.core.checkpoints import load_file
from jobs.core.data import Split, batches, load_split
from jobs.core.model import build_model
from jobs.core.parsers import ConfigError
from jobs.core.reading import Parser, resolve
from jobs.core.settings import DATASETS
from jobs.core.trainer import VAL_BATCH_SIZE

MODEL_KEYS = ("model", "trial_id", "config", "epoch", "dataset")


def read_model_file(path: Path) -> tuple[dict, torch.nn.Module]:
    """best_model.pt as jobs.core.export writes it, and its model with the weights loaded;
    anything else is a ConfigError."""
    if not path.is_file():
        raise ConfigError(f"{path} does not exist or is not a file")
    try:
        saved = load_file(path)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise ConfigError(f"{path} is not a model file ({type(exc).__name__})") from None
    if not isinstance(saved, dict) or any(k not in saved for k in MODEL_KEYS):
        raise ConfigError(
            f"{path} is not a best_model.pt from the checkpoint stage "
            f"(needs {', '.join(MODEL_KEYS)})"
        )
    if saved["dataset"] not in DATASETS:
        raise ConfigError(f"{path} names an unknown dataset {saved['dataset']!r}")
    model = build_model()
    try:
        model.load_state_dict(saved["model"])
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{path} holds weights that do not fit the model: {first}") from None
    return saved, model


def test_split(data_dir: str, dataset: str, val_limit: int | None) -> Split:
    """The test split, read and checked once; VAL_LIMIT must not exceed it."""
    split = load_split(data_dir, dataset, "test")
    if val_limit is not None and val_limit > len(split):
        raise ConfigError(f"VAL_LIMIT={val_limit} is more than the {len(split)} test images")
    return split if val_limit is None else Split(split.images[:val_limit], split.labels[:val_limit])


@torch.no_grad()
def evaluate(model: torch.nn.Module, split: Split) -> tuple[float, float]:
    """(accuracy, mean loss) of the model on the split, on the GPU when there is one."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).eval()
    split = split.to(device)
    criterion = torch.nn.CrossEntropyLoss(reduction="sum")
    loss, correct = 0.0, 0
    for images, labels in batches(split, VAL_BATCH_SIZE, shuffle=False, drop_last=False):
        logits = model(images)
        loss += float(criterion(logits, labels))
        correct += int((logits.argmax(dim=1) == labels).sum())
    return correct / len(split), loss / len(split)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m jobs.evaluate", description=__doc__)
    parser.add_argument("path", type=Path, help="best_model.pt written by the checkpoint stage")
    parser.add_argument(
        "--dry-run", action="store_true", help="check the file and the data, evaluate nothing"
    )
    try:
        args = parser.parse_args(argv)
        settings = resolve(registry.load("baseline"), [])
        saved, model = read_model_file(args.path)
        dataset = settings.dataset if os.environ.get("DATASET") else saved["dataset"]
        val_limit = settings.val_limit if settings.val_limit is not None else saved.get("val_limit")
        split = test_split(settings.data_dir, dataset, val_limit)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(
            f"{args.path}: trial {saved['trial_id']}, "
            f"would be evaluated on {len(split)} test images of {dataset} from {settings.data_dir}"
        )
        return 0
    accuracy, loss = evaluate(model, split)
    print(f"trial: {saved['trial_id']} (epoch {saved['epoch']}, config {saved['config']})")
    print(f"accuracy: {accuracy:.4f}")
    print(f"loss: {loss:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
