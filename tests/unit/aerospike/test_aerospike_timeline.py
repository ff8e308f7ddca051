"""Replay the real scale-down timeline (fixtures/03-scaledown-timeline.tsv) through the
decisions: an operator scaling 3 -> 1 would remove A3 only from a stable cluster, and would
not remove a second node before the migrations A3's departure started are finished.

The timeline holds, per node and poll, the raw ``cluster-stable:size=<expected>`` reply,
``cluster_size``, the migration counters and the quiesce fields. It does not hold
``cluster_key``, ``cluster_principal``, ``cluster_integrity`` or ``migrate_allowed``; we take
them from the statistics captured in the same phase (the key is the ``cluster-stable`` key when
it answered one, else the key the statistics fixtures show for that phase and size;
integrity/migrate_allowed were true in every captured ``statistics``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator

from tests.unit.aerospike.aerofixtures import Fixtures, TimelineRow

from aerocdn.aerospike.parse import (
    Edition,
    NamespaceStats,
    NodeStatistics,
    cluster_stable_command,
    parse_cluster_stable,
)
from aerocdn.aerospike.scale import (
    Hold,
    RackPods,
    RemoveOne,
    ScaleAction,
    ScaleState,
    WaitMigrations,
    next_scale_step,
)
from aerocdn.aerospike.stability import (
    ClusterObservation,
    NodeObservation,
    Stability,
    assess_stability,
    readiness_gate_value,
)

# (phase, cluster_size) -> (cluster_key, principal), from the statistics fixtures:
# 03a-after-recluster-statistics-A1 (55D002E1CE20, A3), 03b-migrating / 03c-done statistics
# (EF855FFBC831, A2), 03d-joining-migrating-statistics-A1 (20D36EF9ADFE, A3).
KEYS = {
    ("after-recluster", 3): ("55D002E1CE20", "A3"),
    ("stop-A3", 3): ("55D002E1CE20", "A3"),
    ("stop-A3", 2): ("EF855FFBC831", "A2"),
    ("restart-A3", 2): ("EF855FFBC831", "A2"),
    ("restart-A3", 3): ("20D36EF9ADFE", "A3"),
}
POD = {"A1": "cc-0", "A2": "cc-1", "A3": "cc-2"}


def polls(rows: list[TimelineRow], phase: str) -> Iterator[list[TimelineRow]]:
    """Rows of one phase grouped into polls (one row per node; a repeated node starts the
    next poll)."""
    poll: list[TimelineRow] = []
    for row in rows:
        if row.phase != phase:
            continue
        if any(r.node == row.node for r in poll):
            yield poll
            poll = []
        poll.append(row)
    if poll:
        yield poll


@functools.cache
def _bases(fx: Fixtures) -> tuple[NodeStatistics, NamespaceStats]:
    return fx.statistics("03c-done-statistics-A1.txt"), fx.namespace(
        "03c-done-namespace-cache-A1.txt"
    )


def observe(fx: Fixtures, poll: list[TimelineRow], expected: int) -> ClusterObservation:
    base_stats, base_ns = _bases(fx)
    command = cluster_stable_command(expected)
    nodes = []
    for row in poll:
        answer = parse_cluster_stable(command, row.cluster_stable)
        key, principal = KEYS[(row.phase, row.cluster_size)]
        if answer.key is not None and row.phase == "after-recluster":
            key = answer.key  # the recluster changed the key during this phase
        stats = dataclasses.replace(
            base_stats,
            cluster_key=key,
            cluster_principal=principal,
            cluster_size=row.cluster_size,
            migrate_partitions_remaining=row.migrate_partitions_remaining,
        )
        ns = dataclasses.replace(
            base_ns,
            migrate_tx_partitions_remaining=row.migrate_tx_partitions_remaining,
            migrate_rx_partitions_remaining=row.migrate_rx_partitions_remaining,
            master_objects=row.master_objects,
            prole_objects=row.prole_objects,
            pending_quiesce=row.pending_quiesce,
            effective_is_quiesced=row.effective_is_quiesced,
            nodes_quiesced=row.nodes_quiesced,
        )
        nodes.append(
            NodeObservation(
                pod=POD[row.node],
                node_id=row.node,
                statistics=stats,
                cluster_stable=answer,
                namespaces={"cache": ns},
                edition=Edition.COMMUNITY,
            )
        )
    return ClusterObservation(expected, tuple(nodes))


def quiet(poll: list[TimelineRow], expected: int) -> bool:
    """What a careful human reads off the rows: every node answers a key, sees the expected
    size and has nothing left to migrate."""
    return all(
        not r.cluster_stable.startswith("ERROR")
        and r.cluster_size == expected
        and r.migrate_partitions_remaining == 0
        and r.migrate_tx_partitions_remaining == 0
        and r.migrate_rx_partitions_remaining == 0
        for r in poll
    )


def decide(fx: Fixtures, poll: list[TimelineRow], pods: tuple[str, ...]) -> ScaleAction:
    observation = observe(fx, poll, expected=len(pods))
    return next_scale_step(
        ScaleState(
            racks=(RackPods("rack-0", pods, replicas=len(pods), desired=1),),
            stability=assess_stability(observation),
            edition=Edition.COMMUNITY,
        )
    )


def test_replay_scale_down_never_removes_second_node_mid_migration(fx: Fixtures) -> None:
    rows = fx.timeline()
    removals: list[tuple[str, float, str]] = []
    waited_on_migrations = 0

    # Phase 1: 3 nodes right after a recluster (keys change for ~0.2 s). Desired size 1.
    pods: tuple[str, ...] = ("cc-0", "cc-1", "cc-2")
    for poll in polls(rows, "after-recluster"):
        action = decide(fx, poll, pods)
        if isinstance(action, RemoveOne):
            assert quiet(poll, 3), f"removed {action.pod} at t={poll[0].t} from {poll}"
            removals.append((poll[0].phase, poll[0].t, action.pod))
            break
        assert not quiet(poll, 3), f"held at t={poll[0].t} on a quiet cluster: {action}"
    assert removals == [("after-recluster", 0.21, "cc-2")]

    # Phase 2: cc-2 (A3) is gone from Kubernetes at once (the worst case: the survivors still
    # count it for ~1.5 s), migrations then run for ~57 s.
    pods = ("cc-0", "cc-1")
    stop_polls = list(polls(rows, "stop-A3"))
    assert len(stop_polls) > 100
    for poll in stop_polls:
        action = decide(fx, poll, pods)
        assert readiness_gate_value(assess_stability(observe(fx, poll, 2))) == quiet(poll, 2)
        if isinstance(action, RemoveOne):
            assert quiet(poll, 2), f"second removal at t={poll[0].t} mid-migration: {poll}"
            removals.append((poll[0].phase, poll[0].t, action.pod))
            break
        assert isinstance(action, Hold | WaitMigrations), action
        if isinstance(action, WaitMigrations):
            waited_on_migrations += 1
            assert "partitions still migrating" in action.reason

    # The second node goes only at the first quiet poll, the last one of the capture.
    assert removals[1] == ("stop-A3", stop_polls[-1][0].t, "cc-1")
    assert waited_on_migrations > 100
    last_migrating = max(
        p[0].t for p in stop_polls if any(r.migrate_partitions_remaining for r in p)
    )
    assert removals[1][1] > last_migrating


def test_replay_scale_up_keeps_gate_closed_while_migrating(fx: Fixtures) -> None:
    # Scale-up 2 -> 3 (A3 restarted empty): A1 and A2 were polled; while the joining node's
    # migrations run, the readiness gate stays closed on what they answer.
    rows = fx.timeline()
    migrating_polls = 0
    for poll in polls(rows, "restart-A3"):
        if poll[0].cluster_size != 3 or len(poll) != 2:
            continue
        # Only A1 and A2 were polled (so the gate is closed for A3's missing answer too); the
        # verdict must still name the migrations.
        stability = assess_stability(observe(fx, poll, expected=3))
        if any(r.migrate_partitions_remaining for r in poll):
            migrating_polls += 1
            assert not readiness_gate_value(stability)
            assert isinstance(stability, Stability) and stability.migrating
    assert migrating_polls > 50
