"""Aerospike users of a CacheCluster with spec.accessControl: when the reconcile applies the
plan of aerospike/users.py, and the small shell that asks the admin API and runs it.

Users are changed only from a stable cluster (no node joining or leaving, no scale step or
roll in progress), through one node's client logged in as the operator's admin (or, on a new
cluster, the default admin); Aerospike spreads security changes to every node itself. The
digests of the passwords applied go to ``status.userPasswordDigests``: a re-run with nothing
changed sends no admin command.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from aerocdn.aerospike.client import AerospikeInfo
from aerocdn.aerospike.errors import AerospikeInfoError
from aerocdn.aerospike.users import (
    DesiredUser,
    UserCommandError,
    apply_user_plan,
    current_users,
    plan_users,
)
from aerocdn.controller.conditions import Cond

CONDITION = "UsersApplied"


@dataclass(frozen=True)
class UsersOutcome:
    condition: Cond
    events: tuple[tuple[str, str, str], ...] = ()
    # user -> digest to record in the status; None: keep what the status says
    digests: dict[str, str] | None = None


def users_waiting(probe: str, stable: bool, busy: str, previous: Cond | None) -> Cond | None:
    """The condition while users cannot be applied now (pure), or None when they can.

    ``busy``: what is in progress (a scale step, a roll), "" when nothing is. A condition
    already True stays as it is while the cluster is busy: the users did not change.
    """
    if probe != "aerospike":
        return Cond(CONDITION, False, "NoAerospikeProbe",
                    "users are created through Aerospike's admin API, which the operator asks "
                    "only with --aerospike-probe=aerospike")
    why = busy or ("" if stable else "the cluster is not stable")
    if not why:
        return None
    if previous is not None and previous.status:
        return previous
    return Cond(CONDITION, False, "WaitingForStableCluster",
                f"users are applied from a stable cluster only: {why}")


async def sync_users(info: AerospikeInfo, pod: str, desired: list[DesiredUser],
                     applied: Mapping[str, str], salt: str) -> UsersOutcome:
    """Ask ``pod`` for the users, make them what ``desired`` says, and say what happened."""
    try:
        client, login = await asyncio.to_thread(info.admin_client_sync, pod)
        reply = await asyncio.to_thread(client.admin_query_users_info)
    except AerospikeInfoError as exc:
        return _failed(f"cannot ask pod {pod} for the users: {exc}")
    except Exception as exc:  # the client's own exception types
        return _failed(f"pod {pod}: admin_query_users_info: {type(exc).__name__}: {exc}")
    plan = plan_users(desired, current_users(reply), applied, salt, login or "")
    if plan.empty:
        return UsersOutcome(_in_sync(desired), (), plan.digests)
    try:
        await asyncio.to_thread(apply_user_plan, client, plan)
    except UserCommandError as exc:
        done = "; ".join(str(a) for a in exc.done)
        return _failed(f"pod {pod}: {exc}" + (f" (done before it: {done})" if done else ""))
    event = ("Normal", "UsersChanged",
             f"pod {pod}: " + "; ".join(str(a) for a in plan.actions))
    return UsersOutcome(_in_sync(desired), (event,), plan.digests)


def _in_sync(desired: list[DesiredUser]) -> Cond:
    return Cond(CONDITION, True, "InSync",
                f"{len(desired)} Aerospike users match spec.accessControl and their Secrets: "
                + ", ".join(sorted(u.name for u in desired)))


def _failed(message: str) -> UsersOutcome:
    """A failure: the condition says it (and the caller a Warning Event when it is new); the
    next reconcile asks again."""
    return UsersOutcome(Cond(CONDITION, False, "UserCommandFailed", message[:1024]))


def users_events(outcome: UsersOutcome, previous: Cond | None) -> list[tuple[str, str, str]]:
    """The Events of one users step: the commands sent, and a Warning for a failure that is
    new (not the same one the condition already says)."""
    events = list(outcome.events)
    cond = outcome.condition
    if not cond.status and cond != previous:
        events.append(("Warning", cond.reason, cond.message))
    return events
