"""Writing a parent's status (only when it changed) and the status of a spec that cannot be
parsed: shared by both reconcilers."""

from __future__ import annotations

from typing import Any

from aerocdn.api import InputError
from aerocdn.controller.conditions import Cond, merge_conditions
from aerocdn.controller.context import API_VERSION, Context
from aerocdn.controller.diff import status_changed


async def write_status(ctx: Context, raw: dict[str, Any], new: dict[str, Any], reason: str,
                       message: str, warning: bool = False) -> None:
    """Replace the status when it differs from the stored one, with one Event saying why."""
    meta = raw["metadata"]
    if status_changed(new, raw.get("status") or {}):
        await ctx.kube.patch_status(API_VERSION, raw["kind"], meta["namespace"], meta["name"],
                                    new)
        await ctx.kube.event(raw, "Warning" if warning else "Normal", reason, message)


async def report_invalid(ctx: Context, raw: dict[str, Any], exc: InputError, now: str) -> None:
    """A spec the models refuse (admission let it through): Ready=False, Degraded=True."""
    generation = raw["metadata"].get("generation")
    message = "; ".join(f"{p.field}: {p.message}" for p in exc.problems)
    await write_status(ctx, raw, {
        "observedGeneration": generation, "phase": "Invalid",
        "conditions": merge_conditions((raw.get("status") or {}).get("conditions", []), [
            Cond("Ready", False, "InvalidSpec", message),
            Cond("Degraded", True, "InvalidSpec", f"fix the spec: {message}"),
        ], generation, now)}, "InvalidSpec", message, warning=True)
