"""Reconcile one CacheCluster: observe -> decide (pure) -> apply."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aerocdn.aerospike.client import PLAIN, AerospikeInfo, ClientSecurity, resolve_endpoints
from aerocdn.aerospike.dynamic import Setting, drift
from aerocdn.aerospike.errors import AerospikeInfoError
from aerocdn.aerospike.parse import Edition, ReclusterResult
from aerocdn.aerospike.scale import (
    Done,
    Hold,
    HoldCause,
    PodRollState,
    Quiesce,
    Recluster,
    RemoveOne,
    RestartPod,
    RollState,
    ScaleAction,
    ScaleState,
    UndoQuiesce,
    WaitMigrations,
    WaitQuiesced,
    next_roll_step,
    next_scale_step,
)
from aerocdn.aerospike.security import referenced_secrets
from aerocdn.aerospike.stability import (
    Stability,
    Unreachable,
    assess_stability,
    readiness_gate_condition,
)
from aerocdn.aerospike.users import DEFAULT_ADMIN, DesiredUser, desired_users
from aerocdn.api import CacheCluster, InputError
from aerocdn.api.cachecluster import CacheClusterStatus, RackStatus
from aerocdn.api.common import Condition
from aerocdn.constants import CONFIG_HASH, LABEL_CACHECLUSTER, MANAGED, READINESS_GATE
from aerocdn.controller import metrics
from aerocdn.controller.cache import parse_cached
from aerocdn.controller.ccplan import (
    KUBE_PROBE_NOTE,
    PodView,
    growing,
    kubernetes_roll_step,
    kubernetes_scale_step,
    pod_view,
    racks_of,
    refused_changes,
)
from aerocdn.controller.children import list_children, sync_children
from aerocdn.controller.conditions import Cond, as_conds, condition_events, merge_conditions
from aerocdn.controller.context import API_VERSION, CC_KIND, Context, timestamp
from aerocdn.controller.diff import status_changed
from aerocdn.controller.errors import FailureReason, PermanentError
from aerocdn.controller.kube import KubeError
from aerocdn.controller.kube import path as kube_path
from aerocdn.controller.secrets import (
    SecretData,
    check_secrets,
    operator_security,
    read_secrets,
)
from aerocdn.controller.status import (
    already_failed,
    report_invalid,
    report_paused,
    write_status,
)
from aerocdn.controller.users import CONDITION as USERS_CONDITION
from aerocdn.controller.users import sync_users, users_events, users_waiting
from aerocdn.controller.volumes import (
    PROGRESS_REASON as VOLUME_REASON,
)
from aerocdn.controller.volumes import (
    VolumePlan,
    claim_sizes,
    plan_volume_growth,
)
from aerocdn.render.cachecluster import (
    dynamic_settings,
    pod_selector,
    rack_layout,
    render_cachecluster,
)
from aerocdn.routing.model import Plan

log = logging.getLogger(__name__)

CHILD_KINDS = [("v1", "ConfigMap"), ("v1", "Service"), ("apps/v1", "StatefulSet"),
               ("policy/v1", "PodDisruptionBudget"), ("networking.k8s.io/v1", "NetworkPolicy")]
ROUTING_LABELS = {"app.kubernetes.io/component": "routing", **MANAGED}


def selector_string(name: str) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(pod_selector(name).items()))


class _ReadFresh(Exception):
    """A node is about to leave or a pod to restart: decide again from fresh reads."""


async def reconcile_cachecluster(ctx: Context, namespace: str, name: str) -> float | None:
    """Observe (from the watch cache), decide (pure), apply, report. Before a node leaves or
    a pod restarts the whole reconcile is run again from fresh API reads, and only what it
    then decides is carried out."""
    cached = getattr(ctx.kube, "store", None) is not None
    try:
        return await _reconcile(ctx, namespace, name, fresh=not cached)
    except _ReadFresh:
        return await _reconcile(ctx, namespace, name, fresh=True)


async def _reconcile(ctx: Context, namespace: str, name: str, fresh: bool) -> float | None:
    kube = ctx.kube
    raw = await kube.get(API_VERSION, CC_KIND, namespace, name, fresh=fresh)
    if raw is None or raw["metadata"].get("deletionTimestamp") or already_failed(ctx, raw):
        return None  # children go with garbage collection
    status: dict[str, Any] = raw.get("status") or {}
    generation = raw["metadata"].get("generation")
    now = timestamp(ctx.clock())

    try:
        obj = parse_cached(raw)
        assert isinstance(obj, CacheCluster)
        cc = obj
    except InputError as exc:
        await report_invalid(ctx, raw, exc, now)
        return None

    if cc.spec.paused:
        await report_paused(ctx, raw, now, "children")
        return None
    secrets, users = await _enterprise_inputs(ctx, cc)

    uid = raw["metadata"]["uid"]
    live = await list_children(kube, namespace, {LABEL_CACHECLUSTER: name},
                               CHILD_KINDS, uid, fresh=fresh)
    live_sts = {n: o for (k, n), o in live.items() if k == "StatefulSet"}
    pod_objs = await kube.list("v1", "Pod", namespace, pod_selector(name), fresh=fresh)
    pods = [pod_view(p) for p in pod_objs]
    layout = {r.sts_name: r.replicas for r in rack_layout(name, cc.spec)}
    sts_replicas = {n: o["spec"].get("replicas", 0) for n, o in live_sts.items()}
    racks = racks_of(layout, sts_replicas, pods)

    # Refuse what cannot be done safely before changing anything.
    desired_full = _render(cc, None, ctx.probe == "aerospike")
    desired_sts = [o for o in desired_full if o["kind"] == "StatefulSet"]
    refused = refused_changes(desired_sts, live_sts)
    volume_cond: Cond | None = None
    hold_roll = False
    if not refused:
        volumes = await _volume_plan(ctx, cc, desired_sts, live_sts, racks, status)
        refused = list(volumes.refused) if volumes is not None else []
        if volumes is not None and not refused:
            volume_cond = await _grow_volumes(ctx, raw, cc, volumes, status)
            if volumes.replace_statefulsets or _replacing(live_sts):
                # Nothing else until the StatefulSet is back: a rack without one would be
                # scaled or rolled from a partial view.
                held = {**status, "observedGeneration": generation,
                        "conditions": merge_conditions(status.get("conditions", []), [
                            *_kept(status, ("Ready", "Degraded")),
                            Cond("Progressing", True, VOLUME_REASON, volume_cond.message),
                            volume_cond], generation, now)}
                if status_changed(held, status):
                    await kube.patch_status(API_VERSION, CC_KIND, namespace, name, held)
                return 2.0
        if volumes is None:  # a finished growth keeps saying so
            volume_cond = next(iter(_kept(status, (VOLUME_CONDITION,))), None)
        hold_roll = volumes is not None and volumes.hold_roll
    if refused:
        message = "; ".join(refused)
        await write_status(ctx, raw, {
            "observedGeneration": generation, "phase": "Refused",
            "conditions": merge_conditions(status.get("conditions", []), [
                Cond("Ready", _all_ready(racks, pods), "ChangeRefused", message),
                Cond("Progressing", False, "ChangeRefused", "nothing was changed"),
                Cond("Degraded", True, "ChangeRefused", message),
            ], generation, now)}, "ChangeRefused", message, warning=True)
        return None

    # What Aerospike (or the Kubernetes stand-in) says about the cluster.
    stability: Stability | Unreachable | None = None
    info: AerospikeInfo | None = None
    if ctx.probe == "aerospike":
        alive = {p.name: p.ip for p in pods if p.ip and not p.terminating}
        overrides = {k: v for k, v in ctx.address_overrides.items() if k in alive}
        if alive:
            security, fallback = _client_security(cc, secrets)
            endpoints = resolve_endpoints({k: v for k, v in alive.items() if v}, overrides,
                                          port=security.port)
            names = [ns.name for ns in cc.spec.namespaces]
            info = (AerospikeInfo(endpoints, namespaces=names, security=security,
                                  fallback=fallback)
                    if ctx.aerospike_client_factory is None else
                    AerospikeInfo(endpoints, namespaces=names, security=security,
                                  fallback=fallback,
                                  client_factory=ctx.aerospike_client_factory))
            observation = await info.observe(expected_size=len(alive))
            if not observation.nodes:
                stability = Unreachable(
                    "; ".join(f"pod {f.pod}: {f.reason}" for f in observation.failures)
                    or "no pod answered")
            else:
                stability = assess_stability(observation, len(alive))
    try:
        return await _converge(ctx, raw, cc, racks, pods, live, live_sts, stability, info,
                               status, generation, now, fresh, volume_cond, hold_roll, users)
    finally:
        if info is not None:
            info.close()


async def _enterprise_inputs(ctx: Context, cc: CacheCluster
                             ) -> tuple[dict[str, SecretData], list[DesiredUser] | None]:
    """The Secrets the spec names (checked: a missing Secret or key is a permanent error
    naming them) and, with access control, the users it wants."""
    names = set(referenced_secrets(cc.spec))
    if not names:
        return {}, None
    secrets = await read_secrets(ctx, cc.namespace, names)
    check_secrets(cc, secrets)
    access = cc.spec.access_control
    if access is None:
        return secrets, None
    try:
        return secrets, desired_users(access, secrets.get(access.admin_secret_ref.name),
                                      secrets)
    except ValueError as exc:  # a user named like the admin of the Secret
        raise PermanentError(FailureReason.SECRET_INVALID, "spec.accessControl",
                             str(exc)) from None


def _client_security(cc: CacheCluster, secrets: dict[str, SecretData]
                     ) -> tuple[ClientSecurity, ClientSecurity | None]:
    """The info client's settings and, with access control, the default admin to log in
    with while the operator's own admin does not exist yet (a new cluster)."""
    if cc.spec.tls is None and cc.spec.access_control is None:
        return PLAIN, None
    security = operator_security(cc, secrets)
    fallback = None
    if cc.spec.access_control is not None and (security.user, security.password) != DEFAULT_ADMIN:
        fallback = ClientSecurity(user=DEFAULT_ADMIN[0], password=DEFAULT_ADMIN[1],
                                  tls=security.tls)
    return security, fallback


def _all_ready(racks: Any, pods: list[PodView]) -> bool:
    desired = sum(r.desired for r in racks)
    ready = sum(1 for p in pods if p.ready and not p.terminating)
    return ready == desired and len(pods) == desired


async def routes_drained(ctx: Context, namespace: str, cluster: str, fresh: bool = True
                         ) -> tuple[bool, str]:
    """True when no published routing plan in the namespace still sends weight to
    ``cluster``: only then may its capacity go."""
    maps = await ctx.kube.list("v1", "ConfigMap", namespace, ROUTING_LABELS, fresh=fresh)
    still = []
    for cm in maps:
        try:
            plan = Plan.from_json((cm.get("data") or {}).get("routes.json", ""))
        except ValueError:  # none, or not a plan: no route from it
            continue
        for region in plan.regions_using(cluster):
            still.append(f"{cm['metadata']['name']} ({region})")
    if still:
        return False, "waiting for routing plans to drain traffic away: " + ", ".join(still)
    return True, "no routing plan sends traffic to this cluster"


async def _converge(ctx: Context, raw: dict[str, Any], cc: CacheCluster, racks: Any,
                    pods: list[PodView], live: dict[tuple[str, str], dict[str, Any]],
                    live_sts: dict[str, dict[str, Any]],
                    stability: Stability | Unreachable | None, info: AerospikeInfo | None,
                    status: dict[str, Any], generation: int | None, now: str,
                    fresh: bool, volume_cond: Cond | None = None,
                    hold_roll: bool = False, users: list[DesiredUser] | None = None
                    ) -> float | None:
    kube, name, namespace = ctx.kube, cc.name, cc.namespace
    replicas = {r.name: max(r.replicas, r.desired) if r.name in live_sts else r.desired
                for r in racks}
    scaling_down = any(r.excess > 0 or r.replicas < len(r.pods) for r in racks)
    scale_up = [r.name for r in racks if r.name in live_sts and r.desired > r.replicas]
    action: ScaleAction = Done()
    drain_message = ""
    events: list[tuple[str, str, str]] = []

    if scaling_down:
        drained, drain_message = await routes_drained(ctx, namespace, name, fresh)
        if not drained:
            action = Hold(drain_message, HoldCause.DRAINING_ROUTES)
        elif ctx.probe == "kubernetes":
            action = kubernetes_scale_step(racks, pods)
        else:
            assert stability is not None or not pods
            edition = (stability.observation.edition
                       if isinstance(stability, Stability) else Edition.UNKNOWN)
            down = tuple(p.name for p in pods if not p.running and not p.terminating)
            action = next_scale_step(ScaleState(
                racks=racks, stability=stability or Unreachable("no pods to ask"),
                edition=edition, nodes_down=down))
        if isinstance(action, RemoveOne | Quiesce | UndoQuiesce | Recluster) and not fresh:
            raise _ReadFresh
        if isinstance(action, RemoveOne):
            replicas[action.rack] = action.replicas
            events.append(("Normal", "ScaleDown", action.reason))
        elif isinstance(action, Quiesce | UndoQuiesce | Recluster) and info is not None:
            events.append(await _send(info, action))
        metrics.SCALE_STEPS.labels(action=type(action).__name__).inc()
        # Racks shrink one node at a time: never grow a rack while another shrinks.
        for rack in racks:
            if rack.name in live_sts and rack.desired > rack.replicas:
                replicas[rack.name] = rack.replicas
    elif scale_up:
        events.append(("Normal", "ScaleUp", "scaling up " + ", ".join(
            f"{r.name} {r.replicas} -> {r.desired}" for r in racks if r.name in scale_up)))

    desired = list(_render(cc, replicas, ctx.probe == "aerospike"))
    # A removed rack's StatefulSet stays (at 0) until its pods are gone, then is deleted.
    keep = {("StatefulSet", r.name) for r in racks
            if r.name not in {o["metadata"]["name"] for o in desired} and r.pods}
    for r in racks:
        if ("StatefulSet", r.name) in keep:
            sts = live_sts[r.name]
            desired.append(_scaled(sts, replicas[r.name]))
    applied = await sync_children(kube, desired, live, keep)
    if applied.applied or applied.deleted:
        log.info("CacheCluster %s/%s: applied %s, deleted %s", namespace, name,
                 applied.applied, applied.deleted)
    if applied.deleted:
        events.append(("Normal", "Deleted", "deleted " + ", ".join(applied.deleted)))

    # Readiness gate: lets the PDB hold drains while Aerospike migrates. Only pods that stay:
    # a pod this reconcile (or an earlier one) scaled away may already be gone.
    gate = gate_condition(ctx, stability, pods)
    for pod in pods_to_gate(pods, replicas):
        if (pod.gate, pod.gate_reason, pod.gate_message) != (
                gate["status"], gate["reason"], gate["message"]):
            try:
                await kube.patch_pod_conditions(namespace, pod.name,
                                                [{**gate, "lastTransitionTime": now}])
            except KubeError as exc:
                if exc.status != 404:
                    raise
                log.info("pod %s/%s is gone; its readiness gate is moot", namespace, pod.name)

    # A configuration change rolls pods one at a time, only from a stable cluster.
    roll_hashes = {o["metadata"]["name"]:
                   o["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH]
                   for o in desired if o["kind"] == "StatefulSet"}
    roll_message = ""
    if hold_roll:
        roll_message = "restarts wait until the storage driver has grown the volumes"
    elif not scaling_down and not scale_up:
        roll = _roll_step(ctx, pods, roll_hashes, stability, cc.spec.max_unavailable)
        if isinstance(roll, RestartPod) and not fresh:
            raise _ReadFresh
        if isinstance(roll, RestartPod):
            await kube.delete_pod(namespace, roll.pod)
            events.append(("Normal", "RollingRestart", roll.reason))
        if not isinstance(roll, Done):
            roll_message = roll.reason

    # Dynamic keys: set on every running node and read back (no restart needed).
    config_cond: Cond | None = None
    if (info is not None and isinstance(stability, Stability) and not scaling_down
            and not scale_up):
        config_cond, config_events = await sync_dynamic_config(
            info, [p for p in pods if p.running and not p.terminating and p.ip],
            dynamic_settings(cc))
        events += config_events

    # Aerospike users (Enterprise access control): only from a stable cluster.
    users_cond: Cond | None = None
    digests = status.get("userPasswordDigests")
    if users is not None:
        previous = next(iter(_kept(status, (USERS_CONDITION,))), None)
        busy = ("a node is leaving" if scaling_down else
                "nodes are joining" if scale_up else roll_message)
        users_cond = users_waiting(ctx.probe, isinstance(stability, Stability)
                                   and stability.stable, busy, previous)
        if users_cond is None and info is not None and isinstance(stability, Stability):
            asked = min(n.pod for n in stability.observation.nodes)
            outcome = await sync_users(info, asked, users, digests or {}, raw["metadata"]["uid"])
            users_cond = outcome.condition
            events += users_events(outcome, previous)
            if outcome.digests is not None:
                digests = outcome.digests
    new_status = _status(ctx, cc, racks, pods, replicas, stability, action, scaling_down,
                         scale_up, roll_message, status, generation, now,
                         [c for c in (config_cond, volume_cond, users_cond) if c is not None])
    if users is not None:
        new_status["userPasswordDigests"] = digests
    if isinstance(stability, Stability):
        metrics.MIGRATING_PARTITIONS.labels(namespace=namespace, cachecluster=name).set(
            stability.partitions_remaining)
    if status_changed(new_status, status, volatile=VOLATILE_STATUS):
        await kube.patch_status(API_VERSION, CC_KIND, namespace, name, new_status)
        for type_, reason, message in condition_events(status.get("conditions", []),
                                                       new_status["conditions"]):
            await kube.event(raw, type_, reason, message)
    for type_, reason, message in events:
        await kube.event(raw, type_, reason, message)
    # A closed gate is progress too: Aerospike may finish migrating with no Kubernetes event
    # to wake the reconcile, and the gate (which holds drains) must open when it does.
    in_progress = (scaling_down or scale_up or roll_message or not _all_ready(racks, pods)
                   or (volume_cond is not None and not volume_cond.status)
                   or gate["status"] != "True")
    return ctx.poll_seconds if in_progress else None


VOLUME_CONDITION = "VolumesResized"


def _volume_growth_pending(desired_sts: list[dict[str, Any]],
                           live_sts: dict[str, dict[str, Any]], status: dict[str, Any]) -> bool:
    """Whether to look at the claims at all (an idle reconcile asks the API nothing): a
    volume template grew, or a growth is still under way (or its StatefulSet is gone)."""
    previous = next((c for c in status.get("conditions") or []
                     if c.get("type") == VOLUME_CONDITION), None)
    if previous is not None and previous.get("status") != "True":
        return True
    for sts in desired_sts:
        live = live_sts.get(sts["metadata"]["name"])
        if live is None:
            continue
        have = claim_sizes(live)
        if any(t in have and want > have[t][0] for t, (want, _, _) in claim_sizes(sts).items()):
            return True
    return False


async def _volume_plan(ctx: Context, cc: CacheCluster, desired_sts: list[dict[str, Any]],
                       live_sts: dict[str, dict[str, Any]], racks: Any,
                       status: dict[str, Any]) -> VolumePlan | None:
    if not _volume_growth_pending(desired_sts, live_sts, status):
        return None
    pvcs = await ctx.kube.list("v1", "PersistentVolumeClaim", cc.namespace,
                               pod_selector(cc.name), fresh=True)
    classes = await ctx.kube.list("storage.k8s.io/v1", "StorageClass", None, fresh=True)
    scaling = [r.name for r in racks if not r.replicas == r.desired == len(r.pods)]
    return plan_volume_growth(desired_sts, live_sts, pvcs, classes, scaling)


def _replacing(live_sts: dict[str, dict[str, Any]]) -> list[str]:
    return sorted(n for n, o in live_sts.items() if o["metadata"].get("deletionTimestamp"))


def _kept(status: dict[str, Any], types: tuple[str, ...]) -> list[Cond]:
    return as_conds(c for c in status.get("conditions") or [] if c.get("type") in types)


async def _grow_volumes(ctx: Context, raw: dict[str, Any], cc: CacheCluster,
                        plan: VolumePlan, status: dict[str, Any]) -> Cond:
    """Carry out one step of a volume growth and say where it stands."""
    kube, namespace = ctx.kube, cc.namespace
    for claim, size in sorted(plan.patch_claims.items()):
        await kube.request(
            "PATCH", kube_path("v1", "PersistentVolumeClaim", namespace, claim),
            kind="PersistentVolumeClaim",
            body={"spec": {"resources": {"requests": {"storage": size}}}},
            content_type="application/merge-patch+json")
    if plan.patch_claims:
        await kube.event(raw, "Normal", VOLUME_REASON, "growing " + ", ".join(
            f"{c} to {s}" for c, s in sorted(plan.patch_claims.items())))
    for sts in plan.replace_statefulsets:
        await kube.delete("apps/v1", "StatefulSet", namespace, sts, propagation="Orphan")
        await kube.event(raw, "Normal", VOLUME_REASON,
                         f"re-creating StatefulSet {sts} for the new volume size (its pods "
                         "keep running: orphaning delete, then the new one adopts them)")
    waiting = list(plan.waiting) + [f"StatefulSet {n} is being replaced"
                                    for n in plan.replace_statefulsets]
    if waiting:
        return Cond(VOLUME_CONDITION, False, VOLUME_REASON, "; ".join(waiting)[:1024])
    return Cond(VOLUME_CONDITION, True, "AtSize",
                "every persistent volume claim has the size the spec asks for")


_RENDERED: dict[tuple[Any, ...], list[dict[str, Any]]] = {}


def _render(cc: CacheCluster, replicas: dict[str, int] | None, set_config: bool
            ) -> list[dict[str, Any]]:
    """render_cachecluster, remembered per spec version (uid, generation) and replicas; the
    objects are read-only. ``set_config``: dynamic keys are applied by set-config (the
    Aerospike probe), so changing only them restarts no pod."""
    key = (cc.metadata.uid, cc.metadata.generation, set_config,
           None if replicas is None else tuple(sorted(replicas.items())))
    found = _RENDERED.get(key) if cc.metadata.uid is not None else None
    if found is None:
        found = render_cachecluster(cc, replicas, set_config=set_config)
        if len(_RENDERED) >= 1024:
            _RENDERED.pop(next(iter(_RENDERED)))
        _RENDERED[key] = found
    return found


def _scaled(sts: dict[str, Any], replicas: int) -> dict[str, Any]:
    meta = sts["metadata"]
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "spec": {"replicas": replicas}}


# Status fields whose change alone is no reason to write (they change on every poll while
# Aerospike migrates): written along with the next real change; live in /metrics.
VOLATILE_STATUS = ("migratingPartitions",)


def gate_condition(ctx: Context, stability: Stability | Unreachable | None,
                   pods: list[PodView]) -> dict[str, str]:
    """The readiness-gate condition every pod that stays gets (without the timestamp)."""
    if ctx.probe == "kubernetes":
        down = [p.name for p in pods if not p.ready or p.terminating]
        if down:
            status, reason = "False", "PodsNotReady"
            message = f"pod {', '.join(down)} not ready ({KUBE_PROBE_NOTE})"
        else:
            status, reason, message = "True", "PodsReady", f"all pods ready ({KUBE_PROBE_NOTE})"
        return {"type": READINESS_GATE, "status": status, "reason": reason, "message": message}
    gate = readiness_gate_condition(stability or Unreachable("no Aerospike pod to ask"))
    return {**gate, "message": gate["message"][:512]}


def pods_to_gate(pods: list[PodView], replicas: dict[str, int]) -> list[PodView]:
    """Pods whose gate the operator keeps: not terminating and inside their StatefulSet's
    replicas as this reconcile leaves them (a pod past them is leaving or already gone)."""
    return [p for p in pods if not p.terminating and p.ordinal < replicas.get(p.sts, 0)]


async def sync_dynamic_config(info: AerospikeInfo, pods: list[PodView],
                              settings: dict[str, tuple[Setting, ...]]
                              ) -> tuple[Cond, list[tuple[str, str, str]]]:
    """Bring every running node's dynamic settings (its rack's) to the spec with set-config,
    read them back, and say so: the ConfigApplied condition and an Event per node changed.
    Level-triggered: a node that restarted or was changed by hand is put right again."""
    events: list[tuple[str, str, str]] = []
    failed: list[str] = []
    for pod in sorted(pods, key=lambda p: p.name):
        desired = settings.get(pod.sts, ())
        if not desired:
            continue

        async def read(pod: PodView = pod, desired: tuple[Setting, ...] = desired
                       ) -> dict[str, dict[str, str]]:
            return {cmd: await asyncio.to_thread(info.get_config_sync, pod.name, cmd)
                    for cmd in sorted({s.get_command for s in desired})}

        try:
            todo = drift(desired, await read())
            if not todo:
                continue
            for setting in todo:
                await asyncio.to_thread(info.set_config_sync, pod.name, setting.set_command)
            still = drift(desired, await read())
        except AerospikeInfoError as exc:
            failed.append(f"pod {pod.name}: {exc}")
            continue
        done = [f"{s.reply_key}={s.value}" for s in todo if s not in still]
        if done:
            events.append(("Normal", "ConfigApplied",
                           f"pod {pod.name}: set without a restart: {', '.join(done)}"))
        if still:
            failed.append(f"pod {pod.name}: " + ", ".join(
                f"{s.reply_key} still not {s.value}" for s in still))
    if failed:
        return Cond("ConfigApplied", False, "SetConfigFailed",
                    "dynamic settings could not be applied: " + "; ".join(failed)), events
    return Cond("ConfigApplied", True, "InSync",
                "every node holds the spec's dynamic settings (set-config, no restart); "
                "other changes restart pods one at a time"), events


async def _send(info: AerospikeInfo, action: Quiesce | UndoQuiesce | Recluster
                ) -> tuple[str, str, str]:
    """Carry out a quiesce step with the typed, reply-checking commands; the Event to record.
    A refused or unexpected reply is a Warning; the next poll decides again from what the
    nodes then report (the decision never assumes a command worked)."""
    kind = type(action).__name__
    try:
        if isinstance(action, Quiesce):
            await asyncio.to_thread(info.quiesce_sync, action.pod)
        elif isinstance(action, UndoQuiesce):
            await asyncio.to_thread(info.quiesce_undo_sync, action.pod)
        else:
            result = await asyncio.to_thread(info.recluster_sync, action.pod)
            if result is ReclusterResult.IGNORED_BY_NON_PRINCIPAL:
                return ("Warning", "ReclusterIgnored",
                        f"{action.reason}: pod {action.pod} answered ignored-by-non-principal "
                        "(the principal changed); asking again")
    except AerospikeInfoError as exc:
        return "Warning", f"{kind}Failed", f"{action.reason}: {exc}"
    return "Normal", kind, f"{action.reason}: ok"


def _roll_step(ctx: Context, pods: list[PodView], hashes: dict[str, str],
               stability: Stability | Unreachable | None, max_unavailable: int) -> Any:
    if ctx.probe == "kubernetes":
        return kubernetes_roll_step(pods, hashes)
    return _roll_per_rack(sorted(pods, key=lambda p: (p.sts, p.ordinal)), hashes, stability,
                          max_unavailable)


def _roll_per_rack(pods: list[PodView], hashes: dict[str, str],
                   stability: Stability | Unreachable | None, max_unavailable: int) -> Any:
    # Each rack has its own config (rack-id): compare every pod with its own rack's hash.
    marked = tuple(PodRollState(p.name, "ok" if p.config_hash == hashes.get(p.sts) else "old",
                                p.ready and not p.terminating) for p in pods)
    return next_roll_step(RollState(pods=marked, desired_hash="ok",
                                    stability=stability or Unreachable("no pods to ask"),
                                    max_unavailable=max_unavailable))


def _status(ctx: Context, cc: CacheCluster, racks: Any, pods: list[PodView],
            replicas: dict[str, int], stability: Stability | Unreachable | None,
            action: ScaleAction, scaling_down: bool, scale_up: list[str], roll_message: str,
            old: dict[str, Any], generation: int | None, now: str,
            extra: list[Cond] | None = None) -> dict[str, Any]:
    alive = [p for p in pods if not p.terminating]
    ready = [p for p in alive if p.ready]
    desired = sum(r.desired for r in racks)
    zones = {r.sts_name: r.zone for r in rack_layout(cc.name, cc.spec)}
    rack_status = []
    for r in racks:
        rack_pods = [p for p in alive if p.sts == r.name]
        rack_status.append(RackStatus(
            name=r.name, zone=zones.get(r.name) or "", desired=r.desired,
            current=len(rack_pods), ready=sum(1 for p in rack_pods if p.ready)))
    all_ready = len(ready) == desired == len(alive)
    stable_ok = ctx.probe == "kubernetes" or (isinstance(stability, Stability)
                                              and stability.stable)
    conditions: list[Cond] = []
    problem = ""
    problem_reason = "AsExpected"
    if isinstance(stability, Unreachable):
        problem = f"Aerospike cannot be asked: {stability.summary}; the operator removes " \
                  "nothing and retries"
        problem_reason = HoldCause.UNREACHABLE.value
    elif isinstance(action, Hold) and scaling_down and action.needs_attention:
        problem = action.reason
        problem_reason = action.cause.value
    if scaling_down:
        reason = {RemoveOne: "RemovingNode", WaitMigrations: "WaitingForMigrations",
                  Quiesce: "Quiescing", WaitQuiesced: "Quiescing", Recluster: "Quiescing",
                  UndoQuiesce: "UndoingQuiesce"}.get(type(action), "Held")
        if isinstance(action, Hold) and action.cause is HoldCause.DRAINING_ROUTES:
            reason = "DrainingRoutes"
        conditions.append(Cond("ScalingDown", True, reason, action.reason))
        phase = "ScalingDown"
    else:
        conditions.append(Cond("ScalingDown", False, "NoScaleDown", "no node is leaving"))
        phase = "Ready" if all_ready and stable_ok else "Progressing"
    if scale_up:
        phase = "ScalingUp"
    if roll_message and not scaling_down:
        phase = "Rolling"
    if problem:
        phase = "Degraded"
    progressing = scaling_down or bool(scale_up) or bool(roll_message) or not all_ready
    old_ready: dict[str, Any] = next(
        (c for c in old.get("conditions", []) if c.get("type") == "Ready"), {})
    grows = growing(old_ready.get("status") == "True", old.get("readyReplicas") or 0,
                    len(ready), desired, scaling_down, bool(problem))
    if all_ready and stable_ok:
        ready_cond = Cond("Ready", True, "ClusterReady",
                          f"{len(ready)}/{desired} Aerospike pods ready"
                          + (f"; {KUBE_PROBE_NOTE}" if ctx.probe == "kubernetes"
                             else f"; cluster stable ({stability.summary})"
                             if isinstance(stability, Stability) else ""))
    else:
        why = f"{len(ready)}/{desired} Aerospike pods ready"
        if isinstance(stability, Stability | Unreachable) and not stable_ok:
            why += f"; {stability.summary}"
        ready_cond = Cond("Ready", False, "NotReady", why)
        if grows:  # still serving every record while new nodes join: stays in the routes
            ready_cond = Cond("Ready", True, "Growing",
                              f"{len(ready)}/{desired} Aerospike pods ready; the cluster "
                              "serves while new nodes join and data migrates to them")
    conditions = [
        ready_cond,
        Cond("Progressing", progressing,
             "Reconciling" if progressing else "Converged",
             roll_message or (action.reason if scaling_down else "")
             or ("waiting for pods" if progressing else "children match the spec")),
        Cond("Degraded", bool(problem), problem_reason if problem else "AsExpected",
             problem or "no problem seen"),
        *conditions,
        *(extra or []),
    ]
    return CacheClusterStatus(
        observed_generation=generation,
        phase=phase,
        replicas=len(alive),
        ready_replicas=len(ready),
        selector=selector_string(cc.name),
        probe=ctx.probe,
        racks=rack_status,
        cluster_key=stability.cluster_key if isinstance(stability, Stability) else None,
        migrating_partitions=(stability.partitions_remaining
                              if isinstance(stability, Stability) else None),
        conditions=[Condition.model_validate(c) for c in merge_conditions(
            old.get("conditions", []), conditions, generation, now)],
    ).to_api()
