"""Pure functions from validated aerocdn objects to the Kubernetes objects they need."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aerocdn.api.objects import CacheCluster, ContentEdge


def render_all(objects: Sequence[CacheCluster | ContentEdge]) -> list[dict[str, Any]]:
    """Children of every object, in input order. ContentEdges see the CacheClusters of
    their namespace that are part of the same input."""
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
        else:
            out += render_contentedge(obj, clusters.get(obj.namespace, {}))
    return out
