"""Would the kube-scheduler put this pod on that node? Its filters, in plain Python.

Used by `make preflight` (jobs/kube/preflight.py) against a real cluster's nodes and by the
tests against the node shapes each values file declares (k8s/values/<variant>.yaml, `nodes`).
Ported from Kubernetes' scheduler filter plugins, in our own words:
- NodeResourcesFit: a pod's request is, per resource, the larger of the sum over its
  containers and the largest init container (requests default to limits); it fits where
  that plus what is already taken stays within the node's allocatable;
- NodeAffinity: every `nodeSelector` label equal, and one of the required
  `nodeSelectorTerms` whose expressions all hold (In, NotIn, Exists, DoesNotExist, Gt, Lt);
- TaintToleration: every NoSchedule and NoExecute taint tolerated (PreferNoSchedule only
  steers); a toleration with no effect covers every effect, `Exists` with no key every taint.
Quantities are Kubernetes' ("500m", "4Gi", "1.5"). Standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")
_UNITS = {
    "": 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
}
HARD_EFFECTS = ("NoSchedule", "NoExecute")


def quantity(q: str | int | float) -> float:
    """A Kubernetes quantity as a number: "500m" -> 0.5, "4Gi" -> 4294967296."""
    match = _QUANTITY.match(str(q).strip())
    if match is None or match.group(2) not in _UNITS:
        raise ValueError(f"not a Kubernetes quantity: {q!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _container_requests(container: Mapping[str, Any]) -> dict[str, float]:
    resources = container.get("resources") or {}
    out = {k: quantity(v) for k, v in (resources.get("limits") or {}).items()}
    out |= {k: quantity(v) for k, v in (resources.get("requests") or {}).items()}
    return out


def pod_requests(pod: Mapping[str, Any]) -> dict[str, float]:
    """What the scheduler reserves for a pod spec: max(sum of containers, largest init)."""
    total: dict[str, float] = {}
    for container in pod.get("containers", []):
        for key, amount in _container_requests(container).items():
            total[key] = total.get(key, 0.0) + amount
    for init in pod.get("initContainers", []):
        for key, amount in _container_requests(init).items():
            total[key] = max(total.get(key, 0.0), amount)
    for key, amount in (pod.get("overhead") or {}).items():
        total[key] = total.get(key, 0.0) + quantity(amount)
    return total


def _expression_holds(expression: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, operator = expression["key"], expression["operator"]
    values = [str(v) for v in expression.get("values", [])]
    if operator == "In":
        return key in labels and labels[key] in values
    if operator == "NotIn":
        return key not in labels or labels[key] not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    if operator in ("Gt", "Lt"):
        if key not in labels:
            return False
        have, want = int(labels[key]), int(values[0])
        return have > want if operator == "Gt" else have < want
    raise ValueError(f"unknown node selector operator {operator!r}")


def selects(pod: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """nodeSelector and required node affinity against a node's labels."""
    if any(labels.get(k) != str(v) for k, v in (pod.get("nodeSelector") or {}).items()):
        return False
    required = ((pod.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms")
    if not terms:
        return True
    return any(
        all(_expression_holds(e, labels) for e in term.get("matchExpressions", []))
        for term in terms
    )


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("operator", "Equal") == "Exists":
        return not toleration.get("key") or toleration["key"] == taint["key"]
    return toleration.get("key") == taint["key"] and str(toleration.get("value", "")) == str(
        taint.get("value", "")
    )


def untolerated(pod: Mapping[str, Any], taints: Iterable[Mapping[str, Any]]) -> list[str]:
    """The node's hard taints the pod does not tolerate, as key=value:effect."""
    tolerations = pod.get("tolerations") or []
    return [
        f"{t['key']}={t.get('value', '')}:{t['effect']}"
        for t in taints
        if t.get("effect") in HARD_EFFECTS and not any(tolerates(tol, t) for tol in tolerations)
    ]


def shortfall(
    pod: Mapping[str, Any],
    allocatable: Mapping[str, Any],
    taken: Mapping[str, Any] | None = None,
) -> list[str]:
    """Resources the pod requests beyond what the node has left, one phrase each."""
    left = {k: quantity(v) for k, v in allocatable.items()}
    for key, amount in (taken or {}).items():
        left[key] = left.get(key, 0.0) - quantity(amount)
    out = []
    for key, amount in pod_requests(pod).items():
        if amount > left.get(key, 0.0) + 1e-9:
            free = _show(key, left.get(key, 0.0))
            out.append(f"Insufficient {key} (asks {_show(key, amount)}, {free} free)")
    return out


def _show(key: str, amount: float) -> str:
    if key == "cpu":
        return f"{amount * 1000:.0f}m"
    if key.endswith("memory") or key.startswith("hugepages") or key == "ephemeral-storage":
        return f"{amount / 2**20:.0f}Mi"
    return f"{amount:g}"


def why_not(
    pod: Mapping[str, Any],
    node: Mapping[str, Any],
    taken: Mapping[str, Any] | None = None,
) -> list[str]:
    """Why the scheduler would not place the pod on a node ({labels, taints, allocatable}):
    an empty list when it would, else the reasons in the scheduler's own words."""
    reasons = []
    if not selects(pod, node.get("labels") or {}):
        reasons.append("node(s) didn't match Pod's node affinity/selector")
    bad = untolerated(pod, node.get("taints") or [])
    if bad:
        reasons.append(f"node(s) had untolerated taint {{{', '.join(bad)}}}")
    reasons += shortfall(pod, node.get("allocatable") or {}, taken)
    return reasons
