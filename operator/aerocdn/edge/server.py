"""The request path: nginx's upstream on loopback answers each request from L2 or through a
fill (``aerocdn.edge.fill``) - with cachePolicy.slices, in slices (``aerocdn.edge.slicepath``)
- and records what nginx may keep (``L1Index``, for purges).

``RequestPath.handle`` is the one handler of the upstream listener (``aerocdn.edge.app``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from aerocdn.edge.config import EdgeConfig
from aerocdn.edge.fill import Filler, short_answer
from aerocdn.edge.l2 import TierSet
from aerocdn.edge.metrics import EdgeMetrics
from aerocdn.edge.origins import choose_route
from aerocdn.edge.policy import (
    BadTarget,
    CacheKey,
    StoredObject,
    VaryMarker,
    answer_headers,
    cache_key,
    canonical_path,
    check_query,
    l1_seconds,
    not_modified,
)
from aerocdn.edge.purge import L1Entry, L1Index
from aerocdn.edge.slicepath import SlicePath
from aerocdn.edge.tiers import PassMarker

log = logging.getLogger("aerocdn.edge")

# nginx names the location (route) a request went through: "-" for requests no route matches,
# else the index in routes[] (render/templates/nginx.conf.j2)
ROUTE_HEADER = "X-Aerocdn-Route"


def route_id(index: int | None) -> str:
    return "-" if index is None else str(index)


class NginxRequest(web.BaseRequest):
    """A request on the upstream port, from this pod's nginx.  aiohttp adds ``Date`` and
    ``Server`` to every answer (or keeps the origin's); nginx sends a Date of its own and no
    upstream Server (``proxy_hide_header``'s defaults), yet stores both lines with every L1
    answer and parses them again on every L1 hit, about 1,000 of the ~53,000 instructions an
    HTTP/2 hit costs (docs/benchmarks-edge.md).  Dropped here, after aiohttp has added them
    and before the head is written."""

    __slots__ = ()

    async def _prepare_hook(self, response: web.StreamResponse) -> None:
        h = response.headers
        h.popall("Date", None)
        h.popall("Server", None)


def nginx_request_factory(loop: asyncio.AbstractEventLoop) -> Any:
    """``web.Server(request_factory=...)`` making ``NginxRequest``s."""

    def make(message: Any, payload: Any, protocol: Any, writer: Any,
             task: asyncio.Task[None]) -> web.BaseRequest:
        return NginxRequest(message, payload, protocol, writer, task, loop)

    return make


@dataclass
class RoutePath:
    """The request path of one route: its config (cache policy), fills (origin group) and
    slices."""

    index: int | None  # routes[index]; None: requests no route matches
    cfg: EdgeConfig
    filler: Filler
    slices: SlicePath


class RequestPath:
    """``handle``: one request from nginx - the Host and target checked and made canonical,
    its route chosen (longest pathPrefix), then an L2 answer (fresh, or stale while a refresh
    runs), else a fill; ``inflight`` counts the requests being answered."""

    def __init__(self, cfg: EdgeConfig, m: EdgeMetrics, l2: TierSet, l1: L1Index,
                 filler: Filler):
        self.cfg = cfg
        self.m = m
        self.l2 = l2
        self.l1 = l1
        self.filler = filler
        groups = {o.group for o in cfg.origin_list}
        self.default = self._route(None) if filler.group in groups else None
        self.routes = [self._route(i) for i in range(len(cfg.routes))]
        self.inflight = 0
        self._hosts_seen: dict[str, bool] = {}

    def _route(self, index: int | None) -> RoutePath:
        route = self.cfg.routes[index] if index is not None else None
        rcfg = self.cfg.for_route(route)
        group = route.origin if route is not None else self.filler.group
        f = self.filler if rcfg is self.cfg and group == self.filler.group else \
            self.filler.view(rcfg, group)
        return RoutePath(index, rcfg, f, SlicePath(rcfg, self.m, self.l2, self.l1, f))

    @property
    def slice_paths(self) -> list[SlicePath]:
        return [r.slices for r in ([self.default] if self.default else []) + self.routes]

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
            return short_answer(500, "500 internal error in aerocdn edge")
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
            return short_answer(
                421, "421 Misdirected Request: this edge does not serve this host"), "misdirected"
        raw_path, _, raw_query = request.raw_path.partition("?")
        try:
            # the one canonical target: L2 key, origin request, L1 index, purge
            path, query = canonical_path(raw_path), check_query(raw_query)
        except BadTarget as e:
            return short_answer(400, f"400 Bad Request: {e}"), "bad-request"
        # nginx keys L1 on the raw target: it may keep only answers to canonical targets
        # ("/a?" is not: its key would differ from the one a purge of "/a" names)
        l1_ok = request.raw_path == path + ("?" + query if query else "")
        hdrs = request.headers  # case-insensitive: lower-case lookups work
        rp = self.default
        if self.routes:
            index = choose_route(self.cfg.routes, path)
            if index is not None:
                rp = self.routes[index]
            # nginx chose its location on its own reading of the path ($uri, decoded): it
            # may keep an answer only when that is the route chosen here, so an L1 entry
            # always has its route's L1 settings
            sent = hdrs.get(ROUTE_HEADER)
            if sent is not None and sent != route_id(index):
                l1_ok = False
        assert rp is not None  # without a 'default' group a route for / matches every path
        return await self._serve(request, rp, host, path, query, hdrs, l1_ok)

    async def _serve(self, request: web.BaseRequest, rp: RoutePath, host: str, path: str,
                     query: str, hdrs: Mapping[str, str],
                     l1_ok: bool) -> tuple[web.StreamResponse, str]:
        filler = rp.filler
        if request.method not in ("GET", "HEAD"):
            return await filler.pass_through(request, path, query, hdrs), "pass"
        policy = rp.cfg.cache_policy
        if (policy.cookies == "bypass" and "cookie" in hdrs) or (
                policy.authorization == "bypass" and "authorization" in hdrs):
            return await filler.direct(request, path, query, hdrs, personal=True), "pass"
        ck = cache_key(policy.cache_key, host, path, query, hdrs)
        if policy.slices.enabled:
            return await rp.slices.handle(request, ck, path, query, hdrs, l1_ok)
        now = time.time()
        entry, _ = await self._lookup(ck, hdrs)
        stale: StoredObject | None = None
        base: StoredObject | None = None  # what a conditional fetch may revalidate
        if isinstance(entry, StoredObject):
            state = entry.state(now)
            if state == "fresh":
                self.m.hit("l2")
                return self._answer(rp.cfg, request, entry, "l2", now, ck, hdrs, l1_ok), "l2-hit"
            if state == "stale-revalidate":
                self.m.hit("l2-stale")
                filler.refresh_in_background(ck, path, query, hdrs, entry)
                return self._answer(rp.cfg, request, entry, "l2-stale", now, ck, hdrs, l1_ok), \
                    "l2-stale"
            if state == "stale":
                stale = entry
            base = entry
        if isinstance(entry, PassMarker):
            return await filler.direct(request, path, query, hdrs), "pass"

        outcome = await filler.fill(ck, path, query, hdrs, base)
        now = time.time()
        if outcome.kind == "stored" and outcome.obj is not None:
            tier = outcome.tier
            return self._answer(rp.cfg, request, outcome.obj, tier, now, ck, hdrs, l1_ok), tier
        if outcome.kind == "pass":
            s = outcome.stream
            if s is not None and not s.taken:
                s.taken = True
                return await filler.stream(request, s), "pass"
            return await filler.direct(request, path, query, hdrs), "pass"
        # origin failed
        if stale is not None:
            self.m.hit("l2-stale-if-error")
            return self._answer(rp.cfg, request, stale, "stale-if-error", now, ck, hdrs,
                                False), "stale"
        return short_answer(outcome.status, f"{outcome.status} {outcome.reason}"), "error"

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

    def _answer(self, cfg: EdgeConfig, request: web.BaseRequest, obj: StoredObject, tier: str,
                now: float, ck: CacheKey, hdrs: Mapping[str, str], l1_ok: bool) -> web.Response:
        """``cfg``: the route's (its L1 freshness cap)."""
        policy = cfg.cache_policy
        headers = answer_headers(obj, now, policy.l1_max_ttl_seconds, tier)
        l1_ttl = l1_seconds(obj, now, policy.l1_max_ttl_seconds) if l1_ok else 0
        if l1_ttl > 0 and cfg.nginx_control_url:
            # nginx will keep this answer: remember how to name it in a purge; past the index's
            # byte budget nginx is told not to keep it (it could not be purged)
            names = (*policy.cache_key.vary_headers, *obj.vary)
            kh = tuple((n, hdrs[n]) for n in names if n in hdrs)
            path, _, q = request.raw_path.partition("?")
            if not self.l1.record(ck.url, repr(kh), L1Entry(
                    path, q, kh, now + l1_ttl + policy.l1_keep_seconds,
                    obj.tags)):
                l1_ttl = 0
        if l1_ttl == 0:
            headers = [(k, "0" if k == "X-Accel-Expires" else v) for k, v in headers]
        if not_modified(obj, hdrs):
            keep = {"etag", "cache-control", "expires", "last-modified", "vary", "date"}
            h304 = [(k, v) for k, v in headers if k.lower() in keep or k in
                    ("X-Accel-Expires", "X-Aerocdn-Born")]
            return web.Response(status=304, headers=CIMultiDict(h304))
        self.m.sent(tier, len(obj.body))
        return web.Response(status=obj.status, body=obj.body, headers=CIMultiDict(headers))
