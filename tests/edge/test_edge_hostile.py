"""Hostile clients against the real edge pod: nginx (rendered config) in front of the
``aerocdn edge`` process (memory tier, its own memory limit), a real origin, all on 127.0.0.1.

Each test attacks, then checks what no other client may ever see (a planted answer, another
request's answer, a header that was not in the key reaching the origin) and that the edge
process's peak RSS stayed under its configured memory limit.  Loops and payloads are bounded;
every wait has a deadline; nothing asserts a duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from tests.edge.edgeharness import (
    HOST,
    Nginx,
    Origin,
    RawAnswer,
    edge_config,
    edge_subprocess,
    free_port,
    have_nginx,
    memory_tier_only,
    raw_get,
    raw_request,
    with_nginx,
    write_config_file,
)

from aerocdn.edge.config import EdgeConfig

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not have_nginx(), reason="nginx or its modules missing"),
]

LIMIT = 192 * 2**20  # the edge container's memory limit in these tests
BIG = 6 * 2**20
INTERESTING = ("x-forwarded-host", "x-original-url", "x-rewrite-url", "x-forwarded-scheme",
               "x-forwarded-proto", "x-forwarded-port", "x-forwarded-for", "forwarded",
               "x-http-method-override", "x-host", "cookie", "authorization-x", "user-agent",
               "referer", "origin", "range", "accept-language", "x-evil", "if-none-match",
               "if-modified-since")


async def wait_until(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


@dataclass
class Stack:
    origin: Origin
    cfg: EdgeConfig
    edge: subprocess.Popen[bytes]
    nginx: Nginx
    stop_origin: asyncio.Event

    @property
    def url(self) -> str:
        return self.nginx.url

    def edge_peak_rss(self) -> int:
        return _status_kib(self.edge.pid, "VmHWM") * 1024

    def assert_edge_within_limit(self) -> None:
        assert self.edge.poll() is None, "the edge process died"
        peak = self.edge_peak_rss()
        assert peak < LIMIT, f"edge peak RSS {peak / 2**20:.0f} MiB over {LIMIT / 2**20:.0f}"

    async def victims_see_only_their_own_answers(self) -> None:
        """What any client may see, checked after every attack from fresh connections."""
        for i in (0, 1):
            a = await raw_get(self.url, f"/static/app{i}.js")
            assert (a.status, a.body) == (200, b"app"), a.raw[:300]
        r = await raw_get(self.url, "/reflect")
        assert r.status == 200 and json.loads(r.body) == CLEAN_REFLECTION, r.body
        v = await raw_get(self.url, "/victim")
        assert (v.status, v.body) == (200, b"victim"), v.raw[:300]
        for req in self.origin.requests:
            bad = [h for h in INTERESTING if h in req.headers]
            assert not bad, f"{bad} reached the origin"


CLEAN_REFLECTION = {"host": HOST, "path": "/reflect", "seen": {}}


def _origin(stop: asyncio.Event) -> Origin:
    o = Origin()

    async def strict(request: web.Request) -> web.StreamResponse:
        path = request.raw_path.partition("?")[0]
        if re.fullmatch(r"/static/app\d+\.js", path):
            return web.Response(text="app", headers={"Cache-Control": "max-age=300"})
        return web.Response(status=404, text="planted", headers={"Cache-Control": "max-age=300"})

    async def reflect(request: web.Request) -> web.Response:
        seen = {h: request.headers[h] for h in INTERESTING if h in request.headers}
        body = {"host": request.headers.get("Host"), "path": request.raw_path, "seen": seen}
        return web.Response(text=json.dumps(body), headers={"Cache-Control": "max-age=300"})

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"b" * BIG, headers={"Cache-Control": request.query.get(
            "cc", "max-age=300")})

    async def trickle(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Cache-Control": "max-age=300"})
        await resp.prepare(request)
        while not stop.is_set():
            await resp.write(b"." * 100)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
        return resp

    async def hang(request: web.Request) -> web.Response:
        await stop.wait()
        return web.Response(text="late")

    o.default = strict
    o.set("/reflect", handler=reflect)
    o.set("/victim", body=b"victim")
    o.set("/big", handler=big)
    o.set("/trickle", handler=trickle)
    o.set("/hang", handler=hang)
    return o


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    stop = asyncio.Event()
    origin = _origin(stop)
    await origin.start()
    port = free_port()
    cfg = with_nginx(edge_config(
        origin.url, tmp_path, listen=f"127.0.0.1:{port}", memoryLimit=f"{LIMIT}",
        shutdownDelaySeconds=0, drainSeconds=1,
        origin={"readTimeoutSeconds": 10, "fetchTimeoutSeconds": 20},
        limits={"clientHeaderTimeoutSeconds": 2, "clientBodyTimeoutSeconds": 2,
                "sendTimeoutSeconds": 5},
        cachePolicy={"maxObjectSizeBytes": 8 * 2**20}))
    edge = edge_subprocess(write_config_file(cfg, tmp_path / "edge.yaml"))
    nginx = Nginx(cfg, tmp_path)
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
        await asyncio.get_running_loop().run_in_executor(None, nginx.start)
        s = Stack(origin, cfg, edge, nginx, stop)
        await s.victims_see_only_their_own_answers()  # warm: the clean answers are cached
        yield s
    finally:
        stop.set()
        await asyncio.get_running_loop().run_in_executor(None, nginx.stop)
        if edge.poll() is None:
            edge.send_signal(signal.SIGTERM)
            try:
                await asyncio.get_running_loop().run_in_executor(None, edge.wait, 15)
            except subprocess.TimeoutExpired:
                edge.kill()
                edge.wait()
        await origin.stop()


async def _send(stack: Stack, data: bytes, timeout: float = 20.0) -> RawAnswer:
    """An attack connection: what came back before the server closed it (nothing, if it kept
    the connection open past ``timeout`` - also allowed)."""
    try:
        return await raw_request(stack.url, data, timeout)
    except (ConnectionResetError, BrokenPipeError, TimeoutError):
        return RawAnswer(0, {}, b"", b"")


def _req(target: str, *headers: str, method: str = "GET", body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", *headers, "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# ----------------------------------------------------------------------------- poisoning


ENCODED = ["//static/app0.js", "/static//app1.js", "/%2Fstatic/app0.js", "/static%2Fapp0.js",
           "/static/app0.js%3F", "/static/app0.js%3Fa=1", "/static/app0.js%23x",
           "/static/app0.js%00", "/static/./app0.js", "/x/../static/app1.js",
           "/%2e%2e/static/app0.js", "/static/%2e%2e/static/app1.js", "/static/app0%2Ejs",
           "/%73tatic/app1.js", "/static/app0.js;x=1", "/static\\app0.js", "/static/app0.js%20",
           "/STATIC/app0.js", "/static/app0.js/", "/static/app0.js%252F", "/" * 2000 + "static"
           "/app1.js", "/static/app0.js?", "/static/app0.js#frag", "/static/app1.js%",
           "/static/app1.js%2", "/static/\u00e9/app0.js"]


async def test_encoded_targets_cannot_plant_an_answer(stack: Stack) -> None:
    # fresh objects: the attacker goes first, before any clean request
    for i, bad in enumerate(ENCODED):
        clean = f"/static/app{10 + i}.js"
        attack = bad.replace("app0", f"app{10 + i}").replace("app1", f"app{10 + i}")
        a = await _send(stack, _req(attack, f"Host: {HOST}"))
        assert a.status in (0, 200, 400, 404), (attack, a.raw[:200])
        got = await raw_get(stack.url, clean)
        assert (got.status, got.body) == (200, b"app"), (attack, got.raw[:300])
    await stack.victims_see_only_their_own_answers()
    stack.assert_edge_within_limit()


async def test_unkeyed_headers_cannot_change_what_others_get(stack: Stack) -> None:
    evil = [f"{h}: evil.example" for h in INTERESTING if h != "range"] + ["Range: bytes=0-3"]
    for path in ("/reflect?a=1", "/reflect?b=2"):
        a = await _send(stack, _req(path, f"Host: {HOST}", *evil))
        assert b"evil" not in a.body, a.body
        clean = await raw_get(stack.url, path)
        assert b"evil" not in clean.body
    await stack.victims_see_only_their_own_answers()
    stack.assert_edge_within_limit()


@pytest.mark.parametrize("request_bytes", [
    _req("/reflect?h=1", "Host: CDN.EXAMPLE.TEST"),
    _req("/reflect?h=2", f"Host: {HOST}:8080"),
    _req("/reflect?h=3", f"Host: {HOST}."),
    _req("/reflect?h=4", f"Host: {HOST}", "Host: evil.example"),
    _req("/reflect?h=5", "Host: evil.example", f"Host: {HOST}"),
    _req(f"http://{HOST}/reflect?h=6", "Host: evil.example"),
    _req("http://evil.example/reflect?h=7", f"Host: {HOST}"),
    _req(f"https://{HOST}/reflect?h=8", f"Host: {HOST}"),
    _req("/reflect?h=9", f"Host: {HOST}@evil.example"),
    _req("/reflect?h=10", "Host: evil.example/../"),
    _req("/reflect?h=11"),
    _req("*", f"Host: {HOST}", method="OPTIONS"),
], ids=lambda b: b.split(b"\r\n")[0].decode()[:40] + "|" + b.split(b"\r\n")[1].decode()[:30])
async def test_host_variants_and_absolute_targets_reach_the_origin_only_as_the_served_host(
        request_bytes: bytes, stack: Stack) -> None:
    a = await _send(stack, request_bytes)
    if a.status == 200 and a.body.startswith(b"{"):
        seen = json.loads(a.body)
        assert seen["host"] == HOST and seen["seen"] == {}, seen
    else:
        assert a.status in (0, 400, 404, 405, 421), a.raw[:300]
    for req in stack.origin.requests:
        assert req.headers.get("Host") == HOST
    await stack.victims_see_only_their_own_answers()


# ----------------------------------------------------------------------------- smuggling


SMUGGLED = _req("/reflect?smuggled=1", f"Host: {HOST}", "X-Evil: smuggled")
SMUGGLING = {
    "cl-te": _req("/victim", f"Host: {HOST}", "Content-Length: 6",
                  "Transfer-Encoding: chunked", method="POST", body=b"0\r\n\r\n" + SMUGGLED),
    "te-cl": _req("/victim", f"Host: {HOST}", "Transfer-Encoding: chunked",
                  "Content-Length: 3", method="POST", body=b"8\r\nSMUGGLED\r\n0\r\n\r\n"),
    "duplicate-cl": _req("/victim", f"Host: {HOST}", "Content-Length: 0",
                         f"Content-Length: {len(SMUGGLED)}", method="POST", body=SMUGGLED),
    "cl-list": _req("/victim", f"Host: {HOST}", f"Content-Length: 0, {len(SMUGGLED)}",
                    method="POST", body=SMUGGLED),
    "te-obfuscated": _req("/victim", f"Host: {HOST}", "Transfer-Encoding: xchunked",
                          f"Content-Length: {len(SMUGGLED)}", method="POST", body=SMUGGLED),
    "te-space": _req("/victim", f"Host: {HOST}", "Transfer-Encoding : chunked",
                     method="POST", body=b"0\r\n\r\n" + SMUGGLED),
    "te-list": _req("/victim", f"Host: {HOST}", "Transfer-Encoding: chunked, identity",
                    method="POST", body=b"0\r\n\r\n" + SMUGGLED),
    "obs-fold": _req("/victim", f"Host: {HOST}", "X-Fold: a", " Transfer-Encoding: chunked",
                     method="POST", body=b"0\r\n\r\n" + SMUGGLED),
    "bad-chunk-size": _req("/victim", f"Host: {HOST}", "Transfer-Encoding: chunked",
                           method="POST", body=b"zz\r\nabc\r\n0\r\n\r\n" + SMUGGLED),
    "huge-chunk-size": _req("/victim", f"Host: {HOST}", "Transfer-Encoding: chunked",
                            method="POST", body=b"ffffffffffffffffffff\r\nabc\r\n0\r\n\r\n"),
    "negative-chunk": _req("/victim", f"Host: {HOST}", "Transfer-Encoding: chunked",
                           method="POST", body=b"-1\r\nabc\r\n0\r\n\r\n" + SMUGGLED),
    "bare-lf-chunk": _req("/victim", f"Host: {HOST}", "Transfer-Encoding: chunked",
                          method="POST", body=b"3\nabc\n0\n\n" + SMUGGLED),
    "get-with-body": _req("/victim", f"Host: {HOST}", f"Content-Length: {len(SMUGGLED)}",
                          body=SMUGGLED),
    "bare-lf-headers": (f"GET /victim HTTP/1.1\nHost: {HOST}\nContent-Length: {len(SMUGGLED)}"
                        "\nConnection: close\n\n").encode() + SMUGGLED,
}


@pytest.mark.parametrize("name", list(SMUGGLING))
async def test_request_smuggling_never_desyncs_nginx_and_the_edge(
        name: str, stack: Stack) -> None:
    """The attack connection may get errors or its own answers; other clients, on their own
    connections (nginx reuses its keep-alive connections to the edge), must each get the
    answer to exactly their request, and no hidden request may reach the origin with the
    attacker's headers in it."""
    victims = [asyncio.create_task(raw_get(stack.url, f"/reflect?victim={i}"))
               for i in range(20)]
    await _send(stack, SMUGGLING[name], timeout=10)
    await _send(stack, SMUGGLING[name], timeout=10)
    for i, v in enumerate(await asyncio.gather(*victims)):
        body = json.loads(v.body)
        assert body["path"] == f"/reflect?victim={i}" and body["seen"] == {}, body
    after = await asyncio.gather(*(raw_get(stack.url, f"/reflect?after={i}") for i in range(20)))
    for i, v in enumerate(after):
        assert json.loads(v.body)["path"] == f"/reflect?after={i}"
    for req in stack.origin.requests:
        assert "x-evil" not in req.headers and "smuggled" not in req.raw_path
    await stack.victims_see_only_their_own_answers()
    stack.assert_edge_within_limit()


# ----------------------------------------------------------------------------- floods


async def test_header_floods_are_refused_at_the_front(stack: Stack) -> None:
    many = [f"X-H{i}: {'v' * 60}" for i in range(1500)]
    long_one = ["X-Long: " + "a" * 70_000]
    long_target = "/reflect?" + "q" * 70_000
    long_cookie = ["Cookie: " + "; ".join(f"c{i}={'x' * 50}" for i in range(600))]
    for data in (_req("/victim", f"Host: {HOST}", *many),
                 _req("/victim", f"Host: {HOST}", *long_one),
                 _req(long_target, f"Host: {HOST}"),
                 _req("/victim", f"Host: {HOST}", *long_cookie)):
        a = await _send(stack, data)
        assert a.status in (0, 400, 414, 431, 494), a.raw[:200]
    await stack.victims_see_only_their_own_answers()
    stack.assert_edge_within_limit()


async def test_body_floods_are_refused_and_never_buffered_by_the_edge(stack: Stack) -> None:
    big = b"x" * (8 * 2**20)
    a = await _send(stack, _req("/victim", f"Host: {HOST}", f"Content-Length: {len(big)}",
                                method="POST", body=big))
    assert a.status in (0, 413), a.raw[:200]
    chunks = b"".join(b"100000\r\n" + b"y" * 0x100000 + b"\r\n" for _ in range(8)) + b"0\r\n\r\n"
    a = await _send(stack, _req("/victim", f"Host: {HOST}", "Transfer-Encoding: chunked",
                                method="POST", body=chunks))
    assert a.status in (0, 413), a.raw[:200]

    async def concurrent() -> None:
        async with aiohttp.ClientSession() as s:
            async def one() -> None:
                with contextlib.suppress(aiohttp.ClientError):
                    async with s.post(stack.url + "/victim", data=b"z" * 900_000,
                                      headers={"Host": HOST}) as r:
                        await r.read()
            await asyncio.gather(*(one() for _ in range(40)))

    await concurrent()  # under client_max_body_size: passed through, streamed
    await stack.victims_see_only_their_own_answers()
    stack.assert_edge_within_limit()


async def test_a_cache_busting_flood_stays_within_the_memory_limit(stack: Stack) -> None:
    q = "x" * 3000
    async with aiohttp.ClientSession() as s:
        async def burst(base: int) -> None:
            for i in range(60):
                async with s.get(f"{stack.url}/reflect?{q}{base}-{i}",
                                 headers={"Host": HOST}) as r:
                    assert r.status == 200
                    await r.read()
        await asyncio.gather(*(burst(b) for b in range(25)))
    await stack.victims_see_only_their_own_answers()
    stack.assert_edge_within_limit()


# ----------------------------------------------------------------------------- slow peers


async def test_slowloris_connections_are_closed_by_the_front(stack: Stack) -> None:
    host, _, port = stack.url.removeprefix("http://").rpartition(":")
    conns = []
    for _ in range(50):
        r, w = await asyncio.open_connection(host, int(port))
        w.write(f"GET /victim HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: ".encode())
        conns.append((r, w))
    await stack.victims_see_only_their_own_answers()  # others are served meanwhile

    async def closed(r: asyncio.StreamReader) -> bytes:
        return await asyncio.wait_for(r.read(), 30)

    answers = await asyncio.gather(*(closed(r) for r, _ in conns))
    for _, w in conns:
        w.close()
    assert all(a == b"" or a.startswith(b"HTTP/1.1 408") for a in answers)
    stack.assert_edge_within_limit()


async def test_slow_readers_of_large_answers_do_not_grow_the_edge(stack: Stack) -> None:
    host, _, port = stack.url.removeprefix("http://").rpartition(":")
    conns = []
    for i in range(30):  # half cacheable, half streamed through (no-store)
        target = "/big" if i % 2 else f"/big?cc=no-store&i={i}"
        r, w = await asyncio.open_connection(host, int(port))
        w.write(_req(target, f"Host: {HOST}"))
        await w.drain()
        conns.append((r, w))
    await wait_until(lambda: stack.origin.hits["/big"] >= 16, 60)
    await stack.victims_see_only_their_own_answers()
    for r, _ in conns[:5]:  # some read a little, none read it all
        await asyncio.wait_for(r.read(4096), 30)
    stack.assert_edge_within_limit()
    for _, w in conns:
        w.close()
    stack.assert_edge_within_limit()


async def test_slow_and_silent_origins_are_cut_at_the_deadline(stack: Stack) -> None:
    # the stack's fetch deadline is 20 s and its read timeout 10 s: every answer comes well
    # within the 60 s each client waits
    reqs = [raw_request(stack.url, _req(f"/trickle?i={i}", f"Host: {HOST}"), 60)
            for i in range(20)]
    reqs += [raw_request(stack.url, _req(f"/hang?i={i}", f"Host: {HOST}"), 60)
             for i in range(20)]
    answers = await asyncio.wait_for(asyncio.gather(*reqs), 90)
    for a in answers:  # every client gets an answer: cut stream or a gateway error
        assert a.status in (0, 200, 502, 504), a.raw[:200]
        assert a.status != 200 or len(a.body) < 2**20
    await stack.victims_see_only_their_own_answers()
    stack.assert_edge_within_limit()


async def _budget(stack: Stack, structure: str) -> tuple[float, float]:
    async with aiohttp.ClientSession() as s, \
            s.get(f"http://{stack.cfg.admin_listen}/metrics") as r:
        text = await r.text()
    def value(name: str) -> float:
        m = re.search(rf'^{name}{{structure="{structure}"}} (\S+)$', text, re.M)
        assert m is not None, name
        return float(m.group(1))
    return value("aerocdn_budget_used_bytes"), value("aerocdn_budget_limit_bytes")


@memory_tier_only
async def test_a_full_memory_tier_then_large_misses_stay_within_the_memory_limit(
        stack: Stack) -> None:
    """Fill the memory tier with many small objects (long unique queries), then make it
    hold large ones: the small objects' memory is not all returned before the large ones
    arrive, so the budgets must leave room for that."""
    q = "x" * 3000
    async with aiohttp.ClientSession() as s:
        n = 0
        while True:
            used, limit = await _budget(stack, "memory-tier")
            if used >= 0.9 * limit:
                break
            assert n < 40_000, "the memory tier never filled"

            async def one(i: int) -> None:
                async with s.get(f"{stack.url}/reflect?{q}{i}", headers={"Host": HOST}) as r:
                    assert r.status == 200
                    await r.read()
            await asyncio.gather(*(one(n + i) for i in range(200)))
            n += 200
        stack.assert_edge_within_limit()

        async def big(i: int) -> int:
            async with s.get(f"{stack.url}/big?n={i}", headers={"Host": HOST}) as r:
                return len(await r.read())
        for _ in range(2):
            assert await asyncio.gather(*(big(i) for i in range(40))) == [BIG] * 40
    stack.assert_edge_within_limit()
    await stack.victims_see_only_their_own_answers()
