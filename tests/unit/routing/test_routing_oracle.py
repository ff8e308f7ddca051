"""The planner against the optimum: scipy's linprog on the same problem is the oracle."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.unit.routing.routing_oracle import (
    NOW,
    arrays,
    loads,
    oracle_least_movement,
    oracle_optimum,
    plan_cost,
    random_facts,
    shares_of,
)

from aerocdn.routing import Facts, Plan, Policy, RegionFacts, moved_traffic, plan

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NO_HYSTERESIS = Policy(hysteresis=0)


def _tol(facts: Facts) -> float:
    """Absolute slack for share rounding (1e-9 per share) and solver tolerances."""
    demand = sum(r.expected_demand for r in facts.regions)
    return 1e-6 * max(demand, 1.0) * 300.0


@SETTINGS
@given(st.integers(2, 50), st.integers(0, 2**32 - 1), st.floats(0.2, 1.5), st.booleans())
def test_cost_within_two_percent_of_the_lp_optimum(
    n: int, seed: int, load: float, partial: bool
) -> None:
    facts = random_facts(seed, n, load=load, partial=partial)
    p = plan(facts, NO_HYSTERESIS)
    a = arrays(facts, NO_HYSTERESIS)
    cost = plan_cost(a, shares_of(a, p))
    assert cost <= 1.02 * oracle_optimum(a) + _tol(facts)
    if not partial:
        # Latencies here are a metric, so local-first costs nothing: the plan is also within
        # 2% of the LP without the local-first rule.
        assert cost <= 1.02 * oracle_optimum(a, local_first=False) + _tol(facts)


@st.composite
def scale_events(draw: st.DrawFn) -> tuple[Facts, Facts]:
    n = draw(st.integers(2, 30))
    facts = random_facts(
        draw(st.integers(0, 2**32 - 1)),
        n,
        load=draw(st.floats(0.2, 1.5)),
        partial=draw(st.booleans()),
    )
    k = draw(st.integers(0, n - 1))
    regions = list(facts.regions)
    r = regions[k]
    replicas = draw(st.integers(0, 8).filter(lambda v: v != r.ready_replicas))
    regions[k] = r.model_copy(update={"ready_replicas": replicas})
    return facts, facts.model_copy(update={"regions": tuple(regions)})


@SETTINGS
@given(scale_events())
def test_scale_event_moves_at_most_1_1x_the_least_necessary(events: tuple[Facts, Facts]) -> None:
    before_facts, after_facts = events
    before = plan(before_facts, NO_HYSTERESIS)
    after = plan(after_facts, NO_HYSTERESIS, previous=before)
    a = arrays(after_facts, NO_HYSTERESIS)
    x = shares_of(a, after)
    tol = _tol(after_facts)
    optimum = oracle_optimum(a)
    # feasible
    if not after.overloaded:
        assert np.all(loads(a, x) <= a.usable * (1 + 1e-6) + 1e-6 * float(a.demand.sum()))
    # within 2% of the optimal cost
    assert plan_cost(a, x) <= 1.02 * optimum + tol
    # moves at most 1.1x the least any feasible plan within 2% must move
    least = oracle_least_movement(a, shares_of(a, before), 1.02 * optimum + tol / 300)
    assert moved_traffic(before, after) <= 1.1 * least + 1e-6 * float(a.demand.sum())


def _region(name: str, replicas: int, demand: float) -> RegionFacts:
    return RegionFacts(
        name=name, ready_replicas=replicas, capacity_per_replica=100.0, expected_demand=demand
    )


def test_two_overloaded_regions_competing_for_one_neighbour_get_the_optimum() -> None:
    # a and b each have 100 req/s more than they can serve; c and d have 100 spare each.
    # c is 10 ms from both; d is 11 ms from a but 100 ms from b. Any fixed-order waterfall that
    # lets a spill first sends a -> c and b -> d (11000 ms req/s); the optimum is b -> c,
    # a -> d (2100).
    facts = Facts(
        regions=(
            _region("a", 2, 300.0),
            _region("b", 2, 300.0),
            _region("c", 3, 200.0),
            _region("d", 1, 0.0),
        ),
        latencies_ms={
            "a": {"b": 50.0, "c": 10.0, "d": 11.0},
            "b": {"c": 10.0, "d": 100.0},
            "c": {"d": 20.0},
        },
        now=NOW,
    )
    p = plan(facts, Policy(headroom=1.0))
    assert p.traffic_weights["a"] == {"a": 0.666666667, "d": 0.333333333}
    assert p.traffic_weights["b"] == {"b": 0.666666667, "c": 0.333333333}
    assert p.traffic_weights["c"] == {"c": 1.0}
    assert p.traffic_weights["d"] == {"d": 1.0}
    assert not p.overloaded


def test_total_overload_spreads_load_in_proportion_to_capacity() -> None:
    facts = Facts(
        regions=(_region("a", 1, 800.0), _region("b", 3, 0.0)),
        latencies_ms={"a": {"b": 30.0}},
        now=NOW,
    )
    p = plan(facts, Policy(headroom=1.0))
    assert p.overloaded
    # 800 req/s on 100 + 300 req/s of capacity: both regions at 200%, a serving 200 locally
    assert p.traffic_weights["a"] == {"a": 0.25, "b": 0.75}
    assert p.summary()["overloaded"] is True


def test_removing_a_region_from_the_previous_plan_still_plans_everything() -> None:
    facts = random_facts(7, 12)
    before = plan(facts, NO_HYSTERESIS)
    smaller = facts.model_copy(
        update={
            "regions": facts.regions[:-1],
            "latencies_ms": {
                k: {kk: v for kk, v in row.items() if kk != facts.regions[-1].name}
                for k, row in facts.latencies_ms.items()
                if k != facts.regions[-1].name
            },
        }
    )
    after = plan(smaller, NO_HYSTERESIS, previous=before)
    assert set(after.traffic_weights) == {r.name for r in smaller.regions}
    assert after.generation == before.generation + 1
    assert isinstance(Plan.from_json(after.to_json()), Plan)
