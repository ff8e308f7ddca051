"""The statuses the reconciles write are exactly their typed models (no untyped key), and
what reads them (routing, a ContentEdge's view of its CacheClusters) reads the same models."""

from __future__ import annotations

from tests.unit.controller.ccworld import NS, World, cc_object
from tests.unit.controller.test_error_model import ce_object

from aerocdn.api.cachecluster import CacheClusterStatus
from aerocdn.api.contentedge import ContentEdgeStatus
from aerocdn.controller.runtime import reconcile_once


async def test_written_statuses_are_their_models() -> None:
    world = World.make()
    world.ctx.probe = "kubernetes"
    world.kube.put(cc_object(size=1))
    world.kube.put(ce_object())
    for _ in range(2):
        await reconcile_once(world.ctx, "CacheCluster", NS, "cc")
        world.kube.run_statefulsets(NS)
    await reconcile_once(world.ctx, "ContentEdge", NS, "site")
    cc = CacheClusterStatus.model_validate(world.cc()["status"])
    assert cc.model_extra == {}, cc.model_extra
    assert cc.is_true("Ready") and cc.ready_replicas == 1
    ce_raw = world.kube.obj("ContentEdge", NS, "site")
    assert ce_raw is not None
    ce = ContentEdgeStatus.model_validate(ce_raw["status"])
    assert ce.model_extra == {}, ce.model_extra
    assert ce.regions[0].cache_cluster == "cc" and ce.regions[0].cache_cluster_ready
    assert ce.to_api() == ce_raw["status"]
