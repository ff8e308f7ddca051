"""Pure region-routing planner: facts + policy (+ previous plan) -> traffic and cache routes.

See `aerocdn.routing.planner` for the precise rules (optimum, least movement, hysteresis,
slow start) and `Plan.to_json()` for routes.json.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aerocdn.routing.model import (
    CacheFacts,
    CacheRoute,
    CacheState,
    Facts,
    Plan,
    Policy,
    RegionBasis,
    RegionFacts,
    moved_traffic,
)

if TYPE_CHECKING:
    from aerocdn.routing.planner import plan

__all__ = [
    "CacheFacts",
    "CacheRoute",
    "CacheState",
    "Facts",
    "Plan",
    "Policy",
    "RegionBasis",
    "RegionFacts",
    "moved_traffic",
    "plan",
]


def __getattr__(name: str) -> Any:
    # The planner (numpy, HiGHS: ~17 MiB) loads on first use: the edges read routes.json with
    # `aerocdn.routing.model` and never plan.
    if name == "plan":
        from aerocdn.routing.planner import plan

        return plan
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
