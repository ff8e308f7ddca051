"""controller/watch.py's error paths, which a healthy local control plane does not produce on
demand: 410 Gone (as an HTTP status and as a watch ERROR event, the two ways the API server
says a resourceVersion is too old), a watch line split over many chunks, and lines larger
than aiohttp's line limit. The server is a small aiohttp app speaking the list/watch
protocol; the happy path runs against the real API server in
tests/integration/test_watch.py."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from kubernetes.client import ApiClient, Configuration

from aerocdn.controller.watch import WatchedKind, Watcher

CM = WatchedKind("v1", "ConfigMap", {"app.kubernetes.io/managed-by": "aerocdn"})


def cm(name: str, rv: int, value: str = "x") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": str(rv)},
            "data": {"v": value}}


class ApiServer:
    """Lists answer ``items``; each watch request answers the next script entry: an HTTP
    status, or a list of events (sent one byte per chunk when ``trickle``)."""

    def __init__(self, script: list[Any], trickle: bool = False):
        self.items = [cm("a", 5)]
        self.script = script
        self.trickle = trickle
        self.requests: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        q = dict(request.query)
        self.requests.append(q)
        assert q["labelSelector"] == "app.kubernetes.io/managed-by=aerocdn"
        if "watch" not in q:
            return web.json_response({"items": self.items,
                                      "metadata": {"resourceVersion": "10"}})
        step = self.script.pop(0) if self.script else []
        if isinstance(step, int):
            return web.json_response({"kind": "Status", "code": step}, status=step)
        resp = web.StreamResponse()
        await resp.prepare(request)
        for ev in step:
            data = json.dumps(ev).encode() + b"\n"
            if self.trickle:
                for i in range(len(data)):
                    await resp.write(data[i:i + 1])
            else:
                await resp.write(data)
        if not self.script:
            await asyncio.sleep(30)  # an open, quiet stream
        return resp


async def run(server: ApiServer, until: Any) -> tuple[list[tuple[str, str]], list[int], Watcher]:
    app = web.Application()
    app.router.add_get("/api/v1/namespaces/ns/configmaps", server.handle)
    ts = TestServer(app, host="127.0.0.1")
    await ts.start_server()
    cfg = Configuration()
    cfg.host = f"http://127.0.0.1:{ts.port}"
    events: list[tuple[str, str]] = []
    lists: list[int] = []
    watcher = Watcher(ApiClient(cfg), [CM], ["ns"],
                      lambda _w, items, _ns: lists.append(len(items)),
                      lambda t, o: events.append((t, o["metadata"]["name"])))
    watcher.start()
    try:
        for _ in range(400):
            if until(events, lists):
                break
            await asyncio.sleep(0.025)
    finally:
        await watcher.stop()
        await ts.close()
    return events, lists, watcher


async def test_an_http_410_lists_again_and_watches_from_the_new_listing() -> None:
    server = ApiServer([410, [{"type": "ADDED", "object": cm("b", 11)}]])
    events, lists, watcher = await run(server, lambda e, _l: e)
    assert lists == [1, 1] and events == [("ADDED", "b")]
    assert watcher.watches[0].relists == 1
    watches = [q for q in server.requests if "watch" in q]
    assert [q["resourceVersion"] for q in watches] == ["10", "10"]


async def test_a_410_error_event_lists_again() -> None:
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410,
                                        "message": "too old resource version: 1 (5)"}}
    server = ApiServer([[{"type": "MODIFIED", "object": cm("a", 11)}, gone],
                        [{"type": "ADDED", "object": cm("c", 12)}]])
    events, lists, _watcher = await run(server, lambda e, _l: len(e) >= 2)
    assert events == [("MODIFIED", "a"), ("ADDED", "c")] and lists == [1, 1]


async def test_bookmarks_move_the_resource_version_and_are_not_events() -> None:
    bookmark = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "42"}}}
    server = ApiServer([[bookmark], [{"type": "ADDED", "object": cm("d", 43)}]])
    events, _, _ = await run(server, lambda e, _l: e)
    assert events == [("ADDED", "d")]
    watches = [q for q in server.requests if "watch" in q]
    assert [q["resourceVersion"] for q in watches] == ["10", "42"]  # resumed from the bookmark


async def test_lines_split_over_chunks_and_larger_than_aiohttps_line_limit() -> None:
    big = cm("big", 11, "x" * 300_000)  # a ConfigMap near its size limit
    server = ApiServer([[{"type": "ADDED", "object": cm("e", 12)}, {"type": "ADDED",
                                                                    "object": big}]])
    events, _, _ = await run(server, lambda e, _l: len(e) >= 2)
    assert events == [("ADDED", "e"), ("ADDED", "big")]
    server = ApiServer([[{"type": "MODIFIED", "object": cm("a", 13, "y")}]], trickle=True)
    events, _, _ = await run(server, lambda e, _l: e)
    assert events == [("MODIFIED", "a")]


def test_the_bearer_token_is_the_one_the_kubernetes_client_sends() -> None:
    """A service account's kubeconfig or in-cluster token: the watch must send it the way
    the Kubernetes client does (a watch without it ran as system:anonymous: 403)."""
    from aerocdn.controller.watch import ApiAccess

    for key in ("BearerToken", "authorization"):
        cfg = Configuration()
        cfg.host = "https://127.0.0.1:6443"
        cfg.api_key = {key: "Bearer abc"}
        client = ApiClient(cfg)
        assert ApiAccess.of(client).headers()["Authorization"] == "Bearer abc"
        assert client.configuration.auth_settings()["BearerToken"]["value"] == "Bearer abc"
    cfg = Configuration()
    cfg.host = "http://127.0.0.1:8080"
    assert "Authorization" not in ApiAccess.of(ApiClient(cfg)).headers()
