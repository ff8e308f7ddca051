"""Benchmark of the region-routing planner against scipy's LP (HiGHS) on the same problems.

For each size, on random topologies (regions on a plane, latency 2 ms + 150 ms per unit
distance, demand/usable capacity between 0.3 and 1.3, a third with a partial latency matrix):

- plan time, optimum alone: `plan(facts)` with no previous plan (everything from Facts to Plan);
- plan time, both steps: `plan(facts', previous)` after one region's ready replicas change
  (hysteresis 0, so every event re-plans);
- cost gap: the plan's latency-weighted cost / the scipy LP optimum of the same problem - 1;
- movement ratio: traffic the plan moves / the least any feasible plan within 2% of the
  optimum must move (scipy LP);
- the peer: scipy `linprog(method="highs")` on the same LP written plainly (one variable per
  client/edge pair), timed on the full-matrix topologies: the optimum, and optimum + least
  movement.

Run from the repository root:
    .venv/bin/python bench/routing/bench_routing.py [--sizes 10,100,500] [--topologies N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "operator"))

from tests.unit.routing.routing_oracle import (  # noqa: E402
    arrays,
    full_matrix_scale,
    oracle_least_movement,
    oracle_optimum,
    plan_cost,
    random_facts,
    shares_of,
)

from aerocdn.routing import Facts, Policy, moved_traffic, plan  # noqa: E402

T = TypeVar("T")
POLICY = Policy(hysteresis=0)
DEFAULT_TOPOLOGIES = {10: 200, 100: 100, 500: 20}
ORACLE_LIMIT = {10: 200, 100: 100, 500: 5}  # scipy's movement LP is slow at 500 regions


@dataclass
class Row:
    n: int
    t_opt: list[float] = field(default_factory=list)
    t_both: list[float] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)
    gaps_first: list[float] = field(default_factory=list)
    cpu_opt: list[float] = field(default_factory=list)
    cpu_both: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    peer_opt: list[float] = field(default_factory=list)
    peer_both: list[float] = field(default_factory=list)
    ours_opt_full: list[float] = field(default_factory=list)
    ours_both_full: list[float] = field(default_factory=list)
    overloaded: int = 0


def _timed(fn: Callable[[], T], cpu: list[float] | None = None) -> tuple[float, T]:
    """Wall time of fn(); its CPU time (process) is appended to `cpu` when given."""
    c0 = time.process_time()
    t0 = time.perf_counter()
    out = fn()
    wall = time.perf_counter() - t0
    if cpu is not None:
        cpu.append(time.process_time() - c0)
    return wall, out


def _scale_event(facts: Facts, seed: int) -> Facts:
    rng = np.random.default_rng(seed + 10_000)
    regions = list(facts.regions)
    k = int(rng.integers(0, len(regions)))
    r = regions[k]
    delta = int(rng.choice([-2, -1, 1, 2]))
    replicas = max(0, r.ready_replicas + delta)
    if replicas == r.ready_replicas:
        replicas += 1
    regions[k] = r.model_copy(update={"ready_replicas": replicas})
    return facts.model_copy(update={"regions": tuple(regions)})


def run_size(n: int, topologies: int, oracle_limit: int) -> Row:
    row = Row(n)
    plan(random_facts(0, n), POLICY)  # warm up (imports, HiGHS instance)
    for seed in range(topologies):
        is_partial = seed % 3 == 0
        facts = random_facts(seed, n, partial=is_partial)
        t_opt, before = _timed(partial(plan, facts, POLICY), row.cpu_opt)
        after_facts = _scale_event(facts, seed)
        t_both, after = _timed(partial(plan, after_facts, POLICY, before), row.cpu_both)
        row.t_opt.append(t_opt)
        row.t_both.append(t_both)
        row.overloaded += int(after.overloaded)
        if seed >= oracle_limit:
            continue
        a0 = arrays(facts, POLICY)
        first_optimum = oracle_optimum(a0, scale=None if is_partial else full_matrix_scale(a0))
        first_cost = plan_cost(a0, shares_of(a0, before))
        row.gaps_first.append(first_cost / first_optimum - 1.0 if first_optimum > 0 else 0.0)
        a = arrays(after_facts, POLICY)
        scale = None if is_partial else full_matrix_scale(a)
        t_peer_opt, optimum = _timed(partial(oracle_optimum, a, scale=scale))
        cost = plan_cost(a, shares_of(a, after))
        row.gaps.append(cost / optimum - 1.0 if optimum > 0 else 0.0)
        prev = shares_of(a, before)
        t_peer_move, least = _timed(
            partial(oracle_least_movement, a, prev, 1.02 * optimum, scale=scale)
        )
        moved = moved_traffic(before, after)
        if least > 1e-6 * float(a.demand.sum()):
            row.ratios.append(moved / least)
        elif moved <= 1e-6 * float(a.demand.sum()):
            row.ratios.append(1.0)
        else:
            row.ratios.append(float("inf"))
        if not is_partial:  # the peer is timed on the same full-matrix LPs
            row.peer_opt.append(t_peer_opt)
            row.peer_both.append(t_peer_opt + t_peer_move)
            row.ours_opt_full.append(t_opt)
            row.ours_both_full.append(t_both)
    return row


def _ms(values: Sequence[float], q: float) -> str:
    if not values:
        return "-"
    return f"{np.quantile(np.asarray(values), q) * 1e3:.2f}"


def _machine() -> str:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()
    return (
        f"nproc={os.cpu_count()}, CPU: {model}, Python {platform.python_version()}, "
        f"load average at end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--sizes", default="10,100,500")
    parser.add_argument("--topologies", type=int, default=0, help="per size (0: defaults)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for n in sizes:
        count = args.topologies or DEFAULT_TOPOLOGIES.get(n, 20)
        t0 = time.perf_counter()
        rows.append(run_size(n, count, min(count, ORACLE_LIMIT.get(n, 5))))
        print(
            f"# {n} regions: {count} topologies in {time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
        )
    print(
        "| regions | topologies | optimum alone (ms): wall median / p95; CPU median / p95 "
        "| both steps (ms): wall median / p95; CPU median / p95 | cost gap to LP, max: "
        "no previous plan; after a scale event | moved / least movement, median / max "
        "| overloaded after event |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        gap = (
            f"{max(r.gaps_first) * 100:.5f}%; {max(r.gaps) * 100:.4f}% (n={len(r.gaps)})"
            if r.gaps
            else "-"
        )
        ratio = (
            f"{statistics.median(r.ratios):.4f} / {max(r.ratios):.4f} (n={len(r.ratios)})"
            if r.ratios
            else "-"
        )
        print(
            f"| {r.n} | {len(r.t_opt)} | {_ms(r.t_opt, 0.5)} / {_ms(r.t_opt, 0.95)}; "
            f"{_ms(r.cpu_opt, 0.5)} / {_ms(r.cpu_opt, 0.95)} "
            f"| {_ms(r.t_both, 0.5)} / {_ms(r.t_both, 0.95)}; "
            f"{_ms(r.cpu_both, 0.5)} / {_ms(r.cpu_both, 0.95)} | {gap} | {ratio} "
            f"| {r.overloaded} |"
        )
    print()
    print("Peer, same run, full-matrix topologies only: scipy linprog (HiGHS) on the plain LP.")
    print()
    print(
        "| regions | LPs | ours optimum median ms | scipy optimum median ms | ratio "
        "| ours both steps median ms | scipy both median ms | ratio |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        if not r.peer_opt:
            continue
        o, po = statistics.median(r.ours_opt_full), statistics.median(r.peer_opt)
        b, pb = statistics.median(r.ours_both_full), statistics.median(r.peer_both)
        print(
            f"| {r.n} | {len(r.peer_opt)} | {o * 1e3:.2f} | {po * 1e3:.2f} | {o / po:.3f} "
            f"| {b * 1e3:.2f} | {pb * 1e3:.2f} | {b / pb:.3f} |"
        )
    print()
    print(f"Machine: {_machine()}")
    print("CPU = process CPU time (time.process_time), less sensitive to other load than wall.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
