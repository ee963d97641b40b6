"""What a run cost, measured: accelerator-hours, node-hours, and money at the cloud's prices.

- accelerator-hours: trial wall time times the GPUs each trial held, by GPU type (`T4`);
  a CPU-only run counts its trials' CPU core-hours under `CPU` instead;
- node-hours: every Ray node each attempt saw alive, by type (`head`, `T4`, `CPU`), from
  the attempts' records (jobs.core.attempts); on Kubernetes a Ray node is a pod, and a
  cloud bills the node under each worker pod for at least as long;
- saved: the trial-epochs a scheduler or Stopper cut, against every trial run to the end,
  at the run's accelerator-seconds per trial-epoch;
- money, only where NODE_PRICES states prices (the cloud manifests set their values file's):
  GPU nodes at the GPU node's on-demand or Spot price (the measured worker node-hours, or
  the accelerator-hours where no worker node was seen), the head always on demand.
Standard library only: `make results` prints it from the workstation's client venv.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PRICE_KINDS = ("on_demand", "spot")
CPU = "CPU"
HEAD = "head"


def accelerator_key(use_gpu: bool, accelerator_type: str) -> str:
    return accelerator_type if use_gpu else CPU


def measured(
    compute: Mapping[str, Any],
    accelerator: str,
    nodes: tuple[dict[str, float], float, int] | None = None,
    prices: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The cost fields of results.json's `compute`, from its trial-epoch and device-second
    counts, the attempts' node-hours (`attempts.node_hours`) and the prices, if any."""
    spent = int(compute["trial_epochs"])
    full = int(compute["trial_epochs_if_run_to_end"])
    hours = float(compute["device_seconds"]) / 3600
    saved_epochs = max(0, full - spent)
    saved_hours = hours / spent * saved_epochs if spent else 0.0
    out: dict[str, Any] = {
        "accelerator_hours": {accelerator: round(hours, 5)},
        "trial_epochs_saved": saved_epochs,
        "accelerator_hours_saved": {accelerator: round(saved_hours, 5)},
    }
    if "retries" in compute:  # at the run's mean accelerator-hours per trial-epoch
        redone = int(compute["retries"]["trial_epochs_redone"])
        out["accelerator_hours_redone"] = {
            accelerator: round(hours / spent * redone if spent else 0.0, 5)
        }
    if nodes is not None:
        node_hours, _, count = nodes
        out["attempts"] = count
        out["node_hours"] = {k: round(v, 5) for k, v in sorted(node_hours.items())}
    if prices:
        out["cost"] = money(out, accelerator, prices)
    return out


def money(measure: Mapping[str, Any], accelerator: str, prices: Mapping[str, Any]) -> dict:
    """USD on demand and Spot (None where the price is not known), and what the saving saved."""
    node_hours = dict(measure.get("node_hours") or {})
    gpu_node_hours = sum(h for k, h in node_hours.items() if k not in (HEAD, CPU))
    accel_hours = float(measure["accelerator_hours"][accelerator])
    if accelerator != CPU and gpu_node_hours == 0:
        gpu_node_hours = accel_hours  # no worker node seen: the GPUs the trials held
    head_price = prices["head_node"].get("on_demand")
    out: dict[str, Any] = {"source": prices.get("source", ""), "gpu_node_hours": gpu_node_hours}
    for kind in PRICE_KINDS:
        price = prices["gpu_node"].get(kind)
        # No total where a price it needs is not known (the head runs on demand either way).
        if price is None or head_price is None or accelerator == CPU:
            out[f"{kind}_usd"] = out[f"saved_{kind}_usd"] = None
            if "accelerator_hours_redone" in measure:
                out[f"redone_{kind}_usd"] = None
            continue
        total = gpu_node_hours * price + node_hours.get(HEAD, 0.0) * head_price
        out[f"{kind}_usd"] = round(total, 4)
        out[f"saved_{kind}_usd"] = round(measure["accelerator_hours_saved"][accelerator] * price, 4)
        if "accelerator_hours_redone" in measure:
            redone = measure["accelerator_hours_redone"][accelerator]
            out[f"redone_{kind}_usd"] = round(redone * price, 4)
    out["gpu_node_hours"] = round(gpu_node_hours, 5)
    return out


def hours_text(values: Mapping[str, float], unit: str = "", empty: str = "0") -> str:
    """`T4 0.123, head 0.050`; core-hours of a CPU-only run without the key its unit names."""
    text = ", ".join(
        f"{v:.3f}" if k == CPU and unit == CPU else f"{k} {v:.3f}" for k, v in values.items()
    )
    return text or empty


def usd(value: float | None) -> str | None:
    """$1.23; cents to four places below $0.10, where a CI-sized run's cost lies."""
    if value is None:
        return None
    return f"${value:.2f}" if value >= 0.1 or value == 0 else f"${value:.4f}"


def report_lines(compute: Mapping[str, Any]) -> list[str]:
    """What `make results` and the driver print about the compute and its cost."""
    if "accelerator_hours" not in compute:  # results.json of an older run
        return []
    accel = compute["accelerator_hours"]
    unit = "CPU core-hours" if CPU in accel else "accelerator-hours"
    spent, full = compute["trial_epochs"], compute["trial_epochs_if_run_to_end"]
    key = CPU if CPU in accel else ""
    lines = [
        f"compute: {unit} {hours_text(accel, key)}; {spent} trial-epochs of {full} if every trial "
        f"ran to the end (saved {compute['trial_epochs_saved']}, {unit} "
        f"{hours_text(compute['accelerator_hours_saved'], key)})"
    ]
    if "node_hours" in compute:
        lines.append(
            f"nodes: node-hours {hours_text(compute['node_hours'])} over "
            f"{compute['attempts']} attempt(s), while each node's Ray ran (Ray's node table, "
            "every 5 s): a lower bound of what the nodes were billed"
        )
    retried = compute.get("retries")
    if retried and retried["failures"]:
        lines.append(retry_line(compute))
    cost = compute.get("cost")
    if cost:
        parts = []
        for kind, label in (("on_demand", "on demand"), ("spot", "Spot")):
            total = usd(cost[f"{kind}_usd"])
            if total is not None:
                parts.append(f"{label} {total} (saved {usd(cost[f'saved_{kind}_usd'])})")
        if parts:
            lines.append(
                f"cost: {'; '.join(parts)} for {cost['gpu_node_hours']:.3f} GPU node-hours "
                f"and the head; prices: {cost['source']}"
            )
    return lines


def retry_line(compute: Mapping[str, Any]) -> str:
    """`retries: ...`: the failures Tune retried and what training them again cost."""
    retried = compute["retries"]
    fails = retried["failures"]
    accel = compute["accelerator_hours"]
    unit = "CPU core-hours" if CPU in accel else "accelerator-hours"
    redone = compute.get("accelerator_hours_redone") or {}
    first = f"{fails[0]['at']}: {fails[0]['error'][:120]}"
    line = (
        f"retries: {len(fails)} failure(s) in {retried['trials_hit']} trial(s) (first at "
        f"{first}); {retried['trial_epochs_redone']} trial-epoch(s) trained again "
        f"({retried['trial_epochs_reported_twice']} reported twice, {len(fails)} in flight), "
        f"{unit} {hours_text(redone, CPU if CPU in accel else '')}"
    )
    cost = compute.get("cost") or {}
    money_parts = [
        f"{label} {usd(cost[f'redone_{kind}_usd'])}"
        for kind, label in (("on_demand", "on demand"), ("spot", "Spot"))
        if cost.get(f"redone_{kind}_usd") is not None
    ]
    return line + (f" ({', '.join(money_parts)})" if money_parts else "")
