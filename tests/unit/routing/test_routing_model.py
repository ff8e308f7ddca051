"""routes.json, validation of facts, summary, movement and hysteresis drift."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from tests.unit.routing.routing_oracle import NOW, random_facts

from aerocdn.routing import (
    CacheFacts,
    CacheState,
    Facts,
    Plan,
    Policy,
    RegionFacts,
    moved_traffic,
    plan,
)


def _facts(demand_a: float = 300.0, replicas_a: int = 2) -> Facts:
    return Facts(
        regions=(
            RegionFacts(
                name="a",
                ready_replicas=replicas_a,
                capacity_per_replica=125.0,
                expected_demand=demand_a,
                cache=CacheFacts(name="cc-a", state=CacheState.READY),
            ),
            RegionFacts(
                name="b",
                ready_replicas=4,
                capacity_per_replica=125.0,
                expected_demand=100.0,
                cache=CacheFacts(name="cc-b", state=CacheState.READY),
            ),
        ),
        latencies_ms={"a": {"b": 20.0}},
        now=NOW,
    )


def test_routes_json_has_the_shared_format() -> None:
    p = plan(_facts(), Policy())
    doc = json.loads(p.to_json())
    assert doc["generation"] == 1
    assert doc["overloaded"] is False
    # a: 250 req/s capacity / 1.25 headroom = 200 usable for 300 demand -> 1/3 spills to b
    assert doc["trafficWeights"] == {
        "a": {"a": 0.666666667, "b": 0.333333333},
        "b": {"b": 1.0},
    }
    assert doc["cacheRoutes"] == {
        "a": [{"cacheCluster": "cc-a", "weight": 1.0}],
        "b": [{"cacheCluster": "cc-b", "weight": 1.0}],
    }
    text = p.to_json()
    assert text == json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n"


def test_routes_json_round_trips_and_readers_ignore_unknown_keys() -> None:
    p = plan(random_facts(3, 8), Policy())
    assert Plan.from_json(p.to_json()) == p
    doc = json.loads(p.to_json())
    doc["somethingNew"] = {"x": 1}
    assert Plan.from_json(json.dumps(doc)) == p


def test_routes_json_that_is_not_json_names_the_file() -> None:
    with pytest.raises(ValueError, match=r"routes\.json"):
        Plan.from_json("{not json")


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(-2, 2) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                 max_size=3),
    max_leaves=8,
)
_KEYS = st.sampled_from(["generation", "overloaded", "trafficWeights", "cacheRoutes", "basis",
                         "cacheCluster", "weight", "regions", "demand", "usableCapacity",
                         "latencyDigest", "overloadScale", "eu"])
_DOCS = st.recursive(_JSON, lambda inner: st.dictionaries(_KEYS, inner, max_size=4),
                     max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(_DOCS)
def test_any_json_is_a_plan_or_a_value_error(doc: object) -> None:
    """Readers (edges, controllers) catch ValueError only: nothing else may escape."""
    try:
        p = Plan.from_json(json.dumps(doc))
    except ValueError as e:
        assert str(e).startswith("routes.json: ")
    else:
        assert Plan.from_json(p.to_json()) == p


def test_latency_for_an_unknown_region_names_the_field() -> None:
    with pytest.raises(ValidationError, match=r"latenciesMs\.a\.zz"):
        Facts(
            regions=(
                RegionFacts(name="a", ready_replicas=1, capacity_per_replica=1, expected_demand=0),
            ),
            latencies_ms={"a": {"zz": 3.0}},
            now=NOW,
        )


def test_duplicate_region_is_rejected() -> None:
    r = RegionFacts(name="a", ready_replicas=1, capacity_per_replica=1, expected_demand=0)
    with pytest.raises(ValidationError, match="listed twice"):
        Facts(regions=(r, r), now=NOW)


def test_headroom_below_one_is_rejected() -> None:
    with pytest.raises(ValidationError, match="headroom"):
        Policy(headroom=0.9)


def test_summary_says_what_is_served_locally_and_where_the_rest_goes() -> None:
    s = plan(_facts(), Policy()).summary()
    assert s["overloaded"] is False
    assert s["regions"]["a"]["servedLocallyPercent"] == 66.67
    assert s["regions"]["a"]["spilledTo"] == {"b": 33.33}
    assert s["regions"]["a"]["cacheCluster"] == "cc-a"
    assert s["regions"]["b"]["loadReqPerSec"] == pytest.approx(200.0)
    assert s["regions"]["b"]["overloaded"] is False


def test_moved_traffic_is_the_demand_weighted_half_l1_distance() -> None:
    policy = Policy(hysteresis=0)
    before = plan(_facts(), policy)
    after = plan(_facts(replicas_a=3), policy, before)  # a now has 300 usable: all local
    assert after.traffic_weights["a"] == {"a": 1.0}
    assert moved_traffic(before, after) == pytest.approx(100.0, rel=1e-6)
    assert moved_traffic(after, after) == 0.0


def test_identical_facts_keep_the_generation() -> None:
    policy = Policy()
    first = plan(_facts(), policy)
    assert plan(_facts(), policy, first) == first


def test_slow_drift_replans_once_the_threshold_is_crossed() -> None:
    policy = Policy(hysteresis=0.05)
    p0 = plan(_facts(demand_a=300.0), policy)
    p1 = plan(_facts(demand_a=309.0), policy, p0)  # +3% of the basis: kept
    assert p1 == p0
    p2 = plan(_facts(demand_a=318.0), policy, p1)  # +6% of the basis: re-planned
    assert p2.generation == p0.generation + 1
    assert p2.traffic_weights["a"]["a"] == pytest.approx(200 / 318, abs=1e-9)


def test_capacity_loss_beyond_the_threshold_moves_traffic_off_the_region() -> None:
    policy = Policy(hysteresis=0.05)
    p0 = plan(_facts(), policy)
    p1 = plan(_facts(replicas_a=1), policy, p0)  # a: 100 usable for 300
    assert p1.traffic_weights["a"] == {"a": 0.333333333, "b": 0.666666667}
    assert not p1.overloaded
