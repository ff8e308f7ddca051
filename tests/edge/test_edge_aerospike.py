"""The Aerospike L2 tier and cross-pod collapsing against a live server.

Runs only with ``AEROCDN_TEST_AEROSPIKE=host:port`` (namespace ``cache`` unless
``AEROCDN_TEST_AEROSPIKE_NS`` says otherwise); each test uses its own set.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from tests.edge.edgeharness import HOST, Origin, Pod, PodFactory, edge_config

from aerocdn.edge.policy import StoredObject
from aerocdn.edge.tiers import AerospikeTier, TierError

SEED = os.environ.get("AEROCDN_TEST_AEROSPIKE", "")
NS = os.environ.get("AEROCDN_TEST_AEROSPIKE_NS", "cache")
pytestmark = [
    pytest.mark.aerospike,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not SEED, reason="needs a live Aerospike: set AEROCDN_TEST_AEROSPIKE="
                                        "host:port (namespace 'cache' with nsup-period > 0)"),
]


@pytest.fixture
def set_name() -> str:
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
async def tier(set_name: str) -> AsyncIterator[AerospikeTier]:
    t = AerospikeTier("live", (SEED,), NS, set_name, timeout_ms=500, threads=4,
                      rules_max_age=3600)
    yield t
    await t.close()


def obj(url: str, at: float) -> StoredObject:
    return StoredObject(200, (("Content-Type", "text/plain"), ("ETag", '"1"')), b"\x00body\xff",
                        url, at, at + 60, 5.0, 50.0, ("accept-language",))


async def test_aerospike_tier_stores_reads_and_deletes_objects(tier: AerospikeTier) -> None:
    now = time.time()
    await tier.put("k1", obj("h/a", now), 60)
    assert await tier.get("k1") == obj("h/a", now)
    await tier.delete("k1")
    assert await tier.get("k1") is None
    await tier.ping()


async def test_requests_that_arrive_while_the_tier_connects_wait_for_the_connection(
        tier: AerospikeTier) -> None:
    # The edge's probe loop connects the tier at start; the first requests arrive while that
    # connect runs.  They must wait for it (up to the tier's deadline), not skip L2 and go to
    # the origin (the cause of a flaky cross-pod purge test).
    now = time.time()
    writer = AerospikeTier("w", (SEED,), NS, tier._set, timeout_ms=500, threads=2,
                           rules_max_age=3600)
    try:
        await writer.put("early", obj("h/early", now), 60)
    finally:
        await writer.close()
    ping = asyncio.ensure_future(tier.ping())  # starts the connect
    await asyncio.sleep(0)
    gets = await asyncio.gather(*(tier.get("early") for _ in range(20)),
                                return_exceptions=True)
    await ping
    assert gets == [obj("h/early", now)] * 20


async def test_many_distinct_gets_at_once_each_get_their_own_object(
        tier: AerospikeTier) -> None:
    # More gets in one tick than one batch read holds, over distinct keys, some repeated and
    # some missing: they go as several batches, and every get is answered with its own record
    # (or a miss), none with another key's.
    now = time.time()
    keys = [f"d{i}" for i in range(300)]
    for i in range(0, 250, 10):  # at most 10 writes at once: the tier has 4 threads
        await asyncio.gather(*(tier.put(k, obj(f"h/{k}", now), 60) for k in keys[i:i + 10]))
    want = [k for k in keys for _ in range(2 if k.endswith("7") else 1)]
    got = await asyncio.gather(*(tier.get(k) for k in want))
    assert got == [obj(f"h/{k}", now) if int(k[1:]) < 250 else None for k in want]
    assert len(want) > 2 * tier.max_batch  # several batches
    assert not tier._pending and not tier._flushes


async def test_a_closed_tier_fails_fast_and_leaves_no_thread_behind(set_name: str) -> None:
    t = AerospikeTier("c", (SEED,), NS, set_name, timeout_ms=500, threads=2, rules_max_age=3600)
    ping = asyncio.ensure_future(t.ping())
    await asyncio.sleep(0)
    await t.close()  # while connecting
    with contextlib.suppress(TierError, asyncio.CancelledError):
        await ping
    with pytest.raises(TierError):
        await t.get("x")
    deadline = time.monotonic() + 10
    while any(th.name.startswith("as-c-") for th in threading.enumerate()):
        assert time.monotonic() < deadline, "client threads still running after close"
        await asyncio.sleep(0.05)


async def test_aerospike_purge_rules_hide_older_objects_from_every_pod(
        tier: AerospikeTier, set_name: str) -> None:
    other = AerospikeTier("live2", (SEED,), NS, set_name, timeout_ms=500, threads=2,
                          rules_max_age=3600)
    try:
        now = time.time()
        await tier.put("a", obj("h/img/1.png", now - 1), 60)
        await tier.put("b", obj("h/css/1.css", now - 1), 60)
        await other.purge("h/img/", prefix=True, at=now)
        await tier.refresh()
        assert await tier.get("a") is None
        assert await tier.get("b") is not None
        await tier.put("a", obj("h/img/1.png", now + 1), 60)  # stored after the purge
        assert await tier.get("a") is not None
    finally:
        await other.close()


async def test_aerospike_lock_is_create_only_owned_and_expires(tier: AerospikeTier) -> None:
    assert await tier.acquire_lock("obj", "pod-a", ttl=2)
    assert not await tier.acquire_lock("obj", "pod-b", ttl=2)
    await tier.release_lock("obj", "pod-b")  # not the owner: no effect
    assert not await tier.acquire_lock("obj", "pod-c", ttl=2)
    await tier.release_lock("obj", "pod-a")
    assert await tier.acquire_lock("obj", "pod-c", ttl=1)
    deadline = time.monotonic() + 10
    while not await tier.acquire_lock("obj", "pod-d", ttl=1):  # a dead holder's lock ends
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)


async def _edges(pods: PodFactory, origin: Origin, tmp_path: Path, set_name: str,
                 n: int) -> list[Pod]:
    out = []
    for i in range(n):
        d = tmp_path / f"a{i}"
        d.mkdir()
        cfg = edge_config(origin.url, d, cacheClusters={
            "cc-eu": {"seeds": [SEED], "namespace": NS, "set": set_name}},
            tierTimeoutMs=500)
        out.append(await pods(nginx=False, cfg=cfg))
    return out


async def test_four_edge_pods_sharing_aerospike_make_one_origin_fetch(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession, tmp_path: Path,
        set_name: str) -> None:
    gate = asyncio.Event()
    origin.set("/shared", body=b"S" * 1024, gate=gate)
    edges = await _edges(pods, origin, tmp_path, set_name, 4)

    async def fetch(p: Pod) -> tuple[int, bytes]:
        async with client.get(p.edge_url + "/shared", headers={"Host": HOST}) as r:
            return r.status, await r.read()

    reqs = [asyncio.create_task(fetch(p)) for p in edges for _ in range(10)]
    await asyncio.sleep(0)
    while sum(p.edge.m.collapsed.labels("region")._value.get() for p in edges) < 3:
        await asyncio.sleep(0.01)  # the three other pods wait on the lock record
    gate.set()
    results = await asyncio.gather(*reqs)
    assert all(r == (200, b"S" * 1024) for r in results)
    assert origin.hits["/shared"] == 1


async def test_a_lock_holder_that_died_blocks_others_only_until_the_lock_ends(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession, tmp_path: Path,
        set_name: str, tier: AerospikeTier) -> None:
    origin.set("/orphan", body=b"ok")
    (edge,) = await _edges(pods, origin, tmp_path, set_name, 1)
    from aerocdn.edge.policy import cache_key

    key = cache_key(edge.edge.cfg.cache_policy.cache_key, HOST, "/orphan", "",
                    {"accept-encoding": "gzip"})
    assert await tier.acquire_lock(key.key, "dead-pod", ttl=30)  # never released
    async with client.get(edge.edge_url + "/orphan",
                          headers={"Host": HOST, "Accept-Encoding": "gzip"}) as r:
        assert (r.status, await r.read()) == (200, b"ok")
    assert origin.hits["/orphan"] == 1  # fetched after lockWaitSeconds, not after 30 s


async def test_a_purge_through_one_pod_hides_the_object_from_every_pod(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession, tmp_path: Path,
        set_name: str) -> None:
    origin.set("/p", body=b"v1")
    a, b = await _edges(pods, origin, tmp_path, set_name, 2)
    async with client.get(a.edge_url + "/p", headers={"Host": HOST}) as r:
        assert await r.read() == b"v1"
    origin.set("/p", body=b"v2")
    async with client.get(b.edge_url + "/p", headers={"Host": HOST}) as r:
        assert await r.read() == b"v1"  # L2 hit in the shared tier
    async with client.post(a.admin_url + "/purge", json={"prefix": f"{HOST}/"},
                           headers={"Authorization": "Bearer s3cret-token"}) as r:
        assert r.status == 200
    await b.edge.l2.tiers["cc-eu"].refresh()
    async with client.get(b.edge_url + "/p", headers={"Host": HOST}) as r:
        assert await r.read() == b"v2"
