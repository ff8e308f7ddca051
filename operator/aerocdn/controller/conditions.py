"""Building status conditions (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Cond:
    type: str
    status: bool
    reason: str
    message: str


def as_conds(conditions: Iterable[dict[str, Any]]) -> list[Cond]:
    """Stored conditions as Conds, to carry them into the next status unchanged."""
    return [Cond(c["type"], c.get("status") == "True", c.get("reason") or "",
                 c.get("message") or "") for c in conditions]


def merge_conditions(previous: list[dict[str, Any]], wanted: list[Cond], generation: int | None,
                     now: str) -> list[dict[str, Any]]:
    """Conditions in ``wanted`` order; lastTransitionTime kept while the status is unchanged."""
    before = {c.get("type"): c for c in previous}
    out = []
    for cond in wanted:
        status = "True" if cond.status else "False"
        old = before.get(cond.type)
        since = old.get("lastTransitionTime") if old and old.get("status") == status else None
        out.append({
            "type": cond.type,
            "status": status,
            "reason": cond.reason,
            "message": cond.message,
            "observedGeneration": generation,
            "lastTransitionTime": since or now,
        })
    return out


# Conditions whose False asks the user to act: a Warning Event whenever one turns False or
# changes its reason, also on a new object.  DnsRouting: records that do not follow the plan
# (a new LoadBalancer's wait for its address included); OriginsHealthy: only an origin down or
# degraded on the edge pods (reasons listed), not a new ContentEdge's pods that have not
# answered yet, which is quiet on a new object and Normal on a change.
WARN_WHEN_FALSE: dict[str, frozenset[str] | None] = {
    "DnsRouting": None,  # every reason
    "OriginsHealthy": frozenset({"OriginDown", "OriginDegraded"}),
}


def condition_events(old: list[dict[str, Any]], new: list[dict[str, Any]]
                     ) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the Events to record for condition changes: one whenever a
    condition changes status or reason; Degraded=True and a False of WARN_WHEN_FALSE are
    Warnings."""
    before = {c.get("type"): c for c in old}
    events = []
    for cond in new:
        prev = before.get(cond["type"])
        if prev and (prev.get("status"), prev.get("reason")) == (cond["status"], cond["reason"]):
            continue
        reasons = WARN_WHEN_FALSE.get(cond["type"], frozenset())
        alarm = cond["status"] == "False" and (reasons is None or cond["reason"] in reasons)
        if prev is None and cond["status"] == "False" and cond["type"] != "Ready" and not alarm:
            continue  # a new object's quiet conditions (not Degraded, not scaling) say nothing
        warning = (cond["type"] == "Degraded" and cond["status"] == "True") or alarm
        events.append(("Warning" if warning else "Normal", f"{cond['type']}{cond['status']}",
                       f"{cond['reason']}: {cond['message']}"))
    return events
