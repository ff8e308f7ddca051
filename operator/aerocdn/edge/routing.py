"""The routing plan as the edge reads it (routes.json), and its hot reload.

The file is parsed with the operator's own model (``aerocdn.routing.model.Plan.from_json``).
Pure part: ``cluster_order`` turns a plan into the ordered L2 clusters of one region.
Shell part: ``PlanWatcher`` polls the file's identity (inode, mtime, size of the resolved path:
ConfigMap volumes swap a ``..data`` symlink) and swaps an immutable snapshot; requests in flight
keep the snapshot they started with, so a reload never drops one.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from aerocdn.routing.model import Plan

log = logging.getLogger("aerocdn.edge.routing")


@dataclass(frozen=True)
class RoutingSnapshot:
    generation: int | None
    order: tuple[str, ...]  # cache clusters, preferred first
    source: str  # "plan" | "config" (no usable plan yet)
    error: str = ""


def cluster_order(plan: Plan | None, region: str, configured: tuple[str, ...]) -> tuple[str, ...]:
    """Clusters in the plan's order for ``region``, only those this edge has a config for;
    weight 0 (drained) left out.  No plan, or no route for the region: configured order."""
    if plan is None:
        return configured
    routes = plan.cache_routes.get(region)
    if not routes:
        return configured
    out: list[str] = []
    for r in routes:
        if r.cache_cluster in configured and r.cache_cluster not in out and r.weight > 0:
            out.append(r.cache_cluster)
    return tuple(out) if out else configured


class PlanWatcher:
    def __init__(self, path: str, region: str, configured: tuple[str, ...],
                 on_change: Callable[[RoutingSnapshot], None] | None = None):
        self.path = path
        self.region = region
        self.configured = configured
        self.snapshot = RoutingSnapshot(None, configured, "config")
        self._identity: tuple[int, int, int] | None = None
        self._on_change = on_change
        self.reloads = 0
        self.errors = 0

    def poll(self) -> bool:
        """Reload if the file changed; True when a new snapshot was installed."""
        try:
            st = os.stat(self.path)  # follows the ..data symlink
        except FileNotFoundError:
            if self._identity is not None:
                self.snapshot = RoutingSnapshot(self.snapshot.generation, self.snapshot.order,
                                                self.snapshot.source, f"{self.path}: missing")
            return False
        ident = (st.st_ino, st.st_mtime_ns, st.st_size)
        if ident == self._identity:
            return False
        self._identity = ident
        try:
            with open(self.path) as f:
                plan = Plan.from_json(f.read(), self.path)
        except (OSError, ValueError) as e:
            self.errors += 1
            log.warning("routing plan not reloaded, keeping generation %s: %s",
                        self.snapshot.generation, e)
            self.snapshot = RoutingSnapshot(self.snapshot.generation, self.snapshot.order,
                                            self.snapshot.source, str(e))
            return False
        self.snapshot = RoutingSnapshot(
            plan.generation, cluster_order(plan, self.region, self.configured), "plan"
        )
        self.reloads += 1
        log.info("routing plan generation %s: cache clusters %s", plan.generation,
                 list(self.snapshot.order))
        if self._on_change is not None:
            self._on_change(self.snapshot)
        return True

    async def run(self, interval: float) -> None:
        while True:
            try:
                self.poll()
            except Exception:  # never let the watcher die
                log.exception("routing plan poll failed")
            await asyncio.sleep(interval)
