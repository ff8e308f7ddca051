"""Real processes on 127.0.0.1 for the edge tests and the edge bench: a counting origin,
``aerocdn edge`` (in-process or as a subprocess) and nginx with the rendered config."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from aerocdn.edge.app import Edge
from aerocdn.edge.config import EdgeConfig
from aerocdn.render.nginx import render_nginx_conf

PodFactory = Callable[..., Awaitable["Pod"]]

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
PURGE_MODULE = "/usr/lib/nginx/modules/ngx_http_cache_purge_module.so"
NGINX_MODULE_SH = Path(__file__).resolve().parents[2] / "scripts" / "nginx-module.sh"
HOST = "cdn.example.test"

# The L2 tier every test pod uses unless a test names its own: the in-process memory tier
# (CI), or with AEROCDN_TEST_EDGE_L2=aerospike the live Aerospike of AEROCDN_TEST_AEROSPIKE
# (`make test-aerospike` runs tests/edge both ways). Pods of one test share one set.
L2 = os.environ.get("AEROCDN_TEST_EDGE_L2", "memory")
AEROSPIKE_SEED = os.environ.get("AEROCDN_TEST_AEROSPIKE", "")
AEROSPIKE_NS = os.environ.get("AEROCDN_TEST_AEROSPIKE_NS", "cache")
if L2 not in ("memory", "aerospike") or (L2 == "aerospike" and not AEROSPIKE_SEED):
    raise RuntimeError("AEROCDN_TEST_EDGE_L2 is memory or aerospike (which needs "
                       "AEROCDN_TEST_AEROSPIKE=host:port)")


# Tests that look inside the in-process memory tier (its entries, its byte budget) have
# nothing to look at on the Aerospike tier; every other edge test runs on both.
memory_tier_only = pytest.mark.skipif(
    L2 != "memory", reason="inspects the in-process memory tier (AEROCDN_TEST_EDGE_L2=memory)")
# Tests whose counts assume each pod has an L2 of its own (a fill per pod); the pods of the
# Aerospike tier share theirs (one fill for all: tests/edge/test_edge_aerospike.py).
own_l2_per_pod = pytest.mark.skipif(
    L2 != "memory", reason="counts a fill per pod: each pod its own L2, which the pods on the "
                           "Aerospike tier share (AEROCDN_TEST_EDGE_L2=memory)")


def aerospike_l2(tmp: Path) -> dict[str, Any]:
    """cacheClusters for the live tier: one set per test (the pods' common tmp parent)."""
    digest = hashlib.sha256(str(tmp.parent).encode()).hexdigest()[:12]
    return {"cc-eu": {"seeds": [AEROSPIKE_SEED], "namespace": AEROSPIKE_NS,
                      "set": f"t{digest}"}}


@functools.cache
def age_module() -> tuple[str | None, str]:
    """aerocdn's nginx module ($aerocdn_age) for this machine's nginx: the .so that
    scripts/nginx-module.sh built and cached (bootstrap runs it; it builds now if not cached),
    or AEROCDN_AGE_MODULE.  (path, "") or (None, why not)."""
    if path := os.environ.get("AEROCDN_AGE_MODULE"):
        return (path, "") if os.path.exists(path) else (None, f"no {path} (AEROCDN_AGE_MODULE)")
    if not os.path.exists(NGINX):
        return None, f"no nginx at {NGINX}"
    r = subprocess.run(["bash", str(NGINX_MODULE_SH)], capture_output=True, text=True,
                       timeout=900, env={**os.environ, "NGINX": NGINX})
    lines = r.stdout.split()
    if r.returncode != 0 or not lines or not os.path.exists(lines[-1]):
        return None, f"scripts/nginx-module.sh failed: {r.stderr.strip()[-500:]}"
    return lines[-1], ""


def nginx_missing() -> str:
    """Why the real-nginx tests cannot run here ("" when they can)."""
    if not os.path.exists(NGINX) or not os.path.exists(PURGE_MODULE):
        return ("nginx or libnginx-mod-http-cache-purge not installed "
                "(apt-get install nginx-light libnginx-mod-http-cache-purge)")
    return age_module()[1]


def have_nginx() -> bool:
    return not nginx_missing()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Route:
    body: bytes = b"hello"
    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"Cache-Control": "max-age=300"})
    gate: asyncio.Event | None = None  # the origin waits for it before answering
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None


class Origin:
    """An aiohttp origin on 127.0.0.1 that counts requests per path."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: Counter[str] = Counter()
        self.requests: list[web.Request] = []
        self.default: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set(self, path: str, **kw: Any) -> Route:
        r = self.routes[path] = Route(**kw)
        return r

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.hits[request.path] += 1
        self.requests.append(request)
        route = self.routes.get(request.path)
        if route is None and self.default is not None:
            return await self.default(request)
        if route is None:
            return web.Response(status=404, text="no such test object",
                                headers={"Cache-Control": "no-store"})
        if route.gate is not None:
            await route.gate.wait()
        if route.handler is not None:
            return await route.handler(request)
        return web.Response(status=route.status, body=route.body, headers=route.headers)

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port or self.port or 0, reuse_address=True)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            for r in self.routes.values():
                if r.gate is not None:
                    r.gate.set()
            await self._runner.cleanup()
            self._runner = None


def edge_config(origin_url: str, tmp: Path, **overrides: Any) -> EdgeConfig:
    """A test pod's config: every port on 127.0.0.1, every path under ``tmp``."""
    (tmp / "cache").mkdir(parents=True, exist_ok=True)
    token = tmp / "token"
    if not token.exists():
        token.write_text("s3cret-token\n")
    base: dict[str, Any] = {
        "contentEdge": "shop",
        "namespace": "test",
        "region": "eu",
        "hosts": [HOST, "*.img.example.test"],
        "origin": {"url": origin_url, "connectTimeoutSeconds": 1, "readTimeoutSeconds": 2},
        "listen": "127.0.0.1:0",
        "adminListen": f"127.0.0.1:{free_port()}",
        "routingPlanPath": str(tmp / "routes.json"),
        "routingPollSeconds": 0.05,
        "purgeTokenPath": str(token),
        "nginxControlUrl": None,
        "nginx": {
            "listen": f"127.0.0.1:{free_port()}",
            "controlListen": f"127.0.0.1:{free_port()}",
            "cacheDir": str(tmp / "cache"),
            "tempDir": str(tmp),
            "pidFile": str(tmp / "nginx.pid"),
            "purgeModulePath": PURGE_MODULE,
            "ageModulePath": age_module()[0] or "/nonexistent/ngx_http_aerocdn_age_module.so",
            "workerProcesses": "1",
            "accessLog": str(tmp / "access.log"),
            "errorLog": str(tmp / "error.log"),
            "user": "root" if os.geteuid() == 0 else None,
        },
    }
    if L2 == "aerospike":
        base["cacheClusters"] = aerospike_l2(tmp)
        base["tierTimeoutMs"] = 500
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            base[k] = {**base[k], **v}
        else:
            base[k] = v
    return EdgeConfig.model_validate(base)


def with_nginx(cfg: EdgeConfig) -> EdgeConfig:
    ctl = cfg.nginx.control_listen
    return cfg.model_copy(update={"nginx_control_url": f"http://{ctl}"})


class Nginx:
    def __init__(self, cfg: EdgeConfig, tmp: Path):
        self.cfg = cfg
        self.conf = tmp / "nginx.conf"
        self.conf.write_text(render_nginx_conf(cfg))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.cfg.nginx.listen}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [NGINX, "-c", str(self.conf), "-e", "stderr", "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        host, _, port = self.cfg.nginx.listen.rpartition(":")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"nginx exited: {err}")
            with contextlib.suppress(OSError), socket.create_connection((host, int(port)), 0.2):
                return
            time.sleep(0.02)
        raise RuntimeError("nginx did not start listening")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class Pod:
    """One edge pod: ``aerocdn edge`` in this process + nginx in front of it."""

    def __init__(self, edge: Edge, nginx: Nginx | None):
        self.edge = edge
        self.nginx = nginx

    @property
    def edge_url(self) -> str:
        host, port = self.edge.bound["upstream"]
        return f"http://{host}:{port}"

    @property
    def admin_url(self) -> str:
        host, port = self.edge.bound["admin"]
        return f"http://{host}:{port}"

    @property
    def url(self) -> str:
        assert self.nginx is not None
        return self.nginx.url


async def start_pod(cfg: EdgeConfig, tmp: Path, *, nginx: bool = True, **edge_kw: Any) -> Pod:
    if nginx:
        cfg = with_nginx(cfg)
    edge = Edge(cfg, probe_interval=0.1, **edge_kw)
    await edge.start()
    host, port = edge.bound["upstream"]
    cfg = cfg.model_copy(update={"listen": f"{host}:{port}"})
    ng = None
    if nginx:
        ng = Nginx(cfg, tmp)
        await asyncio.get_running_loop().run_in_executor(None, ng.start)
    return Pod(edge, ng)


async def stop_pod(pod: Pod) -> None:
    if pod.nginx is not None:
        await asyncio.get_running_loop().run_in_executor(None, pod.nginx.stop)
    await pod.edge.stop()


def write_config_file(cfg: EdgeConfig, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg.model_dump(by_alias=True, mode="json")))
    return path


def edge_subprocess(config_file: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "aerocdn.edge.app", "--config", str(config_file),
         "--log-level", "WARNING"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def write_routes(path: Path, generation: int, region: str, clusters: list[str]) -> None:
    """Like a ConfigMap volume: write a new file and swap a symlink atomically."""
    import json

    d = path.parent
    target = d / f"..routes-{generation}.json"
    target.write_text(json.dumps({
        "generation": generation, "overloaded": False, "trafficWeights": {},
        "cacheRoutes": {region: [{"cacheCluster": c, "weight": 1.0} for c in clusters]},
    }))
    tmp_link = d / f"..tmp-{generation}"
    if tmp_link.is_symlink():
        tmp_link.unlink()
    tmp_link.symlink_to(target.name)
    os.replace(tmp_link, path)


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes
    raw: bytes


def parse_answer(raw: bytes) -> RawAnswer:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1]) if lines and lines[0].startswith(b"HTTP/") else 0
    headers: dict[str, str] = {}
    for line in lines[1:]:
        k, _, v = line.decode("latin-1").partition(":")
        k = k.strip().lower()
        headers[k] = (headers[k] + ", " + v.strip()) if k in headers else v.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        out = b""
        rest = body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            out += rest[:size]
            rest = rest[size + 2:]
        body = out
    return RawAnswer(status, headers, body, raw)


async def raw_request(base: str, data: bytes, timeout: float = 20.0) -> RawAnswer:
    """Send exact bytes (no client-side normalisation of the target or headers) on a fresh
    connection and read until the server closes it (requests carry Connection: close)."""
    host, _, port = base.removeprefix("http://").rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(data)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(-1), timeout)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    return parse_answer(raw)


async def raw_get(base: str, target: str, host: str = HOST,
                  headers: dict[str, str] | None = None) -> RawAnswer:
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return await raw_request(base, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))


# ----------------------------------------------------------------------------- large objects


class CyclicBody:
    """A large object without holding it: byte ``x`` is ``unit[x % len(unit)]``, with a unit
    whose length is no multiple of any slice size (so every slice differs).  ``seed`` makes
    another version of the same length."""

    def __init__(self, total: int, seed: int = 0, unit_len: int = 2**20 + 4093):
        import random

        self.total = total
        self.unit = random.Random(seed).randbytes(unit_len)

    def read(self, first: int, last: int) -> bytes:
        """Bytes first..last (inclusive)."""
        n = len(self.unit)
        out = bytearray()
        x = first
        while x <= last:
            off = x % n
            take = min(n - off, last - x + 1)
            out += self.unit[off:off + take]
            x += take
        return bytes(out)

    def chunks(self, first: int, last: int, chunk: int = 2**20) -> Iterator[bytes]:
        x = first
        while x <= last:
            y = min(last, x + chunk - 1)
            yield self.read(x, y)
            x = y + 1

    def sha256(self, first: int = 0, last: int | None = None) -> str:
        h = hashlib.sha256()
        for c in self.chunks(first, self.total - 1 if last is None else last):
            h.update(c)
        return h.hexdigest()


@dataclass
class RangeOrigin:
    """An origin route serving a ``CyclicBody`` that honours single byte ranges (206 +
    Content-Range) unless ``honour_range`` is off; counts the ranges it was asked for and
    the body bytes it sent.  Swap ``body``/``etag`` to change the object."""

    body: CyclicBody
    etag: str | None = '"v1"'  # None: no validator at all
    honour_range: bool = True
    headers: dict[str, str] = field(default_factory=lambda: {"Cache-Control": "max-age=300"})
    ranges: Counter[str] = field(default_factory=Counter)
    bytes_sent: int = 0
    before_body: Callable[[str], Awaitable[None]] | None = None

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        import re as _re

        rng = request.headers.get("Range", "")
        self.ranges[rng] += 1
        if self.before_body is not None:
            await self.before_body(rng)
        body, etag = self.body, self.etag  # the version this answer is of
        total = body.total
        m = _re.fullmatch(r"bytes=(\d+)-(\d*)", rng)
        headers = {**self.headers, **({"ETag": etag} if etag else {})}
        status, first, last = 200, 0, total - 1
        if m and self.honour_range:
            first = int(m.group(1))
            last = min(int(m.group(2)), total - 1) if m.group(2) else total - 1
            if first >= total:
                return web.Response(status=416, headers={
                    **headers, "Content-Range": f"bytes */{total}"})
            status = 206
            headers["Content-Range"] = f"bytes {first}-{last}/{total}"
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = last - first + 1
        await resp.prepare(request)
        for c in body.chunks(first, last, 256 * 1024):
            await resp.write(c)
            self.bytes_sent += len(c)
        await resp.write_eof()
        return resp
