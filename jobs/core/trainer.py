"""The Trainer: the training loop every stage shares, on one device.

Per epoch, one pass of training and one of validation.

`Trainer(spec, device=...)` owns the model, the optimizer and the in-memory data; the
`TrialSpec` (jobs.core.training_spec) is all it reads of the settings. Stages differ only
in how they report (print, `tune.report`, `ray.train.report`) and checkpoint.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import CrossEntropyLoss
from torch.optim import Adam

from jobs.core.data import Split, batches, load_split
from jobs.core.model import build_model
from jobs.core.training_spec import TrialSpec

VAL_BATCH_SIZE = 1024

# Sums a tensor across Ray Train workers; identity for a single process.
Reducer = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class EpochResult:
    epoch: int  # 1-based count of finished epochs: ASHA and Stoppers schedule on it
    loss: float  # mean training loss over the epoch
    val_loss: float
    val_accuracy: float
    epoch_s: float
    train_images_per_s: float

    def metrics(self) -> dict[str, float]:
        return dataclasses.asdict(self)


def _no_reduce(t: torch.Tensor) -> torch.Tensor:
    return t


class Trainer:
    def __init__(
        self,
        spec: TrialSpec,
        *,
        device: torch.device,
        rank: int = 0,
        world_size: int = 1,
        wrap_model: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
        reduce: Reducer = _no_reduce,
    ) -> None:
        torch.manual_seed(spec.seed)
        self.spec = spec
        self.device = device
        self.batch_size = spec.batch_size
        self.reduce = reduce
        data = spec.data
        train = load_split(data.data_dir, data.dataset, "train", data.train_limit)
        val = load_split(data.data_dir, data.dataset, "test", data.val_limit)
        self.train: Split = train.shard(rank, world_size).to(device)
        self.val: Split = val.shard(rank, world_size).to(device)
        model = build_model().to(device)
        self.module = model  # unwrapped, for state dicts
        self.model = wrap_model(model) if wrap_model else model
        self.optimizer = Adam(self.model.parameters(), lr=spec.lr)
        self.criterion = CrossEntropyLoss()
        self.generator = torch.Generator().manual_seed(spec.seed + rank)

    def _sum(self, *values: float) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        return self.reduce(t).tolist()

    def train_epoch(self) -> tuple[float, int]:
        """One pass over the training split; returns (mean loss, images seen by all workers)."""
        self.model.train()
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        count = 0
        for images, labels in batches(
            self.train, self.batch_size, shuffle=True, drop_last=True, generator=self.generator
        ):
            loss = self.criterion(self.model(images), labels)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.detach() * labels.shape[0]
            count += labels.shape[0]
        loss_sum, n = self._sum(float(total), float(count))
        return loss_sum / max(n, 1.0), int(n)

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float]:
        """(mean loss, accuracy) on the validation split."""
        self.model.eval()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        for images, labels in batches(self.val, VAL_BATCH_SIZE, shuffle=False, drop_last=False):
            logits = self.model(images)
            loss_sum += self.criterion(logits, labels).double() * labels.shape[0]
            correct += (logits.argmax(dim=1) == labels).sum()
        total_loss, total_correct, n = self._sum(float(loss_sum), float(correct), len(self.val))
        return total_loss / max(n, 1.0), total_correct / max(n, 1.0)

    def run_epoch(self, epoch: int) -> EpochResult:
        start = time.perf_counter()
        loss, images = self.train_epoch()
        train_s = time.perf_counter() - start
        val_loss, val_accuracy = self.evaluate()
        return EpochResult(
            epoch=epoch,
            loss=loss,
            val_loss=val_loss,
            val_accuracy=val_accuracy,
            epoch_s=time.perf_counter() - start,
            train_images_per_s=images / max(train_s, 1e-9),
        )

    def state(self, epoch: int) -> dict[str, Any]:
        return {
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": epoch,
            "generator": self.generator.get_state(),
        }

    def load_state(self, state: dict[str, Any]) -> int:
        """Restore from `state()`; returns the number of epochs already done."""
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        return int(state["epoch"])


def format_epoch(who: str, result: EpochResult, num_epochs: int, device: torch.device) -> str:
    return (
        f"[{who}] epoch {result.epoch}/{num_epochs} loss={result.loss:.4f} "
        f"val_loss={result.val_loss:.4f} val_accuracy={result.val_accuracy:.4f} "
        f"({result.epoch_s:.1f}s, {result.train_images_per_s:.0f} img/s, {device.type})"
    )
