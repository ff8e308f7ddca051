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
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from aerocdn.edge.config import EdgeConfig
from aerocdn.edge.fill import Filler, short_answer
from aerocdn.edge.l2 import TierSet
from aerocdn.edge.metrics import EdgeMetrics
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


class RequestPath:
    """``handle``: one request from nginx - the Host and target checked and made canonical,
    then an L2 answer (fresh, or stale while a refresh runs), else a fill; ``inflight`` counts
    the requests being answered."""

    def __init__(self, cfg: EdgeConfig, m: EdgeMetrics, l2: TierSet, l1: L1Index,
                 filler: Filler):
        self.cfg = cfg
        self.m = m
        self.l2 = l2
        self.l1 = l1
        self.filler = filler
        self.slices = SlicePath(cfg, m, l2, l1, filler)
        self.inflight = 0
        self._hosts_seen: dict[str, bool] = {}

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
        if request.method not in ("GET", "HEAD"):
            return await self.filler.pass_through(request, path, query, hdrs), "pass"
        policy = self.cfg.cache_policy
        if (policy.cookies == "bypass" and "cookie" in hdrs) or (
                policy.authorization == "bypass" and "authorization" in hdrs):
            return await self.filler.direct(request, path, query, hdrs, personal=True), "pass"
        ck = cache_key(policy.cache_key, host, path, query, hdrs)
        if policy.slices.enabled:
            return await self.slices.handle(request, ck, path, query, hdrs, l1_ok)
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
                self.filler.refresh_in_background(ck, path, query, hdrs, entry)
                return self._answer(request, entry, "l2-stale", now, ck, hdrs, l1_ok), \
                    "l2-stale"
            if state == "stale":
                stale = entry
            base = entry
        if isinstance(entry, PassMarker):
            return await self.filler.direct(request, path, query, hdrs), "pass"

        outcome = await self.filler.fill(ck, path, query, hdrs, base)
        now = time.time()
        if outcome.kind == "stored" and outcome.obj is not None:
            tier = outcome.tier
            return self._answer(request, outcome.obj, tier, now, ck, hdrs, l1_ok), tier
        if outcome.kind == "pass":
            s = outcome.stream
            if s is not None and not s.taken:
                s.taken = True
                return await self.filler.stream(request, s), "pass"
            return await self.filler.direct(request, path, query, hdrs), "pass"
        # origin failed
        if stale is not None:
            self.m.hit("l2-stale-if-error")
            return self._answer(request, stale, "stale-if-error", now, ck, hdrs, False), "stale"
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
                    path, q, kh, now + l1_ttl + self.cfg.cache_policy.l1_keep_seconds,
                    obj.tags)):
                l1_ttl = 0
        if l1_ttl == 0:
            headers = [(k, "0" if k == "X-Accel-Expires" else v) for k, v in headers]
        if not_modified(obj, hdrs):
            keep = {"etag", "cache-control", "expires", "last-modified", "vary", "date"}
            h304 = [(k, v) for k, v in headers if k.lower() in keep or k in
                    ("Age", "X-Accel-Expires", "X-Aerocdn-Tier", "X-Aerocdn-Born")]
            return web.Response(status=304, headers=CIMultiDict(h304))
        self.m.sent(tier, len(obj.body))
        return web.Response(status=obj.status, body=obj.body, headers=CIMultiDict(headers))
