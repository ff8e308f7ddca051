"""Cache routes: which CacheClusters each edge region uses, in which order, with what weight."""

from __future__ import annotations

from datetime import timedelta

import pytest
from tests.unit.routing.routing_oracle import NOW

from aerocdn.routing import CacheFacts, CacheRoute, CacheState, Facts, Policy, RegionFacts, plan

WINDOW = 120.0
POLICY = Policy(slow_start_seconds=WINDOW)
LATENCIES = {"a": {"b": 10.0, "c": 30.0}, "b": {"c": 15.0}}


def _facts(**states: CacheFacts | None) -> Facts:
    return Facts(
        regions=tuple(
            RegionFacts(
                name=name,
                ready_replicas=2,
                capacity_per_replica=100.0,
                expected_demand=50.0,
                cache=states.get(name, CacheFacts(name=f"cc-{name}", state=CacheState.READY)),
            )
            for name in ("a", "b", "c")
        ),
        latencies_ms=LATENCIES,
        now=NOW,
    )


def _routes(facts: Facts) -> dict[str, list[tuple[str, float]]]:
    return {
        region: [(r.cache_cluster, r.weight) for r in routes]
        for region, routes in plan(facts, POLICY).cache_routes.items()
    }


def test_every_region_uses_its_own_ready_cluster() -> None:
    assert _routes(_facts()) == {
        "a": [("cc-a", 1.0)],
        "b": [("cc-b", 1.0)],
        "c": [("cc-c", 1.0)],
    }


@pytest.mark.parametrize("state", [CacheState.DRAINING, CacheState.MIGRATING])
def test_local_cluster_leaving_is_weighted_out_and_nearest_ready_comes_first(
    state: CacheState,
) -> None:
    routes = _routes(_facts(a=CacheFacts(name="cc-a", state=state)))
    # b is 10 ms from a, c is 30 ms: b takes everything, a's own cluster stays listed at 0
    assert routes["a"] == [("cc-b", 1.0), ("cc-a", 0.0)]
    assert routes["b"] == [("cc-b", 1.0)]
    assert routes["c"] == [("cc-c", 1.0)]


def test_absent_local_cluster_is_omitted() -> None:
    routes = _routes(_facts(c=CacheFacts(name="cc-c", state=CacheState.ABSENT)))
    assert routes["c"] == [("cc-b", 1.0)]  # b is 15 ms from c, a is 30 ms


def test_region_without_a_cache_cluster_uses_the_nearest_ready_one() -> None:
    routes = _routes(_facts(c=None))
    assert routes["c"] == [("cc-b", 1.0)]


def test_no_ready_cluster_anywhere_leaves_only_the_zero_weight_entries() -> None:
    draining = {n: CacheFacts(name=f"cc-{n}", state=CacheState.DRAINING) for n in "abc"}
    routes = _routes(_facts(**draining))
    assert routes == {n: [(f"cc-{n}", 0.0)] for n in "abc"}


def test_unreachable_clusters_are_not_used() -> None:
    facts = _facts(a=CacheFacts(name="cc-a", state=CacheState.DRAINING)).model_copy(
        update={"latencies_ms": {"b": {"c": 15.0}}}
    )
    assert _routes(facts)["a"] == [("cc-a", 0.0)]


def test_ready_cluster_with_zero_capacity_is_not_used() -> None:
    routes = _routes(_facts(a=CacheFacts(name="cc-a", state=CacheState.READY, capacity=0)))
    assert routes["a"] == [("cc-b", 1.0), ("cc-a", 0.0)]


@pytest.mark.parametrize(
    ("fraction", "local_weight"),
    [(0.0, 0.0), (0.5, 0.5), (1.0, 1.0), (0.26, 0.25), (2.0, 1.0)],
)
def test_rejoined_cluster_ramps_in_over_the_slow_start_window(
    fraction: float, local_weight: float
) -> None:
    since = NOW - timedelta(seconds=fraction * WINDOW)
    facts = _facts(a=CacheFacts(name="cc-a", state=CacheState.READY, ready_since=since))
    p = plan(facts, POLICY)
    expected = [CacheRoute(cache_cluster="cc-a", weight=local_weight)]
    if local_weight < 1.0:
        expected.append(CacheRoute(cache_cluster="cc-b", weight=round(1 - local_weight, 9)))
    if local_weight == 0.0:
        expected = [expected[1], expected[0]]  # weighted entries first
    assert list(p.cache_routes["a"]) == expected
    if local_weight < 1.0:
        # the operator re-plans when the next 5% step is reached
        assert p.next_change_at is not None
        assert p.next_change_at > NOW
        assert p.next_change_at <= NOW + timedelta(seconds=WINDOW / 20)
    else:
        assert p.next_change_at is None


def test_ramping_cluster_that_is_the_only_ready_one_takes_everything() -> None:
    facts = _facts(
        a=CacheFacts(name="cc-a", state=CacheState.READY, ready_since=NOW),
        b=CacheFacts(name="cc-b", state=CacheState.DRAINING),
        c=CacheFacts(name="cc-c", state=CacheState.ABSENT),
    )
    routes = _routes(facts)
    assert routes["a"] == [("cc-a", 1.0)]
    assert routes["b"] == [("cc-a", 1.0), ("cc-b", 0.0)]
    assert routes["c"] == [("cc-a", 1.0)]


def test_zero_slow_start_window_means_full_weight_at_once() -> None:
    facts = _facts(a=CacheFacts(name="cc-a", state=CacheState.READY, ready_since=NOW))
    p = plan(facts, Policy(slow_start_seconds=0))
    assert [(r.cache_cluster, r.weight) for r in p.cache_routes["a"]] == [("cc-a", 1.0)]


def test_scale_down_sequence_drains_before_capacity_goes_and_ramps_back() -> None:
    """What the operator does around a CacheCluster scale-down, step by step."""
    ready = _facts()
    p1 = plan(ready, POLICY)
    # 1. the operator marks cc-a draining before shrinking the StatefulSet
    p2 = plan(_facts(a=CacheFacts(name="cc-a", state=CacheState.DRAINING)), POLICY, p1)
    assert p2.generation == p1.generation + 1
    assert [(r.cache_cluster, r.weight) for r in p2.cache_routes["a"]] == [
        ("cc-b", 1.0),
        ("cc-a", 0.0),
    ]
    # traffic weights do not depend on cache state
    assert p2.traffic_weights == p1.traffic_weights
    # 2. back to ready: the weight comes back over the window, not at once
    back = CacheFacts(name="cc-a", state=CacheState.READY, ready_since=NOW)
    p3 = plan(_facts(a=back), POLICY, p2)
    assert p3.cache_routes["a"][0].cache_cluster == "cc-b"
    later = _facts(a=back).model_copy(update={"now": NOW + timedelta(seconds=WINDOW)})
    p4 = plan(later, POLICY, p3)
    assert [(r.cache_cluster, r.weight) for r in p4.cache_routes["a"]] == [("cc-a", 1.0)]
    assert p4.generation == p3.generation + 1
