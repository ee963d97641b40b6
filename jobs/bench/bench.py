"""Benchmarks (`make bench`, `BENCH_QUICK=1 make bench`): measured side by side in one run.

Writes jobs/bench/results/latest.json and a dated copy; prints a table. `--readme-table`
prints jobs/bench/README.md's Performance table from the newest full and quick results.
Every timing is min/median/max over repeats after one warm-up; every ratio divides two
medians measured in this run. Sides of a ratio are measured alternately (A B C, C A B, ...;
the loaders A B, B A, ...), so a slow minute on a shared machine hits every side.

Sizes (real Fashion-MNIST from DATA_DIR, batch 128, torch threads = cores):
  quick: 1024 training images, 3 rounds x 3 repeats;
         search: 16 configs x 16 epochs on 512/512 images
  full:  4096 training images, 3 rounds x 5 repeats;
         search: 32 configs x 16 epochs on 1024/512 images
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jobs.bench import pages, warm
from jobs.core.search import LR_RANGE

REPO = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results"
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
DATA_DIR = os.environ.get("DATA_DIR", "/usr/share/datasets/fashion-mnist")
DATASET = os.environ.get("DATASET", "fashion-mnist")
THREADS = os.cpu_count() or 1
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
BATCH = 128
SIZE = (
    {"train": 1024, "rounds": 3, "repeats": 3}
    | {"configs": 16, "epochs": 16, "s_train": 512, "s_val": 512}
    if QUICK
    else {"train": 4096, "rounds": 3, "repeats": 5}
    | {"configs": 32, "epochs": 16, "s_train": 1024, "s_val": 512}
)
SEED = 0
# Ray's default reduction factor; rungs at epochs 1, 4 and 16. Asynchronous ASHA lets the
# first trials to reach a rung through unopposed, so its saving nears the synchronous bound
# (16 / (1 + 3/4 + 12/16) = 6.4x) only with many configurations and a long budget. Measured
# here: 8 configs x 8 epochs saved 2.2x, 16 x 8 saved 2.4x, 16 x 16 saved 3.7x.
ASHA = {"grace_period": 1, "reduction_factor": 4}


def stats(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def ratio(a: dict[str, float], b: dict[str, float]) -> float:
    return round(a["median"] / b["median"], 3)


def _ray_init() -> None:
    """A private local Ray sized to this machine, quiet."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    ray.init(
        num_cpus=THREADS,
        include_dashboard=False,
        logging_level="ERROR",
        object_store_memory=256 * 2**20,
        _temp_dir=tempfile.mkdtemp(prefix="rtk-b-"),
    )


# --- 1-2: one trial against the plain loop and the compute bound ------------------------


def _settings(*, epochs: int, lr: float = 1e-3, train: int = SIZE["train"], val: int = 256) -> Any:
    """The benchmark's settings, as a stage resolves its own."""
    from jobs.core.settings import Settings

    return Settings(
        stage="bench",
        data_dir=DATA_DIR,
        dataset=DATASET,
        train_limit=train,
        val_limit=val,
        batch_size=BATCH,
        lr=lr,
        num_epochs=epochs,
        seed=SEED,
    )


def _training_spec(settings: Any) -> Any:
    """The benchmark's training spec, built as every stage builds its own: the settings and a
    CPU trial plan of all cores through jobs.core.training_spec.training_spec."""
    from jobs.core.resources import TrialPlan
    from jobs.core.training_spec import training_spec

    return training_spec(settings, TrialPlan(False, {"cpu": THREADS}, 1, cpus_per_trial=THREADS))


def _cpu_trainer(lr: float = 1e-3, train: int = SIZE["train"], val: int = 256) -> Any:
    """The project's Trainer on a subset of the benchmark's data, on CPU, with the settings'
    hyperparameters as the baseline gets them."""
    from jobs.core.trainer import Trainer
    from jobs.core.training_spec import hyperparameters

    settings = _settings(epochs=1, lr=lr, train=train, val=val)
    spec = _training_spec(settings).for_trial(hyperparameters(settings))
    return Trainer(spec, device=torch.device("cpu"))


def plain_loop() -> list[float]:
    torch.set_num_threads(THREADS)
    trainer = _cpu_trainer()
    trainer.train_epoch()  # warm-up, as the trial's first epoch is dropped
    rates = []
    for _ in range(SIZE["repeats"]):
        start = time.perf_counter()
        _, images = trainer.train_epoch()
        rates.append(images / (time.perf_counter() - start))
    return rates


def compute_bound() -> list[float]:
    from jobs.core.model import build_model

    torch.set_num_threads(THREADS)
    model = build_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = torch.nn.CrossEntropyLoss()
    images, labels = torch.randn(BATCH, 1, 28, 28), torch.randint(0, 10, (BATCH,))
    steps = SIZE["train"] // BATCH
    rates = []
    for _ in range(SIZE["repeats"] + 1):  # the first pass is a warm-up
        start = time.perf_counter()
        for _ in range(steps):
            loss = criterion(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        rates.append(steps * BATCH / (time.perf_counter() - start))
    return rates[1:]


@dataclass
class TrialRun:
    rates: list[float]  # training images/s per epoch, warm-up epoch dropped
    rss_mib: float  # peak RSS of the trial process
    start_s: float  # Tune's wall time minus the trial's own
    background_pct: float  # CPU of every other process while the trial trains, % of a core


def cpu_seconds() -> dict[int, float]:
    """User + system CPU seconds of every process on this machine, by pid (Linux /proc)."""
    from jobs.core.localcluster import proc_stats

    return {pid: (int(f[11]) + int(f[12])) / CLOCK_TICKS for pid, f in proc_stats().items()}


def _cpu_window(last_epoch: int) -> Any:
    """A Tune callback (run by the driver) snapshotting all CPU times at epochs 1 and last."""
    from ray import tune

    class CpuWindow(tune.Callback):
        def __init__(self) -> None:
            self.snapshots: list[tuple[float, dict[int, float]]] = []
            self.trial_pid = 0

        def on_trial_result(
            self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
        ) -> None:
            if result.get("epoch") in (1, last_epoch):
                self.snapshots.append((time.perf_counter(), cpu_seconds()))
                self.trial_pid = int(result["pid"])

        def background_pct(self) -> float:
            (t0, before), (t1, after) = self.snapshots[0], self.snapshots[-1]
            used = sum(
                v - before.get(pid, 0.0) for pid, v in after.items() if pid != self.trial_pid
            )
            return 100 * used / (t1 - t0)

    return CpuWindow()


def tune_trial() -> TrialRun:
    """The project's own trial (jobs.core.tune_trial) in Tune with all cores."""
    import ray
    from ray import tune

    _ray_init()
    try:
        epochs = SIZE["repeats"] + 1
        spec = _training_spec(_settings(epochs=epochs))
        storage = tempfile.mkdtemp(prefix="rtk-bench-")
        window = _cpu_window(epochs)
        started = time.perf_counter()
        grid = tune.Tuner(
            tune.with_resources(tune.with_parameters(_measured_trial, spec=spec), {"cpu": THREADS}),
            param_space={"lr": 1e-3, "batch_size": BATCH, "num_epochs": epochs},
            tune_config=tune.TuneConfig(num_samples=1),
            run_config=tune.RunConfig(
                storage_path=storage, name="bench", verbose=0, callbacks=[window]
            ),
        ).fit()
        wall = time.perf_counter() - started
        frame = grid[0].metrics_dataframe
        shutil.rmtree(storage, ignore_errors=True)
        return TrialRun(
            rates=frame["train_images_per_s"].tolist()[1:],  # epoch 1 is the warm-up
            rss_mib=float(frame["max_rss_mib"].max()),
            start_s=wall - float(frame["time_total_s"].max()),
            background_pct=window.background_pct(),
        )
    finally:
        ray.shutdown()


def throughput() -> dict[str, Any]:
    """Plain loop, compute bound and Tune trial in alternating rounds; the keys of 1-2."""
    runs: list[TrialRun] = []

    def trial() -> list[float]:
        runs.append(tune_trial())
        return runs[-1].rates

    sides: dict[str, Callable[[], list[float]]] = {
        "plain": plain_loop,
        "bound": compute_bound,
        "trial": trial,
    }
    rates: dict[str, list[float]] = {name: [] for name in sides}
    order = list(sides)
    for _ in range(SIZE["rounds"]):
        for name in order:
            rates[name] += sides[name]()
        order = order[-1:] + order[:-1]
    plain, bound, in_tune = (stats(rates[name]) for name in sides)
    return {
        "plain_images_per_s": plain,
        "compute_bound_images_per_s": bound,
        "trial_images_per_s": in_tune,
        "trial_vs_plain_loop": ratio(in_tune, plain),
        "trial_vs_compute_bound": ratio(in_tune, bound),
        "trial_peak_rss_mib": round(max(run.rss_mib for run in runs), 1),
        "per_trial_start_overhead_s": round(statistics.median(run.start_s for run in runs), 2),
        "background_cpu_during_trial_pct": round(
            statistics.median(run.background_pct for run in runs), 1
        ),
    }


def _measured_trial(config: dict[str, Any], spec: Any) -> None:
    """jobs.core.tune_trial.train_trial, with the process's peak RSS added to every report."""
    from ray import tune

    from jobs.core import tune_trial as trial_module

    report = tune.report

    def with_rss(metrics: dict[str, Any], **kwargs: Any) -> None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        report({**metrics, "max_rss_mib": peak}, **kwargs)

    trial_module.tune.report = with_rss  # type: ignore[attr-defined]
    try:
        trial_module.train_trial(config, spec)
    finally:
        trial_module.tune.report = report  # type: ignore[attr-defined]


# --- 3: our loader against the walkthrough's ---------------------------------------------


def _torchvision_root() -> Path:
    """A torchvision-style root (FashionMNIST/raw, uncompressed) over DATA_DIR's files."""
    from jobs.core.idx import TORCHVISION_FOLDERS, find_idx_dir

    root = Path(tempfile.mkdtemp(prefix="rtk-tv-"))
    raw = root / TORCHVISION_FOLDERS[DATASET] / "raw"
    raw.mkdir(parents=True)
    for path in find_idx_dir(DATA_DIR, DATASET).iterdir():
        if path.name.endswith(".gz"):
            with gzip.open(path) as src, open(raw / path.name[:-3], "wb") as dst:
                shutil.copyfileobj(src, dst)
        elif "ubyte" in path.name:
            shutil.copy(path, raw / path.name)
    return root


def loaders() -> dict[str, Any]:
    from torch.utils.data import DataLoader, Subset
    from torchvision.datasets import MNIST, FashionMNIST
    from torchvision.transforms import Compose, Normalize, ToTensor

    from jobs.core.data import batches, load_split

    torch.set_num_threads(THREADS)
    root = _torchvision_root()
    try:
        cls = FashionMNIST if DATASET == "fashion-mnist" else MNIST
        dataset = cls(
            root=str(root),
            train=True,
            download=False,
            transform=Compose([ToTensor(), Normalize((0.5,), (0.5,))]),
        )
        tutorial = DataLoader(
            Subset(dataset, range(SIZE["train"])), batch_size=BATCH, shuffle=True, drop_last=True
        )
        ours = load_split(DATA_DIR, DATASET, "train", SIZE["train"])
        generator = torch.Generator().manual_seed(SEED)

        def time_pair(
            first: Callable[[], object], second: Callable[[], object]
        ) -> tuple[dict[str, float], dict[str, float]]:
            """Both sides after a warm-up each, alternating (A B, B A, ...) against drift."""
            times: tuple[list[float], list[float]] = ([], [])
            sides = [(first, times[0]), (second, times[1])]
            first(), second()
            for _ in range(SIZE["repeats"]):
                for fn, out in sides:
                    start = time.perf_counter()
                    fn()
                    out.append(time.perf_counter() - start)
                sides.reverse()
            return stats(times[0]), stats(times[1])

        load_tutorial, load_ours = time_pair(
            lambda: [None for _ in tutorial],
            lambda: [
                None
                for _ in batches(ours, BATCH, shuffle=True, drop_last=True, generator=generator)
            ],
        )
        trainer = _cpu_trainer()

        def tutorial_epoch() -> None:
            trainer.model.train()
            for images, labels in tutorial:
                loss = trainer.criterion(trainer.model(images), labels)
                trainer.optimizer.zero_grad()
                loss.backward()
                trainer.optimizer.step()

        epoch_tutorial, epoch_ours = time_pair(tutorial_epoch, trainer.train_epoch)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "load_s_tutorial": load_tutorial,
        "load_s_ours": load_ours,
        "epoch_s_tutorial": epoch_tutorial,
        "epoch_s_ours": epoch_ours,
        "loader_speedup_vs_tutorial": ratio(load_tutorial, load_ours),
        "epoch_speedup_vs_tutorial": ratio(epoch_tutorial, epoch_ours),
    }


# --- 4: search efficiency: FIFO, ASHA and plain Optuna on the same configurations ------


def sampled_lrs() -> list[float]:
    rng = np.random.default_rng(SEED)
    low, high = np.log(LR_RANGE[0]), np.log(LR_RANGE[1])
    return [float(np.exp(v)) for v in rng.uniform(low, high, SIZE["configs"])]


def _search_trial(config: dict[str, Any]) -> None:
    from ray import tune

    torch.set_num_threads(1)
    trainer = _cpu_trainer(config["lr"], SIZE["s_train"], SIZE["s_val"])
    for epoch in range(1, SIZE["epochs"] + 1):
        tune.report(trainer.run_epoch(epoch).metrics())


def tune_search(scheduler: str) -> dict[str, Any]:
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    _ray_init()
    storage = tempfile.mkdtemp(prefix="rtk-bench-")
    try:
        sched = (
            ASHAScheduler(time_attr="epoch", max_t=SIZE["epochs"], **ASHA)
            if scheduler == "asha"
            else None
        )
        started = time.perf_counter()
        grid = tune.Tuner(
            tune.with_resources(_search_trial, {"cpu": 1}),
            param_space={"lr": tune.grid_search(sampled_lrs())},
            tune_config=tune.TuneConfig(
                metric="val_loss",
                mode="min",
                scheduler=sched,
                max_concurrent_trials=THREADS,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(storage_path=storage, name=scheduler, verbose=0),
        ).fit()
        wall = time.perf_counter() - started
        epochs = sum(int(r.metrics["epoch"]) for r in grid)
        best = min(float(r.metrics_dataframe["val_loss"].min()) for r in grid)
        return {"trial_epochs": epochs, "best_val_loss": best, "wall_s": wall}
    finally:
        ray.shutdown()
        shutil.rmtree(storage, ignore_errors=True)


def optuna_search() -> dict[str, Any]:
    """The same configurations in plain Optuna (no Ray), pruned by its HyperbandPruner."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(THREADS)
    study = optuna.create_study(
        study_name="bench",  # HyperbandPruner picks brackets from a hash of the study name
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=SEED),
        pruner=optuna.pruners.HyperbandPruner(
            min_resource=ASHA["grace_period"],
            max_resource=SIZE["epochs"],
            reduction_factor=ASHA["reduction_factor"],
        ),
    )
    for lr in sampled_lrs():
        study.enqueue_trial({"lr": lr})
    spent = {"epochs": 0}
    best = {"val_loss": float("inf")}

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", *LR_RANGE, log=True)
        trainer = _cpu_trainer(lr, SIZE["s_train"], SIZE["s_val"])
        value = float("inf")
        for epoch in range(1, SIZE["epochs"] + 1):
            value = trainer.run_epoch(epoch).val_loss
            spent["epochs"] += 1
            best["val_loss"] = min(best["val_loss"], value)
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    started = time.perf_counter()
    study.optimize(objective, n_trials=SIZE["configs"])
    return {
        "trial_epochs": spent["epochs"],
        "best_val_loss": best["val_loss"],
        "wall_s": time.perf_counter() - started,
    }


def warm_start() -> dict[str, Any]:
    """Trials until the earlier best is matched, with and without WARM_START (jobs.bench.warm),
    each trial the search size's first warm.EPOCHS epochs."""

    def train(lr: float) -> float:
        torch.set_num_threads(THREADS)
        trainer = _cpu_trainer(lr, SIZE["s_train"], SIZE["s_val"])
        return [trainer.run_epoch(e).val_loss for e in range(1, warm.EPOCHS + 1)][-1]

    return warm.trials_to_match(train)


# --- 5: submit to first result ----------------------------------------------------------


def submit_to_first_result() -> tuple[float, float]:
    """Seconds from `python -m jobs.submit` to the first epoch line; the driver's peak RSS."""
    env = {
        **os.environ,
        "DATA_DIR": DATA_DIR,
        "DATASET": DATASET,
        "TRAIN_LIMIT": "256",
        "VAL_LIMIT": "256",
        "TUNE_NUM_SAMPLES": "1",
        "TUNE_NUM_EPOCHS": "1",
        "STORAGE_PATH": tempfile.mkdtemp(prefix="rtk-bench-"),
        "PYTHONPATH": str(REPO),
    }
    env.pop("RAY_AUTH_MODE", None)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs.submit", "tune"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    first, driver_rss = None, float("nan")
    for line in proc.stdout:  # type: ignore[union-attr]
        if first is None and "epoch 1/1" in line:
            first = time.perf_counter() - started
        if "driver peak RSS" in line:
            driver_rss = float(line.split("driver peak RSS:")[1].split()[0])
    proc.wait()
    shutil.rmtree(env["STORAGE_PATH"], ignore_errors=True)
    if proc.returncode != 0 or first is None:
        raise RuntimeError(f"make submit failed (exit {proc.returncode})")
    return first, driver_rss


# --- jobs/bench/README.md's Performance table, from the newest full and quick results ---

README_ROWS = (  # key, what, goal
    ("trial_vs_plain_loop", "one trial in Tune / same loop in a plain process (img/s)", ">= 0.95"),
    ("trial_vs_compute_bound", "one trial / fwd+bwd+step on in-memory random tensors", ">= 0.90"),
    ("loader_speedup_vs_tutorial", "walkthrough loader / ours, data loading alone", "> 1"),
    ("epoch_speedup_vs_tutorial", "walkthrough loader / ours, whole epoch", "> 1"),
    ("asha_trial_epoch_saving_vs_fifo", "trial-epochs FIFO / ASHA, same configs", ">= 3"),
    ("asha_best_vs_fifo", "best val_loss ASHA / FIFO", "<= 1.05"),
    ("trial_images_per_s", "one trial in Tune, training img/s (median)", ""),
    ("plain_images_per_s", "the plain loop, training img/s (median)", ""),
    ("compute_bound_images_per_s", "in-memory random tensors, img/s (median)", ""),
    ("fifo_trial_epochs", "trial-epochs, FIFO (configs x epochs)", ""),
    ("asha_trial_epochs", "trial-epochs, ASHA", ""),
    ("optuna_trial_epochs", "trial-epochs, plain Optuna + HyperbandPruner", ""),
    ("fifo_best_val_loss", "best val_loss, FIFO", ""),
    ("asha_best_val_loss", "best val_loss, ASHA", ""),
    ("optuna_best_val_loss", "best val_loss, plain Optuna", ""),
    ("fifo_wall_s", "search wall time, FIFO, s", ""),
    ("asha_wall_s", "search wall time, ASHA, s", ""),
    ("optuna_wall_s", "search wall time, plain Optuna, s", ""),
    (
        "background_cpu_during_trial_pct",
        "CPU of all other processes during a trial, % of a core",
        "",
    ),
    ("submit_to_first_result_s", "`make submit` (local head) to first epoch line, s", ""),
    ("per_trial_start_overhead_s", "Tune wall minus trial time, one trial, s", ""),
    ("trial_peak_rss_mib", "peak RSS of a trial process, MiB", ""),
    ("driver_peak_rss_mib", "peak RSS of the Tune driver, MiB", ""),
    ("bench_wall_s", "the whole benchmark, s", ""),
)


def newest(quick: bool) -> dict[str, Any]:
    """The newest dated result of one size (file names sort by date)."""
    files = sorted(p for p in RESULTS.glob("2*.json") if p.stem.endswith("-quick") == quick)
    return json.loads(files[-1].read_text()) if files else {}


def readme_table() -> str:
    full, quick = newest(quick=False), newest(quick=True)

    def cell(run: dict[str, Any], key: str) -> str:
        value = run.get(key, "")
        if isinstance(value, dict):  # a min/median/max timing
            value = value["median"]
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = [
        f"| Key | What | Goal | full ({full.get('date', '-')[:10]}) "
        f"| quick ({quick.get('date', '-')[:10]}) |",
        "|---|---|---|---|---|",
    ]
    for key, what, goal in README_ROWS:
        lines.append(f"| `{key}` | {what} | {goal} | {cell(full, key)} | {cell(quick, key)} |")
    return "\n".join(lines)


def _all_results() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(RESULTS.glob("2*.json"))]


def _span(values: list[float], digits: int = 3) -> str:
    low, high = min(values), max(values)
    fmt = f"{{:.{digits}g}}"
    return fmt.format(low) if low == high else f"{fmt.format(low)}-{fmt.format(high)}"


def readme_findings() -> str:
    """The Performance section's prose, its numbers taken from every committed result."""
    runs = _all_results()
    full = newest(quick=False)
    ratio = [r["trial_vs_plain_loop"] for r in runs if "trial_vs_plain_loop" in r]
    background = [
        r["background_cpu_during_trial_pct"] for r in runs if "background_cpu_during_trial_pct" in r
    ]
    loader = [r["loader_speedup_vs_tutorial"] for r in runs if "loader_speedup_vs_tutorial" in r]
    epoch = [r["epoch_speedup_vs_tutorial"] for r in runs if "epoch_speedup_vs_tutorial" in r]
    bound = [
        round(r["compute_bound_images_per_s"]["median"] / r["plain_images_per_s"]["median"], 3)
        for r in runs
        if "compute_bound_images_per_s" in r and "plain_images_per_s" in r
    ]
    faster = sum(b > 1 for b in bound)
    sizes: dict[tuple[int, int], list[float]] = {}
    for r in runs:
        key = (r["size"]["configs"], r["size"]["epochs"])
        sizes.setdefault(key, []).append(r["asha_trial_epoch_saving_vs_fifo"])
    savings = ", ".join(
        f"{_span(v, 2)}x for {c} configs x {e} epochs ({len(v)} run{'s' if len(v) > 1 else ''})"
        for (c, e), v in sorted(sizes.items())
    )
    worst = max(r["asha_best_vs_fifo"] for r in runs)
    return "\n".join(
        [
            f"Ranges below span all {len(runs)} committed results (`jobs/bench/results/`).",
            "",
            "- **What Tune costs a trial is the CPU of Ray's own processes.** While a trial "
            "trains, every other process (Tune driver, raylet, GCS, agents, OS) uses "
            f"{_span(background, 2)}% of one core ({len(background)} runs measured it). The "
            "trial/plain ratio should therefore sit "
            f"just under 1. Measured, it lands in {_span(ratio)} across {len(ratio)} runs "
            f"({full.get('trial_vs_plain_loop')} in the full column): this VM's speed drifts "
            "from minute to minute by more than the 5% margin the goal allows. The compute "
            f"bound on random tensors runs at {_span(bound)}x the plain loop's speed "
            f"({faster} of {len(bound)} runs faster): our loader costs about nothing next to "
            "the model step, so the two differ by that same drift.",
            "- **Loader.** Our loader batches from a decoded in-memory tensor and loads an "
            f"epoch {_span(loader)}x faster than the walkthrough's per-sample PIL pipeline. On "
            "2 CPU cores the model step dominates, so a whole epoch is only "
            f"{_span(epoch)}x as fast. On a GPU, where a ResNet18 step on 28x28 images takes "
            "milliseconds, loading is the bottleneck this removes.",
            "- **ASHA's saving grows with the number of configurations and the epoch budget.** "
            f"Trial-epochs saved against FIFO on the same configurations: {savings}. The best "
            f"val_loss stayed within {100 * (worst - 1):.1f}% of FIFO's. Asynchronous ASHA lets "
            "the first trials through each rung unopposed, and which trials come first depends "
            "on timing, so the same configurations can give a different count from run to run. "
            "The `asha` stage keeps the walkthrough's `grace_period=2` over 8 epochs (rungs at "
            "2 and 8); there, even synchronous halving saves at most 8 / (2 + 6/4) = 2.3x. For "
            "a real search, raise `TUNE_NUM_SAMPLES` and `TUNE_NUM_EPOCHS`.",
        ]
    )


def readme_section() -> str:
    """What jobs/bench/README.md's Performance section shows between its markers."""
    return f"{readme_table()}\n\n{readme_findings()}"


def main() -> int:
    started = time.perf_counter()
    out: dict[str, Any] = {
        "quick": QUICK,
        "size": SIZE,
        "threads": THREADS,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU",
        "torch": torch.__version__,
        "date": dt.datetime.now().isoformat(),
    }
    print("bench: loaders ...", flush=True)
    out.update(loaders())
    print("bench: plain loop, compute bound, one trial in Tune, alternating ...", flush=True)
    out.update(throughput())
    print("bench: search FIFO / ASHA / Optuna ...", flush=True)
    fifo, asha, plain_optuna = tune_search("fifo"), tune_search("asha"), optuna_search()
    out.update(
        {
            "search_configs": SIZE["configs"],
            "search_seed": SEED,
            "fifo_trial_epochs": fifo["trial_epochs"],
            "asha_trial_epochs": asha["trial_epochs"],
            "asha_trial_epoch_saving_vs_fifo": round(
                fifo["trial_epochs"] / asha["trial_epochs"], 2
            ),
            "fifo_best_val_loss": fifo["best_val_loss"],
            "asha_best_val_loss": asha["best_val_loss"],
            "asha_best_vs_fifo": round(asha["best_val_loss"] / fifo["best_val_loss"], 3),
            "optuna_best_val_loss": plain_optuna["best_val_loss"],
            "optuna_trial_epochs": plain_optuna["trial_epochs"],
            "fifo_wall_s": fifo["wall_s"],
            "asha_wall_s": asha["wall_s"],
            "optuna_wall_s": plain_optuna["wall_s"],
        }
    )
    print("bench: warm start (Optuna from an earlier run's trials) ...", flush=True)
    out.update(warm_start())
    print("bench: the report at 4 and 200 trials ...", flush=True)
    out.update(pages.report_pages())
    print("bench: make submit to first result ...", flush=True)
    first, driver_rss = submit_to_first_result()
    out["submit_to_first_result_s"] = round(first, 2)
    out["driver_peak_rss_mib"] = driver_rss
    out["bench_wall_s"] = round(time.perf_counter() - started, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = json.dumps(out, indent=2)
    (RESULTS / "latest.json").write_text(text + "\n")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"{stamp}{'-quick' if QUICK else ''}.json").write_text(text + "\n")
    for key, value in out.items():
        if key not in ("size",):
            print(f"{key:38} {json.dumps(value)}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--readme-table"]:
        print(readme_section())
        sys.exit(0)
    sys.exit(main())
