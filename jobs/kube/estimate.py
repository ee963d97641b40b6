"""What one attempt of a stage can cost on each cloud, at most: an estimate, not a measurement.

The estimate comes from the settings and the values files.

    python -m jobs.kube.estimate                  # the table, as k8s/README.md shows it
    python -m jobs.kube.estimate --readme-table   # the same (tests/unit/test_cost.py keeps it)
    python -m jobs.kube.estimate --still-billing CLOUD   # what bills after `make teardown`
    python -m jobs.kube.estimate --after-cloud-down CLOUD [--registry-deleted]   # cloud-down

Per stage and cloud (k8s/values/<variant>.yaml), for one attempt at the stage's defaults:
- GPU nodes: every T4 the stage can hold at once (render.gpus_at_once: its trials at once
  times the GPUs each trial asks for, capped at the worker group's maxReplicas);
- T4 node-hours: those nodes held for the whole attempt (its activeDeadlineSeconds, which
  already holds the cold start of a GPU node) plus the autoscaler's idle timeout before
  they are given back: an upper bound, since trials end sooner and nodes come and go;
- head node-hours: the head's CPU node for the attempt plus its own cold start;
- cost: node-hours times the values file's prices per node-hour, the T4 nodes on demand or
  Spot and the head on demand either way ("n/a" where no T4 price is stated; a head without
  a stated price is left out). A retried attempt (backoffLimit) costs again.
The stages' facts come from their declarations (jobs/registry.py: no Ray, no torch).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from jobs import registry
from jobs.kube import render


@dataclass(frozen=True)
class Estimate:
    stage: str
    variant: str
    gpu_nodes: int
    t4_hours: float
    head_hours: float
    on_demand: float | None
    spot: float | None


def _cost(prices: dict[str, dict[str, float | None]], kind: str, t4: float, head: float):
    """T4 node-hours at the `kind` price; the head's node always on demand (a Spot setting
    moves the workers only: a reclaimed head would end the attempt)."""
    t4_price, head_price = prices["t4_node"][kind], prices["head_node"]["on_demand"]
    if t4_price is None:
        return None
    # A head node without a stated price is left out of the sum rather than guessed.
    return t4 * t4_price + head * (head_price or 0.0)


def estimate(stage: str, variant: str) -> Estimate:
    v = render.values(variant)
    declared = registry.load(stage)
    nodes = render.gpus_at_once(stage, v)
    attempt_s = v["deadline_s"] or declared.kubernetes.deadline_s + v["cold_start_s"]["t4"]
    t4 = nodes * (attempt_s + v["idle_timeout_s"]) / 3600
    head = (attempt_s + v["cold_start_s"]["head"]) / 3600
    prices = v["prices"]
    return Estimate(
        stage,
        variant,
        nodes,
        t4,
        head,
        _cost(prices, "on_demand", t4, head),
        _cost(prices, "spot", t4, head),
    )


def clouds() -> list[str]:
    return [
        n for n in render.variants() if "nvidia.com/gpu" in render.values(n)["worker"]["resources"]
    ]


def _money(value: float | None) -> str:
    return "n/a" if value is None else f"${value:.2f}"


def table() -> str:
    rows = [
        "| Stage | Cloud | GPU nodes | T4 node-hours | Head node-hours | On demand | Spot |",
        "|---|---|---|---|---|---|---|",
    ]
    for stage in registry.names():
        for variant in clouds():
            e = estimate(stage, variant)
            rows.append(
                f"| `{stage}` | {render.values(variant)['title']} | {e.gpu_nodes} | "
                f"{e.t4_hours:.1f} | {e.head_hours:.1f} | {_money(e.on_demand)} | "
                f"{_money(e.spot)} |"
            )
    sources = [
        f"- {render.values(v)['title']}: {render.values(v)['nodes']['t4']['machine']} "
        f"(T4 node) and {render.values(v)['nodes']['head']['machine']} (head); prices from "
        f"{render.values(v)['prices']['source']}."
        for v in clouds()
    ]
    return "\n".join(rows) + "\n\n" + "\n".join(sources) + "\n\n" + fixed_table()


def _per_month(hourly: float | None) -> float | None:
    return None if hourly is None else hourly * 730


def _fixed_price(item: dict) -> tuple[str, str]:
    """A fixed item's price per hour and per month (730 h), as the tables print them: a
    flat price, or one by the GBs stored (usd_per_gb_month), or n/a where none was found."""
    hourly, per_gb = item["usd_per_hour"], item.get("usd_per_gb_month")
    if hourly is None and per_gb is not None:
        return "n/a", f"${per_gb:.2f} per GB stored"
    month = _money(_per_month(hourly))
    if hourly and item.get("covered"):
        month += f" ({item['covered']})"
    return ("n/a" if hourly is None else f"${hourly:g}"), month


def fixed_table() -> str:
    """What bills per hour while each cluster exists, whatever runs on it."""
    rows = [
        "Beside the nodes, while the cluster exists (not in the table above):",
        "",
        "| Cloud | What | Per hour | Per month (730 h) | Source |",
        "|---|---|---|---|---|",
    ]
    for variant in clouds():
        for item in render.values(variant)["prices"]["fixed"]:
            hourly, month = _fixed_price(item)
            rows.append(
                f"| {render.values(variant)['title']} | {item['what']} | {hourly} | {month} | "
                f"{item['source']} |"
            )
    return "\n".join(rows)


def still_billing(variant: str) -> str:
    """What keeps billing once the RayJobs are gone, per month (730 h), for teardown's last
    lines: the head's CPU node (a T4 pool at zero nodes costs nothing), the cluster's fixed
    costs, and the storage behind the claim while it exists."""
    v = render.values(variant)
    head = _per_month(v["prices"]["head_node"]["on_demand"])
    lines = [
        f"Still billing on {v['title']} until you delete them (per month of 730 h; k8s/README.md: "
        "Teardown; make cloud-down deletes them all but the registry):",
        f"- the head's CPU node pool, {v['nodes']['head']['machine'].split(' #')[0]}: "
        f"{_money(head)} per node; a T4 pool at zero nodes: $0",
    ]
    for item in v["prices"]["fixed"]:
        lines.append(f"- {item['what']}: {_fixed_price(item)[1]}")
    lines.append(f"- the volume: {v['storage']['billing']}")
    return "\n".join(lines)


def after_cloud_down(variant: str, registry_deleted: bool) -> str:
    """cloud-down's last lines: what it kept and what that bills per month (730 h)."""
    v = render.values(variant)
    kept = [i for i in v["prices"]["fixed"] if i.get("after_cloud_down")]
    if registry_deleted or not kept:
        return f"Still billing on {v['title']} from what cloud-up made: nothing."
    lines = [f"Still billing on {v['title']} from what cloud-up made (per month of 730 h):"]
    lines += [f"- {i['what']}: {_fixed_price(i)[1]} (DELETE_REGISTRY=1 deletes it)" for i in kept]
    return "\n".join(lines)


def _refuse_cloud(name: str) -> int:
    print(f"error: no cloud {name!r}; choose one of: {', '.join(clouds())}", file=sys.stderr)
    return 2


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--still-billing":
        if argv[1] not in clouds():
            return _refuse_cloud(argv[1])
        print(still_billing(argv[1]))
        return 0
    if argv[:1] == ["--after-cloud-down"] and argv[2:] in ([], ["--registry-deleted"]):
        if len(argv) < 2 or argv[1] not in clouds():
            return _refuse_cloud(argv[1] if len(argv) > 1 else "")
        print(after_cloud_down(argv[1], registry_deleted=len(argv) == 3))
        return 0
    if argv not in ([], ["--readme-table"]):
        print(__doc__, file=sys.stderr)
        return 2
    print(table())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
