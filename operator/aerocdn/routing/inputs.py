"""From API objects to planner facts (pure): what the operator knows about a ContentEdge's
regions and their CacheClusters, as the routing planner needs it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from aerocdn.api.cachecluster import CacheClusterStatus
from aerocdn.api.objects import ContentEdge
from aerocdn.routing.model import CacheFacts, CacheState, Facts, Policy, RegionFacts


def _parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


_STATUS: dict[tuple[str, str], CacheClusterStatus] = {}
_STATUS_MAX = 4096


def cluster_status(cluster: Mapping[str, Any]) -> CacheClusterStatus:
    """A CacheCluster's status, parsed once per object version (uid, resourceVersion): every
    ContentEdge reconcile reads the status of each cluster it routes to. Read-only."""
    meta = cluster.get("metadata") or {}
    uid, rv = meta.get("uid"), meta.get("resourceVersion")
    if uid is None or rv is None:
        return CacheClusterStatus.model_validate(cluster.get("status") or {})
    found = _STATUS.get((uid, rv))
    if found is None:
        found = CacheClusterStatus.model_validate(cluster.get("status") or {})
        if len(_STATUS) >= _STATUS_MAX:
            _STATUS.pop(next(iter(_STATUS)))
        _STATUS[(uid, rv)] = found
    return found


def cache_facts(name: str, cluster: Mapping[str, Any] | None) -> CacheFacts:
    """A CacheCluster's routing state from its live object (None: it does not exist).

    draining: a node is being removed (ScalingDown) or the cluster is being deleted;
    migrating: pods exist but it is not Ready; ready: Ready, ramping in from the time it
    became Ready.
    """
    if cluster is None:
        return CacheFacts(name=name, state=CacheState.ABSENT, capacity=0)
    status = cluster_status(cluster)
    if cluster["metadata"].get("deletionTimestamp") or status.is_true("ScalingDown"):
        return CacheFacts(name=name, state=CacheState.DRAINING)
    ready = status.condition("Ready")
    if ready is not None and ready.true:
        return CacheFacts(name=name, state=CacheState.READY,
                          ready_since=_parse_time(ready.last_transition_time))
    if status.ready_replicas:
        return CacheFacts(name=name, state=CacheState.MIGRATING)
    return CacheFacts(name=name, state=CacheState.ABSENT, capacity=0)


def symmetric_latencies(ce: ContentEdge) -> dict[str, dict[str, float]]:
    """spec.routing.latenciesMs with a missing reverse pair taken from the given one."""
    names = {r.name for r in ce.spec.regions}
    out: dict[str, dict[str, float]] = {n: {} for n in sorted(names)}
    given = ce.spec.routing.latencies_ms
    for a, row in given.items():
        for b, ms in row.items():
            if a in names and b in names:
                out[a][b] = float(ms)
    for a, row in given.items():
        for b, ms in row.items():
            if a in names and b in names and a not in out[b]:
                out[b][a] = float(ms)
    return {a: row for a, row in out.items() if row}


def policy_of(ce: ContentEdge) -> Policy:
    r = ce.spec.routing
    return Policy(headroom=r.headroom, slow_start_seconds=float(r.slow_start_seconds),
                  hysteresis=min(r.hysteresis, 0.99))


def facts_of(ce: ContentEdge, ready_replicas: Mapping[str, int],
             cluster_of_region: Mapping[str, str],
             clusters: Mapping[str, Mapping[str, Any] | None], now: dt.datetime) -> Facts:
    regions = []
    for region in ce.spec.regions:
        cc_name = cluster_of_region[region.name]
        regions.append(RegionFacts(
            name=region.name,
            ready_replicas=ready_replicas.get(region.name, 0),
            capacity_per_replica=float(region.capacity_per_replica),
            expected_demand=float(region.expected_demand),
            cache=cache_facts(cc_name, clusters.get(cc_name)),
        ))
    return Facts(regions=tuple(regions), latencies_ms=symmetric_latencies(ce), now=now)
