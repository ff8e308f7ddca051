"""Pure comparisons deciding whether the operator must write: the zero-writes rule lives here.

A child needs applying when any field we set differs from the live object. Fields the
apiserver or other controllers add (defaults, status, managedFields) are ignored, and
quantities are compared by value (the apiserver stores 1024Mi as 1Gi).
"""

from __future__ import annotations

import json
import re
from typing import Any

_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_FACTOR = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def _quantity(value: str) -> float | None:
    m = _QUANTITY.match(value)
    if not m:
        return None
    return float(m.group(1)) * _FACTOR[m.group(2)]


def _scalar_equal(desired: Any, live: Any) -> bool:
    if desired == live:
        return True
    if isinstance(desired, str) and isinstance(live, str):
        a, b = _quantity(desired), _quantity(live)
        return a is not None and a == b
    if isinstance(desired, bool) or isinstance(live, bool):
        return False
    if isinstance(desired, int | float) and isinstance(live, int | float):
        return float(desired) == float(live)
    return False


def covers(live: Any, desired: Any) -> bool:
    """True when every field in ``desired`` is present and equal in ``live``."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return False
        # the apiserver stores an empty map or list as absent (omitempty)
        return all(covers(live[k], v) if k in live else v in ({}, [], None)
                   for k, v in desired.items())
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            return False
        return all(covers(lv, dv) for lv, dv in zip(live, desired, strict=True))
    return _scalar_equal(desired, live)


def needs_apply(desired: dict[str, Any], live: dict[str, Any] | None) -> bool:
    if live is None:
        return True
    want = {k: v for k, v in desired.items() if k not in ("apiVersion", "kind", "status")}
    return not covers(live, want)


def strip_volatile(conditions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in conditions]


def status_changed(desired: dict[str, Any], live: dict[str, Any] | None,
                   volatile: tuple[str, ...] = ()) -> bool:
    """Whether a status patch is needed (transition times alone never trigger one, nor do the
    ``volatile`` fields: numbers that change on every poll are written with the next real
    change, never on their own)."""
    live = live or {}
    desired = json.loads(json.dumps(desired))  # as it will be stored: tuples become lists
    for key, value in desired.items():
        if key in volatile:
            continue
        if key == "conditions":
            if strip_volatile(value) != strip_volatile(live.get("conditions", [])):
                return True
        elif live.get(key) != value:
            return True
    return False
