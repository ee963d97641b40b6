"""A small finished experiment's summary (3 trials, ASHA stops, an error) for the tests of
what is printed, stored, plotted and priced from it."""

from __future__ import annotations

from jobs.core import records as results
from jobs.core.records import Summary, TrialRecord

HISTORIES = {
    "aaaaaaaa": [
        {"epoch": 1, "val_loss": 120.0, "val_accuracy": 0.1},
        {"epoch": 2, "val_loss": 90.0, "val_accuracy": 0.1},
    ],
    "bbbbbbbb": [
        {"epoch": e, "val_loss": 1.0 / e + 0.3, "val_accuracy": 0.7 + e / 100} for e in range(1, 9)
    ],
    "cccccccc": [{"epoch": 1, "val_loss": 2.0, "val_accuracy": 0.2}],
}


def _summary() -> Summary:
    def trial(tid: str, errored: bool, lr: float, last: dict) -> TrialRecord:
        config = {"lr": lr, "batch_size": 128, "num_epochs": 8}
        return results.record(tid, errored, 8, config, last, HISTORIES[tid])

    return Summary(
        "asha",
        "val_loss",
        "min",
        [
            trial("cccccccc", True, 0.01, {"epoch": 1, "val_loss": 2.0, "time_total_s": 3.0}),
            trial(
                "aaaaaaaa",
                False,
                0.1,
                {
                    "epoch": 2,
                    "val_loss": 90.0,
                    "val_accuracy": 0.1,
                    "loss": 3.0,
                    "time_total_s": 10.0,
                    "training_iteration": 2,
                },
            ),
            trial(
                "bbbbbbbb",
                False,
                0.001,
                {
                    "epoch": 8,
                    "val_loss": 0.4,
                    "val_accuracy": 0.85,
                    "loss": 0.3,
                    "time_total_s": 40.0,
                    "training_iteration": 8,
                },
            ),
        ],
        60.0,
    )
