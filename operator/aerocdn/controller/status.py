"""Writing a parent's status (only when it changed) and the status of a spec that cannot be
parsed: shared by both reconcilers."""

from __future__ import annotations

from typing import Any

from aerocdn.api import InputError
from aerocdn.controller.conditions import Cond, as_conds, merge_conditions
from aerocdn.controller.context import API_VERSION, Context, timestamp
from aerocdn.controller.diff import status_changed
from aerocdn.controller.errors import FailureReason, PermanentError


async def write_status(ctx: Context, raw: dict[str, Any], new: dict[str, Any], reason: str,
                       message: str, warning: bool = False) -> None:
    """Replace the status when it differs from the stored one, with one Event saying why."""
    meta = raw["metadata"]
    if status_changed(new, raw.get("status") or {}):
        await ctx.kube.patch_status(API_VERSION, raw["kind"], meta["namespace"], meta["name"],
                                    new)
        await ctx.kube.event(raw, "Warning" if warning else "Normal", reason, message)


async def report_paused(ctx: Context, raw: dict[str, Any], now: str, what: str) -> None:
    """spec.paused: phase Paused, Progressing=False, Ready and Degraded kept as they were."""
    status = raw.get("status") or {}
    generation = raw["metadata"].get("generation")
    kept = as_conds(c for c in status.get("conditions", []) if c["type"] in ("Ready", "Degraded"))
    await write_status(ctx, raw, {
        "observedGeneration": generation, "phase": "Paused",
        "conditions": merge_conditions(status.get("conditions", []), [
            Cond("Progressing", False, "Paused",
                 f"spec.paused is true: the operator leaves this {raw['kind']} alone"),
            *kept], generation, now)},
        "Paused", f"spec.paused is true: {what} are left alone")


async def report_invalid(ctx: Context, raw: dict[str, Any], exc: InputError, now: str) -> None:
    """A spec the models refuse (admission let it through): Ready=False, Degraded=True."""
    message = "; ".join(f"{p.field}: {p.message}" for p in exc.problems)
    await report_permanent(ctx, raw, PermanentError(
        FailureReason.INVALID_SPEC, exc.problems[0].field if exc.problems else "", message), now)


def _key(raw: dict[str, Any]) -> tuple[str, str, str]:
    meta = raw["metadata"]
    return raw["kind"], meta["namespace"], meta["name"]


def already_failed(ctx: Context, raw: dict[str, Any]) -> bool:
    """A permanent error was reported for this generation: nothing changes until it does."""
    key = _key(raw)
    return key in ctx.failed_generation and \
        ctx.failed_generation[key] == raw["metadata"].get("generation")


async def report_permanent(ctx: Context, raw: dict[str, Any], err: PermanentError,
                           now: str | None = None) -> None:
    """Ready=False and Degraded=True naming the field, a Warning Event; this generation is
    not reconciled again."""
    generation = raw["metadata"].get("generation")
    now = now or timestamp(ctx.clock())
    reason = err.reason.value
    what = {FailureReason.INVALID_SPEC: "fix the spec",
            FailureReason.SECRET_INVALID: "fix the Secret"}.get(err.reason, "change the spec")
    await write_status(ctx, raw, {
        "observedGeneration": generation, "phase": "Invalid",
        "conditions": merge_conditions((raw.get("status") or {}).get("conditions", []), [
            Cond("Ready", False, reason, str(err)),
            Cond("Degraded", True, reason, f"{what}: {err}"),
        ], generation, now)}, reason, str(err), warning=True)
    ctx.failed_generation[_key(raw)] = generation


async def report_retrying(ctx: Context, raw: dict[str, Any], reason: FailureReason,
                          exc: BaseException, attempts: int) -> None:
    """A temporary failure that persists: condition ReconcileFailed (kept with the others)
    and a Warning Event; cleared by the next successful reconcile's status."""
    status = raw.get("status") or {}
    generation = raw["metadata"].get("generation")
    message = (f"{attempts} reconciles in a row failed; retrying with backoff: "
               f"{type(exc).__name__}: {exc}")[:1024]
    kept = as_conds(c for c in status.get("conditions", [])
                    if c.get("type") != "ReconcileFailed")
    conditions = merge_conditions(status.get("conditions", []), [
        *kept, Cond("ReconcileFailed", True, reason.value, message)],
        generation, timestamp(ctx.clock()))
    await write_status(ctx, raw, {**status, "conditions": conditions}, "ReconcileFailed",
                       message, warning=True)
