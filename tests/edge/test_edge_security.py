"""Issue 11, "What was seen": one regression test per item, against real nginx (rendered
config) and the real ``aerocdn edge`` with the memory tier, everything on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from tests.edge.edgeharness import (
    HOST,
    Origin,
    PodFactory,
    RawAnswer,
    edge_config,
    edge_subprocess,
    free_port,
    memory_tier_only,
    raw_get,
    raw_request,
    write_config_file,
)

pytestmark = pytest.mark.timeout(90)
TOKEN = "s3cret-token"


async def wait_until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


async def purge(client: aiohttp.ClientSession, admin: str, body: object,
                token: str = TOKEN) -> tuple[int, dict[str, object]]:
    async with client.post(admin + "/purge", json=body,
                           headers={"Authorization": f"Bearer {token}"}) as r:
        return r.status, await r.json()


# ----------------------------------------------------------------------------- 1. Vary + collapse


def _per_cookie(gate: asyncio.Event) -> Callable[[web.Request], object]:
    async def page(request: web.Request) -> web.Response:
        await gate.wait()
        return web.Response(text="page for " + request.headers.get("Cookie", "nobody"),
                            headers={"Cache-Control": "max-age=300", "Vary": "Cookie"})
    return page


@pytest.mark.parametrize("through", ["edge", "nginx"])
async def test_collapsed_request_never_gets_another_users_variant(
        through: str, pods: PodFactory, origin: Origin) -> None:
    gate = asyncio.Event()
    origin.set("/account", handler=_per_cookie(gate))  # type: ignore[arg-type]
    pod = await pods(nginx=through == "nginx", cachePolicy={"cookies": "forward"})
    base = pod.url if through == "nginx" else pod.edge_url
    alice = asyncio.create_task(raw_get(base, "/account", headers={"Cookie": "sid=alice"}))
    await wait_until(lambda: origin.hits["/account"] == 1)
    bob = asyncio.create_task(raw_get(base, "/account", headers={"Cookie": "sid=bob"}))
    if through == "edge":
        await wait_until(lambda: pod.edge.m.collapsed.labels("pod")._value.get() == 1)
    else:
        await asyncio.sleep(0.3)  # bob is queued behind nginx's cache lock or the edge's fill
    gate.set()
    a, b = await alice, await bob
    assert a.body == b"page for sid=alice"
    assert b.body == b"page for sid=bob"
    # each variant is stored and served to its own user only
    again = await raw_get(base, "/account", headers={"Cookie": "sid=bob"})
    assert again.body == b"page for sid=bob"
    carol = await raw_get(base, "/account", headers={"Cookie": "sid=carol"})
    assert carol.body == b"page for sid=carol"


async def test_cross_pod_lock_waiter_only_takes_its_own_variant(
        pods: PodFactory, origin: Origin, tmp_path: Path) -> None:
    """Two edges sharing one L2 with real locks: the second pod waits on the first pod's lock
    and must not be handed the first pod's variant."""
    from aerocdn.edge.breaker import CircuitBreaker
    from aerocdn.edge.l2 import TierSet
    from aerocdn.edge.tiers import MemoryTier

    shared = MemoryTier(64 * 2**20, name="shared", shared=True)
    gate = asyncio.Event()
    origin.set("/acct", handler=_per_cookie(gate))  # type: ignore[arg-type]
    pods_l2 = [TierSet({"shared": shared}, {"shared": CircuitBreaker(5, 5)}, lambda: ("shared",))
               for _ in range(2)]
    p1, p2 = [await pods(nginx=False, cachePolicy={"cookies": "forward"}, edge_kw={"l2": l2})
              for l2 in pods_l2]
    assert p1.edge.shared_l2 and p2.edge.shared_l2  # a shared tier: one fill per region
    a = asyncio.create_task(raw_get(p1.edge_url, "/acct", headers={"Cookie": "sid=alice"}))
    await wait_until(lambda: origin.hits["/acct"] == 1)
    b = asyncio.create_task(raw_get(p2.edge_url, "/acct", headers={"Cookie": "sid=bob"}))
    await wait_until(lambda: p2.edge.m.collapsed.labels("region")._value.get() == 1)
    gate.set()
    assert (await a).body == b"page for sid=alice"
    assert (await b).body == b"page for sid=bob"


# ----------------------------------------------------------------------------- 2. one target


def _strict_origin(origin: Origin) -> None:
    """/static/appN.js (exactly that raw path) is the real object; any other raw target is a
    cacheable 404, the answer an attacker would like to plant under the clean URL."""
    async def strict(request: web.Request) -> web.Response:
        path = request.raw_path.partition("?")[0]
        if re.fullmatch(r"/static/app\d+\.js", path):
            return web.Response(text="app", headers={"Cache-Control": "max-age=300"})
        return web.Response(status=404, text="planted",
                            headers={"Cache-Control": "max-age=300"})

    for i in range(20):
        origin.set(f"/static/app{i}.js", handler=strict)
    origin.default = strict


POISON = [
    ("//static/app{i}.js", "/static/app{i}.js"),
    ("/" * 300 + "static/app{i}.js", "/static/app{i}.js"),
    ("/static%2Fapp{i}.js", "/static/app{i}.js"),
    ("/static/app{i}.js%3Fv=1", "/static/app{i}.js?v=1"),
    ("/x/../static/app{i}.js", "/static/app{i}.js"),
    ("/static/./app{i}.js", "/static/app{i}.js"),
    ("/%73tatic/app{i}.js", "/static/app{i}.js"),
    ("/static/app{i}%2Ejs", "/static/app{i}.js"),
]


@pytest.mark.parametrize("through", ["nginx", "edge"])
async def test_no_encoding_of_a_target_can_plant_an_answer_under_the_clean_url(
        through: str, pods: PodFactory, origin: Origin) -> None:
    _strict_origin(origin)
    pod = await pods(nginx=through == "nginx")
    base = pod.url if through == "nginx" else pod.edge_url
    for i, (bad, clean) in enumerate(POISON):
        await raw_get(base, bad.format(i=i))
        got = await raw_get(base, clean.format(i=i))
        assert (got.status, got.body) == (200, b"app"), (bad, got.raw[:300])
        again = await raw_get(base, clean.format(i=i))
        assert (again.status, again.body) == (200, b"app"), (bad, again.raw[:300])


async def test_the_origin_is_asked_for_the_canonical_target(
        pods: PodFactory, origin: Origin) -> None:
    _strict_origin(origin)
    pod = await pods()
    got = await raw_get(pod.url, "//static/../static/./app3.js")
    assert (got.status, got.body) == (200, b"app")
    assert [r.raw_path for r in origin.requests] == ["/static/app3.js"]


# ----------------------------------------------------------------------------- 3. headers


async def test_headers_outside_the_key_never_reach_the_origin_or_change_a_cached_answer(
        pods: PodFactory, origin: Origin) -> None:
    names = ("X-Forwarded-Host", "X-Original-URL", "X-Rewrite-URL", "X-Forwarded-Scheme",
             "X-HTTP-Method-Override", "Cookie", "Forwarded", "X-Host", "User-Agent")

    async def reflect(request: web.Request) -> web.Response:
        seen = {n: request.headers[n] for n in names if n in request.headers}
        return web.Response(text=json.dumps(seen, sort_keys=True),
                            headers={"Cache-Control": "max-age=300"})

    origin.set("/r", handler=reflect)
    pod = await pods()
    for base in (pod.url, pod.edge_url):
        evil = await raw_get(base, "/r", headers={n: "evil.example" for n in names})
        assert evil.status == 200 and b"evil" not in evil.body, evil.body
        victim = await raw_get(base, "/r")
        assert b"evil" not in victim.body
    for r in origin.requests:
        assert not any(n in r.headers for n in names), dict(r.headers)


async def test_forwarded_header_list_is_configurable_and_keyed_by_vary(
        pods: PodFactory, origin: Origin) -> None:
    async def lang(request: web.Request) -> web.Response:
        vary = request.query.get("vary") == "1"
        return web.Response(text="lang=" + request.headers.get("Accept-Language", "-"),
                            headers={"Cache-Control": "max-age=300",
                                     **({"Vary": "Accept-Language"} if vary else {})})

    origin.set("/l", handler=lang)
    pod = await pods(origin={"forwardHeaders": ["Accept-Language"]})
    # the origin varies on it: each language is its own cached variant
    assert (await raw_get(pod.url, "/l?vary=1", headers={"Accept-Language": "fr"})).body \
        == b"lang=fr"
    assert (await raw_get(pod.url, "/l?vary=1", headers={"Accept-Language": "de"})).body \
        == b"lang=de"
    # the origin does not say Vary: the answer depended on a header outside the key, so it
    # is not stored and the next client gets its own
    assert (await raw_get(pod.url, "/l", headers={"Accept-Language": "fr"})).body == b"lang=fr"
    assert (await raw_get(pod.url, "/l", headers={"Accept-Language": "de"})).body == b"lang=de"
    assert (await raw_get(pod.url, "/l")).body == b"lang=-"


async def test_cookie_policy_bypass_never_serves_a_cached_page_to_a_cookie_request(
        pods: PodFactory, origin: Origin) -> None:
    async def me(request: web.Request) -> web.Response:
        return web.Response(text="user=" + request.headers.get("Cookie", "anonymous"),
                            headers={"Cache-Control": "public, max-age=300"})

    origin.set("/home", handler=me)
    pod = await pods(cachePolicy={"cookies": "bypass"})
    assert (await raw_get(pod.url, "/home")).body == b"user=anonymous"
    assert (await raw_get(pod.url, "/home", headers={"Cookie": "sid=alice"})).body \
        == b"user=sid=alice"
    # alice's page is not stored either
    assert (await raw_get(pod.url, "/home")).body == b"user=anonymous"
    assert (await raw_get(pod.edge_url, "/home")).body == b"user=anonymous"


async def test_cookie_policy_strip_is_the_default_and_the_origin_never_sees_cookies(
        pods: PodFactory, origin: Origin) -> None:
    async def me(request: web.Request) -> web.Response:
        return web.Response(text="user=" + request.headers.get("Cookie", "anonymous"),
                            headers={"Cache-Control": "max-age=300"})

    origin.set("/home", handler=me)
    pod = await pods()
    assert (await raw_get(pod.url, "/home", headers={"Cookie": "sid=alice"})).body \
        == b"user=anonymous"
    assert (await raw_get(pod.url, "/home")).body == b"user=anonymous"


async def test_authorization_answer_is_not_shared_unless_the_origin_allows_it(
        pods: PodFactory, origin: Origin) -> None:
    async def acct(request: web.Request) -> web.Response:
        who = request.headers.get("Authorization", "anonymous")
        cc = "public, max-age=300" if request.query.get("public") else "max-age=300"
        return web.Response(text="for " + who, headers={"Cache-Control": cc})

    origin.set("/a", handler=acct)
    pod = await pods()
    assert (await raw_get(pod.url, "/a", headers={"Authorization": "Bearer alice"})).body \
        == b"for Bearer alice"
    assert (await raw_get(pod.url, "/a")).body == b"for anonymous"
    assert (await raw_get(pod.url, "/a?public=1",
                          headers={"Authorization": "Bearer alice"})).body == b"for Bearer alice"
    assert (await raw_get(pod.url, "/a?public=1")).body == b"for Bearer alice"  # origin said so


# ----------------------------------------------------------------------------- 4. memory


def _rss_peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


async def test_concurrent_large_fills_stay_within_the_memory_limit(
        origin: Origin, tmp_path: Path) -> None:
    """60 concurrent 9 MiB misses against an edge with a 256 MiB limit: fills past the fill
    budget stream without storing; every client gets its whole body; peak RSS < the limit."""
    size = 9 * 2**20
    body = bytes(range(256)) * (size // 256)
    release = asyncio.Event()

    async def big(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Cache-Control": "max-age=300",
                                           "Content-Length": str(size)})
        await resp.prepare(request)
        await resp.write(body[: size - 2**20])
        await release.wait()  # every fill is in flight, holding what it has
        await resp.write(body[size - 2**20:])
        await resp.write_eof()
        return resp

    for i in range(60):
        origin.set(f"/big{i}", handler=big)
    port = free_port()
    cfg = edge_config(origin.url, tmp_path, listen=f"127.0.0.1:{port}",
                      memoryLimit="256Mi", memoryTierSize="64Mi",
                      origin={"readTimeoutSeconds": 60, "fetchTimeoutSeconds": 120},
                      cachePolicy={"maxObjectSizeBytes": 10 * 2**20})
    proc = edge_subprocess(write_config_file(cfg, tmp_path / "edge.yaml"))
    try:
        async def up() -> bool:
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                return True
            except OSError:
                return False

        deadline = time.monotonic() + 30
        while not await up():
            assert time.monotonic() < deadline and proc.poll() is None
            await asyncio.sleep(0.05)
        got: list[int] = []

        async def fetch(i: int) -> None:
            timeout = aiohttp.ClientTimeout(total=120)
            async with aiohttp.ClientSession(timeout=timeout) as s, s.get(
                    f"http://127.0.0.1:{port}/big{i}", headers={"Host": HOST}) as r:
                n = 0
                async for chunk in r.content.iter_chunked(2**16):
                    n += len(chunk)
                got.append(n)

        tasks = [asyncio.create_task(fetch(i)) for i in range(60)]
        await wait_until(lambda: sum(origin.hits.values()) == 60, 60)
        await asyncio.sleep(0.5)  # let the edge read what the origin already sent
        release.set()
        await asyncio.gather(*tasks)
        assert got == [size] * 60
        peak = _rss_peak_kib(proc.pid) * 1024
        assert peak < 256 * 2**20, f"peak RSS {peak / 2**20:.0f} MiB"
    finally:
        proc.kill()
        proc.wait()


async def test_l1_purge_index_has_a_byte_budget_and_l1_keeps_nothing_it_cannot_purge(
        pods: PodFactory, origin: Origin) -> None:
    origin.set("/q", body=b"q")
    pod = await pods(memoryLimit="64Mi")
    budget = pod.edge.l1.max_bytes
    assert 0 < budget <= 64 * 2**20 // 10
    n = 0
    long_q = "x" * 6000
    while pod.edge.l1.bytes + 20000 < budget:
        n += 1
        r = await raw_get(pod.edge_url, f"/q?{long_q}{n}")
        assert r.headers["x-accel-expires"] != "0"
        assert n < 50000
    for _ in range(30):
        n += 1
        r = await raw_get(pod.edge_url, f"/q?{long_q}{n}")
        assert r.status == 200
    assert pod.edge.l1.bytes <= budget
    assert r.headers["x-accel-expires"] == "0"  # past the budget nginx is told not to keep it


# ----------------------------------------------------------------------------- 5. deadline


async def test_a_trickling_origin_is_cut_at_the_fetch_deadline_and_stale_is_served(
        pods: PodFactory, origin: Origin) -> None:
    stop = asyncio.Event()

    async def trickle(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Cache-Control": "max-age=300"})
        await resp.prepare(request)
        while not stop.is_set():
            await resp.write(b".")
            await asyncio.sleep(0.2)
        return resp

    origin.set("/stale", body=b"old", headers={
        "Cache-Control": "max-age=0, stale-while-revalidate=0, stale-if-error=600"})
    pod = await pods(nginx=False, origin={"readTimeoutSeconds": 5, "fetchTimeoutSeconds": 1})
    await raw_get(pod.edge_url, "/stale")
    origin.set("/stale", handler=trickle)
    origin.set("/fresh", handler=trickle)
    try:
        s = await asyncio.wait_for(raw_get(pod.edge_url, "/stale"), 30)
        assert (s.status, s.body) == (200, b"old")
        f = await asyncio.wait_for(raw_get(pod.edge_url, "/fresh"), 30)
        assert f.status == 504
        await wait_until(lambda: not pod.edge.filler.inflight, 30)
    finally:
        stop.set()


# ----------------------------------------------------------------------------- 6. no stale


async def test_must_revalidate_objects_are_never_served_stale_by_l1_or_l2(
        pods: PodFactory, origin: Origin) -> None:
    """RFC 9111 5.2.2.2 / 5.2.2.8 / 5.2.2.10: must-revalidate, proxy-revalidate and s-maxage
    forbid a shared cache to answer stale, also when the origin is down."""
    paths = {"/mr": "max-age=2, must-revalidate", "/pr": "max-age=2, proxy-revalidate",
             "/sm": "s-maxage=2, max-age=600"}
    for p, cc in paths.items():
        origin.set(p, body=b"old", headers={"Cache-Control": cc})
    pod = await pods()
    for p in paths:
        assert (await raw_get(pod.url, p)).body == b"old"
        assert (await raw_get(pod.url, p)).body == b"old"
    t0 = time.time()
    await origin.stop()
    await wait_until(lambda: time.time() > t0 + 3)  # every object is now stale
    for _ in range(4):
        for p in paths:
            a = await raw_get(pod.url, p)
            assert a.body != b"old" and a.status == 502, (p, a.raw[:300])
        answers = await asyncio.gather(*(raw_get(pod.url, p) for p in paths for _ in range(3)))
        assert all(a.body != b"old" and a.status == 502 for a in answers)


# ----------------------------------------------------------------------------- 7. purge


async def test_purge_covers_every_encoding_variant_and_the_client_without_accept_encoding(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    origin.set("/p", body=b"v1")
    pod = await pods()
    variants: list[dict[str, str]] = [{}, {"Accept-Encoding": "gzip"},
                                      {"Accept-Encoding": "br"}]
    for h in variants:
        await raw_get(pod.url, "/p", headers=h)
        assert (await raw_get(pod.url, "/p", headers=h)).headers["x-cache"] == "HIT"
    origin.set("/p", body=b"v2")
    status, answer = await purge(client, pod.admin_url, {"url": f"https://{HOST}/p"})
    assert status == 200 and answer["complete"] is True
    me = answer["pods"]["self"]  # type: ignore[index]
    assert me["l1"]["purged"] == 3, answer  # type: ignore[index]
    for h in variants:
        assert (await raw_get(pod.url, "/p", headers=h)).body == b"v2", h


async def test_purge_normalises_its_target_like_a_request(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    origin.set("/a b", body=b"v1")
    origin.set("/static/x.js", body=b"v1")
    pod = await pods()
    await raw_get(pod.url, "/a%20b")
    await raw_get(pod.url, "//static/x.js")
    await raw_get(pod.url, "/static/x.js")
    origin.set("/a b", body=b"v2")
    origin.set("/static/x.js", body=b"v2")
    status, answer = await purge(client, pod.admin_url, {"url": f"{HOST}/a b"})
    assert status == 200, answer
    status, answer = await purge(client, pod.admin_url, {"url": f"{HOST}/x/..//static/x.js"})
    assert status == 200, answer
    assert (await raw_get(pod.url, "/a%20b")).body == b"v2"
    assert (await raw_get(pod.url, "/static/x.js")).body == b"v2"
    assert (await raw_get(pod.url, "//static/x.js")).body == b"v2"


@pytest.mark.parametrize("body", [
    {"prefix": f"{HOST}/img/*"},
    {"url": f"{HOST}/img/*.png"},
    {"url": f"{HOST}/bad%zzescape"},
    {"url": f"{HOST}/nul%00"},
    {"url": f"{HOST}/x", "prefix": f"{HOST}/"},
    {"url": f"{HOST}/x", "extra": True},
    {"url": 42},
    ["not", "an", "object"],
    {"url": f"ftp://{HOST}/x"},
])
async def test_purge_answers_400_for_what_it_cannot_interpret(
        body: object, pods: PodFactory, client: aiohttp.ClientSession) -> None:
    pod = await pods(nginx=False)
    status, answer = await purge(client, pod.admin_url, body)
    assert status == 400 and answer["error"], answer


@memory_tier_only
async def test_purge_reports_what_it_removed(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    for p in ("/img/a", "/img/b", "/css/c"):
        origin.set(p, body=b"v1")
    pod = await pods()
    for p in ("/img/a", "/img/b", "/css/c"):
        await raw_get(pod.url, p)
    status, answer = await purge(client, pod.admin_url, {"prefix": f"{HOST}/img/"})
    assert status == 200
    me = answer["pods"]["self"]  # type: ignore[index]
    assert me["l2"]["memory"] == {"status": "ok", "removed": 2}, me  # type: ignore[index]
    assert me["l1"]["purged"] == 2, me  # type: ignore[index]


# ----------------------------------------------------------------------------- 8. smaller


async def test_query_param_names_match_the_same_way_in_l1_and_l2(
        pods: PodFactory, origin: Origin) -> None:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text="q=" + request.query_string,
                            headers={"Cache-Control": "max-age=300"})

    origin.set("/list", handler=page)
    pod = await pods(cachePolicy={"cacheKey": {"queryParams": ["page"]}})
    first = await raw_get(pod.url, "/list?PAGE=2")
    second = await raw_get(pod.url, "/list?page=2")
    assert first.body == second.body == b"q=page=2"
    assert (await raw_get(pod.url, "/list?page=3")).body == b"q=page=3"


async def test_internal_and_origin_control_headers_never_reach_clients_or_nginx(
        pods: PodFactory, origin: Origin) -> None:
    origin.set("/secret", body=b"secret", headers={"Cache-Control": "no-store"})
    origin.set("/redir", body=b"redir", headers={
        "Cache-Control": "max-age=300", "X-Accel-Redirect": "/secret",
        "X-Accel-Expires": "86400", "X-Accel-Limit-Rate": "1", "X-Accel-Buffering": "no",
        "Connection": "X-Hop-Secret", "X-Hop-Secret": "1"})
    pod = await pods()
    for base in (pod.url, pod.edge_url):
        for _ in range(2):
            r = await raw_get(base, "/redir")
            assert (r.status, r.body) == (200, b"redir"), r.raw[:400]
            assert not [h for h in r.headers if h.startswith("x-accel-") and
                        not (base == pod.edge_url and h == "x-accel-expires")], r.headers
            assert "x-hop-secret" not in r.headers
            if base == pod.edge_url:
                assert r.headers["x-accel-expires"] != "86400"
    for r2 in (await raw_get(pod.url, "/redir"), await raw_get(pod.url, "/x")):
        assert "x-aerocdn-tier" not in r2.headers
    assert origin.hits["/secret"] == 0


async def test_nginx_gets_no_date_or_server_from_the_edge_and_clients_get_nginxs(
        pods: PodFactory, origin: Origin) -> None:
    """nginx hides an upstream's Date and Server but stores both lines with each L1 answer
    and parses them on every hit: the edge sends neither (the origin's included); every
    answer to a client still has one Date, nginx's, and none of the origin's Server."""
    origin.set("/ds", body=b"d", headers={"Cache-Control": "max-age=300",
                                          "Server": "origin-secret/1.0",
                                          "Date": "Mon, 01 Jan 2001 00:00:00 GMT"})
    pod = await pods()

    def head(r: RawAnswer) -> list[bytes]:
        return [ln.lower() for ln in r.raw.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]]

    direct = await raw_get(pod.edge_url, "/ds")
    assert direct.status == 200 and direct.body == b"d"
    assert not [ln for ln in head(direct) if ln.startswith((b"date:", b"server:"))], direct.raw
    for expect in ("MISS", "HIT"):
        r = await raw_get(pod.url, "/ds")
        assert (r.status, r.headers["x-cache"], r.body) == (200, expect, b"d")
        dates = [ln for ln in head(r) if ln.startswith(b"date:")]
        assert len(dates) == 1 and b"2001" not in dates[0], r.raw[:500]
        assert "origin-secret" not in r.headers.get("server", ""), r.headers
        assert "aerocdn" in r.headers["via"]


async def test_access_log_names_the_tier_that_answered(
        pods: PodFactory, origin: Origin) -> None:
    origin.set("/t", body=b"t")
    pod = await pods()
    await raw_get(pod.url, "/t")
    assert (await raw_get(pod.url, "/t")).headers["x-cache"] == "HIT"
    log = Path(pod.edge.cfg.nginx.access_log)

    def lines() -> list[dict[str, object]]:
        return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []

    await wait_until(lambda: len(lines()) >= 2, 15)
    tiers = [(x["cache"], x["tier"]) for x in lines()[:2]]
    assert tiers == [("MISS", "origin"), ("HIT", "l1")]


async def test_access_log_lines_stay_json_whatever_a_client_sends(
        pods: PodFactory, origin: Origin) -> None:
    """Quotes, backslashes and control characters in the target, the Host and the User-Agent
    cannot end a field or a line of the JSON access log: each line parses, with the values
    sent."""
    origin.set("/l", body=b"l")
    pod = await pods()
    ua = 'evil"}\\\t{"x":"y'
    ctl = ua + "\x01"  # nginx answers it alone (the edge refuses control characters)
    target = '/l?q="\\x'
    sent = [await raw_get(pod.url, target, headers={"User-Agent": ua}),
            await raw_get(pod.url, "/l", host='cdn"x', headers={"User-Agent": ctl}),
            await raw_get(pod.url, "/l"), await raw_get(pod.url, "/l")]
    assert sent[0].status == 200 and sent[3].headers["x-cache"] == "HIT", sent[0].raw[:300]
    log = Path(pod.edge.cfg.nginx.access_log)

    def lines() -> list[str]:
        return log.read_text().splitlines() if log.exists() else []

    await wait_until(lambda: len(lines()) >= 4, 15)
    parsed = [json.loads(x) for x in lines()]
    assert (parsed[0]["uri"], parsed[0]["userAgent"], parsed[0]["method"]) == (target, ua, "GET")
    # a Host this edge does not serve: answered by nginx alone, absent fields are ""
    assert parsed[1]["userAgent"] == ctl and parsed[1]["status"] == sent[1].status
    assert (parsed[1]["cache"], parsed[1]["tier"], parsed[1]["upstreamTime"]) == ("", "", "")
    assert parsed[2]["userAgent"] == "" and parsed[2]["host"] == "cdn.example.test"
    assert (parsed[3]["cache"], parsed[3]["tier"]) == ("HIT", "l1")


async def test_l1_hit_age_grows(pods: PodFactory, origin: Origin) -> None:
    origin.set("/age", body=b"a", headers={"Cache-Control": "max-age=300"})
    pod = await pods()
    first = await raw_get(pod.url, "/age")
    t0 = time.time()
    await wait_until(lambda: time.time() > t0 + 2.2)
    later = await raw_get(pod.url, "/age")
    assert later.headers["x-cache"] == "HIT"
    assert int(later.headers["age"]) >= int(first.headers.get("age", "0")) + 2


async def test_the_origins_age_counts_on_misses_and_l1_hits(
        pods: PodFactory, origin: Origin) -> None:
    """An answer 100 s old at the origin (Age: 100) is at least that old in every answer of
    ours (RFC 9111 4.2.3); an Age counted from our fetch told downstream caches 100 s less."""
    origin.set("/aged", body=b"o", headers={"Cache-Control": "max-age=300", "Age": "100"})
    pod = await pods()
    for expect in ("MISS", "HIT"):
        r = await raw_get(pod.url, "/aged")
        assert (r.status, r.headers["x-cache"]) == (200, expect)
        assert 100 <= _one_age(r) <= 110


def _one_age(r: RawAnswer) -> int:
    """The answer's Age, checked to be the only one and the internal stamp to be absent."""
    assert r.raw.split(b"\r\n\r\n")[0].lower().count(b"\r\nage:") == 1, r.raw[:500]
    assert "x-aerocdn-born" not in r.headers, r.headers
    return int(r.headers["age"])


async def test_age_stamp_never_reaches_a_client_and_cannot_be_injected(
        pods: PodFactory, origin: Origin) -> None:
    # neither a client nor the origin can set the stamp nginx computes Age from
    origin.set("/inj", body=b"i", headers={"Cache-Control": "max-age=300",
                                           "X-Aerocdn-Born": "1"})
    origin.set("/pass", body=b"p", headers={"Cache-Control": "no-store",
                                            "X-Aerocdn-Born": "1", "Age": "7"})
    pod = await pods()
    forged = {"X-Aerocdn-Born": "1", "Age": "99999"}
    for expect in ("MISS", "HIT", "HIT"):
        r = await raw_get(pod.url, "/inj", headers=forged)
        assert (r.status, r.headers["x-cache"]) == (200, expect)
        assert 0 <= _one_age(r) <= 5
    # the edge's own answer to nginx carries the stamp (nginx stores it), not the origin's
    direct = await raw_get(pod.edge_url, "/inj", headers=forged)
    born = [ln for ln in direct.raw.split(b"\r\n\r\n")[0].split(b"\r\n")
            if ln.lower().startswith(b"x-aerocdn-born:")]
    assert len(born) == 1
    stamp, tier = born[0].split(b":", 1)[1].split()
    assert abs(float(stamp) - time.time()) < 10 and tier == b"l2"  # then the tier
    # an answer nginx does not store: no stamp, so no Age of ours (and not the origin's)
    p = await raw_get(pod.url, "/pass", headers=forged)
    assert p.status == 200 and "x-aerocdn-born" not in p.headers and "age" not in p.headers


async def test_stale_and_refreshed_answers_have_a_sensible_age(
        pods: PodFactory, origin: Origin) -> None:
    conditional: list[str] = []

    async def rv(request: web.Request) -> web.Response:
        h = {"ETag": '"v1"', "Cache-Control": "max-age=2"}
        if request.headers.get("If-None-Match") == '"v1"':
            conditional.append(request.headers["If-None-Match"])
            return web.Response(status=304, headers=h)
        return web.Response(body=b"rv", headers=h)

    origin.set("/rv", handler=rv)
    origin.set("/sie", body=b"sie", headers={"Cache-Control": "max-age=1, stale-if-error=600"})
    pod = await pods(cachePolicy={"l1MaxTTLSeconds": 1})
    t0 = time.time()
    assert _one_age(await raw_get(pod.url, "/rv")) == 0
    assert _one_age(await raw_get(pod.url, "/sie")) == 0

    # the origin fails: the edge (or nginx) serves the stale copy, with the copy's Age
    origin.set("/sie", status=500, body=b"down", headers={"Cache-Control": "no-store"})
    await wait_until(lambda: time.time() > t0 + 2.5)
    stale = await raw_get(pod.url, "/sie")
    assert stale.body == b"sie"
    assert 2 <= _one_age(stale) <= time.time() - t0 + 1

    # /rv went stale; once revalidated with the origin, its Age starts again from 0
    ages: list[tuple[float, str, int]] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        r = await raw_get(pod.url, "/rv")
        elapsed = time.time() - t0
        assert r.body == b"rv"
        age = _one_age(r)
        ages.append((round(elapsed, 1), r.headers["x-cache"], age))
        assert 0 <= age <= elapsed + 1, ages
        if conditional and age < elapsed - 1.5:
            break
        await asyncio.sleep(0.25)
    else:
        raise AssertionError(f"the Age never restarted after revalidation: {ages}")


async def test_admin_port_closes_a_connection_that_never_finishes_its_headers(
        pods: PodFactory) -> None:
    pod = await pods(nginx=False, adminHeaderTimeoutSeconds=1)
    host, port = pod.edge.bound["admin"]
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    await writer.drain()
    try:
        closed = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
    assert closed == b"" or closed.startswith(b"HTTP/1.1 408")


async def test_no_cache_response_is_stored_and_revalidated_on_each_use(
        pods: PodFactory, origin: Origin) -> None:
    conditional: list[str] = []

    async def nc(request: web.Request) -> web.Response:
        inm = request.headers.get("If-None-Match")
        if inm is not None:
            conditional.append(inm)
            if inm == '"v1"':
                return web.Response(status=304, headers={"ETag": '"v1"',
                                                         "Cache-Control": "no-cache"})
        return web.Response(body=b"body-v1", headers={"ETag": '"v1"',
                                                     "Cache-Control": "no-cache"})

    origin.set("/nc", handler=nc)
    pod = await pods()
    for base in (pod.url, pod.url, pod.edge_url):
        r = await raw_get(base, "/nc")
        assert (r.status, r.body) == (200, b"body-v1")
    assert conditional == ['"v1"', '"v1"']
    assert origin.hits["/nc"] == 3


async def test_the_origin_gets_exactly_the_keyed_query_bytes(
        pods: PodFactory, origin: Origin) -> None:
    async def q(request: web.Request) -> web.Response:
        return web.Response(text=request.raw_path, headers={"Cache-Control": "max-age=300"})

    origin.set("/q", handler=q)
    pod = await pods()
    for target in ("/q?a=%7e&b=+&c=%2B&d=%2f", "/q?a=~&b=%20&c=+&d=/"):
        got = await raw_get(pod.url, target)
        assert got.body == target.encode(), got.body  # not re-quoted on the way
    # a raw non-ASCII byte: the edge's parser refuses it (and nothing is cached for it)
    for _ in range(2):
        raw = await raw_request(pod.url, b"GET /q?x=\xe9 HTTP/1.1\r\nHost: " + HOST.encode()
                                + b"\r\nConnection: close\r\n\r\n")
        assert raw.status == 400 and raw.headers.get("x-cache") != "HIT"
