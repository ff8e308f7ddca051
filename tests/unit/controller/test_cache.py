"""Reads from memory: reconciles answered from the watch cache ask the API nothing when
nothing changed, and a node leaves only on what fresh API reads say."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from tests.unit.controller.ccworld import NS, World, cc_object
from tests.unit.controller.fakekube import FakeKube
from tests.unit.controller.test_error_model import ce_object

from aerocdn.controller.cache import WATCHED, CachedKube, Store
from aerocdn.controller.runtime import reconcile_once


def deliver(kube: FakeKube, store: Store) -> None:
    """What the watches would have delivered by now: every object as it is in the API."""
    for api_version, kind in WATCHED:
        store.replace(api_version, kind, [o for o in kube.objects.values()
                                          if o["kind"] == kind])


async def cached_world() -> tuple[World, FakeKube, Store]:
    world = World.make()
    world.ctx.probe = "kubernetes"
    api = world.kube
    store = Store(WATCHED)
    world.ctx.kube = CachedKube(store, api)  # type: ignore[arg-type]
    api.put(cc_object(size=3))
    api.put(ce_object())
    await world.ctx.kube.sync([])  # type: ignore[union-attr]
    return world, api, store


async def settle(world: World, api: FakeKube, store: Store) -> None:
    for _ in range(3):
        await reconcile_once(world.ctx, "CacheCluster", NS, "cc")
        await reconcile_once(world.ctx, "ContentEdge", NS, "site")
        api.run_statefulsets(NS)
        deliver(api, store)


async def test_idle_reconciles_ask_the_api_nothing() -> None:
    world, api, store = await cached_world()
    await settle(world, api, store)
    assert world.condition("Ready")["status"] == "True"
    api.reset_calls()
    for _ in range(5):
        await reconcile_once(world.ctx, "CacheCluster", NS, "cc")
        await reconcile_once(world.ctx, "ContentEdge", NS, "site")
    per_reconcile = len(api.calls) / 10
    assert per_reconcile <= 2, api.calls
    assert api.calls == [], api.calls  # no read and no write at all


async def test_a_node_leaves_only_on_what_fresh_reads_say() -> None:
    world, api, store = await cached_world()
    await settle(world, api, store)
    world.edit(size=2)
    deliver(api, store)
    await reconcile_once(world.ctx, "CacheCluster", NS, "cc")  # ScalingDown: drain first
    deliver(api, store)
    await reconcile_once(world.ctx, "ContentEdge", NS, "site")  # routes drained
    deliver(api, store)
    assert world.condition("ScalingDown")["reason"] == "DrainingRoutes"
    # the API knows a pod went unready; the cache has not heard of it yet
    pod: dict[str, Any] | None = api.obj("Pod", NS, "cc-0")
    assert pod is not None
    pod["status"]["containerStatuses"][0]["ready"] = False
    api.put(pod)
    api.reset_calls()
    await reconcile_once(world.ctx, "CacheCluster", NS, "cc")
    assert world.replicas() == 3, "a node left on a stale cache"
    assert any(c.kind == "Pod" and c.verb == "LIST" for c in api.calls), api.calls
    pod["status"]["containerStatuses"][0]["ready"] = True
    api.put(pod)
    deliver(api, store)  # the watch brings the pod's readiness back
    await reconcile_once(world.ctx, "CacheCluster", NS, "cc")
    assert world.replicas() == 2


# The store's label index answers exactly what a scan over every object would.
_NAMES = st.sampled_from(["a", "b", "c", "d"])
_LABELS = st.dictionaries(st.sampled_from(["x", "y", "aerocdn.dev/contentedge"]),
                          st.sampled_from(["1", "2"]), max_size=3)
_OPS = st.lists(st.tuples(st.sampled_from(["upsert", "remove", "replace"]),
                          st.sampled_from(["n1", "n2"]), _NAMES, _LABELS,
                          st.integers(1, 50)), max_size=30)


@given(ops=_OPS, namespace=st.sampled_from(["n1", "n2", None]), selector=_LABELS)
def test_store_index_matches_a_scan(ops: list[tuple[str, str, str, dict[str, str], int]],
                                    namespace: str | None, selector: dict[str, str]) -> None:
    store = Store([("v1", "ConfigMap")])
    for op, ns, name, labels, rv in ops:
        obj = {"metadata": {"namespace": ns, "name": name, "labels": labels,
                            "resourceVersion": str(rv)}}
        if op == "upsert":
            store.upsert("v1", "ConfigMap", obj)
        elif op == "remove":
            store.remove("v1", "ConfigMap", ns, name)
        else:
            store.replace("v1", "ConfigMap", [obj])
    everything = sorted(store._objects[("v1", "ConfigMap")].items())
    expected = [o for (ns, _), o in everything if (not namespace or ns == namespace)
                and all((o["metadata"].get("labels") or {}).get(k) == v
                        for k, v in selector.items())]
    assert store.list("v1", "ConfigMap", namespace, selector) == expected


def test_a_listing_of_one_namespace_replaces_only_that_namespace() -> None:
    store = Store([("v1", "ConfigMap")])

    def cm(ns: str, name: str, rv: int) -> dict[str, Any]:
        return {"metadata": {"namespace": ns, "name": name, "resourceVersion": str(rv)}}

    for obj in (cm("a", "x", 1), cm("a", "y", 2), cm("b", "x", 3), cm("a", "late", 9)):
        store.upsert("v1", "ConfigMap", obj)
    gone = store.replace("v1", "ConfigMap", [cm("a", "x", 4), cm("a", "z", 5)], "a")
    # y is gone; b is another namespace's; "late" is newer than the listing (a watch event
    # that arrived after it was taken) and stays
    assert [o["metadata"]["name"] for o in gone] == ["y"]
    assert sorted(store._objects[("v1", "ConfigMap")]) == [
        ("a", "late"), ("a", "x"), ("a", "z"), ("b", "x")]
    assert store.get("v1", "ConfigMap", "a", "x")["metadata"]["resourceVersion"] == "4"
