"""routes.json changes only when what the edges read changes: the operator re-plans at the
plan's next_change_at (or at every poll) and writes the routing ConfigMap only when the bytes
differ, so equal bytes over a slow-start window mean no ConfigMap write."""

from __future__ import annotations

from datetime import timedelta
from itertools import pairwise

from tests.unit.routing.routing_oracle import NOW

from aerocdn.routing import CacheFacts, CacheState, Facts, Policy, RegionFacts, plan
from aerocdn.routing.model import Plan

WINDOW = 120.0
POLICY = Policy(slow_start_seconds=WINDOW)


def _facts(names: tuple[str, ...], now_offset: float, ramping: str) -> Facts:
    return Facts(
        regions=tuple(
            RegionFacts(
                name=name, ready_replicas=2, capacity_per_replica=100.0, expected_demand=50.0,
                cache=CacheFacts(name=f"cc-{name}", state=CacheState.READY,
                                 ready_since=NOW if name == ramping else None))
            for name in names),
        latencies_ms={"a": {"b": 10.0, "c": 30.0}, "b": {"c": 15.0}} if len(names) > 1 else {},
        now=NOW + timedelta(seconds=now_offset),
    )


def published_over_window(names: tuple[str, ...], every: float = 3.0) -> list[str]:
    """routes.json as the operator would publish it, re-planning every ``every`` seconds
    (a poll) through the slow-start window of cluster cc-a and a little beyond."""
    previous: Plan | None = None
    out: list[str] = []
    t = 0.0
    while t <= WINDOW + 10:
        current = plan(_facts(names, t, "a"), POLICY, previous)
        text = current.to_json()
        if not out or out[-1] != text:
            out.append(text)
        previous = Plan.from_json(text)  # what the operator reads back from the ConfigMap
        t += every
    return out


def test_one_region_one_cluster_publishes_once_over_the_window() -> None:
    # The only cluster the region can use keeps weight 1 all along: nothing to re-publish.
    versions = published_over_window(("a",))
    assert len(versions) == 1, versions
    assert plan(_facts(("a",), 0, "a"), POLICY).next_change_at is None


def test_a_ramp_that_moves_weight_publishes_each_step_and_nothing_else() -> None:
    versions = published_over_window(("a", "b", "c"))
    weights = [Plan.from_json(v).cache_routes["a"] for v in versions]
    # every published version differs in a weight (no write for a time stamp alone)
    assert all(x != y for x, y in pairwise(weights))
    assert 2 <= len(versions) <= 21
    assert "nextChangeAt" not in versions[0]
