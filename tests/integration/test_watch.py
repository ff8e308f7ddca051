"""The operator's own list + watch of children (controller/watch.py) against the real
kube-apiserver: label filtering on the server, events in order, and a stream that ended
resumed without loss (the 410 Gone path: tests/unit/controller/test_watch.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from kubernetes import config
from tests.integration.operator_harness import Kubectl

from aerocdn.constants import MANAGED
from aerocdn.controller.cache import Store
from aerocdn.controller.watch import WatchedKind, Watcher

CM = WatchedKind("v1", "ConfigMap", MANAGED)


def configmap(name: str, value: str, managed: bool = True) -> dict[str, Any]:
    labels = dict(MANAGED) if managed else {}
    labels["aerocdn.dev/contentedge"] = "shop"
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": labels}, "data": {"v": value}}


async def until(cond: Callable[[], bool], what: str, deadline_s: float = 60) -> None:
    deadline = time.monotonic() + deadline_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen in {deadline_s}s: {what}")
        await asyncio.sleep(0.05)


async def test_children_watch_follows_filters_and_relists(kubeconfig: str, kubectl: Kubectl,
                                                           ns: str) -> None:
    store = Store([("v1", "ConfigMap")])
    events: list[tuple[str, str]] = []
    listed: list[int] = []

    def on_list(what: WatchedKind, items: list[dict[str, Any]], namespace: str | None) -> None:
        listed.append(len(items))
        store.replace(what.api_version, what.kind, items, namespace)

    def on_event(type_: str, obj: Any) -> None:
        events.append((type_, obj["metadata"]["name"]))
        store.observe(type_, obj)

    def data(name: str) -> str | None:
        obj = store.get("v1", "ConfigMap", ns, name)
        return None if obj is None else obj["data"]["v"]

    kubectl.apply(configmap("before", "1"), namespace=ns)
    api = config.new_client_from_config(config_file=kubeconfig)
    watcher = Watcher(api, [CM], [ns], on_list, on_event)
    watcher.start()
    try:
        await asyncio.wait_for(watcher.wait_synced(), 60)
        assert data("before") == "1" and listed == [1]  # listed, then watched

        kubectl.apply(configmap("a", "1"), configmap("other", "x", managed=False), namespace=ns)
        kubectl.apply(configmap("a", "2"), namespace=ns)
        await until(lambda: data("a") == "2", "a=2")
        kubectl.run("delete", "configmap", "before", "-n", ns)
        await until(lambda: data("before") is None, "before deleted")
        assert ("ADDED", "a") in events and ("MODIFIED", "a") in events
        assert ("DELETED", "before") in events
        assert all(name != "other" for _, name in events)  # filtered by the server

        # the stream ends (the server's timeout, a dropped connection): the watch resumes
        # from the last resourceVersion it saw, and what changed meanwhile arrives as events
        watch = watcher.watches[0]
        for t in watcher._tasks:
            t.cancel()
        await asyncio.gather(*watcher._tasks, return_exceptions=True)
        seen = len(events)
        kubectl.apply(configmap("a", "3"), configmap("b", "1"), namespace=ns)
        assert watcher._session is not None
        task = asyncio.create_task(watch.run(watcher._session))
        try:
            await until(lambda: data("a") == "3" and data("b") == "1", "a=3, b=1 on resume")
            assert events[seen:] == [("MODIFIED", "a"), ("ADDED", "b")]
            assert listed == [1]  # resumed, not listed again
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        await watcher.stop()
        api.close()


async def test_a_watch_that_cannot_reach_the_api_backs_off_and_keeps_trying() -> None:
    """An API server that is not there: the watch logs, waits and tries again; it never ends
    and never reports synced."""
    from kubernetes.client import ApiClient, Configuration

    cfg = Configuration()
    cfg.host = "http://127.0.0.1:9"  # discard port: nothing listens
    api = ApiClient(cfg)
    watcher = Watcher(api, [CM], ["default"], lambda *_: None, lambda *_: None)
    watcher.start()
    try:
        await asyncio.sleep(1.5)
        assert not watcher.synced() and all(not t.done() for t in watcher._tasks)
    finally:
        await watcher.stop()
