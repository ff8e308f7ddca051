"""The production branch of the CacheCluster reconcile (--aerospike-probe=aerospike) step by
step, in process: a FakeKube, and Aerospike nodes answering the real replies of CE 8.1.2.0."""

from __future__ import annotations

from tests.unit.aerospike.aerofixtures import Fixtures
from tests.unit.controller.ccworld import NS, World, cc_object
from tests.unit.controller.fakekube import remove_pods_at_once

THREE = ("cc-0", "cc-1", "cc-2")


async def ready_three(fx: Fixtures, world: World, enterprise: bool = False, **spec: object
                      ) -> None:
    world.kube.put(cc_object(size=3, **spec))
    await world.reconcile()  # creates the children
    world.kube.run_statefulsets(NS)
    world.aero.three_stable(fx, tuple(world.pods()), enterprise=enterprise)
    await world.reconcile()
    assert world.condition("Ready")["status"] == "True", world.cc()["status"]


async def test_multi_step_scale_down_removes_one_node_per_stable_cluster(fx: Fixtures) -> None:
    """3 -> 1 in one change; the StatefulSet controller removes a pod at once (as a fast-
    stopping asd does): no reconcile fails, every removal has its ScaleDown Event, the gate
    is never sent to a pod that left."""
    world = World.make(on_statefulset=remove_pods_at_once)
    await ready_three(fx, world)
    world.edit(size=1)

    await world.reconcile()  # stable 3 nodes: cc-2 leaves
    assert world.replicas() == 2 and world.pods() == ["cc-0", "cc-1"]
    world.aero.two_migrating(fx, ("cc-0", "cc-1"))
    await world.reconcile()  # migrating: hold, gates False
    assert world.replicas() == 2
    assert world.condition("ScalingDown")["reason"] == "WaitingForMigrations"
    assert {world.gate(p)["status"] for p in world.pods()} == {"False"}
    world.aero.two_done(fx, ("cc-0", "cc-1"))
    await world.reconcile()  # stable again: cc-1 leaves; the gates go True on the pod left
    assert world.replicas() == 1 and world.pods() == ["cc-0"]
    world.aero.one(fx, ("cc-0",))
    await world.reconcile()
    assert world.condition("Ready")["status"] == "True"
    assert world.condition("ScalingDown")["status"] == "False"
    assert world.gate("cc-0")["status"] == "True"

    removals = [e["message"].split(" from ")[0] for e in world.events("ScaleDown")]
    assert removals == ["removing pod cc-2", "removing pod cc-1"]
    assert world.kube.not_found == [], "a readiness gate was sent to a pod that was gone"


async def test_no_writes_while_only_partition_counts_change(fx: Fixtures) -> None:
    """While Aerospike migrates, each poll sees other partition counts: after the first
    reconcile that says so, a reconcile writes nothing (no status, no gate, no Event)."""
    world = World.make()
    await ready_three(fx, world)
    world.edit(size=1)
    await world.reconcile()
    world.kube.run_statefulsets(NS)
    rows = [r for r in fx.timeline() if r.phase == "stop-A3" and r.node == "A1"
            and r.migrate_partitions_remaining > 0]
    counts = sorted({r.migrate_partitions_remaining for r in rows}, reverse=True)[::10]
    assert len(counts) > 10
    world.aero.two_migrating(fx, ("cc-0", "cc-1"), remaining=counts[0])
    await world.reconcile()
    assert world.condition("ScalingDown")["reason"] == "WaitingForMigrations"
    world.kube.reset_calls()
    for count in counts[1:]:
        world.aero.two_migrating(fx, ("cc-0", "cc-1"), remaining=count)
        assert await world.reconcile() == world.ctx.poll_seconds
    assert world.kube.writes() == [], world.kube.writes()
    for pod in ("cc-0", "cc-1"):
        gate = world.gate(pod)
        assert (gate["status"], gate["reason"]) == ("False", "MigrationsRunning")
        assert not any(str(c) in gate["message"] for c in counts), gate["message"]
    # the count is in a status field (written with the last real change) and in /metrics
    assert world.cc()["status"].get("migratingPartitions") == 2 * counts[0]


async def test_unreachable_cluster_holds_removes_nothing_and_says_so(fx: Fixtures) -> None:
    world = World.make()
    await ready_three(fx, world)
    world.aero.unreachable = set(THREE)
    world.edit(size=2)
    await world.reconcile()
    assert world.replicas() == 3 and len(world.pods()) == 3
    degraded = world.condition("Degraded")
    assert degraded["status"] == "True" and "cannot be reached" in degraded["message"]
    assert {world.gate(p)["reason"] for p in THREE} == {"AerospikeUnreachable"}
    assert {world.gate(p)["status"] for p in THREE} == {"False"}
    assert any(e["type"] == "Warning" for e in world.events())
    world.aero.unreachable = set()
    await world.reconcile()  # reachable again: the scale-down goes on
    assert world.replicas() == 2
    assert world.condition("Degraded")["status"] == "False"


async def test_enterprise_quiesces_and_reclusters_with_checked_replies(fx: Fixtures) -> None:
    world = World.make()
    await ready_three(fx, world, enterprise=True, edition="enterprise",
                      featureKeySecretRef={"name": "aerospike-features"})
    world.edit(size=2)
    await world.reconcile()
    assert ("cc-2", "quiesce:") in world.aero.asked
    assert world.replicas() == 3
    await world.reconcile()
    assert ("cc-2", "recluster:") in world.aero.asked  # cc-2 runs the principal, A3
    assert world.replicas() == 3
    await world.reconcile()
    assert world.replicas() == 2
    reasons = [e["reason"] for e in world.events() if e["reason"] in
               ("Quiesce", "Recluster", "ScaleDown")]
    assert reasons == ["Quiesce", "Recluster", "ScaleDown"]
    assert all(e["message"].endswith(": ok") for e in world.events()
               if e["reason"] in ("Quiesce", "Recluster"))


async def test_recluster_ignored_by_a_non_principal_is_a_warning_and_nothing_leaves(
        fx: Fixtures) -> None:
    world = World.make()
    await ready_three(fx, world, enterprise=True, edition="enterprise",
                      featureKeySecretRef={"name": "aerospike-features"})
    for node in world.aero.nodes.values():  # the principal moved after the statistics
        node.principal = node.node_id == "A1"
    world.edit(size=2)
    await world.reconcile()  # quiesce
    await world.reconcile()  # recluster sent to A3, which is no longer the principal
    (ignored,) = world.events("ReclusterIgnored")
    assert ignored["type"] == "Warning" and "ignored-by-non-principal" in ignored["message"]
    await world.reconcile()
    assert world.replicas() == 3, "a node left although its quiesce never became effective"


async def test_roll_restarts_one_pod_at_a_time_per_rack_from_a_stable_cluster(
        fx: Fixtures) -> None:
    world = World.make()
    racks = [{"id": 1, "zone": "a"}, {"id": 2, "zone": "b"}]
    await ready_three(fx, world, racks=racks)
    pods = tuple(world.pods())
    assert pods == ("cc-r1-0", "cc-r1-1", "cc-r2-0")
    world.edit(namespaces=[{"name": "cache", "storage": {"size": "1Gi"},
                            "replicationFactor": 3}])
    restarted: list[str] = []
    for _ in range(12):
        await world.reconcile()
        new = [e["message"] for e in world.events("RollingRestart")]
        if len(new) > len(restarted):
            restarted = new
            assert len(world.pods()) == 2, "more than one pod down at once"
            # the next reconcile, one pod short, restarts nothing
            world.aero.nodes.pop(next(p for p in pods if p not in world.pods()))
            await world.reconcile()
            assert len(world.events("RollingRestart")) == len(restarted)
            world.kube.run_statefulsets(NS)
            world.aero.three_stable(fx, pods)
    assert [m.split()[2] for m in restarted] == ["cc-r2-0", "cc-r1-1", "cc-r1-0"]
    hashes = {p["metadata"]["annotations"]["aerocdn.dev/config-hash"]
              for p in world.kube.kind_of("Pod", NS)}
    sts_hashes = {s["spec"]["template"]["metadata"]["annotations"]["aerocdn.dev/config-hash"]
                  for s in world.kube.kind_of("StatefulSet", NS)}
    assert hashes == sts_hashes


async def test_an_unstable_cluster_is_asked_again_until_the_gate_opens(fx: Fixtures) -> None:
    """Aerospike migrates while every pod is ready and nothing else is in progress (after a
    node left, or joined): the gate is False, so the reconcile comes back every poll to open
    it as soon as Aerospike is stable, not at the next resync (the live tier saw the gate
    open ~35 s after the migrations ended, holding drains that long for nothing)."""
    world = World.make(on_statefulset=remove_pods_at_once)
    await ready_three(fx, world)
    world.edit(size=2)
    await world.reconcile()  # cc-2 leaves at once
    assert world.pods() == ["cc-0", "cc-1"]
    world.aero.two_migrating(fx, ("cc-0", "cc-1"))
    assert await world.reconcile() == world.ctx.poll_seconds
    assert {world.gate(p)["status"] for p in world.pods()} == {"False"}
    world.aero.two_done(fx, ("cc-0", "cc-1"))
    assert await world.reconcile() is None  # stable: nothing to come back for
    assert {world.gate(p)["status"] for p in world.pods()} == {"True"}
