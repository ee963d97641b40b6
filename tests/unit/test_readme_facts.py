"""The documentation's numbers (the README and the pages beside what they describe), each
rebuilt here from the code, lock or manifest that decides it.

Generated parts (the settings table, the bench and cost tables) have their own tests; the
per-cloud node figures are in test_variants.py and the memory figures in test_resources.py.
Each fact below is the docs' wording with the number filled in from its source, so a
change on either side fails here until the two agree again.
"""

from __future__ import annotations

import re

import pytest
import yaml

from jobs import asha, checkpoint, train
from jobs.core import connection as runtime
from tests.support import runs
from tests.support.manifests import VALUES
from tests.support.runs import CI_SIZE, REPO

# The front page and the pages beside what they describe: a fact is checked wherever it is.
DOCS = ("README.md", "jobs/README.md", "k8s/README.md", "tests/README.md", "jobs/bench/README.md")
README = "\n".join((REPO / doc).read_text() for doc in DOCS)
FLAT = re.sub(r"\s+", " ", README)  # facts may wrap across lines


def _locked(name: str) -> int:
    """Packages pinned in .ci/lock/<name>."""
    text = (REPO / ".ci" / "lock" / name).read_text()
    return len(re.findall(r"^[A-Za-z0-9_.\-\[\]]+==", text, re.M))


def _stage_row(stage: str) -> str:
    s = runs.settings(stage)
    if stage == "baseline":
        return f"{s.num_epochs} epochs, batch {s.batch_size}, lr {s.lr:.0e}".replace("e-0", "e-")
    return f"{s.num_samples} trials x {s.num_epochs} epochs"


def _kind_env(stage: str) -> dict[str, str]:
    doc = yaml.safe_load((REPO / "k8s" / "kind" / f"rayjob-{stage}.yaml").read_text())
    return yaml.safe_load(doc["spec"]["runtimeEnvYAML"])["env_vars"]


def facts() -> list[tuple[str, str]]:
    asha_settings = runs.settings("asha")
    kind = _kind_env("tune")
    return [
        ("dev lock", f"`dev.txt`: runtime and dev, {_locked('dev.txt')} packages"),
        ("runtime lock", f"`runtime.txt`: the {_locked('runtime.txt')} the image needs"),
        ("client lock", f"`client.txt`: the {_locked('client.txt')} the"),
        ("client lock, again", f"{_locked('client.txt')} packages, about"),
        *((f"{s} defaults", f"| {_stage_row(s)} |") for s in ("baseline", "tune", "asha")),
        *((f"{s} defaults", f"| {_stage_row(s)} |") for s in ("checkpoint", "train")),
        (
            "asha scheduler",
            f"`ASHAScheduler(max_t={asha.MAX_T}, grace_period={asha.GRACE_PERIOD})`",
        ),
        (
            "asha rungs",
            "ASHA's rungs (epochs "
            + " and ".join(
                str(r)
                for r in asha.rungs(asha.scheduler_max_t(asha_settings))
                if r <= asha_settings.num_epochs
            )
            + ")",
        ),
        ("checkpoint retries", f"`FailureConfig(max_failures={checkpoint.MAX_FAILURES})`"),
        ("train retries", f"(`FailureConfig(max_failures={train.TRAIN_MAX_FAILURES})`)"),
        (
            "train workers",
            f"each of its two Train workers 1 GPU and {train.TRAIN_WORKER_CPU:g} CPU",
        ),
        ("train driver", f"The `train` stage's trial holds {train.DRIVER_CPU:g} CPU"),
        (
            "snapshots",
            f"(`TUNE_GLOBAL_CHECKPOINT_S={runtime.DRIVER_ENV['TUNE_GLOBAL_CHECKPOINT_S']}`)",
        ),
        (
            "kind sizes",
            f"small settings ({int(kind['TRAIN_LIMIT'])} training and {int(kind['VAL_LIMIT'])} "
            "validation",
        ),
        (
            "test sizes",
            f"the real Fashion-MNIST, {CI_SIZE['TRAIN_LIMIT']} training and "
            f"{CI_SIZE['VAL_LIMIT']} validation images",
        ),
        (
            "GPU wait",
            f"{VALUES['gke']['cold_start_s']['t4']:,} s is the budget",
        ),
    ]


@pytest.mark.parametrize(("what", "fact"), facts(), ids=[w for w, _ in facts()])
def test_the_readme_states_it_as_the_code_has_it(what: str, fact: str) -> None:
    assert fact in FLAT, f"{what}: README lacks {fact!r}"
