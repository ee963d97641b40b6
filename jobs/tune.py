"""Part 2 of the walkthrough: a first Tune experiment.

Random search (Tune's default BasicVariantGenerator) over lr ~ loguniform(1e-4, 1e-1),
4 trials of 3 epochs at batch 128, one GPU per trial on a GPU cluster. Prints the best
trial's config and metrics and the per-trial table.
"""

from __future__ import annotations

import sys

from jobs.core import cli, tune_run
from jobs.core.search import random_search
from jobs.core.stage import Kubernetes, Stage

STAGE = Stage(
    name="tune",
    part=2,
    defaults={"num_samples": 4, "num_epochs": 3},
    run=tune_run.TuneRun(tune_config=random_search),
    kubernetes=Kubernetes(deadline_s=3600),
)

if __name__ == "__main__":
    sys.exit(cli.main(STAGE))
