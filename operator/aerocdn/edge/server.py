"""``aerocdn edge``: nginx's upstream on loopback — L2 (Aerospike or memory), then the origin.

Imperative shell around the pure parts (policy, routing, breaker): aiohttp + uvloop server,
aiohttp origin client, tier I/O, purge fan-out, probes, metrics.  Entry points: ``main(argv)``
(``aerocdn edge --config FILE``) and ``Edge`` (tests, bench).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import os
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
import yarl
from aiohttp import web
from multidict import CIMultiDict
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aerocdn.edge.breaker import CircuitBreaker
from aerocdn.edge.config import EdgeConfig, EdgeConfigError, load_edge_config
from aerocdn.edge.l2 import LockResult, TierSet
from aerocdn.edge.metrics import EdgeMetrics
from aerocdn.edge.peers import PeerSource, peer_source
from aerocdn.edge.policy import (
    BadTarget,
    CacheKey,
    StoreDecision,
    StoredObject,
    VaryMarker,
    answer_headers,
    cache_key,
    canonical_path,
    check_query,
    decide_storage,
    l1_seconds,
    normalize_query,
    not_modified,
    pass_headers,
    selected_headers,
    store_headers,
)
from aerocdn.edge.routing import PlanWatcher
from aerocdn.edge.tiers import AerospikeTier, MemoryTier, PassMarker, Tier

log = logging.getLogger("aerocdn.edge")

# Besides the allow-list, what a method the cache does not answer (POST, ...) may carry.
_BODY_HEADERS = frozenset({"content-type", "content-encoding", "content-language"})


@dataclass
class ByteBudget:
    """A byte budget shared by one kind of per-pod structure (fills in flight)."""

    limit: int
    used: int = 0

    def take(self, n: int) -> bool:
        if self.used + n > self.limit:
            return False
        self.used += n
        return True

    def give(self, n: int) -> None:
        self.used = max(0, self.used - n)


def _split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def _short(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text + "\n", headers={"X-Accel-Expires": "0"})


@dataclass
class OriginStream:
    """An origin response not to be stored: the first reader streams it to its client."""

    resp: aiohttp.ClientResponse
    head: bytes | bytearray
    decision: StoreDecision
    taken: bool = False
    deadline: float | None = None  # loop time by which the whole fetch must be over
    budget: ByteBudget | None = None  # ``held`` bytes of ``head`` are counted here
    held: int = 0

    def drop_head(self) -> None:
        self.head = b""
        if self.budget is not None:
            self.budget.give(self.held)
        self.held = 0

    def discard(self) -> None:
        self.drop_head()
        self.resp.release()


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

    max_bytes: int = 32 * 2**20
    entries: dict[str, dict[str, L1Entry]] = field(default_factory=dict)
    size: int = 0
    bytes: int = 0
    overflowed: int = 0

    @staticmethod
    def entry_bytes(url: str, variant: str, entry: L1Entry) -> int:
        """Estimated bytes an entry holds (strings, dicts, the dataclass), measured
        generously: the budget must hold for real, not on paper."""
        strings = len(url) + len(variant) + len(entry.path) + len(entry.query) + sum(
            len(k) + len(v) + 120 for k, v in entry.headers)
        return strings + 600

    def record(self, url: str, variant: str, entry: L1Entry) -> bool:
        """False: over the byte budget, not recorded: nginx must not keep the answer either,
        or a purge could not name it."""
        by_url = self.entries.get(url)
        if by_url is not None and variant in by_url:
            by_url[variant] = entry
            return True
        n = self.entry_bytes(url, variant, entry)
        if self.bytes + n > self.max_bytes:
            self.overflowed += 1
            return False
        self.entries.setdefault(url, {})[variant] = entry
        self.size += 1
        self.bytes += n
        return True

    def _forget(self, url: str, variant: str, entry: L1Entry) -> None:
        self.size -= 1
        self.bytes -= self.entry_bytes(url, variant, entry)

    def matching(self, target: str, prefix: bool) -> list[L1Entry]:
        if not prefix:
            return list(self.entries.get(target, {}).values())
        return [e for u, v in self.entries.items() if u.startswith(target) for e in v.values()]

    def drop(self, target: str, prefix: bool) -> None:
        for u in [u for u in self.entries if (u.startswith(target) if prefix else u == target)]:
            for k, e in self.entries.pop(u).items():
                self._forget(u, k, e)

    def prune(self, now: float) -> None:
        for u in list(self.entries):
            v = self.entries[u]
            for k in [k for k, e in v.items() if e.expires_at < now]:
                self._forget(u, k, v.pop(k))
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
        b = cfg.budgets
        self.l1 = L1Index(max_bytes=b.l1_index)
        self.fill_budget = ByteBudget(b.fills)
        policy = cfg.cache_policy
        key_headers = frozenset(policy.cache_key.vary_headers)
        extra = set(cfg.origin.forward_headers) - key_headers
        if policy.cookies == "forward":
            extra.add("cookie")
        extra.discard("authorization")
        self._unkeyed = tuple(sorted(extra))  # forwarded, not keyed: must be named by Vary
        self._forward = key_headers | extra | {"authorization"}
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
        memory = self.l2.tiers.get("memory")
        self.m.budget_used.labels("l1-index").set_function(lambda: self.l1.bytes)
        self.m.budget_used.labels("fills").set_function(lambda: self.fill_budget.used)
        if isinstance(memory, MemoryTier):
            self.m.budget_used.labels("memory-tier").set_function(lambda: memory.bytes)
            self.m.budget_limit.labels("memory-tier").set(memory.max_bytes)
        self.m.budget_limit.labels("l1-index").set(b.l1_index)
        self.m.budget_limit.labels("fills").set(b.fills)

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
        # No automatic Accept-Encoding / User-Agent: an L1 purge names an entry by its key
        # headers exactly, and "absent" must stay absent.
        self.control = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.cfg.peers.timeout_seconds),
            skip_auto_headers=("Accept-Encoding", "User-Agent"),
        )
        self.watcher.poll()
        self._tasks.append(asyncio.create_task(self.watcher.run(self.cfg.routing_poll_seconds)))
        self._tasks.append(asyncio.create_task(self._probe_loop()))
        self._tasks.append(asyncio.create_task(self._rules_loop()))
        if self.cfg.tls is not None and self.cfg.tls.certificates:
            self._tasks.append(asyncio.create_task(self._tls_reload_loop()))

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
        # Reachable through the peers Service: aiohttp (3.14) arms keepalive_timeout when a
        # connection opens and after each answer, and closes a connection still waiting for a
        # whole request head when it fires: that is the admin port's header timeout.
        admin = web.AppRunner(admin_app, access_log=None, shutdown_timeout=5,
                              handle_signals=False,
                              keepalive_timeout=self.cfg.admin_header_timeout_seconds)
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

    def _tls_fingerprint(self) -> str:
        assert self.cfg.tls is not None
        h = hashlib.sha256()
        for c in self.cfg.tls.certificates:
            for f in (c.cert_file, c.key_file):
                try:
                    h.update(Path(f).read_bytes())
                except OSError:
                    h.update(b"<missing>")
        return h.hexdigest()

    async def _tls_reload_loop(self) -> None:
        """A kubernetes.io/tls Secret changed (cert-manager renewed it; the kubelet swaps the
        mounted files): reload nginx with SIGHUP - new workers, new certificate, no dropped
        connection, no restart."""
        assert self.cfg.tls is not None
        seen = self._tls_fingerprint()
        while True:
            await asyncio.sleep(self.cfg.tls.reload_poll_seconds)
            now = self._tls_fingerprint()
            if now == seen:
                continue
            try:
                pid = int(Path(self.cfg.nginx.pid_file).read_text().strip())
                os.kill(pid, signal.SIGHUP)
            except (OSError, ValueError) as e:
                log.warning("certificates changed but nginx could not be reloaded: %s", e)
                continue  # try again next round
            seen = now
            self.m.tls_reloads.inc()
            log.info("certificates changed: nginx reloaded")

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
        raw_path, _, raw_query = request.raw_path.partition("?")
        try:
            # the one canonical target: L2 key, origin request, L1 index, purge
            path, query = canonical_path(raw_path), check_query(raw_query)
        except BadTarget as e:
            return _short(400, f"400 Bad Request: {e}"), "bad-request"
        # nginx keys L1 on the raw target: it may keep only answers to canonical targets
        l1_ok = path == raw_path and query == raw_query
        hdrs = request.headers  # case-insensitive: lower-case lookups work
        if request.method not in ("GET", "HEAD"):
            return await self._pass_through(request, path, query, hdrs), "pass"
        policy = self.cfg.cache_policy
        if (policy.cookies == "bypass" and "cookie" in hdrs) or (
                policy.authorization == "bypass" and "authorization" in hdrs):
            return await self._direct(request, path, query, hdrs, personal=True), "pass"
        ck = cache_key(policy.cache_key, host, path, query, hdrs)
        now = time.time()
        entry, _ = await self._lookup(ck, hdrs)
        stale: StoredObject | None = None
        base: StoredObject | None = None  # what a conditional fetch may revalidate
        if isinstance(entry, StoredObject):
            state = entry.state(now)
            if state == "fresh":
                self.m.hit("l2")
                return self._answer(request, entry, "l2", now, ck, hdrs, l1_ok), "l2-hit"
            if state == "stale-revalidate":
                self.m.hit("l2-stale")
                self._refresh_in_background(ck, path, query, hdrs, entry)
                return self._answer(request, entry, "l2-stale", now, ck, hdrs, l1_ok), \
                    "l2-stale"
            if state == "stale":
                stale = entry
            base = entry
        if isinstance(entry, PassMarker):
            return await self._direct(request, path, query, hdrs), "pass"

        outcome = await self._fill_collapsed(ck, path, query, hdrs, base)
        now = time.time()
        if outcome.kind == "stored" and outcome.obj is not None:
            tier = outcome.tier
            return self._answer(request, outcome.obj, tier, now, ck, hdrs, l1_ok), tier
        if outcome.kind == "pass":
            s = outcome.stream
            if s is not None and not s.taken:
                s.taken = True
                return await self._stream(request, s), "pass"
            return await self._direct(request, path, query, hdrs), "pass"
        # origin failed
        if stale is not None:
            self.m.hit("l2-stale-if-error")
            return self._answer(request, stale, "stale-if-error", now, ck, hdrs, False), "stale"
        return _short(outcome.status, f"{outcome.status} {outcome.reason}"), "error"

    async def _lookup(self, ck: CacheKey, hdrs: Mapping[str, str]) -> tuple[Any, str]:
        entry, tier = await self.l2.get(ck.key)
        key = ck.key
        if isinstance(entry, VaryMarker):
            key = ck.variant(entry.vary, hdrs)
            if tier is None:
                return None, key
            try:
                entry = await tier.get(key)
            except Exception:
                return None, key
        if isinstance(entry, StoredObject) and not entry.matches(hdrs):
            return None, key  # never hand a request another request's variant
        return entry, key

    def _answer(self, request: web.BaseRequest, obj: StoredObject, tier: str, now: float,
                ck: CacheKey, hdrs: Mapping[str, str], l1_ok: bool) -> web.Response:
        headers = answer_headers(obj, now, self.cfg.cache_policy.l1_max_ttl_seconds, tier)
        l1_ttl = l1_seconds(obj, now, self.cfg.cache_policy.l1_max_ttl_seconds) if l1_ok else 0
        if l1_ttl > 0 and self.cfg.nginx_control_url:
            # nginx will keep this answer: remember how to name it in a purge; past the index's
            # byte budget nginx is told not to keep it (it could not be purged)
            names = (*self.cfg.cache_policy.cache_key.vary_headers, *obj.vary)
            kh = tuple((n, hdrs[n]) for n in names if n in hdrs)
            path, _, q = request.raw_path.partition("?")
            if not self.l1.record(ck.url, repr(kh), L1Entry(
                    path, q, kh, now + l1_ttl + self.cfg.cache_policy.l1_keep_seconds)):
                l1_ttl = 0
        if l1_ttl == 0:
            headers = [(k, "0" if k == "X-Accel-Expires" else v) for k, v in headers]
        if not_modified(obj, hdrs):
            keep = {"etag", "cache-control", "expires", "last-modified", "vary", "date"}
            h304 = [(k, v) for k, v in headers if k.lower() in keep or k in
                    ("Age", "X-Accel-Expires", "X-Aerocdn-Tier")]
            return web.Response(status=304, headers=CIMultiDict(h304))
        self.m.sent(tier, len(obj.body))
        return web.Response(status=obj.status, body=obj.body, headers=CIMultiDict(headers))

    def _refresh_in_background(self, ck: CacheKey, path: str, query: str,
                               hdrs: Mapping[str, str], base: StoredObject) -> None:
        if ck.key in self._inflight_fills:
            return
        task = self._start_fill(ck, path, query, hdrs, ck.key, base)

        def done(t: asyncio.Task[FillOutcome]) -> None:
            self._background.discard(t)
            if not t.cancelled() and t.exception() is None:
                s = t.result().stream
                if s is not None and not s.taken:
                    s.taken = True
                    s.discard()

        self._background.add(task)
        task.add_done_callback(done)

    def _start_fill(self, ck: CacheKey, path: str, query: str, hdrs: Mapping[str, str],
                    key: str, base: StoredObject | None) -> asyncio.Task[FillOutcome]:
        task = asyncio.create_task(self._fill(ck, path, query, CIMultiDict(hdrs), base))
        self._inflight_fills[key] = task
        task.add_done_callback(lambda _t: self._inflight_fills.pop(key, None))
        return task

    async def _fill_collapsed(self, ck: CacheKey, path: str, query: str,
                              hdrs: Mapping[str, str],
                              base: StoredObject | None) -> FillOutcome:
        """Join a fill in flight for the same key - but take its object only if it is the
        variant this request selects (the answer's Vary); else fill our own variant, joining
        a fill of that variant if one runs."""
        key = ck.key
        for _ in range(4):
            task = self._inflight_fills.get(key)
            if task is None:
                break
            self.m.collapsed.labels("pod").inc()
            outcome = await asyncio.shield(task)
            if outcome.kind == "stored" and outcome.obj is not None:
                if outcome.obj.matches(hdrs):
                    return FillOutcome("stored", outcome.obj, tier="l2-collapsed")
                key = ck.variant(outcome.obj.vary, hdrs)
                continue
            if outcome.kind == "pass":
                return FillOutcome("pass")  # no stream: fetch our own
            return outcome
        return await asyncio.shield(self._start_fill(ck, path, query, hdrs, key, base))

    async def _fill(self, ck: CacheKey, path: str, query: str,
                    hdrs: Mapping[str, str], base: StoredObject | None) -> FillOutcome:
        lock = LockResult(None, True)
        if self.shared_l2:
            lock = await self.l2.acquire_lock(ck.key, self.owner, self.cfg.lock_ttl_seconds)
            if not lock.acquired:
                self.m.collapsed.labels("region").inc()
                waited = await self._wait_for_other_pod(ck, hdrs)
                if waited is not None:
                    return waited
        try:
            return await self._fetch_and_store(ck, path, query, hdrs, lock, base)
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
            entry, tier = await self.l2.get(ck.key)
            if isinstance(entry, VaryMarker):
                # the holder's answer varies: take only our own variant, and if that is not
                # there, the holder fetched another one - fetch ours now rather than wait
                if tier is None:
                    return None
                try:
                    entry = await tier.get(ck.variant(entry.vary, hdrs))
                except Exception:
                    return None
                if not isinstance(entry, StoredObject):
                    return None
            now = time.time()
            if isinstance(entry, StoredObject) and entry.state(now) == "fresh":
                if not entry.matches(hdrs):
                    return None
                return FillOutcome("stored", entry, tier="l2-collapsed")
            if isinstance(entry, PassMarker):
                return FillOutcome("pass")
        return None

    def _origin_request(self, path: str, query: str, hdrs: Mapping[str, str], *,
                        extra: frozenset[str] = frozenset()) -> tuple[yarl.URL, CIMultiDict[str]]:
        """The origin request for the canonical target: only the allow-list (key headers,
        origin.forwardHeaders, Authorization, Cookie when the policy forwards it) goes out."""
        q = normalize_query(self.cfg.cache_policy.cache_key, query)
        url = self._origin_url(path, q)
        allowed = self._forward | extra
        out: CIMultiDict[str] = CIMultiDict(
            (k, v) for k, v in hdrs.items() if k.lower() in allowed
        )
        out["Host"] = self.cfg.origin.host_header or hdrs.get("host", "")
        via = hdrs.get("via")
        out["Via"] = (via + ", " if via else "") + self.cfg.nginx.via
        return url, out

    def _origin_url(self, path: str, query: str) -> yarl.URL:
        """Exactly the keyed bytes (``encoded=True``: no client-side re-quoting, which could
        make the origin answer a different target than the key names)."""
        return yarl.URL(self.cfg.origin.url + path + ("?" + query if query else ""),
                        encoded=True)

    def _deadline(self) -> float:
        return asyncio.get_running_loop().time() + self.cfg.origin.fetch_timeout_seconds

    async def _fetch_and_store(self, ck: CacheKey, path: str, query: str,
                               hdrs: Mapping[str, str], lock: LockResult,
                               base: StoredObject | None = None) -> FillOutcome:
        assert self.session is not None
        url, headers = self._origin_request(path, query, hdrs)
        if base is not None:  # revalidate what we hold (no-cache, expired) when we can
            etag = next((v for k, v in base.headers if k.lower() == "etag"), None)
            lm = next((v for k, v in base.headers if k.lower() == "last-modified"), None)
            if etag:
                headers["If-None-Match"] = etag
            elif lm:
                headers["If-Modified-Since"] = lm
            else:
                base = None
        policy = self.cfg.cache_policy
        deadline = self._deadline()
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout_at(deadline):
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
        if resp.status == 304 and base is not None:
            resp.release()
            self.m.origin_fetches.labels("revalidated").inc()
            fresh = dict((k.lower(), v) for k, v in store_headers(rheaders))
            merged = tuple((k, fresh.pop(k.lower(), v)) for k, v in base.headers) + tuple(
                (k, v) for k, v in store_headers(rheaders) if k.lower() in fresh)
            decision = decide_storage("GET", hdrs, base.status, merged, policy, now,
                                      self._unkeyed)
            if not decision.store:
                await self._mark_pass(ck, lock)
                return FillOutcome("stored", dataclasses.replace(
                    base, headers=merged, stored_at=now, fresh_until=now, revalidate=True,
                    no_stale=True), tier="origin")
            return await self._store(ck, hdrs, lock, decision, base.status, merged,
                                     base.body, now)
        decision = decide_storage("GET", hdrs, resp.status, rheaders, policy, now, self._unkeyed)
        size = resp.content_length
        too_big = size is not None and size > policy.max_object_size_bytes
        if not decision.store or too_big:
            self.m.origin_fetches.labels("pass").inc()
            await self._mark_pass(ck, lock)
            return FillOutcome("pass", stream=OriginStream(resp, b"", decision, deadline=deadline))
        body = bytearray()
        budget = self.fill_budget
        taken = 0
        try:
            async with asyncio.timeout_at(deadline):
                async for chunk in resp.content.iter_chunked(65536):
                    fits = budget.take(len(chunk))
                    body += chunk
                    if fits:
                        taken += len(chunk)
                    if not fits or len(body) > policy.max_object_size_bytes:
                        # too big, or the pod's fill budget is spent: stream, don't store;
                        # what was read stays counted until it is sent
                        self.m.origin_fetches.labels("pass").inc()
                        if fits:
                            await self._mark_pass(ck, lock)
                        stream = OriginStream(resp, body, decision, deadline=deadline,
                                              budget=budget, held=taken)
                        taken = 0
                        return FillOutcome("pass", stream=stream)
        except (TimeoutError, aiohttp.ClientError) as e:
            resp.release()
            self.m.origin_fetches.labels("timeout").inc()
            return FillOutcome(
                "error", status=504,
                reason=f"Gateway Timeout: origin body incomplete ({type(e).__name__})",
            )
        finally:
            budget.give(taken)
        resp.release()
        self.m.origin_fetches.labels("stored").inc()
        # stored as read: no second copy of a body that may be megabytes (never mutated again)
        return await self._store(ck, hdrs, lock, decision, resp.status, rheaders, body, now)

    async def _store(self, ck: CacheKey, hdrs: Mapping[str, str], lock: LockResult,
                     decision: StoreDecision, status: int, rheaders: tuple[tuple[str, str], ...],
                     body: bytes | bytearray, now: float) -> FillOutcome:
        obj = StoredObject(
            status=status,
            headers=store_headers(rheaders),
            body=body,
            url=ck.url,
            stored_at=now,
            fresh_until=now + decision.freshness_seconds,
            stale_while_revalidate=decision.stale_while_revalidate,
            stale_if_error=decision.stale_if_error,
            vary=decision.vary,
            selected=selected_headers(decision.vary, hdrs),
            no_stale=decision.no_stale,
            revalidate=decision.revalidate,
        )
        # an object revalidated on each use is kept like an unlabelled one (defaultTTL)
        ttl = (max(1, self.cfg.cache_policy.default_ttl_seconds) if obj.revalidate
               else obj.record_ttl(now))
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
        """Stream an origin answer that is not stored; bounded by the fetch deadline (past it
        the client's connection is cut: the status line is already out)."""
        resp = s.resp
        deadline = s.deadline if s.deadline is not None else self._deadline()
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
            try:
                if s.head:
                    await out.write(s.head)
            finally:
                s.drop_head()
            try:
                async with asyncio.timeout_at(deadline):
                    async for chunk in resp.content.iter_chunked(65536):
                        await out.write(chunk)
                        sent += len(chunk)
            except (TimeoutError, aiohttp.ClientError):
                self.m.origin_fetches.labels("timeout").inc()
                if request.transport is not None:
                    request.transport.close()
                return out
            await out.write_eof()
            self.m.sent("pass", sent)
            return out
        finally:
            s.discard()

    async def _direct(self, request: web.BaseRequest, path: str, query: str,
                      hdrs: Mapping[str, str], personal: bool = False) -> web.StreamResponse:
        """Fetch without collapsing or storing (hit-for-pass, non-storable responses;
        ``personal``: a Cookie/Authorization request the policy sends past the cache)."""
        assert self.session is not None
        extra = frozenset({"cookie"}) if personal else frozenset()
        url, headers = self._origin_request(path, query, hdrs, extra=extra)
        deadline = self._deadline()
        try:
            async with asyncio.timeout_at(deadline):
                resp = await self.session.get(url, headers=headers, allow_redirects=False)
        except TimeoutError:
            return _short(504, "504 Gateway Timeout: origin did not answer")
        except aiohttp.ClientError:
            return _short(502, "502 Bad Gateway: origin unreachable")
        self.m.origin_fetches.labels("pass").inc()
        decision = StoreDecision(False, "pass")
        return await self._stream(request, OriginStream(resp, b"", decision, deadline=deadline))

    async def _pass_through(self, request: web.BaseRequest, path: str, query: str,
                            hdrs: Mapping[str, str]) -> web.StreamResponse:
        """Methods a cache does not answer (POST, PUT, ...): to the origin, never stored."""
        assert self.session is not None
        extra = _BODY_HEADERS | (frozenset({"cookie"}) if self.cfg.cache_policy.cookies != "strip"
                                 else frozenset())
        _, headers = self._origin_request(path, query, hdrs, extra=extra)
        url = self._origin_url(path, query)  # the full query
        deadline = self._deadline()
        try:
            async with asyncio.timeout_at(deadline):
                resp = await self.session.request(
                    request.method, url, headers=headers,
                    data=request.content if request.body_exists else None,
                    allow_redirects=False,
                )
        except TimeoutError:
            return _short(504, "504 Gateway Timeout: origin did not answer")
        except aiohttp.ClientError:
            return _short(502, "502 Bad Gateway: origin unreachable")
        self.m.origin_fetches.labels("pass").inc()
        return await self._stream(request, OriginStream(resp, b"", StoreDecision(False, "method"),
                                                        deadline=deadline))

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
        """-> (target url-key, prefix?, host, canonical path-and-query).  The target is made
        canonical exactly like a request's (``canonical_path``); what cannot be interpreted
        raises ValueError (400): other keys, wildcards, broken escapes, other schemes."""
        if not isinstance(body, dict) or set(body) - {"url", "prefix"} or \
                len({"url", "prefix"} & body.keys()) != 1:
            raise ValueError('body must be exactly {"url": "..."} or {"prefix": "..."}')
        prefix = "prefix" in body
        value = body["prefix" if prefix else "url"]
        if not isinstance(value, str) or not value:
            raise ValueError("url/prefix must be a non-empty string")
        if "*" in value:
            raise ValueError("wildcards are not supported: purge a prefix with "
                             '{"prefix": "host/path/"}')
        if "#" in value:
            raise ValueError("a purge target has no fragment")
        rest = value
        if "://" in value:
            scheme, rest = value.split("://", 1)
            if scheme.lower() not in ("http", "https"):
                raise ValueError(f"scheme {scheme!r}: only http and https URLs are cached")
        host, slash, pq = rest.partition("/")
        host = host.lower().split(":", 1)[0]
        if not self.cfg.serves_host(host):
            raise ValueError(f"host {host!r} is not served by ContentEdge "
                             f"{self.cfg.namespace}/{self.cfg.content_edge}")
        path, _, query = ("/" + pq).partition("?")
        path = canonical_path(path)
        query = check_query(query)
        if prefix:
            if not slash:
                path = "/"
            pq = path + ("?" + query if query else "")
            return host + pq, True, host, pq
        ck = cache_key(self.cfg.cache_policy.cache_key, host, path, query, {})
        q = normalize_query(self.cfg.cache_policy.cache_key, query)
        return ck.url, False, host, path + ("?" + q if q else "")

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
        me = {"l2": l2, "l1": l1, "ok": all(v["status"] == "ok" for v in l2.values()) and
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
        if not prefix and not any(e.headers == () for e in entries):
            path, _, q = pq.partition("?")
            entries.append(L1Entry(path, q, (), 0.0))  # the entry without key headers
        counts = {"purged": 0, "absent": 0, "failed": 0}

        base = self.cfg.nginx_control_url

        async def one(e: L1Entry) -> None:
            assert self.control is not None
            url = yarl.URL(base + "/purge" + e.path + ("?" + e.query if e.query else ""),
                           encoded=True)  # the exact bytes nginx keyed on
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
