"""``aerocdn edge``: nginx's upstream on loopback — L2 (Aerospike or memory), then the origin.

Imperative shell around the pure parts (policy, routing, breaker): aiohttp + uvloop server,
aiohttp origin client, tier I/O, purge fan-out, probes, metrics.  Entry points: ``main(argv)``
(``aerocdn edge --config FILE``) and ``Edge`` (tests, bench).
"""

# The edge's modules: app (this: the process - listeners, background loops, admin endpoints,
# startup and shutdown), server (the request path), fill (origin fetches, collapsing, L2
# stores), purge (the purge endpoint and its fan-out), and the pure parts they use.

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aerocdn.edge.breaker import CircuitBreaker
from aerocdn.edge.config import EdgeConfig, EdgeConfigError, load_edge_config
from aerocdn.edge.fill import Filler
from aerocdn.edge.l2 import TierSet
from aerocdn.edge.metrics import EdgeMetrics
from aerocdn.edge.peers import PeerSource, peer_source
from aerocdn.edge.purge import L1Index, Purger
from aerocdn.edge.routing import PlanWatcher
from aerocdn.edge.server import RequestPath, nginx_request_factory
from aerocdn.edge.tiers import AerospikeTier, MemoryTier, Tier

log = logging.getLogger("aerocdn.edge")


def _split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


async def stop_tasks(tasks: list[asyncio.Task[Any]], rounds: int = 20,
                     wait: float = 0.5) -> None:
    """Cancel background loops and wait for them, bounded. One cancel is not always enough:
    a loop that catches Exception around a call can lose the cancellation when the call
    converts it (Python 3.11's wait_for returns a result that arrives together with the
    cancel), and then sleeps and loops again - seen as an edge whose stop never returned.
    So cancel again until every task is done, and give up after ``rounds`` (logged)."""
    pending = {t for t in tasks if not t.done()}
    for _ in range(rounds):
        if not pending:
            break
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=wait)
    for t in pending:
        log.error("edge: background task %s did not stop", t.get_name())
    for t in tasks:
        if t.done() and not t.cancelled() and t.exception() is not None:
            log.warning("edge: background task %s ended with %r", t.get_name(), t.exception())


class Edge:
    """One edge process: L2 tiers, routing plan watcher, request path, fills, purge; the
    upstream and admin listeners (``start``) and the drain (``stop``).  ``l2``: tiers to use
    instead of those the config names (tests: one memory tier shared by two pods)."""

    def __init__(self, cfg: EdgeConfig, *, peers: PeerSource | None = None,
                 probe_interval: float = 1.0, l2: TierSet | None = None):
        self.cfg = cfg
        self.m = EdgeMetrics()
        self.peers = peers or peer_source(cfg.peers, cfg.admin_listen)
        self.probe_interval = probe_interval
        names = tuple(cfg.cache_clusters)
        self.watcher = PlanWatcher(cfg.routing_plan_path, cfg.region, names,
                                   on_change=self._routing_changed)
        if l2 is None:
            l2 = self._configured_l2()
        self.l2 = l2
        # Aerospike clusters are shared by the region's pods (locks, purge rules); the memory
        # tier is the pod's own
        self.shared_l2 = any(t.shared for t in l2.tiers.values())
        b = cfg.budgets
        self.l1 = L1Index(max_bytes=b.l1_index)
        self.filler = Filler(cfg, self.m, l2, shared=self.shared_l2)
        self.request_path = RequestPath(cfg, self.m, l2, self.l1, self.filler)
        self.purger = Purger(cfg, self.m, l2, self.l1, self.peers)
        # an object served in slices changed at the origin: this pod's nginx forgets its
        # slices (the local part of a purge of its URL)
        for sp in self.request_path.slice_paths:
            sp.on_change = (
                lambda url, host, pq: self.purger._purge_nginx(url, False, host, pq))
        self._tasks: list[asyncio.Task[Any]] = []
        self._runners: list[web.BaseRunner] = []
        self.control: aiohttp.ClientSession | None = None
        self.draining = False
        self.l1_ok: bool | None = None
        self.bound: dict[str, tuple[str, int]] = {}
        self.m.inflight.set_function(lambda: self.request_path.inflight)
        memory = self.l2.tiers.get("memory")
        self.m.budget_used.labels("l1-index").set_function(lambda: self.l1.bytes)
        self.m.budget_used.labels("fills").set_function(lambda: self.filler.budget.used)
        if isinstance(memory, MemoryTier):
            self.m.budget_used.labels("memory-tier").set_function(lambda: memory.bytes)
            self.m.budget_limit.labels("memory-tier").set(memory.max_bytes)
        self.m.budget_limit.labels("l1-index").set(b.l1_index)
        self.m.budget_limit.labels("fills").set(b.fills)
        for name in self.filler.origins.origins:
            self.m.origin_up.labels(name).set_function(self._origin_up(name))

    def _origin_up(self, name: str) -> Callable[[], float]:
        breaker = self.filler.origins.breaker(name)
        return lambda: 1.0 if breaker.state(time.monotonic()) == "closed" else 0.0

    def _configured_l2(self) -> TierSet:
        cfg = self.cfg
        tiers: dict[str, Tier] = {}
        if cfg.cache_clusters:
            for name, ref in cfg.cache_clusters.items():
                tiers[name] = AerospikeTier(
                    name, ref.seeds, ref.namespace, cfg.cluster_set(name),
                    timeout_ms=cfg.tier_timeout_ms, threads=cfg.tier_threads,
                    rules_max_age=float(cfg.cache_policy.l2_max_ttl_seconds),
                    user=ref.user, password_file=ref.password_file,
                )
            order = self._plan_order
        else:
            tiers["memory"] = MemoryTier(cfg.memory_tier_bytes)

            def order() -> tuple[str, ...]:
                return ("memory",)

        breakers = {n: CircuitBreaker(cfg.circuit_failures, cfg.circuit_open_seconds)
                    for n in tiers}
        return TierSet(tiers, breakers, order, on_error=self._tier_error)

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
        self.filler.start()
        # No automatic Accept-Encoding / User-Agent: an L1 purge names an entry by its key
        # headers exactly, and "absent" must stay absent.
        self.control = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.cfg.peers.timeout_seconds),
            skip_auto_headers=("Accept-Encoding", "User-Agent"),
        )
        self.purger.control = self.control
        self.watcher.poll()
        self._tasks.append(asyncio.create_task(self.watcher.run(self.cfg.routing_poll_seconds)))
        self._tasks.append(asyncio.create_task(self._probe_loop()))
        self._tasks.append(asyncio.create_task(self._rules_loop()))
        if self.cfg.tls is not None and self.cfg.tls.certificates:
            self._tasks.append(asyncio.create_task(self._tls_reload_loop()))

        # The request path is a low-level aiohttp server: one handler, no router or middleware
        # (measured: ~20% of the per-request cost of an L2 hit).
        upstream = web.ServerRunner(
            web.Server(self.request_path.handle,
                       request_factory=nginx_request_factory(asyncio.get_running_loop()),
                       max_field_size=self.cfg.max_request_header_bytes),
            shutdown_timeout=self.cfg.drain_seconds, handle_signals=False,
        )
        admin_app = web.Application()
        admin_app.router.add_get("/healthz", self.healthz)
        admin_app.router.add_get("/readyz", self.readyz)
        admin_app.router.add_get("/metrics", self.metrics)
        admin_app.router.add_get("/origins", self.origins)
        admin_app.router.add_post("/purge", self.purger.handle)
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
        await stop_tasks(self._tasks)
        for sp in self.request_path.slice_paths:
            await sp.close()
        await self.filler.close()
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
            "origins": self.filler.origins.status(time.monotonic()),
            "l1": {None: "not configured", True: "ok", False: "unreachable"}[self.l1_ok],
            "degraded": not l2_up,
            **({"reason": "no L2 cluster answers: serving L1 + origin"} if not l2_up else {}),
        }

    async def readyz(self, request: web.Request) -> web.Response:
        detail = self.ready_detail()
        return web.json_response(detail, status=200 if detail["ready"] else 503)

    async def origins(self, request: web.Request) -> web.Response:
        """Each origin's circuit (closed, open, half-open) and last error: what the operator
        polls for the ContentEdge's status.origins."""
        return web.json_response({"contentEdge": f"{self.cfg.namespace}/{self.cfg.content_edge}",
                                  "region": self.cfg.region,
                                  "origins": self.filler.origins.status(time.monotonic())})

    async def metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.m.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


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


def pin_malloc_thresholds() -> bool:
    """Make glibc give large buffers (object bodies) back to the OS when they are freed, and
    keep every thread's allocations in one arena.

    By default glibc raises its mmap threshold to the size of the largest block freed (up to
    32 MiB), after which multi-MiB bodies come from the heap and their memory stays in RSS
    after eviction: the byte budgets held on paper while RSS crept past the limit
    (tests/edge/test_edge_hostile.py).  Setting the thresholds explicitly turns that
    adjustment off.

    One arena: the Aerospike client's threads create every L2 hit's body (and the client's
    copy of it) in their own arenas; with the low trim threshold above each such small arena
    gave its top back (madvise) at nearly every free and faulted it in again at the next hit
    (~24 page faults per 64 KiB L2 hit, ~10% of the edge's CPU; 1 per hit with one arena:
    docs/benchmarks-edge.md).  The GIL already serialises those threads, so the shared
    arena's lock costs little.  Must run before any thread allocates.  No-op where glibc is
    not the allocator."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8
        ok = libc.mallopt(m_mmap_threshold, 128 * 1024) == 1
        ok = libc.mallopt(m_arena_max, 1) == 1 and ok
        return bool(libc.mallopt(m_trim_threshold, 256 * 1024) == 1 and ok)
    except (OSError, AttributeError):
        return False


def run(config_path: str) -> None:
    cfg = load_edge_config(config_path)
    pin_malloc_thresholds()
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
