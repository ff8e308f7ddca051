"""Transportation LPs solved exactly with HiGHS (highspy), by column generation.

Sources (client regions with demand to place) send flow to sinks (edge regions with capacity)
along reachable arcs. Two objectives:

- `solve_transport(..., prev=None)`: minimise latency-weighted cost (step 1, the optimum);
- `solve_transport(..., prev=P, cost_bound=B)`: minimise the L1 distance sum |f - P| to the
  previous flows subject to the same constraints and cost <= B (step 2, least movement).

Only each source's `k` nearest sinks start as columns; the LP is then priced against every
reachable arc with the row duals and violated arcs are added (warm-started re-solve) until no
arc has a negative reduced cost, so the result is the optimum of the full problem, not of the
restricted one. If the restricted problem is infeasible, all reachable arcs are added.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass

import highspy
import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

K_NEAREST = 6
_EPS_TIEBREAK = 1e-6  # step 2: among least-movement plans prefer lower latency
_RC_TOL = 1e-9
_MAX_ROUNDS = 30
# Columns priced in per source and round: partial pricing helps step 1 a little; step 2's
# reduced costs are flat (movement costs 1 everywhere), so adding every improving arc at once
# takes far fewer rounds (measured at 100 regions: CPU p95 43 ms -> 16 ms for both steps).
ADD_PER_ROW = 3
ADD_PER_ROW_MOVE = 10**9
_INF = highspy.kHighsInf

_local = threading.local()


def _quiet_highs() -> highspy.Highs:
    """A Highs instance without the banner HiGHS writes to the process's stdout (fd 1) when
    the first one is created: `aerocdn render` prints YAML on stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
            return highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _highs() -> highspy.Highs:
    h: highspy.Highs | None = getattr(_local, "highs", None)
    if h is None:
        h = _quiet_highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("random_seed", 0)
        # Presolve costs more than it saves on these small, already-reduced LPs (measured:
        # ~10 ms -> ~5 ms per plan at 100 regions) and would discard the warm start.
        h.setOptionValue("presolve", "off")
        _local.highs = h
    h.clearModel()
    return h


@dataclass(frozen=True)
class TransportResult:
    flows: FloatArray  # (m, q) in the caller's units
    cost: float  # sum cost * flows
    rounds: int  # LP solves (1 = the k-nearest restriction was already optimal)
    columns: int  # columns in the final LP
    arcs: BoolArray  # arcs that were columns of the final LP (a good start for step 2)


def _greedy_arcs(
    sup: FloatArray, cap: FloatArray, reach: BoolArray, order: npt.NDArray[np.intp]
) -> BoolArray:
    """Arcs used by placing each source's supply on its nearest sinks with room, in turn."""
    m, q = reach.shape
    arcs = np.zeros((m, q), dtype=bool)
    room = cap.copy()
    for i in range(m):
        o = order[i][reach[i, order[i]]]
        avail = np.clip(room[o], 0.0, None)
        filled = np.cumsum(avail)
        last = int(np.searchsorted(filled, sup[i] * (1 - 1e-12)))
        use = o[: last + 1]
        arcs[i, use] = True
        take = np.minimum(avail[: last + 1], sup[i] - (filled[: last + 1] - avail[: last + 1]))
        room[use] -= np.clip(take, 0.0, None)
    return arcs


def solve_transport(
    supply: FloatArray,
    cap: FloatArray,
    cost: FloatArray,
    *,
    prev: FloatArray | None = None,
    cost_bound: float | None = None,
    include: BoolArray | None = None,
    k: int = K_NEAREST,
) -> TransportResult | None:
    """Solve a transportation LP; `cost[i, j] = inf` marks an unreachable arc.

    Returns None when infeasible. `include` forces arcs into the first restricted LP (for step 2:
    the final columns of step 1, which contain its optimum, so it is feasible at once).
    """
    m, q = cost.shape
    reach = np.isfinite(cost)
    total = float(supply.sum())
    if m == 0 or total <= 0:
        return TransportResult(np.zeros((m, q)), 0.0, 0, 0, np.zeros((m, q), dtype=bool))
    fscale = total
    finite = cost[reach]
    lscale = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    ln = np.where(reach, cost, 0.0) / lscale
    sup = supply / fscale
    cp = cap / fscale
    move = prev is not None
    pn = np.zeros((m, q)) if prev is None else np.where(reach, prev, 0.0) / fscale
    has_prev = pn > 0

    # Initial candidate arcs: k nearest reachable sinks per source, plus forced arcs, plus (when
    # nothing forced makes it feasible) the arcs of a greedy nearest-first placement, so that
    # the restricted LP is feasible whenever the greedy one is.
    cand = np.zeros((m, q), dtype=bool)
    kk = min(k, q)
    order = np.argsort(np.where(reach, cost, np.inf), axis=1, kind="stable")
    cand[np.repeat(np.arange(m), kk), order[:, :kk].ravel()] = True
    cand &= reach
    if include is not None:
        cand |= include & reach
    else:
        cand |= _greedy_arcs(sup, cp, reach, order)
    cand |= has_prev

    # Row bounds: m supply rows (=), q capacity rows (<=), [cost row (<=)].
    nrow = m + q + (1 if move else 0)
    row_lo = np.empty(nrow)
    row_hi = np.empty(nrow)
    row_lo[:m] = row_hi[:m] = sup - pn.sum(axis=1)
    row_lo[m : m + q] = -_INF
    row_hi[m : m + q] = cp - pn.sum(axis=0)
    if move:
        assert cost_bound is not None
        row_lo[m + q] = -_INF
        row_hi[m + q] = cost_bound / (fscale * lscale) - float((ln * pn).sum())

    # Column bookkeeping: arc (i, j), sign (+1 adds flow, -1 removes previous flow).
    col_i: list[npt.NDArray[np.intp]] = []
    col_j: list[npt.NDArray[np.intp]] = []
    col_s: list[FloatArray] = []

    def build(
        mask_plus: BoolArray, mask_minus: BoolArray
    ) -> tuple[
        int,
        FloatArray,
        FloatArray,
        FloatArray,
        npt.NDArray[np.int32],
        npt.NDArray[np.int32],
        FloatArray,
    ]:
        ip, jp = np.nonzero(mask_plus)
        im, jm = np.nonzero(mask_minus)
        ii = np.concatenate([ip, im])
        jj = np.concatenate([jp, jm])
        ss = np.concatenate([np.ones(ip.size), -np.ones(im.size)])
        lc = ln[ii, jj]
        if move:
            obj = 1.0 + ss * _EPS_TIEBREAK * lc
            upper = np.where(ss > 0, _INF, pn[ii, jj])
        else:
            obj = lc.copy()
            upper = np.full(ii.size, _INF)
        n = ii.size
        per = 3 if move else 2
        starts = np.arange(0, per * n, per, dtype=np.int32)
        index = np.empty((n, per), dtype=np.int32)
        value = np.empty((n, per), dtype=np.float64)
        index[:, 0] = ii
        index[:, 1] = m + jj
        value[:, 0] = ss
        value[:, 1] = ss
        if move:
            index[:, 2] = m + q
            value[:, 2] = ss * lc
        col_i.append(ii)
        col_j.append(jj)
        col_s.append(ss)
        return n, obj, np.zeros(n), upper, starts, index.ravel(), value.ravel()

    h = _highs()
    n, obj, lo, up, starts, index, value = build(cand, has_prev if move else np.zeros_like(cand))
    lp = highspy.HighsLp()
    lp.num_col_ = n
    lp.num_row_ = nrow
    lp.col_cost_ = obj
    lp.col_lower_ = lo
    lp.col_upper_ = up
    lp.row_lower_ = row_lo
    lp.row_upper_ = row_hi
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.num_col_ = n
    lp.a_matrix_.num_row_ = nrow
    lp.a_matrix_.start_ = np.append(starts, np.int32(index.size)).astype(np.int32)
    lp.a_matrix_.index_ = index
    lp.a_matrix_.value_ = value
    h.passModel(lp)

    rounds = 0
    add_per_row = ADD_PER_ROW_MOVE if move else ADD_PER_ROW
    full = bool((cand == reach).all())
    while True:
        h.run()
        rounds += 1
        status = h.getModelStatus()
        if status != highspy.HighsModelStatus.kOptimal:
            if full:
                return None
            new = reach & ~cand
            full = True
        else:
            y = np.asarray(h.getSolution().row_dual)
            ys = y[:m]
            yk = y[m : m + q]
            rc = (1.0 + _EPS_TIEBREAK * ln) if move else ln.copy()
            rc = rc - ys[:, None] - yk[None, :]
            if move:
                rc = rc - ln * y[m + q]
            new = reach & ~cand & (rc < -_RC_TOL)
            if not new.any():
                break
            # Partial pricing: per source only its most negative few arcs enter.
            per_row = new.sum(axis=1)
            if per_row.max() > add_per_row:
                masked = np.where(new, rc, np.inf)
                keep = np.argpartition(masked, add_per_row - 1, axis=1)[:, :add_per_row]
                limited = np.zeros_like(new)
                limited[np.arange(m)[:, None], keep] = True
                new &= limited
            if rounds >= _MAX_ROUNDS:
                new = reach & ~cand
                full = True
        cand |= new
        if (cand == reach).all():
            full = True
        n, obj, lo, up, starts, index, value = build(new, np.zeros_like(new))
        h.addCols(n, obj, lo, up, index.size, starts, index, value)

    x = np.asarray(h.getSolution().col_value)
    ii = np.concatenate(col_i)
    jj = np.concatenate(col_j)
    ss = np.concatenate(col_s)
    f = pn.copy()
    np.add.at(f, (ii, jj), ss * x)
    f = np.clip(f, 0.0, None) * fscale
    f[~reach] = 0.0
    return TransportResult(
        flows=f,
        cost=float((np.where(reach, cost, 0.0) * f).sum()),
        rounds=rounds,
        columns=int(ii.size),
        arcs=cand,
    )


def min_uniform_scale(demand: FloatArray, cap: FloatArray, reach: BoolArray) -> float | None:
    """Least t such that every source's demand fits with every sink's capacity scaled by t.

    Used only when the plain problem is infeasible because some demand can reach too little
    capacity (a partial latency matrix). None when some demand can reach no capacity at all.
    """
    m, q = reach.shape
    ii, jj = np.nonzero(reach)
    n = ii.size
    # columns: arcs, then t
    starts = np.append(np.arange(0, 2 * n, 2), 2 * n).astype(np.int32)
    index = np.empty((n, 2), dtype=np.int32)
    index[:, 0] = ii
    index[:, 1] = m + jj
    value = np.ones((n, 2))
    t_index = (m + np.arange(q)).astype(np.int32)
    t_value = -cap
    lp = highspy.HighsLp()
    lp.num_col_ = n + 1
    lp.num_row_ = m + q
    lp.col_cost_ = np.append(np.zeros(n), 1.0)
    lp.col_lower_ = np.zeros(n + 1)
    lp.col_upper_ = np.full(n + 1, _INF)
    total = float(demand.sum()) or 1.0
    lp.row_lower_ = np.concatenate([demand / total, np.full(q, -_INF)])
    lp.row_upper_ = np.concatenate([demand / total, np.zeros(q)])
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.num_col_ = n + 1
    lp.a_matrix_.num_row_ = m + q
    lp.a_matrix_.start_ = np.append(starts, np.int32(2 * n + q)).astype(np.int32)
    lp.a_matrix_.index_ = np.concatenate([index.ravel(), t_index]).astype(np.int32)
    lp.a_matrix_.value_ = np.concatenate([value.ravel(), t_value / total])
    h = _highs()
    h.passModel(lp)
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    return float(np.asarray(h.getSolution().col_value)[-1])
