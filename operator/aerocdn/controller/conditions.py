"""Building status conditions (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Cond:
    type: str
    status: bool
    reason: str
    message: str


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
