"""Pure decisions for a CacheCluster that do not depend on Aerospike's answers: what the
pods look like, refused spec changes, and the Kubernetes-readiness stand-in used with
``--aerospike-probe=kubernetes`` (clusters without real Aerospike pods)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aerocdn.aerospike.scale import (
    Done,
    Hold,
    HoldCause,
    RackPods,
    RemoveOne,
    RestartPod,
    RollAction,
    ScaleAction,
    WaitMigrations,
)
from aerocdn.constants import CONFIG_HASH, READINESS_GATE
from aerocdn.controller.volumes import claim_sizes

KUBE_PROBE_NOTE = "probe=kubernetes: pod readiness stands in, Aerospike was not asked"


@dataclass(frozen=True)
class PodView:
    name: str
    sts: str
    ordinal: int
    ip: str | None
    running: bool
    ready: bool  # every container ready (the readiness gate is not part of this)
    terminating: bool
    config_hash: str | None
    gate: str | None  # current value of the readiness gate condition ("True"/"False")
    gate_reason: str | None
    gate_message: str | None


def pod_view(pod: dict[str, Any]) -> PodView:
    meta, status = pod["metadata"], pod.get("status", {})
    sts = next((r["name"] for r in meta.get("ownerReferences", [])
                if r.get("kind") == "StatefulSet"), "")
    ordinal = meta["name"].rsplit("-", 1)[-1]
    statuses = status.get("containerStatuses") or []
    gate: dict[str, Any] = next(
        (c for c in status.get("conditions", []) if c.get("type") == READINESS_GATE), {})
    return PodView(
        name=meta["name"],
        sts=sts,
        ordinal=int(ordinal) if ordinal.isdigit() else -1,
        ip=status.get("podIP"),
        running=status.get("phase") == "Running",
        ready=bool(statuses) and all(c.get("ready") for c in statuses),
        terminating=bool(meta.get("deletionTimestamp")),
        config_hash=(meta.get("annotations") or {}).get(CONFIG_HASH),
        gate=gate.get("status"),
        gate_reason=gate.get("reason"),
        gate_message=gate.get("message"),
    )


def racks_of(layout: dict[str, int], sts_replicas: dict[str, int],
             pods: list[PodView]) -> tuple[RackPods, ...]:
    """Racks as the scale logic sees them: desired from the spec (0 for a removed rack),
    replicas from the live StatefulSet, pods that exist (by ordinal)."""
    names = sorted(set(layout) | set(sts_replicas))
    racks = []
    for name in names:
        own = sorted((p for p in pods if p.sts == name), key=lambda p: p.ordinal)
        racks.append(RackPods(
            name=name,
            pods=tuple(p.name for p in own),
            replicas=sts_replicas.get(name, layout.get(name, 0)),
            desired=layout.get(name, 0),
        ))
    return tuple(racks)


def kubernetes_scale_step(racks: tuple[RackPods, ...], pods: list[PodView]) -> ScaleAction:
    """The scale-down rule with pod readiness standing in for Aerospike's answer."""
    leaving = next((r for r in racks if r.replicas < len(r.pods)), None)
    if leaving is not None:
        going = ", ".join(leaving.pods[leaving.replicas:])
        return WaitMigrations(f"pod {going} of rack {leaving.name} is leaving; waiting for it "
                              f"to stop ({KUBE_PROBE_NOTE})")
    shrinking = next((r for r in racks if r.excess > 0), None)
    if shrinking is None:
        return Done()
    down = [p.name for p in pods if not (p.running and p.ready) or p.terminating]
    if down:
        return Hold(f"pod {', '.join(down)} not ready; scale-down waits ({KUBE_PROBE_NOTE})",
                    HoldCause.NODE_DOWN)
    return RemoveOne(rack=shrinking.name, pod=shrinking.pods[-1],
                     replicas=len(shrinking.pods) - 1,
                     why=f"all pods ready ({KUBE_PROBE_NOTE})")


def kubernetes_roll_step(pods: list[PodView], desired_hash: dict[str, str]) -> RollAction:
    outdated = [p for p in sorted(pods, key=lambda p: (p.sts, p.ordinal))
                if p.config_hash != desired_hash.get(p.sts)]
    if not outdated:
        return Done("every pod runs the desired configuration")
    down = [p.name for p in pods if not (p.running and p.ready) or p.terminating]
    if down:
        return Hold(f"pod {', '.join(down)} not ready; one restart at a time "
                    f"({KUBE_PROBE_NOTE})")
    return RestartPod(outdated[-1].name)


def refused_changes(desired_sts: list[dict[str, Any]], live_sts: dict[str, dict[str, Any]]
                    ) -> list[str]:
    """Spec changes that cannot be carried out safely: volumes cannot be added, removed or
    shrunk (shrinking loses data; the apiserver forbids any edit of volumeClaimTemplates).
    Growing one is carried out by volumes.plan_volume_growth."""
    problems = []
    for sts in desired_sts:
        live = live_sts.get(sts["metadata"]["name"])
        if live is None:
            continue
        want = {name: size for name, (size, _, _) in claim_sizes(sts).items()}
        have = {name: size for name, (size, _, _) in claim_sizes(live).items()}
        for claim in sorted(set(want) | set(have)):
            if claim not in have:
                problems.append(f"StatefulSet {sts['metadata']['name']}: adding volume {claim} "
                                "(switching a namespace to persistent storage) needs the rack "
                                "to be rebuilt; refused")
            elif claim not in want:
                problems.append(f"StatefulSet {sts['metadata']['name']}: removing volume "
                                f"{claim} would drop its data; refused")
            elif want[claim] < have[claim]:
                problems.append(f"StatefulSet {sts['metadata']['name']}: shrinking volume "
                                f"{claim} from {have[claim]} to {want[claim]} bytes would lose "
                                "data; refused (set the size back)")
    return problems


def growing(was_ready: bool, ready_before: int, ready_now: int, desired: int,
            scaling_down: bool, problem: bool) -> bool:
    """Whether a cluster that is not fully ready is only *growing*: it was Ready, none of the
    pods that were ready has gone (ready_now >= ready_before), more are wanted, nothing leaves
    and nothing is wrong. Such a cluster keeps serving reads while data migrates to the new
    nodes, so it stays Ready (reason Growing) and in the cache routes: weighting it out would
    send its region's misses to a farther cluster or the origin for the whole migration, and
    ramp it in again from zero afterwards. A pod that was ready and is not (a crash, an
    eviction) is not growth: Ready=False, and routing weights the cluster out as before."""
    return (was_ready and not scaling_down and not problem and ready_now > 0
            and ready_before <= ready_now < desired)
