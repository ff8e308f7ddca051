"""Origin health of a ContentEdge with spec.origins, as its edge pods see it.

Each edge pod keeps one circuit breaker per origin and answers ``GET /origins`` on its admin
port (``aerocdn.edge.app``).  The reconcile asks the pods at most every ``poll_seconds`` per
ContentEdge (one Pod list from the API, then one small HTTP call per pod; in between it reuses
the last answer, so an idle reconcile costs nothing more), summarises them here (pure) into
``status.origins`` and the ``OriginsHealthy`` condition, and the status is written only when
that summary changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from aerocdn.api.contentedge import NamedOrigin, OriginHealth
from aerocdn.controller.conditions import Cond
from aerocdn.controller.purgeplan import ADMIN_PORT, EdgePod

CALL_TIMEOUT = aiohttp.ClientTimeout(total=3, connect=2)


@dataclass
class Polled:
    at: float  # monotonic time of the poll
    reports: dict[str, dict[str, Any] | None]  # pod -> its /origins answer (None: no answer)


def due(last: Polled | None, now: float, poll_seconds: float) -> bool:
    return last is None or now - last.at >= poll_seconds


def summarize(origins: Sequence[NamedOrigin], reports: Mapping[str, dict[str, Any] | None]
              ) -> list[OriginHealth]:
    """Per origin: how many of the answering pods see its circuit closed; ``Healthy`` when all
    do, ``Down`` when none does, ``Degraded`` in between, ``Unknown`` when no pod answered;
    the first pod's last error (by pod name) as a sample.  Deterministic: the same reports
    give the same summary (no time in it), so an unchanged health writes nothing."""
    answered = {pod: r for pod, r in sorted(reports.items()) if isinstance(r, dict)}
    out = []
    for o in origins:
        seen = [((r.get("origins") or {}).get(o.name) or {}) for r in answered.values()]
        seen = [s for s in seen if s]
        closed = sum(1 for s in seen if s.get("circuit") == "closed")
        if not seen:
            state = "Unknown"
        elif closed == len(seen):
            state = "Healthy"
        elif closed == 0:
            state = "Down"
        else:
            state = "Degraded"
        error = next((s["lastError"] for s in seen if s.get("circuit") != "closed"
                      and s.get("lastError")), None)
        out.append(OriginHealth(name=o.name, group=o.group, priority=o.priority, state=state,
                                pods_up=f"{closed}/{len(seen)}", last_error=error))
    return out


def condition(health: Sequence[OriginHealth]) -> Cond:
    bad = [h for h in health if h.state in ("Down", "Degraded")]
    if bad:
        return Cond("OriginsHealthy", False, "OriginDown" if any(
            h.state == "Down" for h in bad) else "OriginDegraded", "; ".join(
            f"origin {h.name} (group {h.group}) {h.state.lower()}: circuit closed on "
            f"{h.pods_up} edge pods" + (f", last error: {h.last_error}" if h.last_error
                                        else "") for h in bad) +
            ": requests fail over to the other origins of the group; check the origin")
    if health and all(h.state == "Unknown" for h in health):
        return Cond("OriginsHealthy", False, "NoReport",
                    "no edge pod answered on its admin port yet")
    return Cond("OriginsHealthy", True, "AsExpected",
                f"{len(health)} origins healthy on every edge pod that answered")


async def poll(pods: Sequence[EdgePod], addresses: Mapping[str, str]
               ) -> dict[str, dict[str, Any] | None]:
    """Each running pod's ``/origins`` answer (None when it gives none)."""

    async def one(session: aiohttp.ClientSession, pod: EdgePod) -> dict[str, Any] | None:
        assert pod.ip is not None
        admin = addresses.get(pod.name) or (
            f"[{pod.ip}]:{ADMIN_PORT}" if ":" in pod.ip else f"{pod.ip}:{ADMIN_PORT}")
        try:
            async with session.get(f"http://{admin}/origins") as r:
                if r.status != 200:
                    return None
                data = await r.json(content_type=None)
                return data if isinstance(data, dict) else None
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
            return None

    running = [p for p in pods if p.ip is not None]
    async with aiohttp.ClientSession(timeout=CALL_TIMEOUT) as session:
        answers = await asyncio.gather(*(one(session, p) for p in running))
    return {p.name: a for p, a in zip(running, answers, strict=True)}
