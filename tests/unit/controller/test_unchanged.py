"""A ContentEdge reconcile whose inputs did not change costs a store lookup, and still every
change of what it reads - and the clock, through FULL_EVERY_SECONDS - makes it run in full."""

from __future__ import annotations

from typing import Any

import pytest
from tests.unit.controller.ccworld import NS
from tests.unit.controller.fakekube import FakeKube
from tests.unit.controller.test_cache import cached_world, deliver, settle

from aerocdn.controller import runtime
from aerocdn.controller.cache import Store
from aerocdn.controller.contentedge import CHILD_KINDS
from aerocdn.controller.unchanged import UnchangedMemo, contentedge_inputs

KEY = ("ContentEdge", NS, "site")


def test_memo_skips_only_the_same_inputs_and_not_for_ever() -> None:
    memo = UnchangedMemo(full_every=600)
    assert not memo.unchanged(KEY, ("a",), 0)
    memo.record(KEY, ("a",), 0, idle=True)
    assert memo.unchanged(KEY, ("a",), 10)
    assert not memo.unchanged(KEY, ("b",), 10)
    assert not memo.unchanged(KEY, None, 10)
    assert not memo.unchanged(KEY, ("a",), 600)  # a full reconcile is due
    memo.record(KEY, ("a",), 600, idle=True)  # ... and it starts a new period
    assert memo.unchanged(KEY, ("a",), 700)
    memo.record(KEY, ("a",), 700, idle=False)  # a run that wrote or planned: forgotten
    assert not memo.unchanged(KEY, ("a",), 701)
    memo.record(KEY, ("a",), 702, idle=True)
    memo.forget(KEY)
    assert not memo.unchanged(KEY, ("a",), 703)


def edges_ready(api: FakeKube) -> None:
    """The Deployment controller's part: every edge Deployment has its replicas ready."""
    for (kind, _, _), obj in api.objects.items():
        if kind == "Deployment":
            obj.setdefault("status", {})["readyReplicas"] = obj["spec"].get("replicas", 1)
            api.rv += 1
            obj["metadata"]["resourceVersion"] = str(api.rv)


async def ready_runtime() -> tuple[runtime.Runtime, FakeKube, Store]:
    world, api, store = await cached_world()
    await settle(world, api, store)
    edges_ready(api)
    deliver(api, store)
    rt = runtime.Runtime()
    rt.store, rt.ctx = store, world.ctx
    return rt, api, store


@pytest.fixture
def full_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the reconciles that ran in full (reconcile_once was called)."""
    runs: list[str] = []
    real = runtime.reconcile_once

    async def counted(ctx: Any, kind: str, namespace: str, name: str, attempt: int = 1
                      ) -> float | None:
        runs.append(name)
        return await real(ctx, kind, namespace, name, attempt)
    monkeypatch.setattr(runtime, "reconcile_once", counted)
    return runs


async def test_an_idle_contentedge_is_not_reconciled_again_until_an_input_changes(
        full_runs: list[str]) -> None:
    rt, api, store = await ready_runtime()
    assert await rt._reconcile(KEY) is None  # full: status written (edges now ready)
    deliver(api, store)
    assert await rt._reconcile(KEY) is None  # full, idle: wrote nothing
    assert len(full_runs) == 2
    api.reset_calls()
    for _ in range(5):
        assert await rt._reconcile(KEY) is None
    assert len(full_runs) == 2 and api.calls == []  # five resyncs: nothing ran

    # drift of a child: the next run is a full one, and it repairs the drift
    gone = api.objects.pop(("Deployment", NS, "site-eu-west"))
    store.observe("DELETED", gone)  # the watch's event
    await rt._reconcile(KEY)
    assert len(full_runs) == 3
    assert ("Deployment", NS, "site-eu-west") in api.objects
    edges_ready(api)
    deliver(api, store)
    await rt._reconcile(KEY)  # sees the ready edges again (full)
    deliver(api, store)
    await rt._reconcile(KEY)  # idle again (full, recorded)
    before = len(full_runs)
    await rt._reconcile(KEY)
    assert len(full_runs) == before

    # a CacheCluster of the namespace changed: full
    cc = api.objects[("CacheCluster", NS, "cc")]
    api.rv += 1
    cc["metadata"]["resourceVersion"] = str(api.rv)
    deliver(api, store)
    await rt._reconcile(KEY)
    assert len(full_runs) == before + 1

    # the ContentEdge itself changed: full
    await rt._reconcile(KEY)
    before = len(full_runs)
    ce = api.objects[KEY]
    api.rv += 1
    ce["metadata"]["resourceVersion"] = str(api.rv)
    deliver(api, store)
    await rt._reconcile(KEY)
    assert len(full_runs) == before + 1


async def test_a_full_reconcile_still_runs_every_full_every_seconds(
        full_runs: list[str]) -> None:
    rt, api, store = await ready_runtime()
    rt.unchanged.full_every = 0.0
    for _ in range(4):
        await rt._reconcile(KEY)
        deliver(api, store)
    assert len(full_runs) == 4


async def test_a_reconcile_that_wrote_is_not_remembered(full_runs: list[str]) -> None:
    """A run that wrote (here: the status, once the edges are ready) is not remembered, even
    though the inputs it started from are still what the store holds for the children; the
    next run is a full one (and, writing nothing, is remembered)."""
    rt, api, _ = await ready_runtime()
    writes = len(api.writes())
    await rt._reconcile(KEY)
    assert len(api.writes()) > writes and KEY not in rt.unchanged._last
    await rt._reconcile(KEY)
    assert len(full_runs) == 2 and KEY in rt.unchanged._last


def test_inputs_need_every_kind_listed_and_the_contentedge_known() -> None:
    store = Store([("aerocdn.dev/v1alpha1", "ContentEdge"),
                   ("aerocdn.dev/v1alpha1", "CacheCluster"),
                   *CHILD_KINDS])
    assert contentedge_inputs(store, NS, "site", CHILD_KINDS) is None  # nothing listed
    for kind in store._objects:
        store.replace(*kind, [])
    assert contentedge_inputs(store, NS, "site", CHILD_KINDS) is None  # unknown CE
    store.upsert("aerocdn.dev/v1alpha1", "ContentEdge",
                 {"metadata": {"name": "site", "namespace": NS, "resourceVersion": "3"}})
    first = contentedge_inputs(store, NS, "site", CHILD_KINDS)
    assert first is not None
    store.upsert("v1", "ConfigMap", {"metadata": {
        "name": "other", "namespace": NS, "resourceVersion": "4",
        "labels": {"aerocdn.dev/contentedge": "other"}}})
    assert contentedge_inputs(store, NS, "site", CHILD_KINDS) == first  # not its child
    store.upsert("v1", "ConfigMap", {"metadata": {
        "name": "site-routes", "namespace": NS, "resourceVersion": "5",
        "labels": {"aerocdn.dev/contentedge": "site"}}})
    assert contentedge_inputs(store, NS, "site", CHILD_KINDS) != first
    # DNS output on: the DNSEndpoints are read from the API, so never skipped
    store.upsert("aerocdn.dev/v1alpha1", "ContentEdge",
                 {"metadata": {"name": "site", "namespace": NS, "resourceVersion": "6"},
                  "spec": {"routing": {"dns": {"enabled": True}}}})
    assert contentedge_inputs(store, NS, "site", CHILD_KINDS) is None
