"""Reconcile one ContentPurge: the thin imperative shell around purgeplan.py.

Reads the ContentPurge and its ContentEdge from the cache, the ContentEdge's edge pods and
purge token from the API (both decide what is purged and with what right: asked fresh, and
only while the purge is in progress), calls each due pod's admin ``POST /purge`` directly, and
writes the status with an Event for each change a human cares about. Finished purges are
deleted after ``ttlSecondsAfterFinished``.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
from typing import Any

import aiohttp

from aerocdn.api import InputError
from aerocdn.api.common import Condition
from aerocdn.api.contentpurge import KIND as CP_KIND
from aerocdn.api.contentpurge import ContentPurgeStatus
from aerocdn.api.objects import ContentPurge
from aerocdn.constants import LABEL_CONTENTEDGE
from aerocdn.controller import purgeplan
from aerocdn.controller.cache import CachedKube, parse_cached
from aerocdn.controller.conditions import Cond, merge_conditions
from aerocdn.controller.context import API_VERSION, CE_KIND, Context, timestamp
from aerocdn.controller.diff import status_changed
from aerocdn.controller.errors import FailureReason, PermanentError
from aerocdn.controller.kube import Kube, KubeError
from aerocdn.controller.status import already_failed, report_invalid

log = logging.getLogger(__name__)

# one pod's answer to one target may take this long (the edge purges its nginx entries and
# writes the L2 rule within its own deadlines)
CALL_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=5)
WAIT_SECONDS = 10.0  # ContentEdge, token or pods missing: look again after this


def _api(kube: Kube | CachedKube) -> Kube:
    """Edge pods and Secrets are not watched: asked of the API itself (a CachedKube would
    keep them in its store, which holds only what the watches keep up to date)."""
    return kube.api if isinstance(kube, CachedKube) else kube


async def reconcile_contentpurge(ctx: Context, namespace: str, name: str) -> float | None:
    kube = ctx.kube
    raw = await kube.get(API_VERSION, CP_KIND, namespace, name)
    if raw is None or raw["metadata"].get("deletionTimestamp") or already_failed(ctx, raw):
        return None
    now_dt = ctx.clock()
    now, now_text = now_dt.timestamp(), timestamp(now_dt)
    try:
        obj = parse_cached(raw)
        assert isinstance(obj, ContentPurge)
    except InputError as exc:
        await report_invalid(ctx, raw, exc, now_text)
        return None
    spec = obj.spec
    status = ContentPurgeStatus.model_validate(raw.get("status") or {})

    if status.phase == "Complete":
        done = _parse_time(status.completion_time)
        left = purgeplan.expired(status, spec.ttl_seconds_after_finished, now, done)
        if left is None:
            return None
        if left <= 0:
            log.info("ContentPurge %s/%s: finished, TTL passed: deleting", namespace, name)
            await kube.delete(API_VERSION, CP_KIND, namespace, name)
            return None
        return left

    status = status.model_copy(update={"start_time": status.start_time or now_text,
                                       "observed_generation": raw["metadata"].get("generation")})
    ce = await kube.get(API_VERSION, CE_KIND, namespace, spec.content_edge_ref.name)
    if ce is None:
        return await _waiting(ctx, raw, status, "ContentEdgeNotFound",
                              f"ContentEdge {namespace}/{spec.content_edge_ref.name} does not "
                              "exist (yet): create it, or fix spec.contentEdgeRef.name", now_text)
    ce_spec = ce.get("spec") or {}
    invalid = purgeplan.check_hosts(spec, ce_spec.get("hosts") or [])
    if invalid is not None:
        await _failed(ctx, raw, status, PermanentError(
            FailureReason.INVALID_SPEC, invalid.field, invalid.message), now_text)
        return None
    token, why = await _token(ctx, namespace, ce_spec)
    if token is None:
        return await _waiting(ctx, raw, status, "NoPurgeToken", why, now_text)

    pods = purgeplan.edge_pods(await _api(kube).list(
        "v1", "Pod", namespace, {"app.kubernetes.io/name": "aerocdn-edge",
                                 LABEL_CONTENTEDGE: spec.content_edge_ref.name}))
    regions = [r.get("name", "") for r in ce_spec.get("regions") or []]
    step = purgeplan.plan(regions, pods, status, now)
    new = step.status
    if step.due:
        results = await _call_pods(step.due, purgeplan.bodies(spec), token,
                                   ctx.edge_admin_addresses)
        new = purgeplan.record(new, results, ctx.clock().timestamp(), now_text)
        for pod, (ok, message) in sorted(results.items()):
            if not ok:
                await kube.event(raw, "Warning", "PodNotConfirmed", f"{pod}: {message}")
        # answers move next attempts: plan again for the requeue
        step = purgeplan.plan(regions, pods, new, ctx.clock().timestamp())
        new = step.status
    phase, reason, message = purgeplan.verdict(new)
    complete = phase == "Complete"
    new = new.model_copy(update={
        "phase": phase,
        "completion_time": now_text if complete else None,
        "conditions": [Condition.model_validate(c) for c in merge_conditions(
            [c.to_api() for c in status.conditions],
            [Cond("Complete", complete, reason, message)],
            raw["metadata"].get("generation"), now_text)]})
    await _write(ctx, raw, status, new, phase, message)
    if complete:
        if spec.ttl_seconds_after_finished is not None:
            return float(spec.ttl_seconds_after_finished)
        return None
    return step.requeue if step.requeue is not None else WAIT_SECONDS


async def _write(ctx: Context, raw: dict[str, Any], old: ContentPurgeStatus,
                 new: ContentPurgeStatus, phase: str, message: str) -> None:
    body = new.to_api()
    if not status_changed(body, raw.get("status") or {}):
        return
    meta = raw["metadata"]
    await ctx.kube.patch_status(API_VERSION, CP_KIND, meta["namespace"], meta["name"], body)
    if phase != (raw.get("status") or {}).get("phase"):
        await ctx.kube.event(raw, "Normal", phase, message)


async def _waiting(ctx: Context, raw: dict[str, Any], status: ContentPurgeStatus, reason: str,
                   message: str, now_text: str) -> float:
    """Something outside the ContentPurge is missing (the ContentEdge, its token): say so in
    Complete=False and look again; nothing is purged meanwhile."""
    new = status.model_copy(update={
        "phase": "Pending",
        "conditions": [Condition.model_validate(c) for c in merge_conditions(
            [c.to_api() for c in status.conditions], [Cond("Complete", False, reason, message)],
            raw["metadata"].get("generation"), now_text)]})
    body = new.to_api()
    if status_changed(body, raw.get("status") or {}):
        meta = raw["metadata"]
        await ctx.kube.patch_status(API_VERSION, CP_KIND, meta["namespace"], meta["name"], body)
        await ctx.kube.event(raw, "Warning", reason, message)
    return WAIT_SECONDS


async def _failed(ctx: Context, raw: dict[str, Any], status: ContentPurgeStatus,
                  err: PermanentError, now_text: str) -> None:
    """A spec the ContentEdge cannot carry out: phase Failed, Complete=False naming the
    field, a Warning Event; not tried again (the spec is immutable)."""
    generation = raw["metadata"].get("generation")
    new = status.model_copy(update={
        "phase": "Failed",
        "conditions": [Condition.model_validate(c) for c in merge_conditions(
            [c.to_api() for c in status.conditions],
            [Cond("Complete", False, err.reason.value, str(err))], generation, now_text)]})
    meta = raw["metadata"]
    body = new.to_api()
    if status_changed(body, raw.get("status") or {}):  # (not again after a restart)
        await ctx.kube.patch_status(API_VERSION, CP_KIND, meta["namespace"], meta["name"],
                                    body)
        await ctx.kube.event(raw, "Warning", err.reason.value, str(err))
    ctx.failed_generation[(CP_KIND, meta["namespace"], meta["name"])] = generation


async def _token(ctx: Context, namespace: str, ce_spec: dict[str, Any]
                 ) -> tuple[str | None, str]:
    """(the ContentEdge's purge token, "") or (None, why there is none)."""
    ref = ce_spec.get("purgeTokenSecretRef")
    if not ref:
        return None, ("the ContentEdge has no purgeTokenSecretRef: its edges accept no purge; "
                      "set spec.purgeTokenSecretRef on the ContentEdge")
    where = f"Secret {namespace}/{ref['name']}"
    try:
        secret = await _api(ctx.kube).get("v1", "Secret", namespace, ref["name"])
    except KubeError as exc:
        return None, f"cannot read {where} (purgeTokenSecretRef): {exc}"
    if secret is None:
        return None, f"{where} (the ContentEdge's purgeTokenSecretRef) does not exist"
    key = ref.get("key") or "token"
    data = (secret.get("data") or {}).get(key)
    token = base64.b64decode(data).decode(errors="replace").strip() if data else ""
    if not token:
        return None, f"{where} has no (or an empty) key {key!r} (purgeTokenSecretRef)"
    return token, ""


async def _call_pods(pods: list[purgeplan.EdgePod], bodies: list[dict[str, Any]],
                     token: str, addresses: dict[str, str]) -> dict[str, tuple[bool, str]]:
    """Each pod's answers to every target, concurrently across pods (targets of one pod in
    order: its nginx purges are bounded on its side)."""
    headers = {"Authorization": f"Bearer {token}", "X-Aerocdn-Purge-Scope": "pod"}

    async def one(session: aiohttp.ClientSession, pod: purgeplan.EdgePod
                  ) -> tuple[bool, str]:
        assert pod.ip is not None
        admin = addresses.get(pod.name) or (
            f"[{pod.ip}]:{purgeplan.ADMIN_PORT}" if ":" in pod.ip
            else f"{pod.ip}:{purgeplan.ADMIN_PORT}")
        answers: list[tuple[int | None, Any, str]] = []
        for body in bodies:
            try:
                async with session.post(f"http://{admin}/purge",
                                        json=body, headers=headers) as r:
                    try:
                        data = await r.json(content_type=None)
                    except ValueError:
                        data = None
                    answers.append((r.status, data, ""))
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                answers.append((None, None, f"{type(exc).__name__}: {exc}"))
            last = answers[-1][1]
            if answers[-1][0] != 200 or not (isinstance(last, dict) and last.get("ok")):
                break  # this pod will be retried for every target
        return purgeplan.outcome(answers)

    async with aiohttp.ClientSession(timeout=CALL_TIMEOUT) as session:
        results = await asyncio.gather(*(one(session, p) for p in pods))
    return {p.name: r for p, r in zip(pods, results, strict=True)}


def _parse_time(text: str | None) -> float | None:
    if not text:
        return None
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()
