"""The pure region-routing planner: `plan(facts, policy, previous) -> Plan`.

Traffic weights
---------------
Per region i: demand d_i (req/s), capacity C_i = ready replicas x capacity per replica, usable
capacity U_i = C_i / headroom. Latency L_ij from `latenciesMs` (i -> j; when only j -> i is
given it is used both ways; a region to itself is 0; a missing pair is unreachable). x_ij is
the share of client region i's demand served by edge region j; the plan's cost is
sum_ij d_i x_ij L_ij (latency-weighted, ms x req/s).

Step 1 (the optimum): minimise the cost subject to sum_j x_ij = 1, edge loads
sum_i d_i x_ij <= s U_j, and local first: region i serves min(d_i, s U_i) of its own demand
before anything else (so the LP is a transportation problem from regions with excess demand to
regions with spare capacity). s is the overload scale: 1 while total demand fits the usable
capacity it can reach, otherwise D / sum U - every region then carries the same fraction of
its usable capacity (load spread in proportion to capacity) and the plan says `overloaded`.
With a partial latency matrix the problem can be infeasible even at that s; then s is the
least uniform scale that makes it feasible (another LP), and if local-first itself is what
makes it infeasible it is dropped. Demand that can reach no capacity at all stays local and
marks the plan overloaded.

Step 2 (least movement, only with a previous plan): minimise the demand-weighted movement
sum_ij |d_i x_ij - d_i x'_ij| from the previous shares x' subject to the same constraints and
cost <= 1.02 x the step-1 optimum. Both steps are exact LPs solved with HiGHS by column
generation over each region's nearest candidates (`solver.py`).

Hysteresis (precise): the previous plan's traffic weights (and its overloaded flag and basis)
are kept unchanged when all of the following hold, where the basis is the per-region demand
and usable capacity the previous weights were computed for (stored in routes.json):
  1. the same set of regions and the same latency matrix (digest);
  2. every region's demand and usable capacity is within `hysteresis` relative of its basis
     value: |v - v_basis| <= hysteresis x v_basis (so a zero stays zero);
  3. the overloaded state (total demand vs usable capacity) is unchanged;
  4. under the current demands the kept weights put no edge region above its raw capacity
     C_j > 0 times the overload scale the weights were planned with (1 unless overloaded): the
     headroom absorbs the small excess over usable capacity. With changes within h this
     always holds when (1 + h) / (1 - h) <= headroom (defaults: 1.105 <= 1.25).
Because the basis is kept with the weights, slow drift accumulates against it and triggers a
re-plan once it crosses the threshold. With hysteresis 0 only identical facts keep the plan.

Shares are rounded to integer multiples of 1e-9 per client region by largest remainder (ties by
edge region name) so they sum to exactly 1 (in decimal) and identical facts give identical bytes.

Cache routes
------------
Per edge region, the ready CacheClusters (capacity not 0) it can reach, ordered by latency
(then name): local first when ready. Walking that order, each cluster takes `ramp` of the
remaining weight, where ramp = floor(20 x elapsed / slow-start window) / 20 since it became
ready (a linear ramp in 5% steps, so the bytes change at most 20 times per window); a ramping
cluster therefore hands the rest to the next-nearest ready one. If the walk ends with weight
left over (every reachable ready cluster is ramping), the rest goes to the preferred one. The
region's own cluster when migrating or draining is listed after the weighted ones with weight
0 (weighted out before its capacity goes); an absent cluster is omitted. A region that can
reach no ready cluster gets only its zero-weight entry (or an empty list): its edges go to the
origin.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from aerocdn.routing.model import (
    CacheRoute,
    CacheState,
    Facts,
    Plan,
    Policy,
    RegionBasis,
)
from aerocdn.routing.solver import FloatArray, min_uniform_scale, solve_transport

COST_SLACK = 1.02
SHARE_UNITS = 10**9
RAMP_STEPS = 20
_REL = 1e-9
DUST = 1e-7


@dataclass(frozen=True)
class Problem:
    """Facts as arrays, regions sorted by name."""

    names: tuple[str, ...]
    demand: FloatArray
    capacity: FloatArray
    usable: FloatArray
    latency: FloatArray  # inf = unreachable

    @classmethod
    def build(cls, facts: Facts, policy: Policy) -> Problem:
        regions = sorted(facts.regions, key=lambda r: r.name)
        names = tuple(r.name for r in regions)
        index = {name: i for i, name in enumerate(names)}
        n = len(names)
        lat = np.full((n, n), np.inf)
        given = np.zeros((n, n), dtype=bool)
        for src, row in facts.latencies_ms.items():
            if not row:
                continue
            i = index[src]
            js = [index[dst] for dst in row]
            lat[i, js] = np.fromiter(row.values(), dtype=np.float64, count=len(js))
            given[i, js] = True
        fill = ~given & given.T
        lat[fill] = lat.T[fill]
        np.fill_diagonal(lat, 0.0)
        demand = np.array([r.expected_demand for r in regions], dtype=np.float64)
        capacity = np.array([r.capacity for r in regions], dtype=np.float64)
        return cls(names, demand, capacity, capacity / policy.headroom, lat)

    def digest(self) -> str:
        h = hashlib.sha256()
        h.update("\0".join(self.names).encode())
        h.update(np.where(np.isfinite(self.latency), self.latency, -1.0).tobytes())
        return h.hexdigest()[:16]

    def cost(self, shares: FloatArray) -> float:
        """Latency-weighted cost of a share matrix (ms x req/s)."""
        reach = np.isfinite(self.latency)
        return float((self.demand[:, None] * shares * np.where(reach, self.latency, 0.0)).sum())


@dataclass(frozen=True)
class TrafficSolution:
    shares: FloatArray  # (n, n) unrounded
    overloaded: bool
    scale: float
    optimum: float  # step-1 cost
    cost: float  # cost of the returned shares


def _overload_scale(p: Problem) -> tuple[float, bool, npt.NDArray[np.bool_]]:
    """Quick overload check: (scale, overloaded, stranded clients)."""
    reach = np.isfinite(p.latency)
    capreach = reach & (p.usable[None, :] > 0)
    stranded = (p.demand > 0) & ~capreach.any(axis=1)
    active = (p.demand > 0) & ~stranded
    total = float(p.demand[active].sum())
    usable = float(p.usable[capreach[active].any(axis=0)].sum()) if active.any() else 0.0
    over = total > usable * (1 + _REL)
    scale = total / usable if over and usable > 0 else 1.0
    return scale, bool(over or stranded.any()), stranded


def _local_first(
    p: Problem, caps: FloatArray, active: npt.NDArray[np.bool_], prev_flows: FloatArray | None
) -> tuple[FloatArray, float, float] | None:
    """Both steps with local first. Returns (flows n x n, optimum, cost) or None if infeasible."""
    d = np.where(active, p.demand, 0.0)
    local = np.minimum(d, caps)
    excess = d - local
    spare = caps * (1 + _REL) - local  # the slack keeps an exactly balanced overload feasible
    is_src = excess > _REL * max(float(d.sum()), 1.0)
    src = np.nonzero(is_src)[0]
    snk = np.nonzero((spare > 0) & ~is_src)[0]
    flows = np.diag(local)
    if src.size == 0:
        return flows, 0.0, 0.0
    sub = p.latency[np.ix_(src, snk)]
    opt = solve_transport(excess[src], spare[snk], sub)
    if opt is None:
        return None
    result = opt
    if prev_flows is not None:
        prev_sub = prev_flows[np.ix_(src, snk)]
        moved = solve_transport(
            excess[src],
            spare[snk],
            sub,
            prev=prev_sub,
            cost_bound=opt.cost * (COST_SLACK - 1e-6),
            include=opt.arcs,
        )
        if moved is not None:
            result = moved
    flows[np.ix_(src, snk)] += result.flows
    return flows, opt.cost, result.cost


def _plain(
    p: Problem, caps: FloatArray, active: npt.NDArray[np.bool_], prev_flows: FloatArray | None
) -> tuple[FloatArray, float, float] | None:
    """Both steps without the local-first rule (fallback for partial matrices)."""
    src = np.nonzero(active)[0]
    snk = np.nonzero(caps > 0)[0]
    n = len(p.names)
    flows = np.zeros((n, n))
    if src.size == 0:
        return flows, 0.0, 0.0
    sub = p.latency[np.ix_(src, snk)]
    opt = solve_transport(p.demand[src], caps[snk], sub)
    if opt is None:
        return None
    result = opt
    if prev_flows is not None:
        moved = solve_transport(
            p.demand[src],
            caps[snk],
            sub,
            prev=prev_flows[np.ix_(src, snk)],
            cost_bound=opt.cost * (COST_SLACK - 1e-6),
            include=opt.arcs,
        )
        if moved is not None:
            result = moved
    flows[np.ix_(src, snk)] = result.flows
    return flows, opt.cost, result.cost


def solve_traffic(p: Problem, prev_shares: FloatArray | None = None) -> TrafficSolution:
    """Step 1 and (with previous shares) step 2; see the module docstring."""
    n = len(p.names)
    scale, overloaded, stranded = _overload_scale(p)
    active = (p.demand > 0) & ~stranded
    prev_flows = None if prev_shares is None else p.demand[:, None] * prev_shares
    caps = p.usable * scale
    got = _local_first(p, caps, active, prev_flows)
    if got is None:
        reach = np.isfinite(p.latency) & (p.usable[None, :] > 0)
        t = min_uniform_scale(p.demand[active], p.usable, reach[active])
        if t is not None and t > scale:
            scale = t
            overloaded = overloaded or t > 1 + 1e-7
            caps = p.usable * scale * (1 + 1e-7)
            got = _local_first(p, caps, active, prev_flows)
        if got is None:
            got = _plain(p, caps, active, prev_flows)
        if got is None:  # numerically borderline: give every reachable edge more room
            caps = p.usable * scale * (1 + 1e-4)
            got = _plain(p, caps, active, prev_flows)
    if got is None:
        raise RuntimeError("routing: no feasible traffic plan (solver failure)")
    flows, optimum, cost = got
    shares = np.zeros((n, n))
    has = p.demand > 0
    shares[has] = flows[has] / p.demand[has, None]
    # Solver dust (flows at the 1e-9 level created by tolerances) is not a route.
    shares[shares < DUST] = 0.0
    # Clients without a place from the LP: stranded demand stays local; zero demand goes local
    # when the region has usable capacity, else to the nearest reachable region with spare.
    load = flows.sum(axis=0)
    residual = p.usable * scale - load
    reach = np.isfinite(p.latency)
    for i in range(n):
        if active[i]:
            continue
        target = i
        if not stranded[i] and p.usable[i] <= 0:
            for pool in (reach[i] & (residual > 0), reach[i] & (p.usable > 0)):
                if pool.any():
                    cand = np.nonzero(pool)[0]
                    target = int(cand[np.lexsort((cand, p.latency[i, cand]))[0]])
                    break
        shares[i] = 0.0
        shares[i, target] = 1.0
    return TrafficSolution(shares, overloaded, scale, optimum, cost)


def round_shares(rows: FloatArray) -> npt.NDArray[np.int64]:
    """Integer units of 1/SHARE_UNITS per row summing to SHARE_UNITS (largest remainder, ties
    by column index). Works on one row or a matrix of rows."""
    matrix = np.atleast_2d(np.clip(rows, 0.0, None))
    totals = matrix.sum(axis=1, keepdims=True)
    if np.any(totals <= 0):
        raise ValueError("a client region has no share anywhere")
    exact = matrix / totals * SHARE_UNITS
    units = np.floor(exact).astype(np.int64)
    short = SHARE_UNITS - units.sum(axis=1)
    rem = exact - units
    cols = np.arange(matrix.shape[1])
    for i in np.nonzero(short > 0)[0]:
        order = np.lexsort((cols, -rem[i]))
        units[i, order[: short[i]]] += 1
    return units.reshape(np.shape(rows)) if np.ndim(rows) == 1 else units


def _weights(p: Problem, shares: FloatArray) -> dict[str, dict[str, float]]:
    units = round_shares(shares)
    out: dict[str, dict[str, float]] = {}
    names = p.names
    for i, client in enumerate(names):
        row = units[i]
        nz = np.flatnonzero(row)
        out[client] = {names[j]: int(row[j]) / SHARE_UNITS for j in nz}
    return out


def shares_matrix(p: Problem, weights: dict[str, dict[str, float]]) -> FloatArray | None:
    """Previous weights as a matrix over the current regions (None if nothing overlaps)."""
    index = {name: i for i, name in enumerate(p.names)}
    m = np.zeros((len(p.names), len(p.names)))
    any_row = False
    for client, row in weights.items():
        i = index.get(client)
        if i is None:
            continue
        for edge, share in row.items():
            j = index.get(edge)
            if j is not None and share > 0:
                m[i, j] = share
                any_row = True
    return m if any_row else None


def _within_threshold(prev: Plan, p: Problem, policy: Policy) -> bool:
    h = policy.hysteresis
    if set(prev.basis) != set(p.names) or set(prev.traffic_weights) != set(p.names):
        return False
    if prev.latency_digest != p.digest():
        return False
    for i, name in enumerate(p.names):
        b = prev.basis[name]
        if abs(p.demand[i] - b.demand) > h * b.demand + 1e-12:
            return False
        if abs(p.usable[i] - b.usable_capacity) > h * b.usable_capacity + 1e-12:
            return False
    _, overloaded, _ = _overload_scale(p)
    if overloaded != prev.overloaded:
        return False
    shares = shares_matrix(p, prev.traffic_weights)
    if shares is None:
        return False
    load = (p.demand[:, None] * shares).sum(axis=0)
    # Regions without capacity only ever carry demand that can reach no capacity (their own).
    has = p.capacity > 0
    limit = p.capacity[has] * prev.overload_scale * (1 + 1e-9) + 1e-9
    return bool(np.all(load[has] <= limit))


def _ramp(elapsed: float, window: float) -> float:
    if window <= 0 or elapsed >= window:
        return 1.0
    if elapsed <= 0:
        return 0.0
    return math.floor(RAMP_STEPS * elapsed / window) / RAMP_STEPS


def _ready_clusters(
    facts: Facts, policy: Policy, p: Problem, now: datetime
) -> tuple[list[tuple[int, str, float]], list[datetime]]:
    """Ready clusters as (region index, cluster, ramp at ``now``), and every later time at
    which one of their ramps steps."""
    window = policy.slow_start_seconds
    by_name = {r.name: r for r in facts.regions}
    # Each ready cluster lives in the first region (by name) that lists it.
    ready: list[tuple[int, str, float]] = []
    seen: set[str] = set()
    steps: list[datetime] = []
    for i, name in enumerate(p.names):
        cache = by_name[name].cache
        if cache is None or cache.name in seen:
            continue
        seen.add(cache.name)
        if cache.state != CacheState.READY or cache.capacity == 0:
            continue
        ramp = 1.0
        if cache.ready_since is not None and window > 0:
            elapsed = (now - cache.ready_since).total_seconds()
            ramp = _ramp(elapsed, window)
            if ramp < 1.0:
                first = math.floor(RAMP_STEPS * max(elapsed, 0.0) / window) + 1
                steps += [cache.ready_since + timedelta(seconds=window * k / RAMP_STEPS)
                          for k in range(first, RAMP_STEPS + 1)]
        ready.append((i, cache.name, ramp))
    return ready, steps


def _routes(
    facts: Facts, p: Problem, ready: list[tuple[int, str, float]]
) -> dict[str, tuple[CacheRoute, ...]]:
    by_name = {r.name: r for r in facts.regions}
    routes: dict[str, tuple[CacheRoute, ...]] = {}
    for i, name in enumerate(p.names):
        reachable = [
            (float(p.latency[i, j]), cluster, ramp)
            for j, cluster, ramp in ready
            if math.isfinite(p.latency[i, j])
        ]
        reachable.sort(key=lambda c: (c[0], c[1]))
        taken: list[tuple[str, float]] = []
        remaining = 1.0
        for _, cluster, ramp in reachable:
            w = remaining * ramp
            taken.append((cluster, w))
            remaining -= w
            if remaining <= 0:
                break
        if taken and remaining > 0:
            cluster, w = taken[0]
            taken[0] = (cluster, w + remaining)
        positive = [(c, w) for c, w in taken if w > 0]
        entries: list[CacheRoute] = []
        if positive:
            units = round_shares(np.array([w for _, w in positive]))
            entries = [
                CacheRoute(cache_cluster=c, weight=int(u) / SHARE_UNITS)
                for (c, _), u in zip(positive, units, strict=True)
                if u > 0
            ]
        names_in = {e.cache_cluster for e in entries}
        own = by_name[name].cache
        if own is not None and own.state != CacheState.ABSENT and own.name not in names_in:
            entries.append(CacheRoute(cache_cluster=own.name, weight=0.0))
        routes[name] = tuple(entries)
    return routes


def cache_routes(
    facts: Facts, policy: Policy, p: Problem
) -> tuple[dict[str, tuple[CacheRoute, ...]], datetime | None]:
    """Per edge region the ordered CacheClusters with weights; and the next time a slow-start
    ramp step changes a weight (None when no later step changes any: a cluster that ramps
    while it is the only one a region can use keeps weight 1 all along, so nothing needs
    re-planning - or re-publishing - until the facts change)."""
    ready, steps = _ready_clusters(facts, policy, p, facts.now)
    routes = _routes(facts, p, ready)
    for at in sorted(set(steps)):
        later, _ = _ready_clusters(facts, policy, p, at)
        if later != ready and _routes(facts, p, later) != routes:
            return routes, at
    return routes, None


def plan(facts: Facts, policy: Policy | None = None, previous: Plan | None = None) -> Plan:
    """Plan traffic weights and cache routes. Pure: same arguments, same Plan (and bytes)."""
    policy = policy or Policy()
    p = Problem.build(facts, policy)
    routes, next_change = cache_routes(facts, policy, p)
    if previous is not None and _within_threshold(previous, p, policy):
        weights = previous.traffic_weights
        overloaded = previous.overloaded
        basis = previous.basis
        scale = previous.overload_scale
    else:
        prev_shares = None if previous is None else shares_matrix(p, previous.traffic_weights)
        sol = solve_traffic(p, prev_shares)
        weights = _weights(p, sol.shares)
        overloaded = sol.overloaded
        scale = sol.scale
        basis = {
            name: RegionBasis(demand=float(p.demand[i]), usable_capacity=float(p.usable[i]))
            for i, name in enumerate(p.names)
        }
    candidate = Plan(
        generation=1 if previous is None else previous.generation,
        overloaded=overloaded,
        traffic_weights=weights,
        cache_routes=routes,
        basis=basis,
        latency_digest=p.digest(),
        overload_scale=scale,
        next_change_at=next_change,
    )
    if previous is None or candidate.published() == previous.published():
        return candidate
    return candidate.model_copy(update={"generation": previous.generation + 1})
