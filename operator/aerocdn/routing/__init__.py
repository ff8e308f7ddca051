"""Pure region-routing planner: facts + policy (+ previous plan) -> traffic and cache routes.

See `aerocdn.routing.planner` for the precise rules (optimum, least movement, hysteresis,
slow start) and `Plan.to_json()` for routes.json.
"""

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
