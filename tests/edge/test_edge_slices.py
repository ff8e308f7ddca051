"""Large objects in slices (cachePolicy.slices, issue 14 part 2): real nginx (its ``slice``
module) + ``aerocdn edge`` + a real origin on 127.0.0.1 that honours (or ignores) Range and
counts every range it is asked for."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from tests.edge.edgeharness import (
    HOST,
    CyclicBody,
    Origin,
    PodFactory,
    RangeOrigin,
    edge_config,
    edge_subprocess,
    free_port,
    raw_get,
    write_config_file,
)

from aerocdn.edge.breaker import CircuitBreaker
from aerocdn.edge.l2 import TierSet
from aerocdn.edge.policy import tier_of
from aerocdn.edge.slices import slice_count, slice_request_range
from aerocdn.edge.tiers import MemoryTier

pytestmark = pytest.mark.timeout(180)
TOKEN = "s3cret-token"
SLICE = 64 * 1024
SLICED = {"slices": {"enabled": True, "sizeBytes": SLICE}}


def serve(origin: Origin, path: str, total: int, **kw: object) -> RangeOrigin:
    r = RangeOrigin(CyclicBody(total), **kw)  # type: ignore[arg-type]
    origin.set(path, handler=r)
    return r


async def fetch(client: aiohttp.ClientSession, base: str, path: str,
                **headers: str) -> tuple[int, dict[str, str], bytes]:
    h = {"Host": HOST, **{k.replace("_", "-"): v for k, v in headers.items()}}
    async with client.get(base + path, headers=h, allow_redirects=False) as r:
        return r.status, {k.lower(): v for k, v in r.headers.items()}, await r.read()


async def fetch_hashed(client: aiohttp.ClientSession, base: str,
                       path: str) -> tuple[int, int, str, bool]:
    """(status, bytes, sha256, complete): a large answer read as a stream, never held."""
    h = hashlib.sha256()
    n = 0
    complete = True
    async with client.get(base + path, headers={"Host": HOST}) as r:
        try:
            async for c in r.content.iter_chunked(2**20):
                h.update(c)
                n += len(c)
        except aiohttp.ClientPayloadError:
            complete = False
        return r.status, n, h.hexdigest(), complete and n == (r.content_length or n)


def shared_l2(size: int) -> TierSet:
    """One region tier for pods in this process (locks with owners, as on Aerospike)."""
    t = MemoryTier(size, name="shared", shared=True)
    return TierSet({"shared": t}, {"shared": CircuitBreaker(5, 5)}, lambda: ("shared",))


# ----------------------------------------------------------------------------- whole objects


async def test_a_whole_object_is_fetched_once_per_slice_and_then_served_from_l1(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    total = 5 * SLICE + 1234
    src = serve(origin, "/big.bin", total)
    pod = await pods(cachePolicy=SLICED)
    status, headers, body = await fetch(client, pod.url, "/big.bin")
    assert status == 200 and body == src.body.read(0, total - 1)
    assert headers["etag"] == '"v1"' and "content-range" not in headers
    # exactly the slices nginx asked for, each once, and nothing else
    assert dict(src.ranges) == {slice_request_range(i, SLICE): 1 for i in range(6)}
    assert src.bytes_sent == total
    again = await fetch(client, pod.url, "/big.bin")
    assert again[0] == 200 and again[2] == body and again[1]["x-cache"] == "HIT"
    assert sum(src.ranges.values()) == 6


async def test_a_small_object_is_one_slice_and_answered_200(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    src = serve(origin, "/small.txt", 1000)
    pod = await pods(cachePolicy=SLICED)
    for base in (pod.url, pod.edge_url):
        status, headers, body = await fetch(client, base, "/small.txt")
        assert (status, body) == (200, src.body.read(0, 999)), base
        assert headers["content-length"] == "1000"
    assert sum(src.ranges.values()) == 1


async def test_an_empty_object_is_answered_200(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    serve(origin, "/empty", 0, honour_range=False)
    pod = await pods(cachePolicy=SLICED)
    for base in (pod.url, pod.edge_url):
        status, _, body = await fetch(client, base, "/empty")
        assert (status, body) == (200, b""), base


# ----------------------------------------------------------------------------- ranges


@pytest.mark.parametrize("rng, first, last", [
    (f"bytes={SLICE - 10}-{2 * SLICE + 9}", SLICE - 10, 2 * SLICE + 9),  # three slices
    (f"bytes={SLICE}-{SLICE}", SLICE, SLICE),  # first byte of a slice
    (f"bytes={3 * SLICE - 1}-", 3 * SLICE - 1, 4 * SLICE + 99),  # open-ended, to the end
    ("bytes=-1000", 4 * SLICE + 100 - 1000, 4 * SLICE + 99),  # suffix
    (f"bytes=-{10 * SLICE}", 0, 4 * SLICE + 99),  # suffix longer than the object
    (f"bytes=5-{100 * SLICE}", 5, 4 * SLICE + 99),  # past the end: clamped
])
async def test_ranges_across_slice_boundaries(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession,
        rng: str, first: int, last: int) -> None:
    total = 4 * SLICE + 100
    src = serve(origin, "/r.bin", total)
    pod = await pods(cachePolicy=SLICED)
    for base in (pod.url, pod.edge_url):  # nginx's slice + range filters, and the edge itself
        status, headers, body = await fetch(client, base, "/r.bin", Range=rng)
        assert status == 206, (base, status, body[:200])
        assert headers["content-range"] == f"bytes {first}-{last}/{total}", base
        assert body == src.body.read(first, last), base
    # never more than once per slice, whoever asked
    assert set(src.ranges.values()) == {1}
    assert set(src.ranges) <= {slice_request_range(i, SLICE) for i in range(5)}


async def test_an_unsatisfiable_range_is_416_with_the_length(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    total = 2 * SLICE
    serve(origin, "/u.bin", total)
    pod = await pods(cachePolicy=SLICED)
    await fetch(client, pod.url, "/u.bin")  # cached
    for base in (pod.url, pod.edge_url):
        status, headers, _ = await fetch(client, base, "/u.bin", Range=f"bytes={total}-")
        assert status == 416, base
        assert headers["content-range"] == f"bytes */{total}", base


async def test_if_range_gets_the_range_only_for_the_current_version(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    total = 3 * SLICE
    src = serve(origin, "/ir.bin", total)
    pod = await pods(cachePolicy=SLICED)
    rng = f"bytes={SLICE - 5}-{SLICE + 5}"
    for base in (pod.url, pod.edge_url):
        same = await fetch(client, base, "/ir.bin", Range=rng, If_Range='"v1"')
        assert same[0] == 206 and same[2] == src.body.read(SLICE - 5, SLICE + 5), base
        other = await fetch(client, base, "/ir.bin", Range=rng, If_Range='"v0"')
        assert other[0] == 200 and other[2] == src.body.read(0, total - 1), base
        weak = await fetch(client, base, "/ir.bin", Range=rng, If_Range='W/"v1"')
        assert weak[0] == 200, base  # a weak validator never satisfies If-Range
    assert set(src.ranges.values()) == {1}


# ----------------------------------------------------------------------------- 200 MiB


async def test_a_200_mib_object_is_served_from_cache_with_one_origin_fetch_per_slice(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    """Two pods sharing one region tier: the first fills every slice, the second serves the
    whole object from L2; the origin sent each 1 MiB slice once, and nothing more."""
    total = 200 * 2**20
    src = serve(origin, "/movie.mp4", total)
    l2 = shared_l2(240 * 2**20)
    sliced = {"slices": {"enabled": True}}  # the default size: 1 MiB
    p1 = await pods(cachePolicy=sliced, memoryLimit="2Gi", edge_kw={"l2": l2})
    p2 = await pods(cachePolicy=sliced, memoryLimit="2Gi", edge_kw={"l2": l2})
    want = src.body.sha256()
    for pod in (p1, p2, p1):
        status, n, digest, complete = await fetch_hashed(client, pod.url, "/movie.mp4")
        assert (status, n, digest, complete) == (200, total, want, True)
    n_slices = slice_count(total, 2**20)
    assert dict(src.ranges) == {slice_request_range(i, 2**20): 1 for i in range(n_slices)}
    assert src.bytes_sent == total
    # a range deep inside, from the second pod's nginx: still no origin request
    first = 150 * 2**20 - 7
    status, headers, body = await fetch(client, p2.url, "/movie.mp4",
                                        Range=f"bytes={first}-{first + 2**20 + 13}")
    assert status == 206 and body == src.body.read(first, first + 2**20 + 13)
    assert headers["content-range"] == f"bytes {first}-{first + 2**20 + 13}/{total}"
    assert sum(src.ranges.values()) == n_slices


async def test_concurrent_clients_of_two_pods_cause_one_fetch_per_slice(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    total = 24 * SLICE + 17
    src = serve(origin, "/hot.bin", total)
    l2 = shared_l2(64 * 2**20)
    p1 = await pods(cachePolicy=SLICED, edge_kw={"l2": l2})
    p2 = await pods(cachePolicy=SLICED, edge_kw={"l2": l2})
    want = src.body.sha256()
    got = await asyncio.gather(*(fetch_hashed(client, p.url, "/hot.bin")
                                 for _ in range(5) for p in (p1, p2)))
    assert set(got) == {(200, total, want, True)}
    assert set(src.ranges.values()) == {1} and len(src.ranges) == 25


# ----------------------------------------------------------------------------- changes


async def test_an_object_changing_mid_download_is_never_served_mixed(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    total = 12 * SLICE
    src = serve(origin, "/changing.bin", total)
    v1, v2 = src.body, CyclicBody(total, seed=2)

    async def switch(rng: str) -> None:
        if rng == slice_request_range(5, SLICE):  # the origin publishes v2 mid-download
            src.body, src.etag = v2, '"v2"'

    src.before_body = switch
    pod = await pods(cachePolicy=SLICED)
    for base, path in ((pod.url, "/changing.bin"), (pod.edge_url, "/changing.bin?e")):
        src.body, src.etag = v1, '"v1"'
        status, _, body = await _read_all(client, base, path)
        assert status == 200
        # cut short, and every byte it got is v1's: never a mixed body
        assert len(body) < total and body == v1.read(0, len(body) - 1), base
        # the next download is the new version, whole
        src.before_body = None
        again = await fetch(client, base, path)
        assert again[0] == 200 and again[2] == v2.read(0, total - 1), base
        assert again[1]["etag"] == '"v2"'
        src.before_body = switch


async def _read_all(client: aiohttp.ClientSession, base: str,
                    path: str) -> tuple[int, dict[str, str], bytes]:
    out = bytearray()
    async with client.get(base + path, headers={"Host": HOST}) as r:
        try:
            async for c in r.content.iter_chunked(65536):
                out += c
        except aiohttp.ClientPayloadError:
            pass
        return r.status, dict(r.headers), bytes(out)


async def test_stale_metadata_is_served_while_it_is_refreshed_in_the_background(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    """RFC 5861 stale-while-revalidate, in slices: the stale object is answered at once (its
    slices are keyed by its version), the origin is asked in the background, and a new
    version found there is what the next request gets."""
    total = 2 * SLICE + 3
    src = serve(origin, "/swr.bin", total,
                headers={"Cache-Control": "max-age=1, stale-while-revalidate=60"})
    pod = await pods(cachePolicy=SLICED)
    first = await fetch(client, pod.edge_url, "/swr.bin")
    assert first[0] == 200 and tier_of(first[1]) == "origin"
    fetched = sum(src.ranges.values())
    stale_from = time.time() + 1.1
    while time.time() < stale_from:  # the condition is the clock itself: max-age=1 runs out
        await asyncio.sleep(0.05)
    v2 = CyclicBody(total, seed=9)
    src.body, src.etag = v2, '"v2"'
    status, headers, body = await fetch(client, pod.edge_url, "/swr.bin")
    assert (status, tier_of(headers), headers["etag"]) == (200, "l2-stale", '"v1"')
    assert body == first[2]  # the old version, whole: never mixed with the new one
    deadline = time.monotonic() + 10
    while sum(src.ranges.values()) == fetched:  # the background refresh reaches the origin
        assert time.monotonic() < deadline, "no background refresh"
        await asyncio.sleep(0.01)
    deadline = time.monotonic() + 10
    while True:
        status, headers, body = await fetch(client, pod.edge_url, "/swr.bin")
        if headers["etag"] == '"v2"':
            break
        assert time.monotonic() < deadline, "the new version never came"
        await asyncio.sleep(0.01)
    assert status == 200 and body == v2.read(0, total - 1)


# ----------------------------------------------------------------------------- origins


async def test_an_origin_that_ignores_range_is_read_once_and_stored_in_slices(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    total = 10 * SLICE + 3
    src = serve(origin, "/norange.bin", total, honour_range=False)
    pod = await pods(cachePolicy=SLICED)
    status, _, body = await fetch(client, pod.url, "/norange.bin")
    assert status == 200 and body == src.body.read(0, total - 1)
    assert sum(src.ranges.values()) == 1 and src.bytes_sent == total
    rng = f"bytes={3 * SLICE - 1}-{7 * SLICE}"
    for base in (pod.url, pod.edge_url):
        status, headers, body = await fetch(client, base, "/norange.bin", Range=rng)
        assert status == 206 and body == src.body.read(3 * SLICE - 1, 7 * SLICE)
        assert headers["content-range"] == f"bytes {3 * SLICE - 1}-{7 * SLICE}/{total}"
    assert sum(src.ranges.values()) == 1


async def test_answers_that_may_not_be_stored_are_streamed_as_the_origin_sends_them(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    total = 3 * SLICE + 5
    nostore = serve(origin, "/private.bin", total, headers={"Cache-Control": "no-store"})
    novalidator = serve(origin, "/plain.bin", total, etag=None)
    pod = await pods(cachePolicy=SLICED)
    for path, src in (("/private.bin", nostore), ("/plain.bin", novalidator)):
        for _ in range(2):
            status, headers, body = await fetch(client, pod.url, path)
            assert status == 200 and body == src.body.read(0, total - 1), path
            assert headers["x-cache"] != "HIT"
        # nothing kept: every download asked the origin for every slice again
        assert set(src.ranges.values()) == {2}, path
        # the edge asked directly for a range inside a slice: exactly that range
        status, headers, body = await fetch(client, pod.edge_url, path, Range="bytes=10-20")
        assert (status, body) == (206, src.body.read(10, 20)), path
        assert headers["content-range"] == f"bytes 10-20/{total}", path


async def test_past_the_fill_budget_slices_are_streamed_and_answers_stay_right(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    """A pod whose fill budget (15% of its memory limit, here ~60 KiB) cannot hold one 64 KiB
    slice: nothing is stored, every answer is the origin's, whole and range alike."""
    total = 3 * SLICE + 5
    src = serve(origin, "/tight.bin", total)
    pod = await pods(cachePolicy=SLICED, memoryLimit="400Ki")
    assert pod.edge.filler.budget.limit < SLICE
    for base in (pod.url, pod.edge_url):
        status, _, body = await fetch(client, base, "/tight.bin")
        assert status == 200 and body == src.body.read(0, total - 1), base
        status, headers, body = await fetch(client, base, "/tight.bin", Range="bytes=10-20")
        assert status == 206 and body == src.body.read(10, 20), base
        assert headers["content-range"] == f"bytes 10-20/{total}", base
    assert pod.edge.filler.budget.used == 0  # every byte taken was given back
    before = src.ranges[slice_request_range(2, SLICE)]
    assert (await fetch(client, pod.url, "/tight.bin"))[0] == 200
    assert src.ranges[slice_request_range(2, SLICE)] == before + 1  # it was not stored


async def test_a_whole_answer_relays_slices_that_cannot_be_stored_now(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    """The object's metadata is in L2, its other slices are not, and the fill budget is taken
    by fills in flight: a whole GET still gets every byte, those slices relayed from the
    origin as they arrive (and not stored)."""
    total = 4 * SLICE + 9
    src = serve(origin, "/relay.bin", total)
    pod = await pods(cachePolicy=SLICED)
    status, _, body = await fetch(client, pod.edge_url, "/relay.bin", Range="bytes=0-10")
    assert status == 206 and body == src.body.read(0, 10)  # metadata + slice 0 stored
    budget = pod.edge.filler.budget
    budget.used = budget.limit  # as if other fills held it all
    try:
        for _ in range(2):
            status, _, body = await fetch(client, pod.edge_url, "/relay.bin")
            assert status == 200 and body == src.body.read(0, total - 1)
    finally:
        budget.used = 0
    assert src.ranges[slice_request_range(0, SLICE)] == 1
    assert src.ranges[slice_request_range(3, SLICE)] == 2  # relayed each time, not stored


async def test_answers_that_are_no_object_are_cached_whole_while_slicing(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    """A 404 or a redirect is no object in slices: stored whole (as without slicing), and
    answered as it is whatever range was asked; when an object in slices becomes a 404 the
    next request gets the 404."""
    origin.set("/gone", status=404, body=b"no such thing",
               headers={"Cache-Control": "max-age=300"})
    origin.set("/moved", status=301, body=b"",
               headers={"Location": "/elsewhere", "Cache-Control": "max-age=300"})
    pod = await pods(cachePolicy=SLICED)
    for base in (pod.url, pod.edge_url):
        for _ in range(2):
            status, _, body = await fetch(client, base, "/gone")
            assert (status, body) == (404, b"no such thing"), base
            status, headers, _ = await fetch(client, base, "/moved", Range="bytes=5-9")
            assert (status, headers["location"]) == (301, "/elsewhere"), base
    assert origin.hits["/gone"] == 1 and origin.hits["/moved"] == 1
    # an object in slices, then gone at the origin: the 404 once its metadata is refreshed
    total = 3 * SLICE
    serve(origin, "/vanishing.bin", total)
    assert (await fetch(client, pod.edge_url, "/vanishing.bin", Range="bytes=0-9"))[0] == 206

    async def gone(request: object) -> web.Response:
        return web.Response(status=404, text="gone", headers={"Cache-Control": "max-age=60"})

    origin.set("/vanishing.bin", handler=gone)  # type: ignore[arg-type]
    # slice 2 is not stored yet: fetching it finds the 404, which is the answer from now on
    status, _, body = await fetch(client, pod.edge_url, "/vanishing.bin",
                                  Range=f"bytes={2 * SLICE}-{2 * SLICE + 9}")
    assert (status, body) == (404, b"gone")
    status, _, body = await fetch(client, pod.edge_url, "/vanishing.bin", Range="bytes=0-9")
    assert (status, body) == (404, b"gone")


# ----------------------------------------------------------------------------- purge


@pytest.mark.parametrize("body", [{"url": f"{HOST}/p/p.bin"}, {"prefix": f"{HOST}/p/"}],
                         ids=["url", "prefix"])
async def test_purge_removes_every_slice_from_l1_and_l2(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession,
        body: dict[str, str]) -> None:
    total = 6 * SLICE - 1
    src = serve(origin, "/p/p.bin", total)
    pod = await pods(cachePolicy=SLICED)
    await fetch(client, pod.url, "/p/p.bin")
    assert (await fetch(client, pod.url, "/p/p.bin"))[1]["x-cache"] == "HIT"
    async with client.post(pod.admin_url + "/purge", json=body,
                           headers={"Authorization": f"Bearer {TOKEN}"}) as r:
        assert r.status == 200
        report = await r.json()
    assert report["pods"]["self"]["l1"]["purged"] == 6  # each slice's nginx entry
    status, headers, got = await fetch(client, pod.url, "/p/p.bin")
    assert status == 200 and got == src.body.read(0, total - 1)
    assert headers["x-cache"] == "MISS"
    # every slice came from the origin again: none was left in L1 or L2
    assert dict(src.ranges) == {slice_request_range(i, SLICE): 2 for i in range(6)}


async def test_only_canonical_targets_are_kept_in_l1_in_slices_too(
        pods: PodFactory, origin: Origin) -> None:
    """One request target: "/c/../k.bin" is the object "/k.bin" for L2 and the origin, and
    nginx (which keys on the raw target) must not keep its slices under the raw target."""
    total = 2 * SLICE + 1
    src = serve(origin, "/k.bin", total)
    pod = await pods(cachePolicy=SLICED)
    for _ in range(2):
        a = await raw_get(pod.url, "/c/../k.bin")
        assert a.status == 200 and a.body == src.body.read(0, total - 1)
        assert a.headers["x-cache"] != "HIT"
    b = await raw_get(pod.url, "/k.bin")
    assert b.status == 200 and b.body == a.body
    assert set(src.ranges.values()) == {1}  # one object, each slice fetched once


# ----------------------------------------------------------------------------- memory


async def test_a_200_mib_object_streams_through_an_edge_process_in_bounded_memory(
        origin: Origin, client: aiohttp.ClientSession, tmp_path: Path) -> None:
    """``aerocdn edge`` as its own process, a memory tier far smaller than the object: a whole
    200 MiB GET (assembled from 1 MiB slices) raises its peak RSS by a few slices, not by the
    object."""
    total = 200 * 2**20
    src = serve(origin, "/huge.iso", total)
    port = free_port()
    cfg = edge_config(origin.url, tmp_path, listen=f"127.0.0.1:{port}",
                      memoryTierSize="16Mi", memoryLimit="512Mi", cacheClusters={},
                      cachePolicy={"slices": {"enabled": True}})
    edge = edge_subprocess(write_config_file(cfg, tmp_path / "edge.yaml"))
    try:
        deadline = time.monotonic() + 30
        while True:
            assert edge.poll() is None, edge.stderr.read().decode() if edge.stderr else ""
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                break
            except OSError:
                assert time.monotonic() < deadline, "edge did not start"
                await asyncio.sleep(0.05)
        small = serve(origin, "/warm.bin", 3 * 2**20)
        await fetch(client, f"http://127.0.0.1:{port}", "/warm.bin")  # code paths warmed
        assert sum(small.ranges.values()) == 3
        before = _status_kib(edge.pid, "VmRSS")
        status, n, digest, complete = await fetch_hashed(
            client, f"http://127.0.0.1:{port}", "/huge.iso")
        assert (status, n, complete) == (200, total, True)
        assert digest == src.body.sha256()
        peak = _status_kib(edge.pid, "VmHWM")
        grew = (peak - before) * 1024
        print(f"edge RSS {before // 1024} MiB before, peak {peak // 1024} MiB")
        # the memory tier (16 MiB) + a few slices in flight, far below the object
        assert grew < 64 * 2**20, f"peak RSS grew by {grew / 2**20:.0f} MiB"
    finally:
        if edge.poll() is None:
            edge.send_signal(signal.SIGTERM)
            try:
                await asyncio.get_running_loop().run_in_executor(None, edge.wait, 15)
            except subprocess.TimeoutExpired:
                edge.kill()
                edge.wait()


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")
