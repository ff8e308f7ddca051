"""Carrying out a ContentPurge, as pure functions: which edge pods of which region still need
the purge (given the ContentEdge's edge pods and the status so far), what each pod's answer
means, and the status that follows. The shell (contentpurge.py) lists the pods, calls the due
ones and writes what these functions return.

A pod is asked with the edge's admin ``POST /purge`` as a peer call (no fan-out): each pod
purges its own nginx (L1) and writes the purge rule into every cache cluster it uses (L2), and
answers for itself, so every pod is confirmed on its own. A pod that fails is retried with
capped backoff; a pod that left the ContentEdge is dropped (its cache left with it); a pod
that appears before the purge completes must confirm too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aerocdn.api.contentpurge import ContentPurgeSpec, ContentPurgeStatus, PodPurge, RegionPurge
from aerocdn.edge.config import host_allowed

ADMIN_PORT = 9091
BACKOFF_BASE = 2.0
BACKOFF_MAX = 60.0
CONFIRMED, PENDING, ERROR = "Confirmed", "Pending", "Error"


@dataclass(frozen=True)
class EdgePod:
    """What the planner needs of one edge pod."""

    name: str
    region: str
    ip: str | None  # None: not started yet (no address)


@dataclass(frozen=True)
class Invalid:
    """A spec the ContentEdge cannot carry out (a host it does not serve): permanent."""

    field: str
    message: str


def edge_pods(pods: Sequence[Mapping[str, Any]]) -> list[EdgePod]:
    """Edge pods from Pod objects: terminating and finished pods are gone already (their
    cache with them)."""
    out = []
    for p in pods:
        meta = p.get("metadata") or {}
        status = p.get("status") or {}
        if meta.get("deletionTimestamp") or status.get("phase") in ("Succeeded", "Failed"):
            continue
        region = (meta.get("labels") or {}).get("aerocdn.dev/region", "")
        ip = status.get("podIP") if status.get("phase") == "Running" else None
        out.append(EdgePod(meta["name"], region, ip or None))
    return sorted(out, key=lambda e: (e.region, e.name))


def edge_target(value: str) -> str:
    """The target as sent to the edge: with a scheme, so the edge's split at the first
    '://' is the scheme's even when the query holds one (u=http://...)."""
    return value if value.startswith(("http://", "https://")) else "http://" + value


def bodies(spec: ContentPurgeSpec) -> list[dict[str, Any]]:
    """One ``POST /purge`` body per target."""
    soft: dict[str, Any] = {"soft": True} if spec.soft else {}
    return ([{"url": edge_target(u), **soft} for u in spec.urls] +
            [{"prefix": edge_target(p), **soft} for p in spec.prefixes] +
            [{"tag": t, **soft} for t in spec.tags])


def check_hosts(spec: ContentPurgeSpec, hosts: Sequence[str]) -> Invalid | None:
    """Every target's host must be one the ContentEdge serves (the edge refuses others)."""
    for field, values in (("urls", spec.urls), ("prefixes", spec.prefixes)):
        for i, value in enumerate(values):
            rest = value.split("://", 1)[1] if value.startswith(("http://", "https://")) \
                else value
            host = rest.split("/", 1)[0].split(":", 1)[0]
            if not host_allowed(tuple(hosts), host):
                return Invalid(f"spec.{field}[{i}]",
                               f"host {host!r} is not served by ContentEdge "
                               f"{spec.content_edge_ref.name} (its hosts: {', '.join(hosts)})")
    return None


@dataclass(frozen=True)
class Plan:
    due: list[EdgePod]  # call these now
    status: ContentPurgeStatus  # the status before their answers (pods that left dropped)
    requeue: float | None  # seconds until the next pod is due, None: nothing left to do


def plan(regions: Sequence[str], pods: Sequence[EdgePod], status: ContentPurgeStatus,
         now: float) -> Plan:
    """Which pods must still confirm and which of them to call now. ``regions``: the
    ContentEdge's regions (a region without pods is listed with none)."""
    before = {p.name: p for r in status.regions for p in r.pods}
    complete = status.phase == "Complete"
    by_region: dict[str, list[PodPurge]] = {r: [] for r in regions}
    due: list[EdgePod] = []
    waits: list[float] = []
    for pod in pods:
        old = before.get(pod.name)
        if old is None and complete:
            continue  # came after the purge completed: it never held a purged object
        entry = old or PodPurge(name=pod.name)
        if entry.state != CONFIRMED:
            if pod.ip is None:
                entry = entry.model_copy(update={
                    "state": PENDING, "message": "waiting for the pod to get an address"})
                waits.append(BACKOFF_BASE)
            elif entry.next_attempt_at is None or entry.next_attempt_at <= now:
                due.append(pod)
            else:
                waits.append(entry.next_attempt_at - now)
        by_region.setdefault(pod.region, []).append(entry)
    new = summarize(status, by_region)
    return Plan(due, new, max(0.5, min(waits)) if waits and not due else
                (0.0 if due else None))


def summarize(status: ContentPurgeStatus, by_region: Mapping[str, list[PodPurge]]
              ) -> ContentPurgeStatus:
    regions = [RegionPurge(name=r, pods=ps, confirmed=sum(p.state == CONFIRMED for p in ps))
               for r, ps in sorted(by_region.items())]
    all_pods = [p for r in regions for p in r.pods]
    return status.model_copy(update={
        "regions": regions, "pods": len(all_pods),
        "confirmed": sum(p.state == CONFIRMED for p in all_pods),
        "failed": sum(p.state == ERROR for p in all_pods)})


def backoff(attempts: int) -> float:
    return min(BACKOFF_MAX, BACKOFF_BASE ** attempts)


def outcome(answers: Sequence[tuple[int | None, Any, str]]) -> tuple[bool, str]:
    """One pod's answers to its targets' calls ((HTTP status or None, JSON body or None,
    transport error)) -> (confirmed?, what happened, in words)."""
    purged = 0
    for status, body, error in answers:
        if status is None:
            return False, f"unreachable: {error}"
        if not isinstance(body, dict):
            return False, f"HTTP {status}: not a purge report"
        if status != 200:
            return False, f"HTTP {status}: {body.get('error') or body}"
        if not body.get("ok"):
            l2 = {c: r.get("error") or r.get("status") for c, r in (body.get("l2") or {}).items()
                  if isinstance(r, dict) and r.get("status") != "ok"}
            l1 = body.get("l1") or {}
            why = [f"L2 {c}: {e}" for c, e in sorted(l2.items())]
            if l1.get("failed"):
                why.append(f"L1: {l1['failed']} nginx entries not purged")
            return False, "; ".join(why) or "the pod did not confirm"
        purged += int((body.get("l1") or {}).get("purged", 0))
    return True, f"{len(answers)} targets purged in L1 and L2 ({purged} nginx entries)"


def record(status: ContentPurgeStatus, results: Mapping[str, tuple[bool, str]], now: float,
           now_text: str) -> ContentPurgeStatus:
    """The status with the answers of the pods called (name -> (confirmed, message))."""
    by_region: dict[str, list[PodPurge]] = {}
    for region in status.regions:
        pods = []
        for p in region.pods:
            if p.name in results:
                ok, message = results[p.name]
                attempts = p.attempts + 1
                p = p.model_copy(update={
                    "state": CONFIRMED if ok else ERROR, "message": message,
                    "attempts": attempts,
                    "next_attempt_at": None if ok else now + backoff(attempts),
                    "confirmed_at": now_text if ok else None})
            pods.append(p)
        by_region[region.name] = pods
    return summarize(status, by_region)


def verdict(status: ContentPurgeStatus) -> tuple[str, str, str]:
    """(phase, Complete condition reason, message). Complete when every edge pod that is
    part of the ContentEdge confirmed (a region without pods holds nothing in L1)."""
    waiting = [f"{r.name}/{p.name}: {p.message or p.state}" for r in status.regions
               for p in r.pods if p.state != CONFIRMED]
    regions = ", ".join(f"{r.name} {r.confirmed}/{len(r.pods)}" for r in status.regions)
    if status.pods and not waiting:
        return "Complete", "AllPodsConfirmed", (
            f"{status.confirmed} edge pods in {len(status.regions)} regions confirmed "
            f"({regions})")
    if not status.pods:
        return "Pending", "NoEdgePods", "the ContentEdge has no edge pods yet"
    return "InProgress", "PodsPending", (
        f"{status.confirmed}/{status.pods} edge pods confirmed ({regions}); waiting for "
        + "; ".join(waiting[:10]) + (f"; and {len(waiting) - 10} more" if len(waiting) > 10
                                     else ""))[:1024]


def expired(status: ContentPurgeStatus, ttl: int | None, now: float, completed_at: float | None
            ) -> float | None:
    """Seconds until a finished purge may be deleted (<= 0: now); None: keep it."""
    if ttl is None or status.phase != "Complete" or completed_at is None:
        return None
    return completed_at + ttl - now
