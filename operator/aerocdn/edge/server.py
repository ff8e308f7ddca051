"""``aerocdn edge``: nginx's upstream on loopback — L2 (Aerospike or memory), then the origin.

Imperative shell around the pure parts (policy, routing, breaker): aiohttp + uvloop server,
aiohttp origin client, tier I/O, purge fan-out, probes, metrics.  Entry points: ``main(argv)``
(``aerocdn edge --config FILE``) and ``Edge`` (tests, bench).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import logging
import signal
import socket
import ssl
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aerocdn.edge.breaker import CircuitBreaker
from aerocdn.edge.config import EdgeConfig, EdgeConfigError, load_edge_config
from aerocdn.edge.l2 import LockResult, TierSet
from aerocdn.edge.metrics import EdgeMetrics
from aerocdn.edge.peers import PeerSource, peer_source
from aerocdn.edge.policy import (
    HOP_BY_HOP,
    CacheKey,
    StoreDecision,
    StoredObject,
    VaryMarker,
    answer_headers,
    cache_key,
    decide_storage,
    normalize_query,
    not_modified,
    pass_headers,
    store_headers,
)
from aerocdn.edge.routing import PlanWatcher
from aerocdn.edge.tiers import AerospikeTier, MemoryTier, PassMarker, Tier

log = logging.getLogger("aerocdn.edge")

_STRIP_TO_ORIGIN = HOP_BY_HOP | {
    "host",
    "if-none-match",
    "if-modified-since",
    "if-match",
    "if-unmodified-since",
    "if-range",
    "range",
    "x-aerocdn-fanout",
}


def _split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def _short(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text + "\n", headers={"X-Accel-Expires": "0"})


@dataclass
class OriginStream:
    """An origin response not to be stored: the first reader streams it to its client."""

    resp: aiohttp.ClientResponse
    head: bytes
    decision: StoreDecision
    taken: bool = False


@dataclass
class FillOutcome:
    kind: str  # stored | pass | error
    obj: StoredObject | None = None
    stream: OriginStream | None = None
    status: int = 502
    reason: str = ""
    tier: str = "origin"


@dataclass
class L1Entry:
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    expires_at: float


@dataclass
class L1Index:
    """What this pod's nginx may hold (every L1 fill passes through this edge), so a purge can
    name each entry to nginx: Debian's cache-purge module (2.3) purges exact keys only.  Entries
    leave after ``l1KeepSeconds``, when nginx has dropped them too."""

    max_entries: int = 1_000_000
    entries: dict[str, dict[str, L1Entry]] = field(default_factory=dict)
    size: int = 0
    overflowed: int = 0

    def record(self, url: str, variant: str, entry: L1Entry) -> None:
        by_url = self.entries.setdefault(url, {})
        if variant not in by_url:
            if self.size >= self.max_entries:
                self.overflowed += 1
                return
            self.size += 1
        by_url[variant] = entry

    def matching(self, target: str, prefix: bool) -> list[L1Entry]:
        if not prefix:
            return list(self.entries.get(target, {}).values())
        return [e for u, v in self.entries.items() if u.startswith(target) for e in v.values()]

    def drop(self, target: str, prefix: bool) -> None:
        for u in [u for u in self.entries if (u.startswith(target) if prefix else u == target)]:
            self.size -= len(self.entries.pop(u))

    def prune(self, now: float) -> None:
        for u in list(self.entries):
            v = self.entries[u]
            for k in [k for k, e in v.items() if e.expires_at < now]:
                del v[k]
                self.size -= 1
            if not v:
                del self.entries[u]


class Edge:
    def __init__(self, cfg: EdgeConfig, *, peers: PeerSource | None = None,
                 probe_interval: float = 1.0):
        self.cfg = cfg
        self.m = EdgeMetrics()
        self.peers = peers or peer_source(cfg.peers, cfg.admin_listen)
        self.probe_interval = probe_interval
        self.owner = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        names = tuple(cfg.cache_clusters)
        self.watcher = PlanWatcher(cfg.routing_plan_path, cfg.region, names,
                                   on_change=self._routing_changed)
        tiers: dict[str, Tier] = {}
        if cfg.cache_clusters:
            for name, ref in cfg.cache_clusters.items():
                tiers[name] = AerospikeTier(
                    name, ref.seeds, ref.namespace, cfg.cluster_set(name),
                    timeout_ms=cfg.tier_timeout_ms, threads=cfg.tier_threads,
                    rules_max_age=float(cfg.cache_policy.l2_max_ttl_seconds),
                )
            order = self._plan_order
        else:
            tiers["memory"] = MemoryTier(cfg.memory_tier_bytes)

            def order() -> tuple[str, ...]:
                return ("memory",)

        breakers = {n: CircuitBreaker(cfg.circuit_failures, cfg.circuit_open_seconds)
                    for n in tiers}
        self.l2 = TierSet(tiers, breakers, order, on_error=self._tier_error)
        self.shared_l2 = bool(cfg.cache_clusters)
        self.l1 = L1Index()
        self._inflight_fills: dict[str, asyncio.Task[FillOutcome]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._tasks: list[asyncio.Task[Any]] = []
        self._runners: list[web.BaseRunner] = []
        self.session: aiohttp.ClientSession | None = None
        self.control: aiohttp.ClientSession | None = None
        self.draining = False
        self.l1_ok: bool | None = None
        self.inflight = 0
        self.bound: dict[str, tuple[str, int]] = {}
        self._hosts_seen: dict[str, bool] = {}
        self.m.inflight.set_function(lambda: self.inflight)

    # ------------------------------------------------------------------ lifecycle
    def _plan_order(self) -> tuple[str, ...]:
        return self.watcher.snapshot.order

    def _routing_changed(self, snap: Any) -> None:
        self.m.routing_reloads.inc()
        if snap.generation is not None:
            self.m.routing_generation.set(snap.generation)

    def _tier_error(self, cluster: str, error: str) -> None:
        self.m.tier_errors.labels(cluster).inc()
        log.warning("L2 %s: %s", cluster, error)

    async def start(self) -> None:
        origin = self.cfg.origin
        ssl_ctx: ssl.SSLContext | bool = bool(origin.tls_verify)
        self.session = aiohttp.ClientSession(
            auto_decompress=False,
            connector=aiohttp.TCPConnector(limit=512, ssl=ssl_ctx, ttl_dns_cache=30),
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=origin.connect_timeout_seconds,
                sock_read=origin.read_timeout_seconds,
            ),
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )
        self.control = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.cfg.peers.timeout_seconds)
        )
        self.watcher.poll()
        self._tasks.append(asyncio.create_task(self.watcher.run(self.cfg.routing_poll_seconds)))
        self._tasks.append(asyncio.create_task(self._probe_loop()))
        self._tasks.append(asyncio.create_task(self._rules_loop()))

        # The request path is a low-level aiohttp server: one handler, no router or middleware
        # (measured: ~20% of the per-request cost of an L2 hit).
        upstream = web.ServerRunner(
            web.Server(self.handle, max_field_size=self.cfg.max_request_header_bytes),
            shutdown_timeout=self.cfg.drain_seconds, handle_signals=False,
        )
        admin_app = web.Application()
        admin_app.router.add_get("/healthz", self.healthz)
        admin_app.router.add_get("/readyz", self.readyz)
        admin_app.router.add_get("/metrics", self.metrics)
        admin_app.router.add_post("/purge", self.purge)
        admin = web.AppRunner(admin_app, access_log=None, shutdown_timeout=5,
                              handle_signals=False)
        runner: web.BaseRunner
        for name, runner, addr in (("upstream", upstream, self.cfg.listen),
                                   ("admin", admin, self.cfg.admin_listen)):
            await runner.setup()
            host, port = _split_addr(addr)
            site = web.TCPSite(runner, host, port, reuse_address=True, backlog=1024)
            await site.start()
            self._runners.append(runner)
            sockets = getattr(site._server, "sockets", None) or []
            self.bound[name] = sockets[0].getsockname()[:2] if sockets else (host, port)
        log.info("aerocdn edge %s/%s region %s: upstream %s, admin %s, L2 %s",
                 self.cfg.namespace, self.cfg.content_edge, self.cfg.region, self.cfg.listen,
                 self.cfg.admin_listen, list(self.l2.tiers))

    async def stop(self, delay: float = 0.0) -> None:
        """Drain: readiness fails at once, requests are still served for ``delay`` seconds,
        then listeners close, in-flight requests finish (up to drainSeconds), tiers close."""
        self.draining = True
        if delay > 0:
            await asyncio.sleep(delay)
        for runner in self._runners:
            await runner.cleanup()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        for t in list(self._background):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(t, 5)
        if self.session is not None:
            await self.session.close()
        if self.control is not None:
            await self.control.close()
        await self.l2.close()

    async def _probe_loop(self) -> None:
        while True:
            try:
                await self.l2.probe()
                for name, st in self.l2.status().items():
                    self.m.tier_up.labels(name).set(1 if st["circuit"] == "closed" else 0)
                self.m.degraded.set(0 if self.l2.any_up() else 1)
                await self._read_nginx_status()
                self.l1.prune(time.time())
            except Exception:
                log.exception("probe failed")
            await asyncio.sleep(self.probe_interval)

    async def _rules_loop(self) -> None:
        if not self.shared_l2:
            return
        while True:
            await asyncio.sleep(self.cfg.purge_rules_refresh_seconds)
            for t in self.l2.usable():
                with contextlib.suppress(Exception):
                    await t.refresh()

    async def _read_nginx_status(self) -> None:
        if not self.cfg.nginx_control_url or self.control is None:
            self.l1_ok = None
            return
        try:
            async with self.control.get(self.cfg.nginx_control_url + "/nginx_status",
                                        timeout=aiohttp.ClientTimeout(total=0.5)) as r:
                text = await r.text()
            lines = text.splitlines()
            active, requests = int(lines[0].split(":")[1]), int(lines[2].split()[2])
            self.m.nginx.control_requests += 1  # nginx counted this read too
            self.m.nginx.active, self.m.nginx.requests = active, requests
            self.l1_ok = True
        except (aiohttp.ClientError, TimeoutError, ValueError, IndexError):
            self.l1_ok = False

    # ------------------------------------------------------------------ admin
    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    def ready_detail(self) -> dict[str, Any]:
        snap = self.watcher.snapshot
        l2 = self.l2.status()
        l2_up = self.l2.any_up()
        cache_answers = l2_up or bool(self.l1_ok)
        ready = not self.draining and cache_answers
        return {
            "ready": ready,
            "draining": self.draining,
            "config": "loaded",
            "contentEdge": f"{self.cfg.namespace}/{self.cfg.content_edge}",
            "region": self.cfg.region,
            "routing": {"generation": snap.generation, "source": snap.source,
                        "clusters": list(snap.order), **({"error": snap.error} if snap.error
                                                         else {})},
            "l2": l2,
            "l1": {None: "not configured", True: "ok", False: "unreachable"}[self.l1_ok],
            "degraded": not l2_up,
            **({"reason": "no L2 cluster answers: serving L1 + origin"} if not l2_up else {}),
        }

    async def readyz(self, request: web.Request) -> web.Response:
        detail = self.ready_detail()
        return web.json_response(detail, status=200 if detail["ready"] else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.m.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    # ------------------------------------------------------------------ request path
    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        t0 = time.perf_counter()
        self.inflight += 1
        result = "error"
        try:
            if "x-forwarded-for" in request.headers:
                self.m.nginx.edge_requests_via_nginx += 1
            resp, result = await self._handle(request)
            return resp
        except (ConnectionResetError, asyncio.CancelledError):
            result = "client-gone"
            raise
        except Exception:
            log.exception("request %s %s failed", request.method, request.raw_path[:200])
            return _short(500, "500 internal error in aerocdn edge")
        finally:
            self.inflight -= 1
            self.m.answered(result, time.perf_counter() - t0)

    async def _handle(self, request: web.BaseRequest) -> tuple[web.StreamResponse, str]:
        host = request.headers.get("Host", "")
        ok = self._hosts_seen.get(host)
        if ok is None:
            ok = self.cfg.serves_host(host)
            if len(self._hosts_seen) < 4096:  # bounded: Host is client input
                self._hosts_seen[host] = ok
        if not ok:
            return _short(421, "421 Misdirected Request: this edge does not serve this host"), \
                "misdirected"
        raw = request.raw_path
        path, _, query = raw.partition("?")
        if not path.startswith("/"):
            return _short(400, "400 Bad Request: path must start with /"), "bad-request"
        hdrs = request.headers  # case-insensitive: lower-case lookups work
        if request.method not in ("GET", "HEAD"):
            return await self._pass_through(request, path, query, hdrs), "pass"
        ck = cache_key(self.cfg.cache_policy.cache_key, host, path, query, hdrs)
        now = time.time()
        entry, _ = await self._lookup(ck, hdrs)
        stale: StoredObject | None = None
        if isinstance(entry, StoredObject):
            state = entry.state(now)
            if state == "fresh":
                self.m.hit("l2")
                return self._answer(request, entry, "l2", now, ck, hdrs), "l2-hit"
            if state == "stale-revalidate":
                self.m.hit("l2-stale")
                self._refresh_in_background(ck, request, hdrs)
                return self._answer(request, entry, "l2-stale", now, ck, hdrs), "l2-stale"
            if state == "stale":
                stale = entry
        if isinstance(entry, PassMarker):
            return await self._direct(request, ck, path, query, hdrs), "pass"

        outcome = await self._fill_collapsed(ck, request, path, query, hdrs)
        now = time.time()
        if outcome.kind == "stored" and outcome.obj is not None:
            tier = outcome.tier
            return self._answer(request, outcome.obj, tier, now, ck, hdrs), tier
        if outcome.kind == "pass":
            s = outcome.stream
            if s is not None and not s.taken:
                s.taken = True
                return await self._stream(request, s), "pass"
            return await self._direct(request, ck, path, query, hdrs), "pass"
        # origin failed
        if stale is not None:
            self.m.hit("l2-stale-if-error")
            return self._answer(request, stale, "stale-if-error", now, ck, hdrs), "stale"
        return _short(outcome.status, f"{outcome.status} {outcome.reason}"), "error"

    async def _lookup(self, ck: CacheKey, hdrs: Mapping[str, str]) -> tuple[Any, str]:
        entry, tier = await self.l2.get(ck.key)
        if isinstance(entry, VaryMarker):
            vk = ck.variant(entry.vary, hdrs)
            if tier is None:
                return None, vk
            try:
                return await tier.get(vk), vk
            except Exception:
                return None, vk
        return entry, ck.key

    def _answer(self, request: web.BaseRequest, obj: StoredObject, tier: str, now: float,
                ck: CacheKey, hdrs: Mapping[str, str]) -> web.Response:
        headers = answer_headers(obj, now, self.cfg.cache_policy.l1_max_ttl_seconds, tier)
        l1_ttl = min(max(0, int(obj.fresh_until - now)), self.cfg.cache_policy.l1_max_ttl_seconds)
        if l1_ttl > 0 and self.cfg.nginx_control_url:
            # nginx will keep this answer: remember how to name it in a purge
            names = (*self.cfg.cache_policy.cache_key.vary_headers, *obj.vary)
            kh = tuple((n, hdrs[n]) for n in names if n in hdrs)
            path, _, q = request.raw_path.partition("?")
            self.l1.record(ck.url, repr(kh), L1Entry(
                path, q, kh, now + l1_ttl + self.cfg.cache_policy.l1_keep_seconds))
        if not_modified(obj, hdrs):
            keep = {"etag", "cache-control", "expires", "last-modified", "vary", "date"}
            h304 = [(k, v) for k, v in headers if k.lower() in keep or k in
                    ("Age", "X-Accel-Expires", "X-Aerocdn-Tier")]
            return web.Response(status=304, headers=CIMultiDict(h304))
        self.m.sent(tier, len(obj.body))
        return web.Response(status=obj.status, body=obj.body, headers=CIMultiDict(headers))

    def _refresh_in_background(self, ck: CacheKey, request: web.BaseRequest,
                               hdrs: Mapping[str, str]) -> None:
        if ck.key in self._inflight_fills:
            return
        path, _, query = request.raw_path.partition("?")
        task = self._start_fill(ck, path, query, hdrs)

        def done(t: asyncio.Task[FillOutcome]) -> None:
            self._background.discard(t)
            if not t.cancelled() and t.exception() is None:
                s = t.result().stream
                if s is not None and not s.taken:
                    s.taken = True
                    s.resp.release()

        self._background.add(task)
        task.add_done_callback(done)

    def _start_fill(self, ck: CacheKey, path: str, query: str,
                    hdrs: Mapping[str, str]) -> asyncio.Task[FillOutcome]:
        task = asyncio.create_task(self._fill(ck, path, query, CIMultiDict(hdrs)))
        self._inflight_fills[ck.key] = task
        task.add_done_callback(lambda _t: self._inflight_fills.pop(ck.key, None))
        return task

    async def _fill_collapsed(self, ck: CacheKey, request: web.BaseRequest, path: str, query: str,
                              hdrs: Mapping[str, str]) -> FillOutcome:
        task = self._inflight_fills.get(ck.key)
        if task is not None:
            self.m.collapsed.labels("pod").inc()
            outcome = await asyncio.shield(task)
            if outcome.kind == "stored":
                return FillOutcome("stored", outcome.obj, tier="l2-collapsed")
            if outcome.kind == "pass":
                return FillOutcome("pass")  # no stream: fetch our own
            return outcome
        return await asyncio.shield(self._start_fill(ck, path, query, hdrs))

    async def _fill(self, ck: CacheKey, path: str, query: str,
                    hdrs: Mapping[str, str]) -> FillOutcome:
        lock = LockResult(None, True)
        if self.shared_l2:
            lock = await self.l2.acquire_lock(ck.key, self.owner, self.cfg.lock_ttl_seconds)
            if not lock.acquired:
                self.m.collapsed.labels("region").inc()
                waited = await self._wait_for_other_pod(ck, hdrs)
                if waited is not None:
                    return waited
        try:
            return await self._fetch_and_store(ck, path, query, hdrs, lock)
        finally:
            if lock.acquired and lock.tier is not None:
                await self.l2.release_lock(lock.tier, ck.key, self.owner)

    async def _wait_for_other_pod(self, ck: CacheKey,
                                  hdrs: Mapping[str, str]) -> FillOutcome | None:
        """Another pod holds the lock: read the object it stores.  Bounded by lockWaitSeconds;
        a holder that dies stops blocking when its lock's TTL ends."""
        deadline = time.monotonic() + self.cfg.lock_wait_seconds
        delay = 0.005
        while time.monotonic() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
            entry, _ = await self._lookup(ck, hdrs)
            now = time.time()
            if isinstance(entry, StoredObject) and entry.state(now) == "fresh":
                return FillOutcome("stored", entry, tier="l2-collapsed")
            if isinstance(entry, PassMarker):
                return FillOutcome("pass")
        return None

    def _origin_request(self, path: str, query: str,
                        hdrs: Mapping[str, str]) -> tuple[str, CIMultiDict[str]]:
        q = normalize_query(self.cfg.cache_policy.cache_key, query)
        url = self.cfg.origin.url + path + ("?" + q if q else "")
        out: CIMultiDict[str] = CIMultiDict(
            (k, v) for k, v in hdrs.items() if k.lower() not in _STRIP_TO_ORIGIN
        )
        out["Host"] = self.cfg.origin.host_header or hdrs.get("host", "")
        via = hdrs.get("via")
        out["Via"] = (via + ", " if via else "") + self.cfg.nginx.via
        return url, out

    async def _fetch_and_store(self, ck: CacheKey, path: str, query: str,
                               hdrs: Mapping[str, str], lock: LockResult) -> FillOutcome:
        assert self.session is not None
        url, headers = self._origin_request(path, query, hdrs)
        policy = self.cfg.cache_policy
        t0 = time.perf_counter()
        try:
            resp = await self.session.get(url, headers=headers, allow_redirects=False)
        except TimeoutError:
            self.m.origin_fetches.labels("timeout").inc()
            return FillOutcome("error", status=504, reason="Gateway Timeout: origin did not answer")
        except aiohttp.ClientError as e:
            self.m.origin_fetches.labels("error").inc()
            log.warning("origin %s: %s", url, e)
            return FillOutcome("error", status=502, reason="Bad Gateway: origin unreachable")
        self.m.origin_latency.observe(time.perf_counter() - t0)
        if resp.status >= 500:
            self.m.origin_fetches.labels("5xx").inc()
            resp.release()
            return FillOutcome("error", status=502,
                               reason=f"Bad Gateway: origin answered {resp.status}")
        rheaders = tuple((k, v) for k, v in resp.headers.items())
        now = time.time()
        decision = decide_storage("GET", hdrs, resp.status, rheaders, policy, now)
        size = resp.content_length
        too_big = size is not None and size > policy.max_object_size_bytes
        if not decision.store or too_big:
            self.m.origin_fetches.labels("pass").inc()
            await self._mark_pass(ck, lock)
            return FillOutcome("pass", stream=OriginStream(resp, b"", decision))
        body = bytearray()
        try:
            async for chunk in resp.content.iter_chunked(65536):
                body += chunk
                if len(body) > policy.max_object_size_bytes:
                    self.m.origin_fetches.labels("pass").inc()
                    await self._mark_pass(ck, lock)
                    return FillOutcome("pass", stream=OriginStream(resp, bytes(body), decision))
        except (TimeoutError, aiohttp.ClientError) as e:
            resp.release()
            self.m.origin_fetches.labels("timeout").inc()
            return FillOutcome(
                "error", status=504,
                reason=f"Gateway Timeout: origin body incomplete ({type(e).__name__})",
            )
        resp.release()
        self.m.origin_fetches.labels("stored").inc()
        obj = StoredObject(
            status=resp.status,
            headers=store_headers(rheaders),
            body=bytes(body),
            url=ck.url,
            stored_at=now,
            fresh_until=now + decision.freshness_seconds,
            stale_while_revalidate=decision.stale_while_revalidate,
            stale_if_error=decision.stale_if_error,
            vary=decision.vary,
        )
        ttl = obj.record_ttl(now)
        if decision.vary:
            marker = VaryMarker(ck.url, decision.vary, now, now + ttl)
            await self.l2.put(ck.key, marker, ttl, lock.tier)
            await self.l2.put(ck.variant(decision.vary, hdrs), obj, ttl, lock.tier)
        else:
            await self.l2.put(ck.key, obj, ttl, lock.tier)
        return FillOutcome("stored", obj, tier="origin")

    async def _mark_pass(self, ck: CacheKey, lock: LockResult) -> None:
        if self.shared_l2 and lock.tier is not None:
            await self.l2.put(ck.key, PassMarker(ck.url, time.time()), self.cfg.lock_ttl_seconds,
                              lock.tier)

    async def _stream(self, request: web.BaseRequest, s: OriginStream) -> web.StreamResponse:
        resp = s.resp
        try:
            out = web.StreamResponse(status=resp.status)
            for k, v in pass_headers(tuple(resp.headers.items())):
                out.headers.add(k, v)
            if resp.content_length is not None:
                out.content_length = resp.content_length
            await out.prepare(request)
            if request.method == "HEAD":
                return out
            sent = len(s.head)
            if s.head:
                await out.write(s.head)
            async for chunk in resp.content.iter_chunked(65536):
                await out.write(chunk)
                sent += len(chunk)
            await out.write_eof()
            self.m.sent("pass", sent)
            return out
        finally:
            resp.release()

    async def _direct(self, request: web.BaseRequest, ck: CacheKey, path: str, query: str,
                      hdrs: Mapping[str, str]) -> web.StreamResponse:
        """Fetch without collapsing or storing (hit-for-pass, non-storable responses)."""
        assert self.session is not None
        url, headers = self._origin_request(path, query, hdrs)
        try:
            resp = await self.session.get(url, headers=headers, allow_redirects=False)
        except TimeoutError:
            return _short(504, "504 Gateway Timeout: origin did not answer")
        except aiohttp.ClientError:
            return _short(502, "502 Bad Gateway: origin unreachable")
        self.m.origin_fetches.labels("pass").inc()
        decision = StoreDecision(False, "pass")
        return await self._stream(request, OriginStream(resp, b"", decision))

    async def _pass_through(self, request: web.BaseRequest, path: str, query: str,
                            hdrs: Mapping[str, str]) -> web.StreamResponse:
        """Methods a cache does not answer (POST, PUT, ...): to the origin, never stored."""
        assert self.session is not None
        _, headers = self._origin_request(path, query, hdrs)
        url = self.cfg.origin.url + path + ("?" + query if query else "")  # full query
        try:
            resp = await self.session.request(
                request.method, url, headers=headers,
                data=request.content if request.body_exists else None, allow_redirects=False,
            )
        except TimeoutError:
            return _short(504, "504 Gateway Timeout: origin did not answer")
        except aiohttp.ClientError:
            return _short(502, "502 Bad Gateway: origin unreachable")
        self.m.origin_fetches.labels("pass").inc()
        return await self._stream(request, OriginStream(resp, b"", StoreDecision(False, "method")))

    # ------------------------------------------------------------------ purge
    def _token(self) -> str | None:
        try:
            t = Path(self.cfg.purge_token_path).read_text().strip()
        except OSError:
            return None
        return t or None

    def _authorized(self, request: web.Request) -> tuple[bool, str]:
        expected = self._token()
        if expected is None:
            return False, "purge is disabled: no token configured (purgeTokenSecretRef)"
        got = request.headers.get("Authorization", "")
        scheme, _, token = got.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False, "missing bearer token"
        if not hmac.compare_digest(token.strip().encode(), expected.encode()):
            return False, "wrong token"
        return True, ""

    def _purge_target(self, body: Any) -> tuple[str, bool, str, str]:
        """-> (target url-key, prefix?, host, raw path-and-query).  Raises ValueError."""
        if not isinstance(body, dict) or len({"url", "prefix"} & body.keys()) != 1:
            raise ValueError('body must be {"url": "..."} or {"prefix": "..."}')
        prefix = "prefix" in body
        value = body["prefix" if prefix else "url"]
        if not isinstance(value, str) or not value:
            raise ValueError("url/prefix must be a non-empty string")
        rest = value.split("://", 1)[1] if "://" in value else value
        host, _, pq = rest.partition("/")
        host = host.lower().split(":", 1)[0]
        if not self.cfg.serves_host(host):
            raise ValueError(f"host {host!r} is not served by ContentEdge "
                             f"{self.cfg.namespace}/{self.cfg.content_edge}")
        pq = "/" + pq
        if prefix:
            return host + pq, True, host, pq
        path, _, query = pq.partition("?")
        ck = cache_key(self.cfg.cache_policy.cache_key, host, path, query, {})
        return ck.url, False, host, pq

    async def purge(self, request: web.Request) -> web.Response:
        ok, why = self._authorized(request)
        if not ok:
            return web.json_response({"error": why}, status=401 if "disabled" not in why else 403)
        try:
            body = await request.json()
            target, prefix, host, pq = self._purge_target(body)
        except (ValueError, json.JSONDecodeError) as e:
            return web.json_response({"error": str(e)}, status=400)
        fanout_call = request.headers.get("X-Aerocdn-Fanout") == "1"
        kind = "prefix" if prefix else "url"
        self.m.purges.labels(kind, "peer" if fanout_call else "origin").inc()
        at = time.time()
        l2 = await self.l2.purge(target, prefix, at, local_only=fanout_call)
        l1 = await self._purge_nginx(target, prefix, host, pq)
        me = {"l2": l2, "l1": l1, "ok": all(v == "ok" for v in l2.values()) and
              l1.get("failed", 0) == 0}
        if fanout_call:
            return web.json_response(me)
        peers = await self.peers.peers()
        results = await asyncio.gather(*(self._purge_peer(p, body, request) for p in peers))
        pods = {"self": me, **dict(zip(peers, results, strict=True))}
        confirmed = [p for p, r in pods.items() if r.get("ok")]
        complete = len(confirmed) == len(pods)
        return web.json_response(
            {"purged": {kind: target}, "complete": complete, "confirmed": confirmed,
             "unconfirmed": [p for p in pods if p not in confirmed], "pods": pods},
            status=200 if complete else 502,
        )

    async def _purge_peer(self, peer: str, body: Any, request: web.Request) -> dict[str, Any]:
        assert self.control is not None
        try:
            async with self.control.post(
                f"http://{peer}/purge", json=body,
                headers={"Authorization": request.headers["Authorization"],
                         "X-Aerocdn-Fanout": "1"},
            ) as r:
                data = await r.json(content_type=None)
                if r.status != 200 or not isinstance(data, dict):
                    return {"ok": False, "error": f"HTTP {r.status}"}
                return data
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            return {"ok": False, "error": f"{type(e).__name__}: {e}"}

    async def _purge_nginx(self, target: str, prefix: bool, host: str,
                           pq: str) -> dict[str, int]:
        if not self.cfg.nginx_control_url or self.control is None:
            return {}
        entries = self.l1.matching(target, prefix)
        if not prefix:
            path, _, q = pq.partition("?")
            entries.append(L1Entry(path, q, (), 0.0))  # the entry without key headers
        counts = {"purged": 0, "absent": 0, "failed": 0}

        base = self.cfg.nginx_control_url

        async def one(e: L1Entry) -> None:
            assert self.control is not None
            url = base + "/purge" + e.path + ("?" + e.query if e.query else "")
            try:
                async with self.control.get(url, headers={"Host": host, **dict(e.headers)}) as r:
                    await r.read()
                    self.m.nginx.control_requests += 1
                    counts["purged" if r.status == 200 else "absent" if r.status == 404
                           else "failed"] += 1
            except (aiohttp.ClientError, TimeoutError):
                counts["failed"] += 1

        sem = asyncio.Semaphore(32)

        async def bounded(e: L1Entry) -> None:
            async with sem:
                await one(e)

        await asyncio.gather(*(bounded(e) for e in entries))
        self.l1.drop(target, prefix)
        return counts


# ---------------------------------------------------------------------- CLI


async def serve(cfg: EdgeConfig) -> None:
    edge = Edge(cfg)
    await edge.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("SIGTERM: not ready; closing listeners in %ss, then draining up to %ss",
             cfg.shutdown_delay_seconds, cfg.drain_seconds)
    await edge.stop(delay=cfg.shutdown_delay_seconds)


def run(config_path: str) -> None:
    cfg = load_edge_config(config_path)
    try:
        import uvloop

        uvloop.run(serve(cfg))
    except ImportError:  # pragma: no cover - uvloop is a dependency
        asyncio.run(serve(cfg))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="aerocdn edge", description=__doc__)
    parser.add_argument("--config", required=True, help="edge.yaml (the per-region ConfigMap)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run(args.config)
    except EdgeConfigError as e:
        print(f"aerocdn edge: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"aerocdn edge: cannot listen: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
