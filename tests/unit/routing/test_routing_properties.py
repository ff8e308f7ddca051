"""Property tests of the routing planner on random topologies (2-50 regions)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from tests.unit.routing.routing_oracle import arrays, loads, random_facts, shares_of

from aerocdn.routing import Facts, Policy, plan

TOL = 1e-6
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def topologies(draw: st.DrawFn, *, partial: bool | None = None) -> Facts:
    n = draw(st.integers(2, 50))
    seed = draw(st.integers(0, 2**32 - 1))
    load = draw(st.floats(0.2, 1.5))
    part = draw(st.booleans()) if partial is None else partial
    return random_facts(seed, n, load=load, partial=part)


def _overload_scale(a_demand: np.ndarray, a_usable: np.ndarray) -> float:
    return max(1.0, float(a_demand.sum() / a_usable.sum()))


@SETTINGS
@given(topologies())
def test_weights_sum_to_one_per_client_region(facts: Facts) -> None:
    p = plan(facts, Policy())
    assert set(p.traffic_weights) == {r.name for r in facts.regions}
    for client, row in p.traffic_weights.items():
        assert row, client
        assert all(0 < s <= 1 for s in row.values()), (client, row)
        # shares are multiples of 1e-9 summing to exactly 1 in decimal
        assert sum(round(s * 1e9) for s in row.values()) == 10**9, (client, row)


@SETTINGS
@given(topologies(partial=False))
def test_no_region_above_usable_capacity_while_another_has_spare(facts: Facts) -> None:
    policy = Policy()
    p = plan(facts, policy)
    a = arrays(facts, policy)
    load = loads(a, shares_of(a, p))
    slack = TOL * max(float(a.demand.sum()), 1.0)
    above = load > a.usable * (1 + TOL) + slack
    spare = load < a.usable * (1 - TOL) - slack
    assert not (above.any() and spare.any()), (load, a.usable)
    assert p.overloaded == bool(a.demand.sum() > a.usable.sum() * (1 + 1e-9))
    if p.overloaded:  # spread in proportion to capacity: every region at the same utilisation
        s = _overload_scale(a.demand, a.usable)
        assert np.allclose(load, a.usable * s, rtol=1e-6, atol=slack)


@SETTINGS
@given(topologies())
def test_never_above_usable_capacity_when_not_overloaded(facts: Facts) -> None:
    policy = Policy()
    p = plan(facts, policy)
    a = arrays(facts, policy)
    if not p.overloaded:
        load = loads(a, shares_of(a, p))
        assert np.all(load <= a.usable * (1 + TOL) + TOL * float(a.demand.sum()))


@SETTINGS
@given(topologies(partial=False))
def test_demand_served_locally_whenever_local_capacity_allows(facts: Facts) -> None:
    policy = Policy()
    p = plan(facts, policy)
    a = arrays(facts, policy)
    x = shares_of(a, p)
    for i, name in enumerate(a.names):
        if 0 < a.demand[i] <= a.usable[i]:
            assert x[i, i] == 1.0, (name, p.traffic_weights[name])
        elif a.demand[i] > 0:  # local is full before anything spills
            assert a.demand[i] * x[i, i] >= a.usable[i] * (1 - TOL), name


@SETTINGS
@given(topologies())
def test_same_facts_give_identical_bytes(facts: Facts) -> None:
    policy = Policy()
    first = plan(facts, policy).to_json()
    assert plan(facts, policy).to_json() == first
    # The same facts written differently: regions in another order, each latency given
    # from the other end.
    flipped: dict[str, dict[str, float]] = {}
    for src, row in facts.latencies_ms.items():
        for dst, ms in row.items():
            flipped.setdefault(dst, {})[src] = ms
    other = facts.model_copy(
        update={"regions": tuple(reversed(facts.regions)), "latencies_ms": flipped}
    )
    assert plan(other, policy).to_json() == first


@SETTINGS
@given(
    topologies(),
    st.floats(0.0, 0.05),
    st.integers(0, 2**32 - 1),
)
def test_change_below_hysteresis_threshold_changes_nothing(
    facts: Facts, hysteresis: float, seed: int
) -> None:
    policy = Policy(hysteresis=hysteresis)
    before = plan(facts, policy)
    rng = np.random.default_rng(seed)
    limit = 0.99 * hysteresis
    regions = tuple(
        r.model_copy(
            update={
                "expected_demand": r.expected_demand * (1 + rng.uniform(-limit, limit)),
                "capacity_per_replica": r.capacity_per_replica * (1 + rng.uniform(-limit, limit)),
            }
        )
        for r in facts.regions
    )
    changed = facts.model_copy(update={"regions": regions})
    a0, a1 = arrays(facts, policy), arrays(changed, policy)
    # crossing the overload boundary is never "below the threshold"
    assume(
        (a0.demand.sum() > a0.usable.sum() * (1 + 1e-9))
        == (a1.demand.sum() > a1.usable.sum() * (1 + 1e-9))
    )
    assume(not before.overloaded or a0.demand.sum() > a0.usable.sum() * (1 + 1e-9))
    after = plan(changed, policy, previous=before)
    assert after.to_json() == before.to_json()
