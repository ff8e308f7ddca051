"""Several origins: which route a request takes and which origins it tries, in what order.

Pure decisions (``choose_route``, ``attempt_order``, ``smooth_weighted``) and ``OriginSet``,
the per-process state they read: one circuit breaker per origin (``aerocdn.edge.breaker``)
and the smooth-weighted-round-robin counters of each group.  ``Filler.origin_request`` is
the only caller that sends anything.

The model (ContentEdge spec.origins / spec.routes):

- a route (the longest ``pathPrefix`` that is a prefix of the canonical path) names an
  origin *group*; requests no route matches use the group ``default``;
- within a group, a request goes to the best (lowest) priority that has an origin whose
  circuit is not open, chosen among those by smooth weighted round robin (deterministic: of
  every ``sum(weights)`` requests each origin gets exactly its weight); on a connect error, a
  timeout or a 5xx it fails over to the next origin of that priority (by weight), then to
  the next priorities, at most ``originAttempts`` origins in all, within the fetch deadline;
- an origin whose circuit is open is skipped; when every origin of the group is open, the
  request still tries the preferred one (a request is never failed without asking an
  origin - the behaviour of a single origin before there were breakers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aerocdn.edge.breaker import CircuitBreaker
from aerocdn.edge.config import EdgeConfig, OriginConfig, RouteConfig


def choose_route(routes: Sequence[RouteConfig], path: str) -> int | None:
    """Index of the route with the longest pathPrefix that ``path`` (canonical) starts with;
    None when none matches.  Prefixes are unique, so the answer is unique."""
    best: int | None = None
    best_len = -1
    for i, r in enumerate(routes):
        if len(r.path_prefix) > best_len and path.startswith(r.path_prefix):
            best, best_len = i, len(r.path_prefix)
    return best


def smooth_weighted(origins: Sequence[OriginConfig], current: Mapping[str, int]
                    ) -> tuple[OriginConfig, dict[str, int]]:
    """nginx's smooth weighted round robin: every candidate's counter grows by its weight,
    the largest counter wins (ties: the earlier origin) and pays the sum of the weights.
    Returns the pick and the new counters (of these candidates; others kept)."""
    new = dict(current)
    total = 0
    pick: OriginConfig | None = None
    for o in origins:
        new[o.name] = new.get(o.name, 0) + o.weight
        total += o.weight
        if pick is None or new[o.name] > new[pick.name]:
            pick = o
    assert pick is not None, "smooth_weighted needs at least one origin"
    new[pick.name] -= total
    return pick, new


def attempt_order(origins: Sequence[OriginConfig], usable: frozenset[str] | set[str],
                  current: Mapping[str, int]) -> tuple[list[OriginConfig], dict[str, int]]:
    """The origins one request tries, in order, and the group's new round-robin counters.

    ``usable``: names of origins whose circuit is not open.  The best priority with a usable
    origin gives the first (smooth weighted round robin) and then its other usable origins
    (heavier first); then the usable origins of the next priorities.  With none usable: every
    origin by priority (the caller tries the first).
    """
    levels = sorted({o.priority for o in origins})
    order: list[OriginConfig] = []
    new = dict(current)
    for p in levels:
        level = [o for o in origins if o.priority == p and o.name in usable]
        if not level:
            continue
        rest = sorted(level, key=lambda o: (-o.weight, o.name))
        if not order:
            pick, new = smooth_weighted(level, current)
            rest = [pick] + [o for o in rest if o.name != pick.name]
        order += rest
    if not order:
        order = sorted(origins, key=lambda o: (o.priority, -o.weight, o.name))
    return order, new


@dataclass
class OriginState:
    origin: OriginConfig
    breaker: CircuitBreaker


class OriginSet:
    """The origins of one edge process: a breaker each, round-robin counters per group."""

    def __init__(self, cfg: EdgeConfig):
        self.origins = {o.name: OriginState(
            o, CircuitBreaker(cfg.circuit_failures, cfg.circuit_open_seconds))
            for o in cfg.origin_list}
        self.groups: dict[str, tuple[OriginConfig, ...]] = {}
        for o in cfg.origin_list:
            self.groups[o.group] = (*self.groups.get(o.group, ()), o)
        self._rr: dict[str, dict[str, int]] = {g: {} for g in self.groups}
        self.attempts = cfg.origin_attempts

    def plan(self, group: str, now: float) -> list[OriginConfig]:
        """The origins a request of ``group`` tries, in order (at most ``attempts``)."""
        members = self.groups[group]
        if len(members) == 1:
            return list(members)
        usable = {o.name for o in members
                  if self.origins[o.name].breaker.state(now) != "open"}
        order, self._rr[group] = attempt_order(members, usable, self._rr[group])
        return order[:self.attempts]

    def breaker(self, name: str) -> CircuitBreaker:
        return self.origins[name].breaker

    def status(self, now: float) -> dict[str, dict[str, Any]]:
        """Per origin: group, priority, weight, circuit state and the last error (the admin
        ``/origins`` answer the operator reads for the ContentEdge's status)."""
        out: dict[str, dict[str, Any]] = {}
        for name, st in self.origins.items():
            b = st.breaker
            out[name] = {"group": st.origin.group, "priority": st.origin.priority,
                         "weight": st.origin.weight, "circuit": b.state(now),
                         **({"lastError": b.last_error} if b.last_error else {})}
        return out
