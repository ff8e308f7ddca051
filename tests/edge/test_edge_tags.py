"""Purge by tag (surrogate keys) with real nginx and real edges: the origin's tag header
tags each object, never reaches a client, and a tag purge removes every object carrying the
tag from L2 and from every pod's nginx, and nothing else."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from tests.edge.edgeharness import HOST, Origin, PodFactory, edge_config, own_l2_per_pod
from tests.edge.test_edge_behaviour import get, purge

N = 1000
GROUPS = 10


def tagging_origin(origin: Origin, versions: dict[str, bytes], header: str = "Surrogate-Key",
                   sep: str = " ") -> None:
    """/o/<i>: tagged all, grp-<i % GROUPS> and obj-<i>; body = its current version."""
    async def handler(request: web.Request) -> web.StreamResponse:
        i = int(request.path.rsplit("/", 1)[1])
        tags = sep.join(["all", f"grp-{i % GROUPS}", f"obj-{i}"])
        return web.Response(body=versions.get(request.path, b"v1"), headers={
            "Cache-Control": "max-age=300", header: tags})
    origin.default = handler


async def fetch_all(client: aiohttp.ClientSession, base: str, paths: list[str]
                    ) -> dict[str, tuple[int, dict[str, str], bytes]]:
    sem = asyncio.Semaphore(32)

    async def one(path: str) -> tuple[str, tuple[int, dict[str, str], bytes]]:
        async with sem:
            return path, await get(client, base, path)
    return dict(await asyncio.gather(*(one(p) for p in paths)))


@own_l2_per_pod
async def test_a_tag_purge_removes_every_tagged_object_from_every_pod(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession, tmp_path: Path) -> None:
    versions: dict[str, bytes] = {}
    tagging_origin(origin, versions)
    dirs = [tmp_path / f"p{i}" for i in range(3)]
    cfgs = [edge_config(origin.url, d) for d in dirs]
    admins = tuple(c.admin_listen for c in cfgs)
    group = [await pods(cfg=c.model_copy(update={"peers": c.peers.model_copy(
        update={"static": admins})})) for c in cfgs]
    paths = [f"/o/{i}" for i in range(N)]
    for p in group:
        first = await fetch_all(client, p.url, paths)
        assert {r[0] for r in first.values()} == {200}
        # the tag header is the cache's, not the client's
        assert not any("surrogate-key" in r[1] for r in first.values())
        again = await fetch_all(client, p.url, paths[:20])
        assert {r[1].get("x-cache") for r in again.values()} == {"HIT"}
    assert sum(origin.hits.values()) == 3 * N  # each pod's own L2 (the memory tier)

    for path in paths:
        versions[path] = b"v2"
    # grp-3: 100 objects, purged in every pod through one pod's fan-out
    status, answer = await purge(client, group[0].admin_url, {"tag": "grp-3"})
    assert status == 200 and answer["complete"] is True, answer
    pods_report = answer["pods"]
    assert isinstance(pods_report, dict) and len(pods_report) == 3
    for report in pods_report.values():
        assert report["l2"] == {"memory": {"status": "ok", "removed": N // GROUPS}}
        assert report["l1"] == {"purged": N // GROUPS, "absent": 0, "failed": 0}
    for p in group:
        after = await fetch_all(client, p.url, paths)
        changed = {path for path, r in after.items() if r[2] == b"v2"}
        assert changed == {f"/o/{i}" for i in range(N) if i % GROUPS == 3}
        assert {r[2] for path, r in after.items() if path not in changed} == {b"v1"}

    # every object: the tag all of them carry
    status, answer = await purge(client, group[2].admin_url, {"tag": "all"})
    assert status == 200 and answer["complete"] is True
    for p in group:
        after = await fetch_all(client, p.url, paths)
        assert {r[2] for r in after.values()} == {b"v2"}
        assert not any("surrogate-key" in r[1] for r in after.values())


async def test_cache_tag_with_commas_when_the_header_is_configured(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    versions: dict[str, bytes] = {}
    tagging_origin(origin, versions, header="Cache-Tag", sep=",")
    pod = await pods(cachePolicy={"tagHeader": "Cache-Tag"})
    for i in range(20):
        status, headers, body = await get(client, pod.url, f"/o/{i}")
        assert (status, body) == (200, b"v1") and "cache-tag" not in headers
    versions.update({f"/o/{i}": b"v2" for i in range(20)})
    status, answer = await purge(client, pod.admin_url, {"tag": "obj-7"})
    assert status == 200 and answer["complete"] is True
    assert [(await get(client, pod.url, f"/o/{i}"))[2] for i in (6, 7, 8)] == [
        b"v1", b"v2", b"v1"]


async def test_tags_never_reach_a_client_of_an_answer_that_is_not_stored(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    origin.set("/private", body=b"secret", headers={
        "Cache-Control": "no-store", "Surrogate-Key": "user-42", "Cache-Tag": "user-42"})
    pod = await pods()
    status, headers, body = await get(client, pod.url, "/private")
    assert (status, body) == (200, b"secret")
    assert "surrogate-key" not in headers and "cache-tag" not in headers


@pytest.mark.parametrize("body", [{"tag": ""}, {"tag": "a b"}, {"tag": "a,b"},
                                  {"tag": "x" * 257}, {"tag": "ok", "url": f"{HOST}/"},
                                  {"tag": 7}])
async def test_a_tag_the_origin_could_not_have_sent_is_refused(
        body: dict[str, str], pods: PodFactory, client: aiohttp.ClientSession) -> None:
    pod = await pods(nginx=False)
    status, answer = await purge(client, pod.admin_url, body)
    assert status == 400 and "tag" in str(answer["error"])
