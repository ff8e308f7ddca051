"""Observations of an Aerospike cluster and the pure stability verdict over them.

A cluster is *stable* (safe to take one node away, safe to restart one pod) only when, as
Aerospike itself answers:

* every expected node answered, and every node reports the same ``cluster_key``;
* ``cluster_size`` == number of nodes answering == the expected size;
* ``cluster_integrity`` and ``migrate_allowed`` are true, ``cluster_is_member`` is true;
* ``migrate_partitions_remaining`` is 0 on every node (and each namespace's
  ``migrate_tx/rx_partitions_remaining`` too);
* ``cluster-stable:size=N;ignore-migrations=false`` answers a cluster key on every node, the
  same key everywhere, equal to the ``statistics`` key.

Anything else is *not stable*, with one human-readable reason per fact, naming the pod/node,
e.g. ``"pod cache-0 (node A1): 2674 partitions still migrating"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aerocdn.aerospike.parse import (
    ClusterStableAnswer,
    Edition,
    NamespaceStats,
    NodeStatistics,
)

READINESS_GATE = "aerocdn.dev/cluster-stable"


@dataclass(frozen=True, slots=True)
class NodeObservation:
    """What one node answered, in one round of questions."""

    pod: str
    node_id: str
    statistics: NodeStatistics
    cluster_stable: ClusterStableAnswer
    namespaces: Mapping[str, NamespaceStats] = field(default_factory=dict)
    edition: Edition = Edition.UNKNOWN
    build: str = ""
    address: str = ""

    @property
    def label(self) -> str:
        if self.pod == self.node_id:
            return f"node {self.node_id}"
        return f"pod {self.pod} (node {self.node_id})"

    @property
    def quiesce(self) -> QuiesceState:
        return quiesce_state(self)


@dataclass(frozen=True, slots=True)
class PodFailure:
    """A pod that could not be asked (unreachable, or a reply we could not use)."""

    pod: str
    reason: str


@dataclass(frozen=True, slots=True)
class ClusterObservation:
    """One round of info questions to every pod the operator expects to be a node."""

    expected_size: int
    nodes: tuple[NodeObservation, ...]
    failures: tuple[PodFailure, ...] = ()

    def node_for_pod(self, pod: str) -> NodeObservation | None:
        return next((n for n in self.nodes if n.pod == pod), None)

    def pod_for_node(self, node_id: str) -> str | None:
        return next((n.pod for n in self.nodes if n.node_id == node_id), None)

    @property
    def edition(self) -> Edition:
        """The edition all answering nodes agree on, else UNKNOWN."""
        editions = {n.edition for n in self.nodes}
        return editions.pop() if len(editions) == 1 else Edition.UNKNOWN


@dataclass(frozen=True, slots=True)
class QuiesceState:
    """Quiesce fields of one node, over all its namespaces."""

    pending: bool  # quiesce: was accepted (all namespaces pending_quiesce)
    effective: bool  # a recluster made it effective (all namespaces effective_is_quiesced)
    any_pending: bool
    any_effective: bool
    nodes_quiesced: int  # the largest nodes_quiesced any namespace reports

    @property
    def clear(self) -> bool:
        return not (self.any_pending or self.any_effective)


def quiesce_state(node: NodeObservation) -> QuiesceState:
    stats = list(node.namespaces.values())
    if not stats:
        return QuiesceState(False, False, False, False, 0)
    return QuiesceState(
        pending=all(s.pending_quiesce for s in stats),
        effective=all(s.effective_is_quiesced for s in stats),
        any_pending=any(s.pending_quiesce for s in stats),
        any_effective=any(s.effective_is_quiesced for s in stats),
        nodes_quiesced=max(s.nodes_quiesced for s in stats),
    )


@dataclass(frozen=True, slots=True)
class Unreachable:
    """Aerospike could not be asked at all: the operator removes nothing and says why."""

    reason: str

    @property
    def stable(self) -> bool:
        return False

    @property
    def summary(self) -> str:
        return f"Aerospike cannot be reached: {self.reason}"


@dataclass(frozen=True, slots=True)
class Stability:
    stable: bool
    reasons: tuple[str, ...]
    observation: ClusterObservation
    cluster_key: str | None = None  # the agreed key, when all nodes agree
    principal: str | None = None  # the agreed principal node id, when all nodes agree
    migrating: bool = False  # some node reports partitions still to migrate
    # ``reasons`` without the numbers that change on every poll while data migrates (the
    # partition counts): what conditions, Events and gate messages say, so that a reconcile
    # writes only when the situation changes, not every time a count goes down.
    brief_reasons: tuple[str, ...] = ()
    # partitions still to migrate, summed over the answering nodes (a status field / metric)
    partitions_remaining: int = 0

    @property
    def summary(self) -> str:
        """One line without changing counts (for conditions, Events, gate messages)."""
        if self.stable:
            return (
                f"stable: {self.observation.expected_size} node(s), cluster key "
                f"{self.cluster_key}, no migrations"
            )
        return "not stable: " + "; ".join(self.brief_reasons or self.reasons)

    @property
    def detail(self) -> str:
        """Like :attr:`summary`, with the partition counts (logs)."""
        if self.stable:
            return self.summary
        return "not stable: " + "; ".join(self.reasons)

    @property
    def principal_pod(self) -> str | None:
        return None if self.principal is None else self.observation.pod_for_node(self.principal)


def assess_stability(
    observation: ClusterObservation, expected_size: int | None = None
) -> Stability | Unreachable:
    """The stability verdict for one observation (pure). ``expected_size`` defaults to the
    observation's own; it is the number of Aerospike pods that exist right now."""
    expected = observation.expected_size if expected_size is None else expected_size
    nodes = observation.nodes
    if not nodes:
        why = "; ".join(f"pod {f.pod}: {f.reason}" for f in observation.failures)
        return Unreachable(why or "no Aerospike pod to ask")

    reasons: list[str] = [f"pod {f.pod}: {f.reason}" for f in observation.failures]
    brief: dict[int, str] = {}  # index in reasons -> the same reason without counts
    remaining = 0
    if len(nodes) != expected:
        reasons.append(f"{len(nodes)} node(s) answered, {expected} expected")
    seen: dict[str, str] = {}
    for node in nodes:
        if node.node_id in seen:
            reasons.append(f"{node.label} and pod {seen[node.node_id]} report the same node id")
        seen[node.node_id] = node.pod

    migrating = False
    for node in nodes:
        st = node.statistics
        if st.cluster_size != expected:
            reasons.append(f"{node.label}: cluster_size is {st.cluster_size}, expected {expected}")
        if not st.cluster_is_member:
            reasons.append(f"{node.label}: not a member of the cluster (cluster_is_member=false)")
        if not st.cluster_integrity:
            reasons.append(f"{node.label}: cluster_integrity is false")
        if not st.migrate_allowed:
            reasons.append(f"{node.label}: migrate_allowed is false (a rebalance is starting)")
        if st.migrate_partitions_remaining > 0:
            migrating = True
            remaining += st.migrate_partitions_remaining
            brief[len(reasons)] = f"{node.label}: partitions still migrating"
            reasons.append(
                f"{node.label}: {st.migrate_partitions_remaining} partitions still migrating"
            )
        else:
            for ns in node.namespaces.values():
                if ns.migrations_remaining > 0:
                    migrating = True
                    remaining += ns.migrations_remaining
                    brief[len(reasons)] = (
                        f"{node.label}: namespace {ns.name} has partitions still migrating"
                    )
                    reasons.append(
                        f"{node.label}: namespace {ns.name} has "
                        f"{ns.migrate_tx_partitions_remaining} tx / "
                        f"{ns.migrate_rx_partitions_remaining} rx partitions still migrating"
                    )
        answer = node.cluster_stable
        if not answer.ok:
            reasons.append(f"{node.label}: {answer.command} answered {answer.describe()}")
        elif answer.key != st.cluster_key:
            reasons.append(
                f"{node.label}: cluster key changed while asking "
                f"(statistics {st.cluster_key}, cluster-stable {answer.key})"
            )

    keys = {n.statistics.cluster_key for n in nodes}
    if len(keys) > 1:
        detail = ", ".join(f"{n.node_id}={n.statistics.cluster_key}" for n in nodes)
        reasons.append(f"nodes disagree on cluster_key: {detail}")
    stable_keys = {n.cluster_stable.key for n in nodes if n.cluster_stable.ok}
    if len(stable_keys) > 1:
        detail = ", ".join(f"{n.node_id}={n.cluster_stable.key}" for n in nodes)
        reasons.append(f"nodes disagree on the cluster-stable key: {detail}")
    principals = {n.statistics.cluster_principal for n in nodes}
    if len(principals) > 1:
        detail = ", ".join(f"{n.node_id}->{n.statistics.cluster_principal}" for n in nodes)
        reasons.append(f"nodes disagree on the principal: {detail}")

    return Stability(
        stable=not reasons,
        reasons=tuple(reasons),
        observation=observation,
        cluster_key=keys.pop() if len(keys) == 1 else None,
        principal=principals.pop() if len(principals) == 1 else None,
        migrating=migrating,
        brief_reasons=tuple(brief.get(i, r) for i, r in enumerate(reasons)),
        partitions_remaining=remaining,
    )


def readiness_gate_value(stability: Stability | Unreachable) -> bool:
    """Value of the pod readiness gate ``aerocdn.dev/cluster-stable``: true only when the
    cluster is stable with migrations done, so the PDB blocks a second eviction meanwhile."""
    return isinstance(stability, Stability) and stability.stable


def readiness_gate_condition(stability: Stability | Unreachable) -> dict[str, str]:
    """The pod status condition to write for the readiness gate (without timestamps)."""
    ok = readiness_gate_value(stability)
    if isinstance(stability, Unreachable):
        reason = "AerospikeUnreachable"
    elif ok:
        reason = "ClusterStable"
    elif isinstance(stability, Stability) and stability.migrating:
        reason = "MigrationsRunning"
    else:
        reason = "ClusterNotStable"
    return {
        "type": READINESS_GATE,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": stability.summary,
    }
