"""The edge pod as users and operators see it: real nginx (rendered config) + ``aerocdn edge``
+ a real origin on 127.0.0.1.  One test per behaviour of issue 6."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from tests.edge.edgeharness import (
    HOST,
    NGINX,
    Origin,
    PodFactory,
    edge_config,
    edge_subprocess,
    free_port,
    have_nginx,
    memory_tier_only,
    raw_get,
    write_config_file,
    write_routes,
)

from aerocdn.edge.policy import tier_of
from aerocdn.render.nginx import render_nginx_conf

pytestmark = pytest.mark.timeout(60)
TOKEN = "s3cret-token"


async def wait_until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


async def get(client: aiohttp.ClientSession, base: str, path: str, host: str = HOST,
              **headers: str) -> tuple[int, dict[str, str], bytes]:
    h = {"Host": host, **{k.replace("_", "-"): v for k, v in headers.items()}}
    async with client.get(base + path, headers=h) as r:
        return r.status, {k.lower(): v for k, v in r.headers.items()}, await r.read()


async def purge(client: aiohttp.ClientSession, admin: str, body: dict[str, str],
                token: str | None = TOKEN) -> tuple[int, dict[str, object]]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with client.post(admin + "/purge", json=body, headers=headers) as r:
        return r.status, await r.json()


# ----------------------------------------------------------------------------- 1. nginx L1


@pytest.mark.skipif(not have_nginx(), reason="nginx or its modules missing")
def test_rendered_nginx_config_passes_nginx_t(tmp_path: Path) -> None:
    cfg = edge_config("http://127.0.0.1:9", tmp_path, listen="127.0.0.1:8081", cachePolicy={
        "cacheKey": {"queryParams": ["page", "size"], "varyHeaders": ["Accept-Encoding"]}})
    conf = tmp_path / "nginx.conf"
    conf.write_text(render_nginx_conf(cfg))
    r = subprocess.run([NGINX, "-t", "-c", str(conf), "-e", "stderr"], capture_output=True,
                       text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert "test is successful" in r.stderr


@pytest.mark.skipif(not have_nginx(), reason="nginx or its modules missing")
def test_a_missing_age_module_fails_nginx_t_naming_its_path(tmp_path: Path) -> None:
    # nginx.ageModulePath names a file that is not there (an image without the module, a
    # machine where scripts/nginx-module.sh did not run): nginx refuses the config and says which
    missing = tmp_path / "not-built" / "ngx_http_aerocdn_age_module.so"
    cfg = edge_config("http://127.0.0.1:9", tmp_path, nginx={"ageModulePath": str(missing)})
    conf = tmp_path / "nginx.conf"
    conf.write_text(render_nginx_conf(cfg))
    r = subprocess.run([NGINX, "-t", "-c", str(conf), "-e", "stderr"], capture_output=True,
                       text=True, check=False)
    assert r.returncode != 0
    assert str(missing) in r.stderr and "test failed" in r.stderr, r.stderr


async def test_l1_serves_repeat_requests_without_asking_the_edge(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    origin.set("/l1", body=b"cached")
    pod = await pods()
    first = await get(client, pod.url, "/l1")
    second = await get(client, pod.url, "/l1")
    assert first[1]["x-cache"] == "MISS" and second[1]["x-cache"] == "HIT"
    assert second[2] == b"cached" and "aerocdn" in second[1]["via"]
    assert pod.edge.m.requests.labels("origin")._value.get() == 1


async def test_l1_freshness_is_capped_by_l1_max_ttl(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    origin.set("/long", headers={"Cache-Control": "max-age=86400"})
    pod = await pods(nginx=False, cachePolicy={"l1MaxTTLSeconds": 7})
    _, headers, _ = await get(client, pod.edge_url, "/long")
    assert headers["x-accel-expires"] == "7"


async def test_unknown_host_gets_421_and_never_reaches_the_origin(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    origin.set("/x")
    pod = await pods()
    via_nginx = await get(client, pod.url, "/x", host="other.example.org")
    direct = await get(client, pod.edge_url, "/x", host="other.example.org")
    wildcard = await get(client, pod.url, "/x", host="a.img.example.test")
    assert via_nginx[0] == 421 and b"does not serve" in via_nginx[2]
    assert direct[0] == 421
    assert wildcard[0] == 200
    assert origin.hits["/x"] == 1


# ----------------------------------------------------------------------------- 2/4. collapsing


async def test_100_concurrent_misses_through_nginx_make_exactly_one_origin_request(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    gate = asyncio.Event()
    origin.set("/hot", body=b"H" * 2048, gate=gate)
    pod = await pods()
    reqs = [asyncio.create_task(get(client, pod.url, "/hot")) for _ in range(100)]
    await wait_until(lambda: origin.hits["/hot"] >= 1)
    gate.set()
    results = await asyncio.gather(*reqs)
    assert [r[0] for r in results] == [200] * 100
    assert all(r[2] == b"H" * 2048 for r in results)
    assert origin.hits["/hot"] == 1


async def test_100_concurrent_misses_at_the_edge_make_exactly_one_origin_request(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    gate = asyncio.Event()
    origin.set("/hot2", body=b"h", gate=gate)
    pod = await pods(nginx=False)
    reqs = [asyncio.create_task(get(client, pod.edge_url, "/hot2")) for _ in range(100)]
    await wait_until(lambda: pod.edge.m.collapsed.labels("pod")._value.get() == 99)
    gate.set()
    results = await asyncio.gather(*reqs)
    assert [r[0] for r in results] == [200] * 100
    assert origin.hits["/hot2"] == 1


# ----------------------------------------------------------------------------- 2. RFC 9111


async def test_private_response_is_never_served_to_another_client(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    async def me(request: web.Request) -> web.Response:
        return web.Response(text="user=" + request.headers.get("Cookie", ""),
                            headers={"Cache-Control": "private, max-age=300"})

    origin.set("/me", handler=me)
    pod = await pods(cachePolicy={"cookies": "forward"})
    a = await get(client, pod.url, "/me", Cookie="alice")
    b = await get(client, pod.url, "/me", Cookie="bob")
    assert a[2] == b"user=alice" and b[2] == b"user=bob"
    assert origin.hits["/me"] == 2


async def test_set_cookie_response_is_never_served_to_another_client(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    n = 0

    async def login(request: web.Request) -> web.Response:
        nonlocal n
        n += 1
        return web.Response(text="welcome", headers={
            "Cache-Control": "public, max-age=300", "Set-Cookie": f"session=s{n}"})

    origin.set("/login", handler=login)
    pod = await pods()
    a = await get(client, pod.url, "/login")
    b = await get(client, pod.url, "/login")
    c = await get(client, pod.edge_url, "/login")
    assert a[1]["set-cookie"] == "session=s1"
    assert b[1]["set-cookie"] == "session=s2"
    assert c[1]["set-cookie"] == "session=s3"


@memory_tier_only
async def test_no_store_response_is_not_stored(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    origin.set("/ns", headers={"Cache-Control": "no-store"})
    pod = await pods()
    for _ in range(3):
        status, headers, _ = await get(client, pod.url, "/ns")
        assert status == 200 and headers["x-cache"] == "MISS"
    assert origin.hits["/ns"] == 3
    assert len(pod.edge.l2.tiers["memory"]) == 0  # type: ignore[arg-type]


async def test_vary_is_honoured_by_l1_and_l2(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    async def lang(request: web.Request) -> web.Response:
        return web.Response(text="lang=" + request.headers.get("Accept-Language", "-"),
                            headers={"Cache-Control": "max-age=300", "Vary": "Accept-Language"})

    origin.set("/greet", handler=lang)
    pod = await pods(origin={"forwardHeaders": ["Accept-Language"]})
    for _ in range(2):
        assert (await get(client, pod.url, "/greet", Accept_Language="en"))[2] == b"lang=en"
        assert (await get(client, pod.url, "/greet", Accept_Language="fr"))[2] == b"lang=fr"
    # L2 (direct to the edge) keeps both variants too
    assert (await get(client, pod.edge_url, "/greet", Accept_Language="fr"))[2] == b"lang=fr"
    assert (await get(client, pod.edge_url, "/greet", Accept_Language="en"))[2] == b"lang=en"
    assert origin.hits["/greet"] == 2


async def test_accept_encoding_is_part_of_the_cache_key(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    async def enc(request: web.Request) -> web.Response:
        return web.Response(text="enc=" + request.headers.get("Accept-Encoding", "-"),
                            headers={"Cache-Control": "max-age=300"})

    origin.set("/enc", handler=enc)
    pod = await pods()
    assert (await get(client, pod.url, "/enc", Accept_Encoding="gzip"))[2] == b"enc=gzip"
    assert (await get(client, pod.url, "/enc", Accept_Encoding="br"))[2] == b"enc=br"
    assert (await get(client, pod.url, "/enc", Accept_Encoding="gzip"))[2] == b"enc=gzip"
    assert origin.hits["/enc"] == 2


# ----------------------------------------------------------------------------- 3. size limit


@memory_tier_only
async def test_oversized_object_is_streamed_whole_and_not_stored(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    big = bytes(range(256)) * 64  # 16 KiB

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Cache-Control": "max-age=300"})
        await resp.prepare(request)
        for i in range(0, len(big), 1000):
            await resp.write(big[i:i + 1000])
        await resp.write_eof()
        return resp

    origin.set("/big", body=big)
    origin.set("/big-chunked", handler=chunked)
    pod = await pods(cachePolicy={"maxObjectSizeBytes": 4096})
    for path in ("/big", "/big-chunked"):
        for _ in range(2):
            status, _, body = await get(client, pod.url, path)
            assert status == 200 and body == big
        assert origin.hits[path] == 2
    assert len(pod.edge.l2.tiers["memory"]) == 0  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- 7. faults


async def test_stale_is_served_when_the_origin_is_stopped(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    origin.set("/news", body=b"yesterday", headers={
        "Cache-Control": "max-age=0, stale-while-revalidate=0, stale-if-error=600"})
    pod = await pods()
    assert (await get(client, pod.url, "/news"))[2] == b"yesterday"
    await origin.stop()
    status, headers, body = await get(client, pod.url, "/news")
    assert (status, body) == (200, b"yesterday")
    assert "x-aerocdn-tier" not in headers  # internal: nginx's access log has it
    assert pod.edge.m.hits.labels("l2-stale-if-error")._value.get() == 1


async def test_stale_while_revalidate_answers_at_once_and_refreshes_in_the_background(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    origin.set("/feed", body=b"old", headers={
        "Cache-Control": "max-age=0, stale-while-revalidate=600"})
    pod = await pods(nginx=False)
    await get(client, pod.edge_url, "/feed")
    gate = asyncio.Event()
    origin.set("/feed", body=b"new", gate=gate, headers={"Cache-Control": "max-age=300"})
    status, headers, body = await get(client, pod.edge_url, "/feed")  # origin is blocked
    assert (status, body, tier_of(headers)) == (200, b"old", "l2-stale")
    await wait_until(lambda: origin.hits["/feed"] == 2)
    gate.set()
    await wait_until(lambda: not pod.edge.filler.inflight)
    status, headers, body = await get(client, pod.edge_url, "/feed")
    assert (body, tier_of(headers)) == (b"new", "l2")
    assert origin.hits["/feed"] == 2


async def test_origin_5xx_serves_stale_where_allowed_else_502(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    origin.set("/s", body=b"good", headers={"Cache-Control": "max-age=0, stale-if-error=600"})
    origin.set("/strict", body=b"good", headers={"Cache-Control": "max-age=0, must-revalidate"})
    pod = await pods(nginx=False)
    await get(client, pod.edge_url, "/s")
    await get(client, pod.edge_url, "/strict")
    origin.set("/s", status=503, body=b"down")
    origin.set("/strict", status=500, body=b"down")
    assert (await get(client, pod.edge_url, "/s"))[:3:2] == (200, b"good")
    status, _, body = await get(client, pod.edge_url, "/strict")
    assert status == 502 and b"origin answered 500" in body


async def test_origin_timeout_without_stale_gives_504(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    origin.set("/slow", gate=asyncio.Event())  # never answers
    pod = await pods(nginx=False, origin={"readTimeoutSeconds": 0.3})
    status, headers, body = await get(client, pod.edge_url, "/slow")
    assert status == 504 and body.startswith(b"504 Gateway Timeout")
    assert headers["x-accel-expires"] == "0"


async def test_origin_unreachable_without_stale_gives_502(
        pods: PodFactory, client: aiohttp.ClientSession, tmp_path: Path) -> None:
    cfg = edge_config(f"http://127.0.0.1:{free_port()}", tmp_path)
    pod = await pods(nginx=False, cfg=cfg)
    status, _, body = await get(client, pod.edge_url, "/anything")
    assert status == 502 and b"origin unreachable" in body


@pytest.mark.parametrize("raw", [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\nBad Header Line\r\n\r\n",
    b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\nContent-Length: -5\r\n\r\n",
    b"\x00\xff\xfe\r\n\r\n",
    b"GET http://evil/ HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n\r\n",
])
async def test_malformed_requests_get_an_error_and_do_not_crash_the_edge(
        raw: bytes, pods: PodFactory, origin: Origin,
        client: aiohttp.ClientSession) -> None:
    origin.set("/ok", body=b"fine")
    pod = await pods()
    for base in (pod.edge_url, pod.url):
        host, _, port = base.removeprefix("http://").rpartition(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(raw)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(200), 10)
        writer.close()
        assert answer == b"" or answer.split(b" ")[1][:1] == b"4", answer
        status, _, body = await get(client, base, "/ok")
        assert (status, body) == (200, b"fine")


# ----------------------------------------------------------------------------- 5. purge


async def _three_pods(pods: PodFactory, origin: Origin, tmp_path: Path) -> list:  # type: ignore[type-arg]
    dirs = [tmp_path / f"p{i}" for i in range(3)]
    cfgs = [edge_config(origin.url, d) for d in dirs]
    admins = tuple(c.admin_listen for c in cfgs)
    return [await pods(cfg=c.model_copy(update={"peers": c.peers.model_copy(
        update={"static": admins})})) for c in cfgs]


async def test_purge_of_a_url_reaches_every_pod(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession, tmp_path: Path) -> None:
    origin.set("/page", body=b"v1")
    group = await _three_pods(pods, origin, tmp_path)
    for p in group:
        assert (await get(client, p.url, "/page"))[2] == b"v1"
    origin.set("/page", body=b"v2")
    assert all([(await get(client, p.url, "/page"))[2] == b"v1" for p in group])
    status, answer = await purge(client, group[0].admin_url, {"url": f"https://{HOST}/page"})
    assert status == 200 and answer["complete"] is True
    assert len(answer["confirmed"]) == 3  # type: ignore[arg-type]
    for p in group:
        assert (await get(client, p.url, "/page"))[2] == b"v2"


async def test_purge_of_a_prefix_reaches_every_pod(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession, tmp_path: Path) -> None:
    for path in ("/img/a.png", "/img/b/c.png", "/css/site.css"):
        origin.set(path, body=b"v1")
    group = await _three_pods(pods, origin, tmp_path)
    for p in group:
        for path in ("/img/a.png", "/img/b/c.png", "/css/site.css"):
            await get(client, p.url, path, Accept_Encoding="gzip")
    for path in ("/img/a.png", "/img/b/c.png", "/css/site.css"):
        origin.set(path, body=b"v2")
    status, answer = await purge(client, group[1].admin_url, {"prefix": f"{HOST}/img/"})
    assert status == 200 and len(answer["confirmed"]) == 3  # type: ignore[arg-type]
    for p in group:
        assert (await get(client, p.url, "/img/a.png", Accept_Encoding="gzip"))[2] == b"v2"
        assert (await get(client, p.url, "/img/b/c.png", Accept_Encoding="gzip"))[2] == b"v2"
        assert (await get(client, p.url, "/css/site.css", Accept_Encoding="gzip"))[2] == b"v1"


async def test_purge_of_a_url_reaches_what_a_bare_question_mark_fetched(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    # nginx keys L1 on the raw target; "/page?" is the canonical "/page" but not the same
    # key, so nginx must not keep it: a purge of "/page" names only the key "/page"
    origin.set("/page", body=b"v1")
    pod = await pods()
    for _ in range(2):
        answer = await raw_get(pod.url, "/page?")
        assert answer.body == b"v1" and answer.headers["x-cache"] != "HIT"
    origin.set("/page", body=b"v2")
    status, result = await purge(client, pod.admin_url, {"url": f"{HOST}/page"})
    assert status == 200 and result["complete"] is True
    assert (await raw_get(pod.url, "/page?")).body == b"v2"
    assert (await get(client, pod.url, "/page"))[2] == b"v2"


async def test_purge_reports_a_pod_that_did_not_confirm(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession, tmp_path: Path) -> None:
    gone = f"127.0.0.1:{free_port()}"
    pod = await pods(peers={"static": [gone]})
    status, answer = await purge(client, pod.admin_url, {"url": f"{HOST}/x"})
    assert status == 502 and answer["unconfirmed"] == [gone]


@pytest.mark.parametrize("token", [None, "wrong-token", ""])
async def test_purge_without_the_right_token_is_refused(
        token: str | None, pods: PodFactory, origin: Origin,
        client: aiohttp.ClientSession) -> None:
    origin.set("/keep", body=b"v1")
    pod = await pods()
    await get(client, pod.url, "/keep")
    origin.set("/keep", body=b"v2")
    status, answer = await purge(client, pod.admin_url, {"url": f"{HOST}/keep"}, token=token)
    assert status == 401 and "token" in str(answer["error"])
    assert (await get(client, pod.url, "/keep"))[2] == b"v1"


async def test_purge_is_disabled_when_no_token_is_configured(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession, tmp_path: Path) -> None:
    pod = await pods(nginx=False, purgeTokenPath=str(tmp_path / "absent"))
    status, answer = await purge(client, pod.admin_url, {"url": f"{HOST}/keep"})
    assert status == 403 and "disabled" in str(answer["error"])


async def test_purge_of_a_host_this_edge_does_not_serve_is_rejected(
        pods: PodFactory, client: aiohttp.ClientSession) -> None:
    pod = await pods(nginx=False)
    status, answer = await purge(client, pod.admin_url, {"url": "https://bank.example/x"})
    assert status == 400 and "not served" in str(answer["error"])


# ----------------------------------------------------------------------------- 6. operations


async def test_metrics_count_requests_hits_by_tier_and_origin_fetches(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    origin.set("/m", body=b"m" * 10)
    pod = await pods()
    await get(client, pod.url, "/m")  # miss: origin
    await get(client, pod.url, "/m")  # L1 hit
    await get(client, pod.edge_url, "/m")  # L2 hit
    nginx = pod.edge.m.nginx
    await wait_until(lambda: (nginx.requests or 0) - nginx.control_requests >= 2)
    async with client.get(pod.admin_url + "/metrics") as r:
        text = await r.text()
    assert 'aerocdn_cache_hits_total{tier="l2"} 1.0' in text
    assert 'aerocdn_origin_fetches_total{outcome="stored"} 1.0' in text
    assert "aerocdn_l1_served_total 1.0" in text
    assert 'aerocdn_edge_request_duration_seconds_bucket{le="+Inf",result="origin"} 1.0' in text


async def test_readyz_is_ready_with_config_and_a_cache_tier_and_healthz_answers(
        pods: PodFactory, client: aiohttp.ClientSession) -> None:
    pod = await pods()
    async with client.get(pod.admin_url + "/healthz") as r:
        assert r.status == 200
    await wait_until(lambda: pod.edge.l1_ok is True)
    async with client.get(pod.admin_url + "/readyz") as r:
        detail = await r.json()
        assert r.status == 200
    assert detail["ready"] is True and detail["l1"] == "ok" and detail["degraded"] is False


async def test_aerospike_outage_degrades_to_l1_and_origin_and_shows_in_readyz_and_metrics(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    origin.set("/d", body=b"still here")
    dead = f"127.0.0.1:{free_port()}"
    pod = await pods(cacheClusters={"cc-eu": {"seeds": [dead]}})
    for _ in range(3):
        status, _, body = await get(client, pod.edge_url, "/d")
        assert (status, body) == (200, b"still here")
    status, headers, _ = await get(client, pod.url, "/d")
    assert status == 200 and headers["x-cache"] == "MISS"
    assert (await get(client, pod.url, "/d"))[1]["x-cache"] == "HIT"  # L1 still works
    await wait_until(lambda: pod.edge.l1_ok is True)
    async with client.get(pod.admin_url + "/readyz") as r:
        detail = await r.json()
    assert detail["degraded"] is True
    assert detail["l2"]["cc-eu"]["circuit"] in ("open", "half-open")
    assert "cannot connect" in detail["l2"]["cc-eu"]["lastError"]
    async with client.get(pod.admin_url + "/metrics") as r:
        text = await r.text()
    assert "aerocdn_degraded 1.0" in text
    assert 'aerocdn_tier_up{cluster="cc-eu"} 0.0' in text


async def test_routing_plan_hot_reload_during_load_drops_no_request(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession, tmp_path: Path) -> None:
    for i in range(20):
        origin.set(f"/r{i}", body=f"r{i}".encode())
    pod = await pods()
    routes = Path(pod.edge.cfg.routing_plan_path)
    write_routes(routes, 1, "eu", ["memory"])
    await wait_until(lambda: pod.edge.watcher.snapshot.generation == 1)
    stop = asyncio.Event()
    results: list[tuple[int, bytes, bytes]] = []

    async def load(n: int) -> None:
        i = 0
        while not stop.is_set():
            path = f"/r{(n + i) % 20}"
            status, _, body = await get(client, pod.url, path)
            results.append((status, body, path[1:].encode()))
            i += 1

    workers = [asyncio.create_task(load(n)) for n in range(16)]
    for gen in range(2, 12):
        write_routes(routes, gen, "eu", ["memory"])
        await wait_until(lambda g=gen: pod.edge.watcher.snapshot.generation == g)  # type: ignore[misc]
    stop.set()
    await asyncio.gather(*workers)
    assert len(results) > 100
    assert all(s == 200 and b == want for s, b, want in results)
    async with client.get(pod.admin_url + "/readyz") as r:
        assert (await r.json())["routing"]["generation"] == 11


async def test_broken_routing_plan_keeps_the_last_good_one(
        pods: PodFactory, client: aiohttp.ClientSession) -> None:
    pod = await pods(nginx=False)
    routes = Path(pod.edge.cfg.routing_plan_path)
    write_routes(routes, 4, "eu", ["memory"])
    await wait_until(lambda: pod.edge.watcher.snapshot.generation == 4)
    bad = routes.parent / "..bad.json"
    bad.write_text("{not json")
    tmp_link = routes.parent / "..tmp-bad"
    tmp_link.symlink_to(bad.name)
    tmp_link.replace(routes)
    await wait_until(lambda: pod.edge.watcher.snapshot.error != "")
    async with client.get(pod.admin_url + "/readyz") as r:
        routing = (await r.json())["routing"]
    assert routing["generation"] == 4 and "not JSON" in routing["error"]


async def test_graceful_shutdown_drains_in_flight_requests(
        origin: Origin, client: aiohttp.ClientSession, tmp_path: Path) -> None:
    gate = asyncio.Event()
    origin.set("/long", body=b"finished", gate=gate)
    port = free_port()
    cfg = edge_config(origin.url, tmp_path, listen=f"127.0.0.1:{port}", drainSeconds=20,
                      shutdownDelaySeconds=0)
    proc = edge_subprocess(write_config_file(cfg, tmp_path / "edge.yaml"))
    try:
        admin = f"http://{cfg.admin_listen}"

        def up() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return True
            except OSError:
                return False

        await wait_until(up, 20)
        inflight = asyncio.create_task(get(client, f"http://127.0.0.1:{port}", "/long"))
        await wait_until(lambda: origin.hits["/long"] == 1)
        proc.send_signal(signal.SIGTERM)
        await wait_until(lambda: not up())  # no new connections while draining
        assert proc.poll() is None  # still finishing the request
        gate.set()
        status, _, body = await inflight
        assert (status, body) == (200, b"finished")
        rc = await asyncio.get_running_loop().run_in_executor(None, proc.wait, 20)
        assert rc == 0
        del admin
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_edge_cli_rejects_an_invalid_config_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "edge.yaml"
    bad.write_text(json.dumps({"contentEdge": "shop", "region": "eu", "hosts": ["ok.test"],
                               "origin": {"url": "ftp://nope"}}))
    proc = edge_subprocess(bad)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert b"origin.url" in err and b"must start with http" in err


async def test_a_failing_origin_gets_the_same_answer_with_or_without_a_pass_marker(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession) -> None:
    """A shared L2 remembers "not storable" (hit-for-pass); a pod then fetches directly. What a
    client gets from a failing origin must not depend on that marker: 502 naming the origin's
    status, never the origin's error page with its Cache-Control (found running tests/edge on
    the Aerospike tier: 500 with max-age=300 there, 502 on the memory tier)."""
    from aerocdn.edge.breaker import CircuitBreaker
    from aerocdn.edge.l2 import TierSet
    from aerocdn.edge.tiers import MemoryTier

    shared = MemoryTier(16 * 2**20, name="shared", shared=True)
    l2 = TierSet({"shared": shared}, {"shared": CircuitBreaker(5, 5)}, lambda: ("shared",))
    pod = await pods(nginx=False, edge_kw={"l2": l2})
    origin.set("/np", body=b"fine", headers={"Cache-Control": "no-store"})
    assert (await get(client, pod.edge_url, "/np"))[0] == 200  # leaves a pass marker
    origin.set("/np", status=500, body=b"oops", headers={"Cache-Control": "max-age=300"})
    status, headers, body = await get(client, pod.edge_url, "/np")
    assert (status, headers["x-accel-expires"]) == (502, "0")
    assert b"origin answered 500" in body and b"oops" not in body
