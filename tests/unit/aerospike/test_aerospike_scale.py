"""Scale-down and rolling-restart decisions on the real replies (fixtures/).

The fixtures come from Community Edition. For the Enterprise quiesce steps we take the same
parsed replies and set the quiesce fields (which CE reports too, always false/0) to what an
Enterprise node reports after ``quiesce:`` / ``recluster:``; everything else stays real.
"""

from __future__ import annotations

import dataclasses

import pytest
from tests.unit.aerospike.aerofixtures import Fixtures

from aerocdn.aerospike.errors import InfoErrorReply
from aerocdn.aerospike.parse import Edition, edition_from_error, reply_value
from aerocdn.aerospike.scale import (
    Done,
    Hold,
    PodRollState,
    Quiesce,
    RackPods,
    Recluster,
    RemoveOne,
    RestartPod,
    RollState,
    ScaleState,
    UndoQuiesce,
    WaitMigrations,
    WaitQuiesced,
    next_roll_step,
    next_scale_step,
)
from aerocdn.aerospike.stability import (
    ClusterObservation,
    PodFailure,
    Stability,
    Unreachable,
    assess_stability,
)

PODS3 = ("cc-0", "cc-1", "cc-2")


def loaded_three(
    fx: Fixtures, a3_namespace: str = "03-loaded-namespace-cache-A3.txt"
) -> ClusterObservation:
    """3 nodes, 200k records, stable (key 3AFD20E7EDB3, principal A3); pods cc-0..cc-2."""
    stats = {
        "A1": "03-loaded-statistics-A1.txt",
        "A2": "02-three-statistics-A2.txt",  # same cluster key, before the load
        "A3": "02-three-statistics-A3.txt",
    }
    answers = {
        "A1": "03-loaded-cluster-stable-size3-A1.txt",
        "A2": "02-three-cluster-stable-size3-A2.txt",
        "A3": "02-three-cluster-stable-size3-A3.txt",
    }
    namespaces = {
        "A1": "03-loaded-namespace-cache-A1.txt",
        "A2": "03-loaded-namespace-cache-A2.txt",
        "A3": a3_namespace,
    }
    nodes = tuple(
        fx.node(
            node,
            pod=f"cc-{i}",
            statistics=stats[node],
            cluster_stable=answers[node],
            namespace=namespaces[node],
        )
        for i, node in enumerate(("A1", "A2", "A3"))
    )
    return ClusterObservation(3, nodes)


def done_two(fx: Fixtures, pods: tuple[str, str] = ("cc-0", "cc-1")) -> ClusterObservation:
    """2 nodes after the scale-down, migrations complete (key EF855FFBC831, principal A2)."""
    nodes = tuple(
        fx.node(
            f"A{i}",
            pod=pods[i - 1],
            statistics=f"03c-done-statistics-A{i}.txt",
            cluster_stable=f"03c-done-cluster-stable-size2-A{i}.txt",
            namespace=f"03c-done-namespace-cache-A{i}.txt",
        )
        for i in (1, 2)
    )
    return ClusterObservation(2, nodes)


def migrating_two(fx: Fixtures, pods: tuple[str, str] = ("cc-0", "cc-1")) -> ClusterObservation:
    """2 nodes right after A3 left, migrations running."""
    nodes = tuple(
        fx.node(
            f"A{i}",
            pod=pods[i - 1],
            statistics=f"03b-migrating-statistics-A{i}.txt",
            cluster_stable="03b-migrating-cluster-stable-size2-A1.txt",
            namespace=f"03b-migrating-namespace-cache-A{i}.txt",
        )
        for i in (1, 2)
    )
    return ClusterObservation(2, nodes)


def as_enterprise(
    observation: ClusterObservation, quiesce: dict[str, tuple[bool, bool]], nodes_quiesced: int
) -> ClusterObservation:
    """Set the quiesce fields: quiesce maps node id -> (pending_quiesce, effective_is_quiesced);
    every node reports ``nodes_quiesced``."""
    nodes = []
    for node in observation.nodes:
        pending, effective = quiesce.get(node.node_id, (False, False))
        namespaces = {
            name: dataclasses.replace(
                ns,
                pending_quiesce=pending,
                effective_is_quiesced=effective,
                nodes_quiesced=nodes_quiesced,
            )
            for name, ns in node.namespaces.items()
        }
        nodes.append(dataclasses.replace(node, namespaces=namespaces, edition=Edition.ENTERPRISE))
    return dataclasses.replace(observation, nodes=tuple(nodes))


def state(
    observation: ClusterObservation | Unreachable,
    *,
    pods: tuple[str, ...] = PODS3,
    desired: int,
    replicas: int | None = None,
    edition: Edition = Edition.COMMUNITY,
    nodes_down: tuple[str, ...] = (),
) -> ScaleState:
    stability = (
        observation if isinstance(observation, Unreachable) else assess_stability(observation)
    )
    rack = RackPods(
        name="rack-0",
        pods=pods,
        replicas=len(pods) if replicas is None else replicas,
        desired=desired,
    )
    return ScaleState(racks=(rack,), stability=stability, edition=edition, nodes_down=nodes_down)


# ----------------------------------------------------------------------------- Community


def test_stable_cluster_at_desired_size_is_done(fx: Fixtures) -> None:
    assert isinstance(next_scale_step(state(loaded_three(fx), desired=3)), Done)


def test_community_removes_highest_ordinal_from_stable_cluster(fx: Fixtures) -> None:
    action = next_scale_step(state(loaded_three(fx), desired=2))
    assert isinstance(action, RemoveOne)
    assert (action.rack, action.pod, action.replicas) == ("rack-0", "cc-2", 2)
    assert "3AFD20E7EDB3" in action.reason


def test_quiesce_refused_on_community_is_skipped_not_failed(fx: Fixtures) -> None:
    # The operator learns the edition from `edition`, and from quiesce: answering ERROR:25.
    reply = fx.reply("03a-quiesce-A3-CE.txt")
    with pytest.raises(InfoErrorReply) as refused:
        reply_value(reply.command, reply.raw, node="cc-2")
    assert edition_from_error(refused.value) is Edition.COMMUNITY
    # A3 after the refused quiesce: nothing changed, and CE goes on to remove it.
    observation = loaded_three(fx, a3_namespace="03a-after-quiesce-namespace-cache-A3.txt")
    a3 = observation.node_for_pod("cc-2")
    assert a3 is not None and a3.quiesce.clear
    action = next_scale_step(state(observation, desired=2, edition=Edition.COMMUNITY))
    assert isinstance(action, RemoveOne)
    assert action.pod == "cc-2"


def test_removed_pod_still_terminating_waits(fx: Fixtures) -> None:
    action = next_scale_step(state(loaded_three(fx), desired=1, replicas=2))
    assert isinstance(action, WaitMigrations)
    assert "cc-2" in action.reason


def test_stopping_node_holds(fx: Fixtures) -> None:
    # cc-2 (A3) is gone from Kubernetes, but A1 still counts 3 nodes: no second removal.
    a1 = fx.node(
        "A1",
        pod="cc-0",
        statistics="03a-after-recluster-statistics-A1.txt",
        cluster_stable="03b-stopping-cluster-stable-size2-A1.txt",
    )
    observation = ClusterObservation(2, (a1,), (PodFailure("cc-1", "not asked in this capture"),))
    action = next_scale_step(state(observation, pods=("cc-0", "cc-1"), desired=1))
    assert isinstance(action, Hold)
    assert "cluster_size is 3, expected 2" in action.reason


def test_migrating_waits(fx: Fixtures) -> None:
    action = next_scale_step(state(migrating_two(fx), pods=("cc-0", "cc-1"), desired=1))
    assert isinstance(action, WaitMigrations)
    assert "pod cc-0 (node A1): partitions still migrating" in action.reason
    assert "2674" not in action.reason  # counts change every poll: they are not in messages


def test_migrations_done_removes_next(fx: Fixtures) -> None:
    action = next_scale_step(state(done_two(fx), pods=("cc-0", "cc-1"), desired=1))
    assert isinstance(action, RemoveOne)
    assert (action.pod, action.replicas) == ("cc-1", 1)


def test_unreachable_holds_and_removes_nothing() -> None:
    action = next_scale_step(state(Unreachable("pod cc-0: connection refused"), desired=1))
    assert isinstance(action, Hold)
    assert "cannot be reached" in action.reason and "removing nothing" in action.reason


def test_node_down_blocks_scale_down(fx: Fixtures) -> None:
    action = next_scale_step(state(loaded_three(fx), desired=2, nodes_down=("cc-1",)))
    assert isinstance(action, Hold)
    assert "pod cc-1 is down and has not recovered" in action.reason


def test_node_not_answering_blocks_scale_down(fx: Fixtures) -> None:
    full = loaded_three(fx)
    observation = ClusterObservation(
        3, full.nodes[:2], (PodFailure("cc-2", "cannot be reached at 10.1.2.3:3000: timeout"),)
    )
    action = next_scale_step(state(observation, desired=2))
    assert isinstance(action, Hold)
    assert "pod cc-2: cannot be reached at 10.1.2.3:3000: timeout" in action.reason


def test_unknown_edition_holds(fx: Fixtures) -> None:
    action = next_scale_step(state(loaded_three(fx), desired=2, edition=Edition.UNKNOWN))
    assert isinstance(action, Hold)
    assert "edition" in action.reason


def test_observation_for_other_size_holds(fx: Fixtures) -> None:
    # Observed with 2 expected while 3 pods exist: ask again, never act on it.
    action = next_scale_step(state(done_two(fx), desired=1))
    assert isinstance(action, Hold)
    assert "asking again" in action.reason


# ----------------------------------------------------------------------------- racks


def _two_racks(stability: Stability, a: tuple[str, ...], b: tuple[str, ...]) -> ScaleState:
    return ScaleState(
        racks=(
            RackPods("rack-a", a, replicas=len(a), desired=1),
            RackPods("rack-b", b, replicas=len(b), desired=0),
        ),
        stability=stability,
        edition=Edition.COMMUNITY,
    )


def _stability(observation: ClusterObservation) -> Stability:
    result = assess_stability(observation)
    assert isinstance(result, Stability)
    return result


def test_racks_one_at_a_time_never_next_rack_while_migrating(fx: Fixtures) -> None:
    full = loaded_three(fx)
    renamed = ClusterObservation(
        3,
        tuple(
            dataclasses.replace(n, pod=p)
            for n, p in zip(full.nodes, ("a-0", "a-1", "b-0"), strict=True)
        ),
    )
    first = next_scale_step(_two_racks(_stability(renamed), ("a-0", "a-1"), ("b-0",)))
    assert isinstance(first, RemoveOne)
    assert (first.rack, first.pod) == ("rack-a", "a-1")

    # a-1 left; rack-b still has excess but migrations run: wait.
    during = next_scale_step(
        _two_racks(_stability(migrating_two(fx, ("a-0", "b-0"))), ("a-0",), ("b-0",))
    )
    assert isinstance(during, WaitMigrations)

    after = next_scale_step(
        _two_racks(_stability(done_two(fx, ("a-0", "b-0"))), ("a-0",), ("b-0",))
    )
    assert isinstance(after, RemoveOne)
    assert (after.rack, after.pod, after.replicas) == ("rack-b", "b-0", 0)


# ----------------------------------------------------------------------------- Enterprise


def test_enterprise_quiesces_leaving_node_first(fx: Fixtures) -> None:
    observation = as_enterprise(loaded_three(fx), {}, nodes_quiesced=0)
    action = next_scale_step(state(observation, desired=2, edition=Edition.ENTERPRISE))
    assert action == Quiesce(pod="cc-2", node_id="A3")


def test_enterprise_pending_quiesce_reclusters_on_principal(fx: Fixtures) -> None:
    # A2 leaves (desired 2 of a rack listed cc-0, cc-2, cc-1); principal is A3 on cc-2.
    observation = as_enterprise(loaded_three(fx), {"A2": (True, False)}, nodes_quiesced=0)
    st = ScaleState(
        racks=(RackPods("rack-0", ("cc-0", "cc-2", "cc-1"), replicas=3, desired=2),),
        stability=assess_stability(observation),
        edition=Edition.ENTERPRISE,
    )
    action = next_scale_step(st)
    assert isinstance(action, Recluster)
    assert (action.pod, action.node_id) == ("cc-2", "A3")


def test_recluster_replies_principal_and_non_principal(fx: Fixtures) -> None:
    from aerocdn.aerospike.parse import ReclusterResult, parse_recluster

    assert parse_recluster(fx.reply("03a-recluster-A3-principal.txt").value) is ReclusterResult.OK
    assert (
        parse_recluster(fx.reply("03a-recluster-A1-nonprincipal.txt").value)
        is ReclusterResult.IGNORED_BY_NON_PRINCIPAL
    )
    # The decision sends it to the node every node names as principal.
    stability = _stability(loaded_three(fx))
    assert {n.statistics.cluster_principal for n in stability.observation.nodes} == {"A3"}
    assert stability.principal_pod == "cc-2"


def test_enterprise_quiesced_but_not_seen_everywhere_waits(fx: Fixtures) -> None:
    observation = as_enterprise(loaded_three(fx), {"A3": (True, True)}, nodes_quiesced=1)
    a1 = observation.nodes[0]
    a1_ns = {k: dataclasses.replace(v, nodes_quiesced=0) for k, v in a1.namespaces.items()}
    observation = dataclasses.replace(
        observation,
        nodes=(dataclasses.replace(a1, namespaces=a1_ns), *observation.nodes[1:]),
    )
    action = next_scale_step(state(observation, desired=2, edition=Edition.ENTERPRISE))
    assert isinstance(action, WaitQuiesced)
    assert "A1" in action.reason


def test_enterprise_quiesced_and_stable_removes(fx: Fixtures) -> None:
    observation = as_enterprise(loaded_three(fx), {"A3": (True, True)}, nodes_quiesced=1)
    action = next_scale_step(state(observation, desired=2, edition=Edition.ENTERPRISE))
    assert isinstance(action, RemoveOne)
    assert action.pod == "cc-2"
    assert "after quiesce" in action.reason


def test_enterprise_quiesced_but_handoff_migrating_waits(fx: Fixtures) -> None:
    observation = as_enterprise(migrating_two(fx), {"A2": (True, True)}, nodes_quiesced=1)
    action = next_scale_step(
        state(observation, pods=("cc-0", "cc-1"), desired=1, edition=Edition.ENTERPRISE)
    )
    assert isinstance(action, WaitMigrations)


def test_enterprise_undo_leftover_quiesce_after_revert(fx: Fixtures) -> None:
    # The scale-down was reverted (desired back to 3) after A3 was quiesced.
    quiesced = as_enterprise(loaded_three(fx), {"A3": (True, True)}, nodes_quiesced=1)
    action = next_scale_step(state(quiesced, desired=3, edition=Edition.ENTERPRISE))
    assert action == UndoQuiesce(pod="cc-2", node_id="A3")
    # quiesce-undo: accepted (pending cleared), still effective until a recluster.
    undone = as_enterprise(loaded_three(fx), {"A3": (False, True)}, nodes_quiesced=1)
    action = next_scale_step(state(undone, desired=3, edition=Edition.ENTERPRISE))
    assert isinstance(action, Recluster)
    assert action.node_id == "A3"
    clear = as_enterprise(loaded_three(fx), {}, nodes_quiesced=0)
    assert isinstance(next_scale_step(state(clear, desired=3, edition=Edition.ENTERPRISE)), Done)


def test_enterprise_undone_quiesce_reclusters_only_from_stable_cluster(fx: Fixtures) -> None:
    undone = as_enterprise(migrating_two(fx), {"A2": (False, True)}, nodes_quiesced=1)
    action = next_scale_step(
        state(undone, pods=("cc-0", "cc-1"), desired=2, edition=Edition.ENTERPRISE)
    )
    assert isinstance(action, WaitMigrations)
    pending = as_enterprise(migrating_two(fx), {"A2": (True, True)}, nodes_quiesced=1)
    action = next_scale_step(
        state(pending, pods=("cc-0", "cc-1"), desired=2, edition=Edition.ENTERPRISE)
    )
    assert action == UndoQuiesce(pod="cc-1", node_id="A2")


def test_enterprise_undo_quiesce_of_other_node_before_removing(fx: Fixtures) -> None:
    observation = as_enterprise(loaded_three(fx), {"A2": (True, False)}, nodes_quiesced=0)
    action = next_scale_step(state(observation, desired=2, edition=Edition.ENTERPRISE))
    assert action == UndoQuiesce(pod="cc-1", node_id="A2")


# ----------------------------------------------------------------------------- rolling restart


def _roll(
    stability: Stability | Unreachable,
    hashes: tuple[str, ...],
    ready: tuple[bool, ...] = (True, True, True),
    max_unavailable: int = 1,
) -> RollState:
    return RollState(
        pods=tuple(PodRollState(p, h, r) for p, h, r in zip(PODS3, hashes, ready, strict=True)),
        desired_hash="new",
        stability=stability,
        max_unavailable=max_unavailable,
    )


def test_roll_restarts_highest_outdated_pod_from_stable_cluster(fx: Fixtures) -> None:
    stable = _stability(loaded_three(fx))
    assert next_roll_step(_roll(stable, ("old", "old", "old"))) == RestartPod("cc-2")
    assert next_roll_step(_roll(stable, ("old", "old", "new"))) == RestartPod("cc-1")
    assert isinstance(next_roll_step(_roll(stable, ("new", "new", "new"))), Done)


def test_roll_one_at_a_time_within_max_unavailable(fx: Fixtures) -> None:
    stable = _stability(loaded_three(fx))
    action = next_roll_step(_roll(stable, ("old", "old", "new"), ready=(True, True, False)))
    assert isinstance(action, Hold)
    assert "cc-2 not ready" in action.reason
    action = next_roll_step(_roll(stable, ("old", "old", "old"), max_unavailable=0))
    assert isinstance(action, Hold)


def test_roll_waits_for_migrations_and_holds_when_unreachable(fx: Fixtures) -> None:
    migrating = _stability(migrating_two(fx))
    assert isinstance(next_roll_step(_roll(migrating, ("old", "old", "new"))), WaitMigrations)
    action = next_roll_step(_roll(Unreachable("timeout"), ("old", "old", "old")))
    assert isinstance(action, Hold)
    assert "restarting nothing" in action.reason
