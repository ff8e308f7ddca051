"""Where pods run: a Placement (API) to the scheduling fields of a Pod spec. Pure."""

from __future__ import annotations

import copy
from typing import Any

from aerocdn.api.common import ImagePull, Placement

REGION_LABEL = "topology.kubernetes.io/region"
HOSTNAME_LABEL = "kubernetes.io/hostname"
REGION_WEIGHT = 100


def _with_region(affinity: dict[str, Any], rule: str, region: str) -> dict[str, Any]:
    term = {"key": REGION_LABEL, "operator": "In", "values": [region]}
    node = affinity.setdefault("nodeAffinity", {})
    if rule == "Preferred":
        node.setdefault("preferredDuringSchedulingIgnoredDuringExecution", []).append(
            {"weight": REGION_WEIGHT, "preference": {"matchExpressions": [term]}}
        )
    elif rule == "Required":
        required = node.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
        terms = required.setdefault("nodeSelectorTerms", [])
        if not terms:
            terms.append({})
        # Terms are ORed: the region must hold in each of them.
        for t in terms:
            t.setdefault("matchExpressions", []).append(dict(term))
    return affinity


def pod_placement(
    placement: Placement,
    region: str,
    selector: dict[str, str],
    *,
    one_per_node: bool = False,
    spread_over_nodes: bool = False,
    node_selector: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The Pod spec fields for ``placement`` of pods labelled ``selector`` in ``region``.

    ``one_per_node`` adds required pod anti-affinity by host name unless the placement gives
    its own podAntiAffinity; ``spread_over_nodes`` is the default topology spread when the
    placement gives none; ``node_selector`` is merged over the placement's (racks add their
    zone). Only non-empty fields are returned, so the output is what the apiserver stores.
    """
    out: dict[str, Any] = {}
    selector_labels = {**placement.node_selector, **(node_selector or {})}
    if selector_labels:
        out["nodeSelector"] = selector_labels
    if placement.tolerations:
        out["tolerations"] = copy.deepcopy(placement.tolerations)
    affinity = copy.deepcopy(placement.affinity) if placement.affinity else {}
    if one_per_node and "podAntiAffinity" not in affinity:
        affinity["podAntiAffinity"] = {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": dict(selector)}, "topologyKey": HOSTNAME_LABEL}
            ]
        }
    affinity = _with_region(affinity, placement.region_affinity or "Preferred", region)
    if not affinity.get("nodeAffinity"):
        affinity.pop("nodeAffinity", None)
    if affinity:
        out["affinity"] = affinity
    if placement.priority_class_name:
        out["priorityClassName"] = placement.priority_class_name
    if placement.topology_spread_constraints:
        out["topologySpreadConstraints"] = copy.deepcopy(placement.topology_spread_constraints)
    elif spread_over_nodes:
        out["topologySpreadConstraints"] = [
            {
                "maxSkew": 1,
                "topologyKey": HOSTNAME_LABEL,
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": dict(selector)},
            }
        ]
    return out


def image_pull(spec: ImagePull) -> dict[str, Any]:
    """imagePullPolicy (per container) and imagePullSecrets (per pod), when set."""
    return {
        "policy": spec.image_pull_policy,
        "secrets": [{"name": s.name} for s in spec.image_pull_secrets],
    }
