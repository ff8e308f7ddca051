"""Independent reference for the routing planner: random topologies and scipy LPs.

The LPs here are written from the problem statement (x_ij shares over all reachable pairs,
scipy's `linprog`), not from the planner's reduced transportation form, so they check it.
Also used by bench/routing/bench_routing.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
from scipy.optimize import linprog
from scipy.sparse import coo_matrix, csr_matrix, vstack

from aerocdn.routing import Facts, Plan, Policy, RegionFacts

NOW = datetime(2026, 1, 1, tzinfo=UTC)
FloatArray = npt.NDArray[np.float64]


def random_facts(
    seed: int,
    n: int,
    *,
    load: float | None = None,
    partial: bool = False,
    headroom: float = 1.25,
) -> Facts:
    """Regions on a plane; latency 2 ms + 150 ms per unit distance (a metric).

    `load` is total demand / total usable capacity (random in [0.3, 1.3] when None). With
    `partial`, pairs farther apart than 0.45 are unreachable.
    """
    rng = np.random.default_rng(seed)
    pts = rng.random((n, 2))
    replicas = rng.integers(0, 6, n)
    replicas[rng.integers(0, n)] = max(1, int(replicas.max()))
    per = rng.uniform(100, 1000, n).round(1)
    demand = rng.lognormal(0.0, 1.0, n) * (rng.random(n) > 0.1)
    if demand.sum() == 0:
        demand[0] = 1.0
    usable = replicas * per / headroom
    lf = float(rng.uniform(0.3, 1.3)) if load is None else load
    demand = (demand / demand.sum() * usable.sum() * lf).round(3)
    names = [f"r{i:03d}" for i in range(n)]
    lat: dict[str, dict[str, float]] = {}
    for i in range(n):
        row: dict[str, float] = {}
        for j in range(i + 1, n):
            dist = float(np.hypot(*(pts[i] - pts[j])))
            if partial and dist > 0.45:
                continue
            row[names[j]] = round(2.0 + 150.0 * dist, 3)
        lat[names[i]] = row
    regions = tuple(
        RegionFacts(
            name=names[i],
            ready_replicas=int(replicas[i]),
            capacity_per_replica=float(per[i]),
            expected_demand=float(demand[i]),
        )
        for i in range(n)
    )
    return Facts(regions=regions, latencies_ms=lat, now=NOW)


@dataclass(frozen=True)
class Arrays:
    names: list[str]
    demand: FloatArray
    usable: FloatArray
    capacity: FloatArray
    latency: FloatArray  # inf = unreachable


def arrays(facts: Facts, policy: Policy) -> Arrays:
    regions = sorted(facts.regions, key=lambda r: r.name)
    names = [r.name for r in regions]
    idx = {name: i for i, name in enumerate(names)}
    n = len(names)
    lat = np.full((n, n), np.inf)
    for a, row in facts.latencies_ms.items():
        for b, ms in row.items():
            lat[idx[a], idx[b]] = ms
    for a, row in facts.latencies_ms.items():
        for b, ms in row.items():
            if not (b in facts.latencies_ms and a in facts.latencies_ms[b]):
                lat[idx[b], idx[a]] = ms
    np.fill_diagonal(lat, 0.0)
    cap = np.array([r.ready_replicas * r.capacity_per_replica for r in regions])
    return Arrays(
        names,
        np.array([r.expected_demand for r in regions]),
        cap / policy.headroom,
        cap,
        lat,
    )


def shares_of(a: Arrays, p: Plan) -> FloatArray:
    idx = {name: i for i, name in enumerate(a.names)}
    x = np.zeros((len(a.names), len(a.names)))
    for c, row in p.traffic_weights.items():
        for e, s in row.items():
            x[idx[c], idx[e]] = s
    return x


def plan_cost(a: Arrays, x: FloatArray) -> float:
    lat = np.where(np.isfinite(a.latency), a.latency, 0.0)
    return float((a.demand[:, None] * x * lat).sum())


def loads(a: Arrays, x: FloatArray) -> FloatArray:
    return (a.demand[:, None] * x).sum(axis=0)


@dataclass(frozen=True)
class _Lp:
    pairs: tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]
    cost: FloatArray
    a_eq: csr_matrix
    b_eq: FloatArray
    a_ub: csr_matrix
    b_ub: FloatArray
    bounds: list[tuple[float, float | None]]
    scale: float


def _min_scale(a: Arrays, active: npt.NDArray[np.bool_]) -> float | None:
    reach = np.isfinite(a.latency) & (a.usable[None, :] > 0) & active[:, None]
    ii, jj = np.nonzero(reach)
    nv = ii.size + 1
    a_eq = coo_matrix((np.ones(ii.size), (ii, np.arange(ii.size))), shape=(len(a.names), nv))
    d = a.demand
    rows = np.concatenate([jj, np.arange(len(a.names))])
    cols = np.concatenate([np.arange(ii.size), np.full(len(a.names), ii.size)])
    vals = np.concatenate([d[ii], -a.usable])
    a_ub = coo_matrix((vals, (rows, cols)), shape=(len(a.names), nv))
    c = np.zeros(nv)
    c[-1] = 1.0
    res = linprog(
        c,
        A_ub=a_ub.tocsr(),
        b_ub=np.zeros(len(a.names)),
        A_eq=a_eq.tocsr()[active],
        b_eq=np.ones(int(active.sum())),
        bounds=(0, None),
        method="highs",
    )
    return float(res.x[-1]) if res.status == 0 else None


def _build(a: Arrays, local_first: bool, scale: float | None = None) -> _Lp | None:
    n = len(a.names)
    reach = np.isfinite(a.latency) & (a.usable[None, :] > 0)
    stranded = (a.demand > 0) & ~reach.any(axis=1)
    active = (a.demand > 0) & ~stranded
    if scale is not None:  # known overload scale (full matrices: max(1, D / sum U))
        t: float | None = scale
    else:
        t = _min_scale(a, active) if active.any() else 1.0
    if t is None:
        return None
    scale = max(1.0, t) * (1 + 1e-7)
    ii, jj = np.nonzero(reach & active[:, None])
    nv = ii.size
    cost = a.demand[ii] * a.latency[ii, jj]
    a_eq = coo_matrix((np.ones(nv), (ii, np.arange(nv))), shape=(n, nv)).tocsr()[active]
    b_eq = np.ones(int(active.sum()))
    a_ub = coo_matrix((a.demand[ii], (jj, np.arange(nv))), shape=(n, nv)).tocsr()
    b_ub = a.usable * scale
    bounds: list[tuple[float, float | None]] = [(0.0, None)] * nv
    if local_first:
        for v in np.nonzero(ii == jj)[0]:
            i = int(ii[v])
            bounds[v] = (min(1.0, a.usable[i] * scale / a.demand[i]) * (1 - 1e-9), None)
    return _Lp((ii, jj), cost, a_eq, b_eq, a_ub, b_ub, bounds, scale)


def full_matrix_scale(a: Arrays) -> float:
    """The overload scale when every pair is reachable (no LP needed)."""
    return max(1.0, float(a.demand.sum() / a.usable.sum()))


def oracle_optimum(a: Arrays, *, local_first: bool = True, scale: float | None = None) -> float:
    """Optimal latency-weighted cost (scipy linprog, HiGHS) of the same problem.

    With `local_first`, a region serves min(demand, usable x scale) locally, as the planner's
    rules require; if that makes it infeasible (partial matrices), without it.
    """
    for lf in (True, False) if local_first else (False,):
        lp = _build(a, lf, scale)
        if lp is None:
            raise AssertionError("oracle: some demand reaches no capacity and was not stranded")
        if lp.cost.size == 0:
            return 0.0
        res = linprog(
            lp.cost,
            A_ub=lp.a_ub,
            b_ub=lp.b_ub,
            A_eq=lp.a_eq,
            b_eq=lp.b_eq,
            bounds=lp.bounds,
            method="highs",
        )
        if res.status == 0:
            return float(res.fun)
    raise AssertionError("oracle: infeasible")


def oracle_least_movement(
    a: Arrays, prev: FloatArray, cost_bound: float, *, scale: float | None = None
) -> float:
    """Least traffic (req/s, 1/2 demand-weighted L1) any feasible plan with cost <= bound must
    move away from the previous shares `prev`."""
    for lf in (True, False):
        lp = _build(a, lf, scale)
        assert lp is not None
        ii, jj = lp.pairs
        nv = ii.size
        n = len(a.names)
        if nv == 0:  # nothing to place: every client stays local
            return float((a.demand[:, None] * np.abs(np.eye(n) - prev)).sum() / 2.0)
        # variables: x (nv), then u (n*n) with u >= |x - prev| over all pairs
        d = a.demand
        c = np.concatenate([np.zeros(nv), np.repeat(d, n)])
        pair_idx = ii * n + jj
        # x - u <= prev ; -x - u <= -prev (for pairs with a variable); -u <= -prev elsewhere
        eye_u = coo_matrix(
            (-np.ones(n * n), (np.arange(n * n), nv + np.arange(n * n))), shape=(n * n, nv + n * n)
        )
        xpart = coo_matrix((np.ones(nv), (pair_idx, np.arange(nv))), shape=(n * n, nv + n * n))
        pflat = prev.ravel()
        a1 = (xpart + eye_u).tocsr()
        a2 = (-xpart + eye_u).tocsr()
        lp_ub = lp.a_ub.copy()
        lp_ub.resize((n, nv + n * n))
        cost_row = csr_matrix(
            (lp.cost, (np.zeros(nv, dtype=int), np.arange(nv))), shape=(1, nv + n * n)
        )
        a_ub = vstack([a1, a2, lp_ub, cost_row]).tocsr()
        b_ub = np.concatenate([pflat, -pflat, lp.b_ub, [cost_bound]])
        a_eq = lp.a_eq.copy()
        a_eq.resize((a_eq.shape[0], nv + n * n))
        # rows of clients outside the LP keep their (local) share: movement to it counts
        fixed = np.zeros((n, n))
        has_row = np.zeros(n, dtype=bool)
        has_row[ii] = True
        for i in np.nonzero(~has_row)[0]:
            fixed[i, i] = 1.0
        res = linprog(
            c,
            A_ub=a_ub,
            b_ub=b_ub,
            A_eq=a_eq,
            b_eq=lp.b_eq,
            bounds=lp.bounds + [(0.0, None)] * (n * n),
            method="highs",
        )
        if res.status != 0:
            continue
        x = np.zeros((n, n))
        x[ii, jj] = res.x[:nv]
        x[~has_row] = fixed[~has_row]
        return float((d[:, None] * np.abs(x - prev)).sum() / 2.0)
    raise AssertionError("oracle: least-movement LP infeasible")
