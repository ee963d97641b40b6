"""jobs/kube/estimate.py: k8s/README.md's cost table is generated from the values files and
the stages' declarations, and its figures follow from them."""

from __future__ import annotations

import pytest

from jobs import registry
from jobs.kube import estimate as cost
from tests.support.manifests import CLOUDS, VALUES
from tests.support.runs import REPO


def test_readme_cost_table_is_generated() -> None:
    readme = (REPO / "k8s" / "README.md").read_text()
    begin, end = readme.index("<!-- cost:begin"), readme.index("<!-- cost:end -->")
    shown = readme[readme.index("\n", begin) + 1 : end].strip()
    stale = "k8s/README.md's cost table is stale: python -m jobs.kube.estimate --readme-table"
    assert shown == cost.table().strip(), stale


@pytest.mark.parametrize("variant", CLOUDS)
@pytest.mark.parametrize("stage", registry.names())
def test_an_estimate_is_an_upper_bound_from_the_settings(stage: str, variant: str) -> None:
    v = VALUES[variant]
    e = cost.estimate(stage, variant)
    declared = registry.load(stage)
    assert 1 <= e.gpu_nodes <= v["worker"]["max_replicas"]
    # Every GPU node held for a whole attempt, which includes a cold start, and the idle time.
    attempt = declared.kubernetes.deadline_s + v["cold_start_s"]["t4"]
    assert e.t4_hours == pytest.approx(e.gpu_nodes * (attempt + v["idle_timeout_s"]) / 3600)
    assert e.head_hours > attempt / 3600
    prices = v["prices"]
    assert e.on_demand == pytest.approx(
        e.t4_hours * prices["t4_node"]["on_demand"]
        + e.head_hours * (prices["head_node"]["on_demand"] or 0)
    )
    if prices["t4_node"]["spot"] is None:
        assert e.spot is None
    else:
        assert e.spot < e.on_demand


def test_a_stage_holds_as_many_gpus_as_its_trials_ask_for() -> None:
    assert cost.estimate("baseline", "gke").gpu_nodes == 1  # one plain run
    assert cost.estimate("tune", "gke").gpu_nodes == 4  # 4 trials at once, 1 GPU each
    assert cost.estimate("train", "gke").gpu_nodes == 4  # 2 trials x 2 Train workers


def test_a_gpu_share_packs_a_stages_trials_onto_fewer_t4_nodes() -> None:
    """GPUS_PER_TRIAL in a values file's env_vars: asha's 4 trials at 0.5 GPU fit 2 T4 nodes
    (what the estimate prices, and Kueue admits); train's Train workers stay whole."""
    from jobs.kube import render

    v = render.values("gke")
    shared = {**v, "env_vars": {**v["env_vars"], "GPUS_PER_TRIAL": "0.5"}}
    assert (render.gpus_at_once("asha", v), render.gpus_at_once("asha", shared)) == (4, 2)
    assert render.gpus_at_once("baseline", shared) == 1
    assert render.gpus_at_once("train", shared) == render.gpus_at_once("train", v)
