"""WARM_START read from a hand-written finished asha run: which trials become evaluated
points and how, and what is refused (one error line) before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs.core import records, runs, warm_start
from jobs.core.parsers import ConfigError
from jobs.core.warm_start import Evaluated
from tests.support.runs import settings as resolve
from tests.support.summaries import HISTORIES, _summary


@pytest.fixture
def earlier(tmp_path: Path) -> Path:
    folder = tmp_path / "asha.archived-20261207-120000"
    records.write(folder, _summary())  # lr 0.1 stopped early, 0.001 completed, 0.01 errored
    (folder / runs.CURVES_FILE).write_text(json.dumps({"rungs": [2], "trials": HISTORIES}))
    return folder


def asha(folder: Path, *argv: str):
    return resolve("asha", "--num-epochs", "8", *argv, env={"WARM_START": str(folder)})


def test_completed_trials_are_complete_early_stopped_ones_pruned_errored_ones_left_out(
    earlier: Path,
) -> None:
    found = warm_start.earlier_trials(asha(earlier))
    assert found == [
        Evaluated("aaaaaaaa", {"lr": 0.1}, 90.0, pruned=True, intermediate=(120.0, 90.0)),
        Evaluated(
            "bbbbbbbb",
            {"lr": 0.001},
            0.4,
            pruned=False,
            intermediate=tuple(1.0 / e + 0.3 for e in range(1, 9)),
        ),
    ]
    assert warm_start.earlier_trials(resolve("asha")) == []  # unset: a plain search


def test_a_random_search_and_a_resume_refuse_it_in_one_line(earlier: Path) -> None:
    s = asha(earlier)
    warm_start.check(s, takes_it=True, resuming=False)
    with pytest.raises(ConfigError, match="searches at random"):
        warm_start.check(s, takes_it=False, resuming=False)
    with pytest.raises(ConfigError, match="applies to a fresh experiment only"):
        warm_start.check(s, takes_it=True, resuming=True)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ("--metric", "val_accuracy"),
            "ranked its trials on val_loss \\(min\\); this search tunes",
        ),
        (("--batch-size", "64"), "searched another space"),
        (("--num-epochs", "3"), "searched another space"),
    ],
)
def test_a_run_of_another_metric_or_space_is_refused(earlier: Path, argv, message) -> None:
    with pytest.raises(ConfigError, match=message):
        warm_start.earlier_trials(asha(earlier, *argv))


def test_a_retry_of_a_warm_started_run_resumes_it_an_explicit_resume_is_refused(
    earlier: Path, tmp_path: Path
) -> None:
    """A KubeRay retry keeps its environment (WARM_START too) and resumes the experiment;
    that is fine for the experiment that started from that same run, not for another."""
    s = resolve(
        "asha",
        "--num-epochs",
        "8",
        env={"WARM_START": str(earlier), "STORAGE_PATH": str(tmp_path / "storage")},
    )
    with pytest.raises(ConfigError, match="applies to a fresh experiment only"):
        warm_start.check(s, takes_it=True, resuming=True)  # an experiment it did not start
    warm_start.remember(s)
    assert warm_start.started_from(s) == str(earlier)
    warm_start.check(s, takes_it=True, resuming=True)  # the retry: resumes
    again = resolve(
        "asha",
        "--resume",
        env={"WARM_START": str(earlier), "STORAGE_PATH": str(tmp_path / "storage")},
    )
    with pytest.raises(ConfigError, match="applies to a fresh experiment only"):
        warm_start.check(again, takes_it=True, resuming=True)
