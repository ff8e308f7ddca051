"""Fills: everything the edge fetches from the origin.

A miss is filled once per pod (requests for the same key join the fill in flight) and, with a
shared L2, once per region (an L2 lock; the others read what the holder stores); a storable
answer goes to L2, anything else is streamed to the client that asked and, where the policy
says so, marked hit-for-pass.  Requests the cache does not answer (other methods,
Cookie/Authorization bypass, hit-for-pass) are fetched here too, never stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import logging
import socket
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import yarl
from aiohttp import web
from multidict import CIMultiDict

from aerocdn.edge.config import EdgeConfig, OriginConfig
from aerocdn.edge.l2 import LockResult, TierSet
from aerocdn.edge.metrics import EdgeMetrics
from aerocdn.edge.origins import OriginSet
from aerocdn.edge.policy import (
    CacheKey,
    StoreDecision,
    StoredObject,
    VaryMarker,
    decide_storage,
    normalize_query,
    parse_tags,
    pass_headers,
    selected_headers,
    store_headers,
)
from aerocdn.edge.tiers import PassMarker

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



def short_answer(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text + "\n", headers={"X-Accel-Expires": "0"})


@dataclass(frozen=True)
class OriginFailure:
    """Why an origin request has no answer to hand on (``Filler.origin_request``)."""

    status: int
    reason: str  # "Gateway Timeout: origin did not answer", ...

    def answer(self) -> web.Response:
        return short_answer(self.status, f"{self.status} {self.reason}")


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


class Filler:
    """The origin side of the request path: one origin client session (opened by ``start``),
    the origins with their breakers (``origins``), the fills in flight (``inflight``: key ->
    task) and the pod's fill byte budget.  ``view`` makes the Filler of one route (its cache
    policy, its origin group), sharing all of these."""

    def __init__(self, cfg: EdgeConfig, m: EdgeMetrics, l2: TierSet, *, shared: bool,
                 origins: OriginSet | None = None, group: str = "default"):
        self.cfg = cfg
        self.m = m
        self.l2 = l2
        self.shared_l2 = shared  # one fill per region: an L2 lock while fetching
        self.owner = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.budget = ByteBudget(cfg.budgets.fills)
        self.origins = origins or OriginSet(cfg)
        self.group = group
        self._forwarding()
        self.inflight: dict[str, asyncio.Task[FillOutcome]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._client: list[aiohttp.ClientSession] = []  # one session, shared with views

    @property
    def session(self) -> aiohttp.ClientSession | None:
        return self._client[0] if self._client else None

    def _forwarding(self) -> None:
        """What goes to the origins of the group: the key's headers, Authorization, the
        origins' forwardHeaders (each origin gets only its own: ``_drop``), Cookie when the
        policy forwards it.  An answer is stored only if its Vary names every forwarded
        header outside the key the request carried - of any origin of the group, so the
        decision does not depend on which origin answered."""
        policy = self.cfg.cache_policy
        key_headers = frozenset(policy.cache_key.vary_headers)
        members = self.cfg.group(self.group)
        union = frozenset(h for o in members for h in o.forward_headers)
        extra = set(union) - key_headers
        if policy.cookies == "forward":
            extra.add("cookie")
        extra.discard("authorization")
        self._unkeyed = tuple(sorted(extra))  # forwarded, not keyed: must be named by Vary
        self._forward = key_headers | extra | {"authorization"}
        exempt = key_headers | {"authorization"} | (
            {"cookie"} if policy.cookies == "forward" else set())
        self._drop = {o.name: union - frozenset(o.forward_headers) - exempt for o in members}
        self._fetch_seconds = max((o.fetch_timeout_seconds for o in members), default=60.0)
        self._tags = policy.tag_headers  # kept as the object's tags, never passed on

    def view(self, cfg: EdgeConfig, group: str) -> Filler:
        """The Filler of one route: ``cfg`` carries the route's cache policy, ``group`` its
        origin group; session, origins, budget, fills in flight are this one's (keys name
        the path, so two routes never share one)."""
        f = copy.copy(self)
        f.cfg, f.group = cfg, group
        f._forwarding()
        return f

    def start(self) -> None:
        self._client[:] = [aiohttp.ClientSession(
            auto_decompress=False,
            connector=aiohttp.TCPConnector(limit=512, ttl_dns_cache=30),
            timeout=aiohttp.ClientTimeout(total=None),  # per origin: origin_request
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )]

    async def close(self) -> None:
        """Let background refreshes finish (5 s each at most), then close the session."""
        for t in list(self._background):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(t, 5)
        if self.session is not None:
            await self.session.close()

    def refresh_in_background(self, ck: CacheKey, path: str, query: str,
                              hdrs: Mapping[str, str], base: StoredObject) -> None:
        if ck.key in self.inflight:
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
        task = asyncio.create_task(self._locked_fill(ck, path, query, CIMultiDict(hdrs), base))
        self.inflight[key] = task
        task.add_done_callback(lambda _t: self.inflight.pop(key, None))
        return task

    async def fill(self, ck: CacheKey, path: str, query: str, hdrs: Mapping[str, str],
                   base: StoredObject | None) -> FillOutcome:
        """Join a fill in flight for the same key - but take its object only if it is the
        variant this request selects (the answer's Vary); else fill our own variant, joining
        a fill of that variant if one runs."""
        key = ck.key
        for _ in range(4):
            task = self.inflight.get(key)
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

    async def _locked_fill(self, ck: CacheKey, path: str, query: str,
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
                        extra: frozenset[str] = frozenset()) -> tuple[str, CIMultiDict[str]]:
        """The origin request for the canonical target (path + the query the key keeps):
        only the allow-list (key headers, the group's forwardHeaders, Authorization, Cookie
        when the policy forwards it) goes out; ``origin_request`` adds the origin's URL and
        Host."""
        q = normalize_query(self.cfg.cache_policy.cache_key, query)
        allowed = self._forward | extra
        out: CIMultiDict[str] = CIMultiDict(
            (k, v) for k, v in hdrs.items() if k.lower() in allowed
        )
        out["Host"] = hdrs.get("host", "")
        via = hdrs.get("via")
        out["Via"] = (via + ", " if via else "") + self.cfg.nginx.via
        return path + ("?" + q if q else ""), out

    @staticmethod
    def _origin_url(origin: OriginConfig, target: str) -> yarl.URL:
        """Exactly the keyed bytes (``encoded=True``: no client-side re-quoting, which could
        make the origin answer a different target than the key names)."""
        return yarl.URL(origin.url + target, encoded=True)

    def _deadline(self) -> float:
        """The whole fetch, failovers included: the group's longest fetchTimeoutSeconds."""
        return asyncio.get_running_loop().time() + self._fetch_seconds

    async def _fetch_and_store(self, ck: CacheKey, path: str, query: str,
                               hdrs: Mapping[str, str], lock: LockResult,
                               base: StoredObject | None = None) -> FillOutcome:
        assert self.session is not None
        target, headers = self._origin_request(path, query, hdrs)
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
        resp = await self.origin_request(target, headers, deadline)
        if isinstance(resp, OriginFailure):
            return FillOutcome("error", status=resp.status, reason=resp.reason)
        rheaders = tuple((k, v) for k, v in resp.headers.items())
        now = time.time()
        if resp.status == 304 and base is not None:
            resp.release()
            self.m.origin_fetches.labels("revalidated").inc()
            fresh = dict((k.lower(), v) for k, v in store_headers(rheaders, self._tags))
            merged = tuple((k, fresh.pop(k.lower(), v)) for k, v in base.headers) + tuple(
                (k, v) for k, v in store_headers(rheaders, self._tags) if k.lower() in fresh)
            tags = parse_tags(rheaders, policy.tag_header) or base.tags
            decision = decide_storage("GET", hdrs, base.status, merged, policy, now,
                                      self._unkeyed)
            if not decision.store:
                await self._mark_pass(ck, lock)
                return FillOutcome("stored", dataclasses.replace(
                    base, headers=merged, stored_at=now, fresh_until=now, revalidate=True,
                    no_stale=True, initial_age=0.0), tier="origin")
            return await self._store(ck, hdrs, lock, decision, base.status, merged,
                                     base.body, now, tags)
        decision = decide_storage("GET", hdrs, resp.status, rheaders, policy, now, self._unkeyed)
        size = resp.content_length
        too_big = size is not None and size > policy.max_object_size_bytes
        if not decision.store or too_big:
            self.m.origin_fetches.labels("pass").inc()
            await self._mark_pass(ck, lock)
            return FillOutcome("pass", stream=OriginStream(resp, b"", decision, deadline=deadline))
        body = bytearray()
        budget = self.budget
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
        return await self._store(ck, hdrs, lock, decision, resp.status, rheaders, body, now,
                                 parse_tags(rheaders, policy.tag_header))

    async def _store(self, ck: CacheKey, hdrs: Mapping[str, str], lock: LockResult,
                     decision: StoreDecision, status: int, rheaders: tuple[tuple[str, str], ...],
                     body: bytes | bytearray, now: float,
                     tags: tuple[str, ...] = ()) -> FillOutcome:
        obj = StoredObject(
            status=status,
            headers=store_headers(rheaders, self._tags),
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
            tags=tags,
            initial_age=decision.age,
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

    async def stream(self, request: web.BaseRequest, s: OriginStream) -> web.StreamResponse:
        """Stream an origin answer that is not stored; bounded by the fetch deadline (past it
        the client's connection is cut: the status line is already out)."""
        resp = s.resp
        deadline = s.deadline if s.deadline is not None else self._deadline()
        try:
            out = web.StreamResponse(status=resp.status)
            for k, v in pass_headers(tuple(resp.headers.items()), drop=self._tags):
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

    async def origin_request(self, target: str, headers: CIMultiDict[str], deadline: float, *,
                             method: str = "GET", data: Any = None,
                             refuse_5xx: bool = True) -> aiohttp.ClientResponse | OriginFailure:
        """One request to the route's origin group, answered by ``deadline`` (loop time):
        its response, or why there is none - no answer in time (504), unreachable (502) and,
        with ``refuse_5xx``, a 5xx (502: a cache hands on neither an origin's error page nor
        its Cache-Control).

        Origins are tried in ``OriginSet.plan``'s order, each behind its breaker: a connect
        error, a timeout or a 5xx counts against the origin and the request moves on to the
        next one (GET and HEAD; other methods only when the connection was never made, so
        nothing is sent twice), within ``deadline``.  Counted per origin in the metrics."""
        assert self.session is not None
        loop = asyncio.get_running_loop()
        idempotent = method in ("GET", "HEAD")
        plan = self.origins.plan(self.group, time.monotonic())

        def candidates() -> Iterator[tuple[OriginConfig, str]]:
            # asked one at a time, right before the attempt: allow() starts a half-open
            # trial, which must then have an outcome
            allowed = 0
            for o in plan:
                if ticket := self.origins.breaker(o.name).allow(time.monotonic()):
                    allowed += 1
                    yield o, ticket
            if not allowed:
                yield plan[0], ""  # every circuit open: the preferred origin, all the same

        failure = OriginFailure(502, "Bad Gateway: origin unreachable")
        held: aiohttp.ClientResponse | None = None  # a 5xx kept for the caller if none is better
        tried = 0
        for o, ticket in candidates():
            breaker = self.origins.breaker(o.name)
            if held is not None:
                held.release()
                held = None
            if tried:
                self.m.origin_failovers.inc()
            tried += 1
            h = headers
            drop = self._drop.get(o.name)
            if drop or o.host_header:
                h = CIMultiDict(headers)
                for name in drop or ():
                    h.popall(name, None)
                if o.host_header:
                    h["Host"] = o.host_header
            t0 = time.perf_counter()
            try:
                async with asyncio.timeout_at(deadline):
                    resp = await self.session.request(
                        method, self._origin_url(o, target), headers=h, data=data,
                        allow_redirects=False, ssl=bool(o.tls_verify),
                        timeout=aiohttp.ClientTimeout(
                            total=None, sock_connect=o.connect_timeout_seconds,
                            sock_read=o.read_timeout_seconds))
            except (TimeoutError, aiohttp.ClientError) as e:
                timed_out = isinstance(e, TimeoutError)
                outcome = "timeout" if timed_out else "error"
                breaker.failure(time.monotonic(), f"{type(e).__name__}: {e}"[:200])
                self.m.origin_fetches.labels(outcome).inc()
                self.m.origin_requests.labels(o.name, outcome).inc()
                if not timed_out:
                    log.warning("origin %s (%s%s): %s", o.name, o.url, target[:200], e)
                failure = (OriginFailure(504, "Gateway Timeout: origin did not answer")
                           if timed_out else failure)
                never_sent = isinstance(e, aiohttp.ClientConnectorError
                                        | aiohttp.ConnectionTimeoutError)
                if loop.time() >= deadline or not (idempotent or never_sent):
                    break
                continue
            except BaseException:
                breaker.abandon(ticket)  # cancelled (the client left): no verdict on it
                raise
            self.m.origin_latency.observe(time.perf_counter() - t0)
            if resp.status >= 500:
                breaker.failure(time.monotonic(), f"answered {resp.status}")
                self.m.origin_fetches.labels("5xx").inc()
                self.m.origin_requests.labels(o.name, "5xx").inc()
                failure = OriginFailure(502, f"Bad Gateway: origin answered {resp.status}")
                if refuse_5xx:
                    resp.release()
                else:
                    held = resp
                if idempotent:
                    continue
                break
            breaker.success()
            self.m.origin_requests.labels(o.name, "ok").inc()
            return resp
        if held is not None:
            return held
        return failure

    async def direct(self, request: web.BaseRequest, path: str, query: str,
                     hdrs: Mapping[str, str], personal: bool = False) -> web.StreamResponse:
        """Fetch without collapsing or storing (hit-for-pass, non-storable responses;
        ``personal``: a Cookie/Authorization request the policy sends past the cache)."""
        assert self.session is not None
        extra = frozenset({"cookie"}) if personal else frozenset()
        target, headers = self._origin_request(path, query, hdrs, extra=extra)
        deadline = self._deadline()
        # a 5xx as a fill answers it: a hit-for-pass marker (shared L2) must not change what a
        # request gets from a failing origin (pods without one answer 502, not the origin's
        # error page with its Cache-Control)
        resp = await self.origin_request(target, headers, deadline, refuse_5xx=not personal)
        if isinstance(resp, OriginFailure):
            return resp.answer()
        self.m.origin_fetches.labels("pass").inc()
        decision = StoreDecision(False, "pass")
        return await self.stream(request, OriginStream(resp, b"", decision, deadline=deadline))

    async def pass_through(self, request: web.BaseRequest, path: str, query: str,
                           hdrs: Mapping[str, str]) -> web.StreamResponse:
        """Methods a cache does not answer (POST, PUT, ...): to the origin, never stored."""
        assert self.session is not None
        extra = _BODY_HEADERS | (frozenset({"cookie"}) if self.cfg.cache_policy.cookies != "strip"
                                 else frozenset())
        _, headers = self._origin_request(path, query, hdrs, extra=extra)
        target = path + ("?" + query if query else "")  # the full query
        deadline = self._deadline()
        resp = await self.origin_request(target, headers, deadline, method=request.method,
                                         data=request.content if request.body_exists else None,
                                         refuse_5xx=False)
        if isinstance(resp, OriginFailure):
            return resp.answer()
        self.m.origin_fetches.labels("pass").inc()
        return await self.stream(request, OriginStream(resp, b"", StoreDecision(False, "method"),
                                                        deadline=deadline))
