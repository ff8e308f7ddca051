"""The stability verdict and the readiness gate on the real replies (fixtures/)."""

from __future__ import annotations

from tests.unit.aerospike.aerofixtures import Fixtures

from aerocdn.aerospike.parse import parse_cluster_stable
from aerocdn.aerospike.stability import (
    READINESS_GATE,
    ClusterObservation,
    NodeObservation,
    PodFailure,
    Stability,
    Unreachable,
    assess_stability,
    readiness_gate_condition,
    readiness_gate_value,
)


def obs(
    expected: int, *nodes: NodeObservation, failures: tuple[PodFailure, ...] = ()
) -> ClusterObservation:
    return ClusterObservation(expected, tuple(nodes), failures)


def verdict(observation: ClusterObservation) -> Stability:
    result = assess_stability(observation)
    assert isinstance(result, Stability), result
    return result


def three_stable(fx: Fixtures) -> ClusterObservation:
    return obs(
        3,
        *(
            fx.node(
                f"A{i}",
                pod=f"cc-{i - 1}",
                statistics=f"02-three-statistics-A{i}.txt",
                cluster_stable=f"02-three-cluster-stable-size3-A{i}.txt",
                namespace=f"02-three-namespace-cache-A{i}.txt",
            )
            for i in (1, 2, 3)
        ),
    )


def test_stable_single_node(fx: Fixtures) -> None:
    a1 = fx.node(
        "A1",
        statistics="01-single-statistics.txt",
        cluster_stable="01-single-cluster-stable-size1.txt",
        namespace="01-single-namespace-cache.txt",
    )
    result = verdict(obs(1, a1))
    assert result.stable, result.reasons
    assert result.cluster_key == "FC43C7EED9FB"
    assert result.principal == "A1"
    assert readiness_gate_value(result) is True


def test_stable_three_nodes(fx: Fixtures) -> None:
    result = verdict(three_stable(fx))
    assert result.stable, result.reasons
    assert result.cluster_key == "3AFD20E7EDB3"
    assert result.principal == "A3"
    assert result.principal_pod == "cc-2"
    assert "stable" in result.summary and "3AFD20E7EDB3" in result.summary
    assert readiness_gate_condition(result) == {
        "type": READINESS_GATE,
        "status": "True",
        "reason": "ClusterStable",
        "message": result.summary,
    }


def test_three_nodes_but_four_pods_expected_is_not_stable(fx: Fixtures) -> None:
    result = assess_stability(three_stable(fx), expected_size=4)
    assert isinstance(result, Stability)
    assert not result.stable
    assert "3 node(s) answered, 4 expected" in result.reasons
    assert "pod cc-0 (node A1): cluster_size is 3, expected 4" in result.reasons


def test_stopping_node_still_counted_by_survivors(fx: Fixtures) -> None:
    # A3 got SIGTERM 0.3 s ago and its pod is gone: the operator expects 2 nodes, but A1 still
    # reports the 3-node cluster (key 55D002E1CE20, as after the recluster just before).
    a1 = fx.node(
        "A1",
        statistics="03a-after-recluster-statistics-A1.txt",
        cluster_stable="03b-stopping-cluster-stable-size2-A1.txt",
    )
    result = verdict(obs(2, a1))
    assert not result.stable
    assert not result.migrating
    assert "node A1: cluster_size is 3, expected 2" in result.reasons
    assert (
        "node A1: cluster-stable:size=2;ignore-migrations=false answered "
        "ERROR:7:cluster not specified size" in result.reasons
    )
    assert readiness_gate_value(result) is False


def test_stopping_node_looks_fine_at_old_size_but_its_pod_does_not_answer(fx: Fixtures) -> None:
    # Asked with the old size 3, A1 answers a key (ok): only the missing answer of the leaving
    # pod keeps the verdict honest.
    a1 = fx.node(
        "A1",
        statistics="03a-after-recluster-statistics-A1.txt",
        cluster_stable="03b-stopping-cluster-stable-size3-A1.txt",
    )
    assert a1.cluster_stable.ok
    result = verdict(
        obs(3, a1, failures=(PodFailure("A3", "cannot be reached: connection refused"),))
    )
    assert not result.stable
    assert "pod A3: cannot be reached: connection refused" in result.reasons


def _migrating(fx: Fixtures) -> ClusterObservation:
    a2_answer = next(
        r for r in fx.timeline() if r.phase == "stop-A3" and r.node == "A2" and r.t == 2.08
    )
    a1 = fx.node(
        "A1",
        statistics="03b-migrating-statistics-A1.txt",
        cluster_stable="03b-migrating-cluster-stable-size2-A1.txt",
        namespace="03b-migrating-namespace-cache-A1.txt",
    )
    command = a1.cluster_stable.command
    a2 = fx.node(
        "A2",
        statistics="03b-migrating-statistics-A2.txt",
        cluster_stable=parse_cluster_stable(command, a2_answer.cluster_stable),
        namespace="03b-migrating-namespace-cache-A2.txt",
    )
    return obs(2, a1, a2)


def test_migrating_after_node_left(fx: Fixtures) -> None:
    result = verdict(_migrating(fx))
    assert not result.stable
    assert result.migrating
    assert "node A1: 2674 partitions still migrating" in result.reasons
    assert any(r.startswith("node A2: ") and "still migrating" in r for r in result.reasons)
    assert (
        "node A1: cluster-stable:size=2;ignore-migrations=false answered "
        "ERROR:7:unstable cluster" in result.reasons
    )
    # Same key on both nodes: it is the migrations, not the membership.
    assert result.cluster_key == "EF855FFBC831"
    assert readiness_gate_value(result) is False
    assert readiness_gate_condition(result)["reason"] == "MigrationsRunning"


def test_ignore_migrations_answer_would_not_fool_the_verdict(fx: Fixtures) -> None:
    a1 = fx.node(
        "A1",
        statistics="03b-migrating-statistics-A1.txt",
        cluster_stable="03b-migrating-cluster-stable-size2-ignore-migrations-A1.txt",
        namespace="03b-migrating-namespace-cache-A1.txt",
    )
    assert a1.cluster_stable.ok  # ignore-migrations=true says ok
    result = verdict(obs(1, a1))
    assert not result.stable
    assert "node A1: 2674 partitions still migrating" in result.reasons


def test_done_after_scale_down(fx: Fixtures) -> None:
    nodes = [
        fx.node(
            f"A{i}",
            statistics=f"03c-done-statistics-A{i}.txt",
            cluster_stable=f"03c-done-cluster-stable-size2-A{i}.txt",
            namespace=f"03c-done-namespace-cache-A{i}.txt",
        )
        for i in (1, 2)
    ]
    result = verdict(obs(2, *nodes))
    assert result.stable, result.reasons
    assert result.cluster_key == "EF855FFBC831"
    assert result.principal == "A2"
    assert readiness_gate_value(result) is True


def test_done_asked_at_old_size_is_not_stable(fx: Fixtures) -> None:
    a1 = fx.node(
        "A1",
        statistics="03c-done-statistics-A1.txt",
        cluster_stable="03c-done-cluster-stable-size3-A1.txt",
    )
    result = verdict(obs(3, a1))
    assert not result.stable
    assert "node A1: cluster_size is 2, expected 3" in result.reasons


def test_joining_node_migrations(fx: Fixtures) -> None:
    a1 = fx.node(
        "A1",
        statistics="03d-joining-migrating-statistics-A1.txt",
        cluster_stable="03d-joining-migrating-cluster-stable-size3-A1.txt",
        namespace="03d-joining-migrating-namespace-cache-A1.txt",
    )
    result = verdict(obs(3, a1, failures=(PodFailure("A3", "not asked in this capture"),)))
    assert not result.stable
    assert result.migrating
    assert "node A1: 1349 partitions still migrating" in result.reasons
    assert any("ERROR:7:unstable cluster" in r for r in result.reasons)


def test_nodes_disagree_on_cluster_key(fx: Fixtures) -> None:
    a1 = fx.node(
        "A1",
        statistics="03c-done-statistics-A1.txt",
        cluster_stable="03c-done-cluster-stable-size2-A1.txt",
    )
    a2 = NodeObservation(
        pod="A2",
        node_id="A2",
        statistics=fx.statistics("02-three-statistics-A2.txt"),
        cluster_stable=fx.cluster_stable("02-three-cluster-stable-size3-A2.txt"),
    )
    result = verdict(obs(2, a1, a2))
    assert not result.stable
    assert "nodes disagree on cluster_key: A1=EF855FFBC831, A2=3AFD20E7EDB3" in result.reasons
    assert result.cluster_key is None


def test_cluster_key_changed_between_questions(fx: Fixtures) -> None:
    # statistics before the recluster, cluster-stable after it.
    a1 = fx.node(
        "A1",
        statistics="03-loaded-statistics-A1.txt",
        cluster_stable="03a-after-recluster-cluster-stable-size3-A1.txt",
    )
    result = verdict(obs(1, a1))
    assert any("cluster key changed while asking" in r for r in result.reasons)


def test_node_down_is_named(fx: Fixtures) -> None:
    observation = three_stable(fx)
    partial = obs(
        3,
        *observation.nodes[:2],
        failures=(PodFailure("cc-2", "cannot be reached at 10.0.0.7:3000: timeout"),),
    )
    result = verdict(partial)
    assert not result.stable
    assert "pod cc-2: cannot be reached at 10.0.0.7:3000: timeout" in result.reasons
    assert "2 node(s) answered, 3 expected" in result.reasons


def test_nobody_answers_is_unreachable() -> None:
    result = assess_stability(
        obs(2, failures=(PodFailure("cc-0", "refused"), PodFailure("cc-1", "timeout")))
    )
    assert isinstance(result, Unreachable)
    assert "cc-0" in result.reason and "cc-1" in result.reason
    assert readiness_gate_value(result) is False
    assert readiness_gate_condition(result)["reason"] == "AerospikeUnreachable"
