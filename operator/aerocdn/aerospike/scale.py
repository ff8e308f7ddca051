"""Pure scale-down and rolling-restart decisions over what Aerospike answered.

:func:`next_scale_step` is level-triggered: the controller calls it on every reconcile with
what it sees now and carries out the one action it returns (or none), then asks again. Rules:

* nothing is removed unless Aerospike answered (``Unreachable`` -> :class:`Hold`);
* one node at a time: while a removed pod is still terminating, wait;
* a pod that is down and has not recovered blocks scale-down;
* only from a stable cluster (see :mod:`aerocdn.aerospike.stability`): after each removal the
  cluster must be stable again with migrations at 0 before the next one;
* racks are shrunk one at a time, in the order given; the next rack only once the previous has
  reached its size and migrations are done (the stability rule guarantees the latter);
* Enterprise Edition: the leaving node is quiesced first (``quiesce:`` -> ``pending_quiesce``,
  ``recluster:`` on the principal -> ``effective_is_quiesced`` / ``nodes_quiesced``, then the
  cluster is stable again once the master hand-off migrations are done); a quiesce left over
  from a scale-down that was reverted is undone (``quiesce-undo:`` then ``recluster:``);
* Community Edition answers ``ERROR:25:enterprise only`` to ``quiesce:``: the quiesce steps are
  skipped, the rest is the same.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from aerocdn.aerospike.parse import Edition
from aerocdn.aerospike.stability import NodeObservation, Stability, Unreachable

# --------------------------------------------------------------------------- actions


class HoldCause(enum.Enum):
    """Why a step is held: the status decides Degraded from this, never from the wording."""

    WAITING = "Waiting"  # an ordinary wait (cluster settling, a question to ask again)
    NODE_DOWN = "NodeDown"  # a pod is down and has not recovered: needs attention
    UNREACHABLE = "AerospikeUnreachable"  # Aerospike could not be asked at all
    DRAINING_ROUTES = "DrainingRoutes"  # routing plans still send traffic to the cluster
    NOT_ALLOWED = "NotAllowed"  # the spec forbids the step (maxUnavailable 0)


@dataclass(frozen=True, slots=True)
class Hold:
    """Do nothing now; ``reason`` says why (for status and Events), ``cause`` what kind."""

    reason: str
    cause: HoldCause = HoldCause.WAITING

    @property
    def needs_attention(self) -> bool:
        return self.cause in (HoldCause.NODE_DOWN, HoldCause.UNREACHABLE)


@dataclass(frozen=True, slots=True)
class WaitMigrations:
    """A node left or joined, or a rebalance runs: wait until stable with migrations at 0."""

    reason: str


@dataclass(frozen=True, slots=True)
class Quiesce:
    """Send ``quiesce:`` to ``pod`` (Enterprise Edition), then check ``pending_quiesce``."""

    pod: str
    node_id: str

    @property
    def reason(self) -> str:
        return f"quiescing pod {self.pod} (node {self.node_id}) before it leaves"


@dataclass(frozen=True, slots=True)
class Recluster:
    """Send ``recluster:`` to the principal ``pod`` (non-principals ignore it)."""

    pod: str
    node_id: str
    why: str

    @property
    def reason(self) -> str:
        return f"recluster on principal pod {self.pod} (node {self.node_id}): {self.why}"


@dataclass(frozen=True, slots=True)
class WaitQuiesced:
    """Quiesce was accepted but is not yet effective everywhere."""

    reason: str


@dataclass(frozen=True, slots=True)
class UndoQuiesce:
    """Send ``quiesce-undo:`` to ``pod``: a quiesce left over from a reverted scale-down."""

    pod: str
    node_id: str

    @property
    def reason(self) -> str:
        return f"undoing a left-over quiesce on pod {self.pod} (node {self.node_id})"


@dataclass(frozen=True, slots=True)
class RemoveOne:
    """Remove exactly ``pod`` (the highest ordinal) from ``rack``: set its replicas to
    ``replicas``."""

    rack: str
    pod: str
    replicas: int
    why: str = ""

    @property
    def reason(self) -> str:
        return f"removing pod {self.pod} from rack {self.rack} ({self.why})"


@dataclass(frozen=True, slots=True)
class Done:
    reason: str = "no scale-down pending"


ScaleAction = (
    Hold | WaitMigrations | Quiesce | Recluster | WaitQuiesced | UndoQuiesce | RemoveOne | Done
)


# --------------------------------------------------------------------------- state


@dataclass(frozen=True, slots=True)
class RackPods:
    """One rack (one StatefulSet): its pods that exist now (ordered by ordinal), the replicas
    its StatefulSet is set to now, and the replicas it should end up with."""

    name: str
    pods: tuple[str, ...]
    replicas: int
    desired: int

    @property
    def excess(self) -> int:
        return len(self.pods) - self.desired


@dataclass(frozen=True, slots=True)
class ScaleState:
    racks: tuple[RackPods, ...]
    stability: Stability | Unreachable
    edition: Edition
    # Pods that Kubernetes reports down (not running / not ready for reasons other than the
    # cluster-stable gate) and that have not recovered.
    nodes_down: tuple[str, ...] = ()

    @property
    def desired_size(self) -> int:
        return sum(r.desired for r in self.racks)

    @property
    def current_size(self) -> int:
        return sum(len(r.pods) for r in self.racks)


# --------------------------------------------------------------------------- decision


def next_scale_step(state: ScaleState) -> ScaleAction:
    stability = state.stability
    if isinstance(stability, Unreachable):
        return Hold(f"{stability.summary}; removing nothing, will retry", HoldCause.UNREACHABLE)

    leaving_rack = next((r for r in state.racks if r.replicas < len(r.pods)), None)
    if leaving_rack is not None:
        going = ", ".join(leaving_rack.pods[leaving_rack.replicas :])
        return WaitMigrations(
            f"pod {going} of rack {leaving_rack.name} is leaving; waiting for it to stop and "
            "the cluster to be stable with migrations at 0"
        )

    shrinking = next((r for r in state.racks if r.excess > 0), None)
    if shrinking is None:
        return _settle_leftover_quiesce(state, stability)

    if state.nodes_down:
        down = ", ".join(state.nodes_down)
        return Hold(f"pod {down} is down and has not recovered; scale-down waits for it",
                    HoldCause.NODE_DOWN)
    if stability.observation.expected_size != state.current_size:
        return Hold(
            f"stability was asked for {stability.observation.expected_size} node(s) but "
            f"{state.current_size} pod(s) exist; asking again"
        )
    if not stability.stable:
        if stability.migrating:
            return WaitMigrations(stability.summary)
        return Hold(stability.summary)

    leaving_pod = shrinking.pods[-1]
    observation = stability.observation
    leaving = observation.node_for_pod(leaving_pod)
    if leaving is None:
        return Hold(f"pod {leaving_pod} is leaving but did not answer; removing nothing")

    if state.edition is Edition.UNKNOWN:
        return Hold("the Aerospike edition is not known yet (`edition` gave no answer)")

    if state.edition is Edition.ENTERPRISE:
        # A quiesce on any other node is left over (the scale-down target changed): undo first.
        for node in observation.nodes:
            if node.pod != leaving_pod and not node.quiesce.clear:
                return _undo_step(node, stability)
        action = _quiesce_step(leaving, stability)
        if action is not None:
            return action

    new_replicas = len(shrinking.pods) - 1
    quiesced = " after quiesce" if state.edition is Edition.ENTERPRISE else ""
    return RemoveOne(
        rack=shrinking.name,
        pod=leaving_pod,
        replicas=new_replicas,
        why=(
            f"cluster stable with key {stability.cluster_key} and no migrations{quiesced}; "
            f"{state.current_size} -> {state.current_size - 1} of {state.desired_size} desired"
        ),
    )


def _quiesce_step(leaving: NodeObservation, stability: Stability) -> ScaleAction | None:
    """Enterprise: the step that brings ``leaving`` to quiesced; None when it is."""
    q = leaving.quiesce
    if not q.pending:
        return Quiesce(pod=leaving.pod, node_id=leaving.node_id)
    if not q.effective:
        return _recluster(stability, f"make the quiesce of node {leaving.node_id} effective")
    not_seen = [n.node_id for n in stability.observation.nodes if n.quiesce.nodes_quiesced != 1]
    if not_seen:
        return WaitQuiesced(
            f"node {leaving.node_id} is quiesced but nodes_quiesced is not 1 on "
            f"{', '.join(not_seen)}"
        )
    return None


def _undo_step(node: NodeObservation, stability: Stability) -> ScaleAction:
    q = node.quiesce
    if q.any_pending:
        return UndoQuiesce(pod=node.pod, node_id=node.node_id)
    return _recluster(stability, f"end the undone quiesce of node {node.node_id}")


def _recluster(stability: Stability, why: str) -> ScaleAction:
    principal_pod = stability.principal_pod
    if stability.principal is None or principal_pod is None:
        return Hold(f"cannot {why}: the principal node is not among the answering pods")
    return Recluster(pod=principal_pod, node_id=stability.principal, why=why)


def _settle_leftover_quiesce(state: ScaleState, stability: Stability) -> ScaleAction:
    if state.edition is not Edition.ENTERPRISE:
        return Done()
    leftovers = [n for n in stability.observation.nodes if not n.quiesce.clear]
    if not leftovers:
        return Done()
    node = leftovers[0]
    if node.quiesce.any_pending:
        return UndoQuiesce(pod=node.pod, node_id=node.node_id)  # harmless at any time
    # Only the recluster that ends it is left: like every rebalance, only from a stable cluster.
    if not stability.stable:
        if stability.migrating:
            return WaitMigrations(stability.summary)
        return Hold(stability.summary)
    return _undo_step(node, stability)


# --------------------------------------------------------------------------- rolling restart


@dataclass(frozen=True, slots=True)
class PodRollState:
    name: str
    config_hash: str
    ready: bool


@dataclass(frozen=True, slots=True)
class RollState:
    pods: tuple[PodRollState, ...]  # ordered by ordinal
    desired_hash: str
    stability: Stability | Unreachable
    max_unavailable: int = 1


@dataclass(frozen=True, slots=True)
class RestartPod:
    """Delete ``pod`` so its StatefulSet recreates it with the new configuration."""

    pod: str

    @property
    def reason(self) -> str:
        return f"restarting pod {self.pod} for the new configuration"


RollAction = Hold | WaitMigrations | RestartPod | Done


def next_roll_step(state: RollState) -> RollAction:
    """One pod at a time, within maxUnavailable, only from a stable cluster; highest ordinal
    first (as a StatefulSet rolls)."""
    outdated = [p for p in state.pods if p.config_hash != state.desired_hash]
    if not outdated:
        return Done("every pod runs the desired configuration")
    stability = state.stability
    if isinstance(stability, Unreachable):
        return Hold(f"{stability.summary}; restarting nothing, will retry", HoldCause.UNREACHABLE)
    if state.max_unavailable < 1:
        return Hold("maxUnavailable is 0: no pod may be restarted", HoldCause.NOT_ALLOWED)
    unavailable = [p.name for p in state.pods if not p.ready]
    if unavailable:
        return Hold(
            f"pod {', '.join(unavailable)} not ready; one restart at a time "
            f"(maxUnavailable={state.max_unavailable})"
        )
    if not stability.stable:
        if stability.migrating:
            return WaitMigrations(stability.summary)
        return Hold(stability.summary)
    return RestartPod(outdated[-1].name)
