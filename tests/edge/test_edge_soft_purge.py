"""Soft purge with real nginx and real edges: objects are marked stale instead of removed, so
stale-while-revalidate answers at once while the object is refreshed, and stale-if-error
protects clients while the origin fails; a hard purge removes them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from tests.edge.edgeharness import HOST, Origin, PodFactory, edge_config, own_l2_per_pod
from tests.edge.test_edge_behaviour import get, purge

SWR = "max-age=300, stale-while-revalidate=60"
SIE_ONLY = "max-age=300, stale-while-revalidate=0, stale-if-error=600"


async def wait_until_async(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@own_l2_per_pod
async def test_a_soft_purge_serves_stale_then_the_refreshed_object(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession, tmp_path: Path) -> None:
    origin.set("/s", body=b"v1", headers={"Cache-Control": SWR})
    dirs = [tmp_path / f"p{i}" for i in range(2)]
    cfgs = [edge_config(origin.url, d) for d in dirs]
    admins = tuple(c.admin_listen for c in cfgs)
    group = [await pods(cfg=c.model_copy(update={"peers": c.peers.model_copy(
        update={"static": admins})})) for c in cfgs]
    for p in group:
        assert (await get(client, p.url, "/s"))[2] == b"v1"
        assert (await get(client, p.url, "/s"))[1].get("x-cache") == "HIT"
    origin.set("/s", body=b"v2", headers={"Cache-Control": SWR})
    status, answer = await purge(client, group[0].admin_url, {"url": f"{HOST}/s", "soft": True})
    assert status == 200 and answer["complete"] is True, answer
    assert answer["purged"] == {"url": f"{HOST}/s", "soft": True}
    fetched = origin.hits["/s"]
    for p in group:
        # nginx dropped it; L2 still has it, expired: served stale at once ...
        status, headers, body = await get(client, p.url, "/s")
        assert (status, body) == (200, b"v1") and headers.get("x-cache") != "HIT"

        async def refreshed(base: str = p.url) -> bool:
            return (await get(client, base, "/s"))[2] == b"v2"
        # ... while the edge refreshes it in the background
        await wait_until_async(refreshed)
    assert origin.hits["/s"] == fetched + 2  # one refresh per pod (each its own L2)


async def test_after_a_soft_purge_stale_if_error_protects_clients_from_a_failing_origin(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    for path in ("/soft", "/hard"):
        origin.set(path, body=b"v1", headers={"Cache-Control": SIE_ONLY})
    pod = await pods()
    for path in ("/soft", "/hard"):
        assert (await get(client, pod.url, path))[2] == b"v1"
        origin.set(path, status=500, body=b"origin broken", headers={})
    assert (await purge(client, pod.admin_url, {"url": f"{HOST}/soft", "soft": True}))[0] == 200
    assert (await purge(client, pod.admin_url, {"url": f"{HOST}/hard"}))[0] == 200
    before = origin.hits["/soft"]
    status, _, body = await get(client, pod.url, "/soft")
    assert (status, body) == (200, b"v1")  # the origin was asked, failed: stale served
    assert origin.hits["/soft"] == before + 1
    status, _, _ = await get(client, pod.url, "/hard")
    assert status == 502  # removed: nothing to fall back on
    origin.set("/soft", body=b"v2", headers={"Cache-Control": SIE_ONLY})
    assert (await get(client, pod.url, "/soft"))[2] == b"v2"  # refreshed once it answers


@own_l2_per_pod
async def test_a_soft_tag_purge_marks_only_the_tagged_objects_stale(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    for i in range(10):
        origin.set(f"/t/{i}", body=b"v1", headers={
            "Cache-Control": SIE_ONLY, "Surrogate-Key": "even" if i % 2 == 0 else "odd"})
    pod = await pods()
    for i in range(10):
        await get(client, pod.url, f"/t/{i}")
        origin.set(f"/t/{i}", status=503, body=b"down", headers={})
    status, answer = await purge(client, pod.admin_url, {"tag": "even", "soft": True})
    assert status == 200 and answer["purged"] == {"tag": "even", "soft": True}
    report = answer["pods"]["self"]  # type: ignore[index]
    assert report["l2"] == {"memory": {"status": "ok", "removed": 5}}
    hits = dict(origin.hits)
    for i in range(10):
        assert (await get(client, pod.url, f"/t/{i}"))[2] == b"v1"
    # the even ones were expired (asked of the origin, which failed: stale served); the odd
    # ones are fresh (nginx or L2 answered)
    assert {p: n - hits.get(p, 0) for p, n in origin.hits.items() if n != hits.get(p, 0)} \
        == {f"/t/{i}": 1 for i in range(0, 10, 2)}


async def test_soft_must_be_a_boolean(pods: PodFactory, client: aiohttp.ClientSession) -> None:
    pod = await pods(nginx=False)
    status, answer = await purge(client, pod.admin_url, {"url": f"{HOST}/x", "soft": "yes"})
    assert status == 400 and "soft" in str(answer["error"])
