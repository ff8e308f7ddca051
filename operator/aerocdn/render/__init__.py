"""Pure functions from validated aerocdn objects to the Kubernetes objects they need."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from aerocdn.api.objects import CacheCluster, ContentEdge, ContentPurge
from aerocdn.routing.model import Plan


def render_all(objects: Sequence[CacheCluster | ContentEdge | ContentPurge]
               ) -> list[dict[str, Any]]:
    """Children of every object, in input order. ContentEdges see the CacheClusters of
    their namespace that are part of the same input. A ContentPurge has no children."""
    from aerocdn.render.cachecluster import render_cachecluster
    from aerocdn.render.contentedge import render_contentedge

    clusters: dict[str, dict[str, CacheCluster]] = {}
    for obj in objects:
        if isinstance(obj, CacheCluster):
            clusters.setdefault(obj.namespace, {})[obj.name] = obj
    out: list[dict[str, Any]] = []
    for obj in objects:
        if isinstance(obj, CacheCluster):
            out += render_cachecluster(obj)
        elif isinstance(obj, ContentEdge):
            own = clusters.get(obj.namespace, {})
            out += render_contentedge(obj, own, preview_plan(obj, own).to_json())
    return out


PREVIEW_TIME = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def preview_plan(ce: ContentEdge, clusters: Mapping[str, CacheCluster]) -> Plan:
    """The routing plan as it will be once every region's edges are ready and the
    CacheClusters given are ready (those not given: absent). Deterministic: no clock."""
    from aerocdn.render.contentedge import cache_cluster_of
    from aerocdn.routing.inputs import facts_of, policy_of
    from aerocdn.routing.planner import plan

    cluster_of = {r.name: cache_cluster_of(r, clusters) for r in ce.spec.regions}
    ready_clusters: dict[str, Mapping[str, Any] | None] = {
        name: ({"metadata": {}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
               if name in clusters else None)
        for name in cluster_of.values()}
    facts = facts_of(ce, {r.name: r.replicas for r in ce.spec.regions}, cluster_of,
                     ready_clusters, PREVIEW_TIME)
    return plan(facts, policy_of(ce))
