"""A growing CacheCluster keeps serving: it stays Ready (reason Growing) and in the cache
routes with its ramp untouched; a cluster that lost a ready pod is weighted out."""

from __future__ import annotations

from tests.unit.controller.ccworld import NS, World, cc_object

from aerocdn.routing.inputs import cache_facts
from aerocdn.routing.model import CacheState


async def test_scale_up_keeps_the_cluster_ready_and_its_ramp() -> None:
    world = World.make()
    world.ctx.probe = "kubernetes"
    world.kube.put(cc_object(size=2))
    await world.reconcile()
    world.kube.run_statefulsets(NS)
    await world.reconcile()
    before = cache_facts("cc", world.cc())
    assert before.state is CacheState.READY and before.ready_since is not None

    world.edit(size=3)
    await world.reconcile()
    world.kube.run_statefulsets(NS, ready=False)  # the new pod joins, not ready yet
    await world.reconcile()
    ready = world.condition("Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Growing")
    during = cache_facts("cc", world.cc())
    assert during.state is CacheState.READY and during.ready_since == before.ready_since

    pod = world.kube.obj("Pod", NS, "cc-2")
    assert pod is not None
    pod["status"]["containerStatuses"][0]["ready"] = True
    await world.reconcile()
    assert cache_facts("cc", world.cc()).ready_since == before.ready_since


async def test_a_lost_ready_pod_is_not_growth() -> None:
    world = World.make()
    world.ctx.probe = "kubernetes"
    world.kube.put(cc_object(size=2))
    await world.reconcile()
    world.kube.run_statefulsets(NS)
    await world.reconcile()
    pod = world.kube.obj("Pod", NS, "cc-1")
    assert pod is not None
    pod["status"]["containerStatuses"][0]["ready"] = False
    await world.reconcile()
    assert world.condition("Ready")["status"] == "False"
    assert cache_facts("cc", world.cc()).state is CacheState.MIGRATING
