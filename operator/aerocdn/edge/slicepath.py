"""The request path of an object served in slices (cachePolicy.slices).

nginx's ``slice`` asks for one aligned slice at a time (``Range: bytes=S-E``); a client
talking to the edge directly may ask for any single range or the whole object.  Either way the
edge reads the object's metadata record (headers, freshness, full length) and the slices the
range covers, one at a time: from L2, else from the origin with a Range request for exactly
that slice - once per pod (fills in flight are joined) and once per region (the L2 lock of the
slice's key).  Each slice is stored as its own record under a key that names the object's
version (``aerocdn.edge.slices``), so slices of two versions are never combined: when a slice
fetched from the origin has other validators than the metadata, the object changed - the new
metadata is stored, the answer under way is cut (never a mixed body) and this pod's nginx
forgets the object's slices (``on_change``).

An origin that ignores Range answers 200 with the whole object: it is read once, cut into
slices as it arrives (one slice buffered at a time) and every slice is stored; requests for a
slice still on its way wait for it.  Answers a shared cache may not store, and responses
without ETag or Last-Modified, are streamed as the origin sent them (nginx passes a 200 on).
Memory: one slice per request and per fill, taken from the pod's fill byte budget; past the
budget slices are streamed without being stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from aerocdn.edge.config import EdgeConfig
from aerocdn.edge.fill import Filler, OriginFailure, OriginStream, short_answer
from aerocdn.edge.l2 import LockResult, TierSet
from aerocdn.edge.metrics import EdgeMetrics
from aerocdn.edge.policy import (
    CacheKey,
    StoreDecision,
    StoredObject,
    answer_headers,
    decide_storage,
    l1_seconds,
    selected_headers,
    store_headers,
)
from aerocdn.edge.purge import L1Entry, L1Index
from aerocdn.edge.slices import (
    ByteRange,
    aligned_slice,
    content_range,
    if_range_matches,
    meta_key,
    parse_content_range,
    parse_range,
    part_key,
    part_sizes,
    resolve,
    slice_count,
    slice_key,
    slice_request_range,
    slice_span,
    slices_for,
    unsatisfied_range,
    version,
)
from aerocdn.edge.tiers import PassMarker, Tier
from aerocdn.render.nginx import SLICE_PURGE_HEADER

log = logging.getLogger("aerocdn.edge")


@dataclass
class SliceFill:
    kind: str  # stored | pass | error
    meta: StoredObject | None = None
    body: StoredObject | None = None  # the slice asked for (None: read it next)
    index: int = -1
    stream: OriginStream | None = None
    status: int = 502
    reason: str = ""
    tier: str = "origin"
    changed: bool = False  # the origin's version differs from the one expected


class ObjectChanged(Exception):
    """A slice's version is not the metadata's: the object changed at the origin."""

    def __init__(self, fill: SliceFill):
        super().__init__("object changed at the origin")
        self.fill = fill


class SliceFailed(Exception):
    def __init__(self, fill: SliceFill):
        super().__init__(fill.reason)
        self.fill = fill


class SlicePath:
    """``handle`` answers a GET/HEAD of a property with slicing on.  ``on_change(url, host,
    path_and_query)``: forget what this pod's nginx holds of an object that changed (set by the
    edge: the local part of a purge)."""

    def __init__(self, cfg: EdgeConfig, m: EdgeMetrics, l2: TierSet, l1: L1Index,
                 filler: Filler):
        self.cfg = cfg
        self.m = m
        self.l2 = l2
        self.l1 = l1
        self.filler = filler
        self.size = cfg.cache_policy.slices.size_bytes
        self.inflight: dict[str, asyncio.Task[SliceFill]] = {}
        # slices a whole-object (200) read is about to store: requests wait for them
        self.pending: dict[str, asyncio.Future[StoredObject | None]] = {}
        self.on_change: Callable[[str, str, str], Awaitable[object]] | None = None
        self._tasks: set[asyncio.Task[object]] = set()

    # ------------------------------------------------------------------ answering

    async def handle(self, request: web.BaseRequest, ck: CacheKey, path: str, query: str,
                     hdrs: Mapping[str, str], l1_ok: bool) -> tuple[web.StreamResponse, str]:
        spec = parse_range(hdrs.get("range"))
        first_index = spec.first // self.size if spec is not None and spec.first is not None \
            else 0
        for _ in range(3):
            got = await self._meta(ck, path, query, hdrs, first_index)
            if got.kind != "stored" or got.meta is None:
                return await self._not_sliced(request, got, spec, path, query, hdrs)
            if got.meta.slice_total < 0:  # an answer that is no object in slices (404, ...)
                obj = got.meta
                headers = answer_headers(obj, time.time(),
                                         self.cfg.cache_policy.l1_max_ttl_seconds, got.tier)
                first = aligned_slice(spec, self.size) == 0  # nginx's first slice request
                return self._respond(request, obj.status, headers, obj.body,
                                     0 if first else None, ck, hdrs, l1_ok, obj), got.tier
            try:
                return await self._answer(request, got, spec, ck, path, query, hdrs, l1_ok)
            except ObjectChanged:
                continue  # nothing sent yet: answer from the new version
            except SliceFailed as e:  # the slice cannot be stored (budget, policy) or failed
                return await self._not_sliced(request, e.fill, spec, path, query, hdrs)
        return short_answer(502, "502 Bad Gateway: the object keeps changing at the origin"), \
            "error"

    async def _not_sliced(self, request: web.BaseRequest, got: SliceFill,
                          spec: ByteRange | None, path: str, query: str,
                          hdrs: Mapping[str, str]) -> tuple[web.StreamResponse, str]:
        """What is not answered from stored slices: the origin's answer to the slice it was
        asked for when that is what the client asked (nginx's slice, or a whole 200), else
        the client's own request, streamed."""
        s = got.stream
        if s is not None and not s.taken:
            s.taken = True
            if s.resp.status != 206 or aligned_slice(spec, self.size) == got.index:
                return await self.filler.stream(request, s), "pass"
            s.discard()
        if got.kind == "error":
            return short_answer(got.status, f"{got.status} {got.reason}"), "error"
        return await self._direct(request, path, query, hdrs), "pass"

    async def _answer(self, request: web.BaseRequest, got: SliceFill, spec: ByteRange | None,
                      ck: CacheKey, path: str, query: str, hdrs: Mapping[str, str],
                      l1_ok: bool) -> tuple[web.StreamResponse, str]:
        meta = got.meta
        assert meta is not None
        total = meta.slice_total
        ver = version(meta.headers, total)
        assert ver is not None
        if_range = hdrs.get("if-range")
        if spec is not None and if_range is not None and not if_range_matches(
                if_range, meta.headers):
            spec = None  # RFC 9110 13.1.5: not the representation the client has: all of it
        now = time.time()
        base = answer_headers(meta, now, self.cfg.cache_policy.l1_max_ttl_seconds, got.tier)
        if total == 0:
            return self._respond(request, 200, base, b"", None, ck, hdrs, False, meta), got.tier
        if spec is None:
            first, last, status = 0, total - 1, 200
        else:
            span = resolve(spec, total)
            if span is None:
                h = [*base, ("Content-Range", unsatisfied_range(total))]
                return self._respond(request, 416, h, b"", None, ck, hdrs, False, meta), \
                    "range-not-satisfiable"
            (first, last), status = span, 206
        indexes = slices_for(first, last, self.size)
        i0 = indexes[0]
        body = got.body if got.body is not None and got.index == i0 else None
        if body is None:
            body = await self._piece(ck, path, query, hdrs, meta, ver, i0)
        if status == 206:
            base.append(("Content-Range", content_range(first, last, total)))
        if len(indexes) == 1:
            off = i0 * self.size
            data = memoryview(body.body)[first - off:last - off + 1]
            l1_slice = aligned_slice(spec, self.size) if status == 206 else None
            return self._respond(request, status, base, data, l1_slice, ck, hdrs, l1_ok,
                                 meta), got.tier
        return await self._stream(request, status, base, first, last, body, ck, path, query,
                                  hdrs, meta, ver), got.tier

    def _respond(self, request: web.BaseRequest, status: int, headers: list[tuple[str, str]],
                 data: bytes | bytearray | memoryview, l1_slice: int | None, ck: CacheKey,
                 hdrs: Mapping[str, str], l1_ok: bool, meta: StoredObject) -> web.Response:
        """One answer from one slice.  nginx may keep it only when it is exactly the slice
        its ``slice`` asked for (its L1 key then ends in that range), recorded in the index
        for purge with the range header the purge location keys on."""
        now = time.time()
        l1_ttl = l1_seconds(meta, now, self.cfg.cache_policy.l1_max_ttl_seconds) \
            if l1_ok and l1_slice is not None else 0
        if l1_ttl > 0 and self.cfg.nginx_control_url:
            names = self.cfg.cache_policy.cache_key.vary_headers
            rng = slice_request_range(l1_slice or 0, self.size)
            kh = (*((n, hdrs[n]) for n in names if n in hdrs), (SLICE_PURGE_HEADER, rng))
            raw_path, _, q = request.raw_path.partition("?")
            if not self.l1.record(ck.url, repr(kh), L1Entry(
                    raw_path, q, kh, now + l1_ttl + self.cfg.cache_policy.l1_keep_seconds)):
                l1_ttl = 0
        if l1_ttl == 0:
            headers = [(k, "0" if k == "X-Accel-Expires" else v) for k, v in headers]
        self.m.sent("slice", len(data))
        return web.Response(status=status, body=data, headers=CIMultiDict(headers))

    async def _stream(self, request: web.BaseRequest, status: int,
                      headers: list[tuple[str, str]], first: int, last: int,
                      body0: StoredObject, ck: CacheKey, path: str, query: str,
                      hdrs: Mapping[str, str], meta: StoredObject,
                      ver: str) -> web.StreamResponse:
        """An answer over several slices, one slice in memory at a time.  A slice that cannot
        be had (origin failed, object changed) cuts the connection: the client sees a short
        body, never a mixed one."""
        out = web.StreamResponse(status=status)
        for k, v in headers:
            out.headers.add(k, "0" if k == "X-Accel-Expires" else v)
        out.content_length = last - first + 1
        await out.prepare(request)
        if request.method == "HEAD":
            return out
        sent = 0
        piece: StoredObject | None = body0
        for j in slices_for(first, last, self.size):
            s0, s1 = slice_span(j, self.size, meta.slice_total)
            a, b = max(first, s0) - s0, min(last, s1) - s0 + 1
            if piece is None:
                try:
                    piece = await self._piece(ck, path, query, hdrs, meta, ver, j)
                except (ObjectChanged, SliceFailed) as e:
                    s = e.fill.stream if isinstance(e, SliceFailed) else None
                    if s is not None and not s.taken:
                        s.taken = True
                        # not stored (fill budget spent, ...): this slice straight from the
                        # origin's answer, if it is the slice of this version
                        if await self._relay(out, s, j, ver, meta.slice_total, a, b):
                            sent += b - a
                            continue
                    log.warning("slices: %s: slice %d: %s; answer cut", ck.url, j, e)
                    if request.transport is not None:
                        request.transport.close()
                    return out
            await out.write(memoryview(piece.body)[a:b])
            sent += b - a
            piece = None
        await out.write_eof()
        self.m.sent("slice", sent)
        return out

    async def _relay(self, out: web.StreamResponse, s: OriginStream, index: int, ver: str,
                     total: int, a: int, b: int) -> bool:
        """Bytes a..b-1 of slice ``index`` from an origin answer that is not stored, written
        as they arrive.  False when it is not that slice of version ``ver`` (nothing written)
        or the origin failed midway: the caller cuts the answer."""
        try:
            resp = s.resp
            kept = tuple((k, v) for k, v in store_headers(tuple(resp.headers.items()))
                         if k.lower() != "content-range")
            cr = parse_content_range(resp.headers.get("Content-Range"))
            if resp.status != 206 or cr is None or cr[2] != total or \
                    (cr[0], cr[1]) != slice_span(index, self.size, total) or \
                    version(kept, total) != ver:
                return False
            pos = 0
            async with asyncio.timeout_at(s.deadline or self.filler._deadline()):
                async for chunk in resp.content.iter_chunked(65536):
                    lo, hi = max(a, pos), min(b, pos + len(chunk))
                    if lo < hi:
                        await out.write(chunk[lo - pos:hi - pos])
                    pos += len(chunk)
                    if pos >= b:
                        break
            return pos >= b
        except (TimeoutError, aiohttp.ClientError):
            return False
        finally:
            s.discard()

    async def _direct(self, request: web.BaseRequest, path: str, query: str,
                      hdrs: Mapping[str, str]) -> web.StreamResponse:
        """Not stored (hit-for-pass, no validator, ...): the request's range to the origin,
        its answer streamed back as it is."""
        f = self.filler
        assert f.session is not None
        target, headers = f._origin_request(path, query, hdrs,
                                            extra=frozenset({"range", "if-range"}))
        deadline = f._deadline()
        resp = await f.origin_request(target, headers, deadline)
        if isinstance(resp, OriginFailure):
            return resp.answer()
        self.m.origin_fetches.labels("pass").inc()
        return await f.stream(request, OriginStream(resp, b"", StoreDecision(False, "pass"),
                                                    deadline=deadline))

    # ------------------------------------------------------------------ metadata and slices

    async def _meta(self, ck: CacheKey, path: str, query: str, hdrs: Mapping[str, str],
                    index: int) -> SliceFill:
        """The object's metadata: fresh from L2, else from a fill of slice ``index`` (which
        stores the metadata and that slice); stale where the policy allows it when the origin
        fails."""
        mkey = meta_key(ck.key, self.size)
        entry, _ = await self.l2.get(mkey)
        now = time.time()
        prev: str | None = None
        if isinstance(entry, StoredObject):
            state = entry.state(now)
            if state == "fresh":
                self.m.hit("l2")
                return SliceFill("stored", meta=entry, tier="l2")
            if entry.slice_total >= 0:
                prev = version(entry.headers, entry.slice_total)
            if state == "stale-revalidate":
                # RFC 5861: answer from what we hold (its slices are keyed by its version),
                # refresh the metadata in the background
                self.m.hit("l2-stale")
                if mkey not in self.inflight:
                    task = asyncio.ensure_future(self._refill_meta(
                        ck, path, query, CIMultiDict(hdrs), index, prev))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                return SliceFill("stored", meta=entry, tier="l2-stale")
        elif isinstance(entry, PassMarker):
            return SliceFill("pass")
        got = await self._refill_meta(ck, path, query, hdrs, index, prev)
        if got.kind == "error" and isinstance(entry, StoredObject) and \
                entry.state(now) in ("stale-revalidate", "stale"):
            self.m.hit("l2-stale-if-error")
            return SliceFill("stored", meta=entry, tier="stale-if-error")
        return got

    async def _refill_meta(self, ck: CacheKey, path: str, query: str, hdrs: Mapping[str, str],
                           index: int, prev: str | None) -> SliceFill:
        """The metadata from a fill of slice ``index`` (joined in the pod, locked in the
        region); ``prev``: the version held so far, to notice a change."""
        mkey = meta_key(ck.key, self.size)

        async def lookup() -> SliceFill | None:
            found, _ = await self.l2.get(mkey)
            return self._take_meta(found)

        got = await self._collapse(mkey, lambda: self._locked(
            mkey, lambda lock: self._fetch(ck, path, query, hdrs, index, lock, None), lookup))
        if prev is not None and got.meta is not None and got.tier == "origin" and \
                version(got.meta.headers, got.meta.slice_total) != prev:
            await self._changed(ck)  # a new version after the old one expired
        return got

    async def _piece(self, ck: CacheKey, path: str, query: str, hdrs: Mapping[str, str],
                     meta: StoredObject, ver: str, index: int) -> StoredObject:
        """Slice ``index`` of version ``ver``.  Raises ObjectChanged (the origin has another
        version now; it is stored) or SliceFailed."""
        key = slice_key(ck.key, self.size, index, ver)
        fut = self.pending.get(key)
        if fut is not None:
            got = await asyncio.shield(fut)
            if got is not None:
                return got
        n = _span_len(index, self.size, meta.slice_total)
        entry = await self._get_piece(key, n)
        if entry is not None:
            return entry

        async def lookup() -> SliceFill | None:
            got = await self._get_piece(key, n)
            return SliceFill("stored", body=got, tier="l2-collapsed") if got else None

        out = await self._collapse(key, lambda: self._locked(
            key, lambda lock: self._fetch(ck, path, query, hdrs, index, lock, ver), lookup))
        if out.kind == "stored" and out.changed:
            raise ObjectChanged(out)
        if out.kind == "stored" and out.body is not None:
            return out.body
        raise SliceFailed(out if out.kind == "error" else replace(
            out, reason="the origin's answer to a slice cannot be stored"))

    async def _collapse(self, key: str,
                        make: Callable[[], Awaitable[SliceFill]]) -> SliceFill:
        task = self.inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(make())
            self.inflight[key] = task

            def done(t: asyncio.Task[SliceFill]) -> None:
                if self.inflight.get(key) is t:
                    del self.inflight[key]
                # a stream nobody took (its request went away): release the connection
                if not t.cancelled() and t.exception() is None and \
                        (s := t.result().stream) is not None:
                    asyncio.get_running_loop().call_later(5.0, _discard_untaken, s)

            task.add_done_callback(done)
        else:
            self.m.collapsed.labels("pod").inc()
        return await asyncio.shield(task)

    async def _locked(self, key: str, fetch: Callable[[LockResult], Awaitable[SliceFill]],
                      lookup: Callable[[], Awaitable[SliceFill | None]]) -> SliceFill:
        """Fetch under the region's lock of ``key``; without it, wait for what the holder
        stores (``lookup``: from L2, or None).  With the lock, L2 is read once more first: a
        fill that ended between our miss and our lock has stored it."""
        f = self.filler
        lock = LockResult(None, True)
        if f.shared_l2:
            lock = await self.l2.acquire_lock(key, f.owner, self.cfg.lock_ttl_seconds)
            if not lock.acquired:
                self.m.collapsed.labels("region").inc()
                waited = await self._poll(lookup)
                if waited is not None:
                    return waited
        try:
            got = await lookup()
            if got is not None:
                return got
            return await fetch(lock)
        finally:
            if lock.acquired and lock.tier is not None:
                await self.l2.release_lock(lock.tier, key, f.owner)

    async def _poll(self, lookup: Callable[[], Awaitable[SliceFill | None]]) -> SliceFill | None:
        deadline = time.monotonic() + self.cfg.lock_wait_seconds
        delay = 0.005
        while time.monotonic() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
            got = await lookup()
            if got is not None:
                return got
        return None

    async def _get_piece(self, key: str, n: int) -> StoredObject | None:
        """Slice of ``n`` bytes stored at ``key`` (in parts: ``part_sizes``), or None."""
        sizes = part_sizes(n)
        if len(sizes) == 1:
            entry, _ = await self.l2.get(key)
            return entry if isinstance(entry, StoredObject) and len(entry.body) == n else None
        # gathered: on Aerospike the parts go out as one batch read
        got = await asyncio.gather(*(self.l2.get(part_key(key, i)) for i in range(len(sizes))))
        parts = [e for e, _ in got]
        if not all(isinstance(e, StoredObject) and len(e.body) == size
                   for e, size in zip(parts, sizes, strict=True)):
            return None
        first = parts[0]
        assert isinstance(first, StoredObject)
        return replace(first, body=b"".join(
            e.body for e in parts if isinstance(e, StoredObject)))

    async def _put_piece(self, key: str, piece: StoredObject, ttl: int,
                         tier: Tier | None) -> None:
        sizes = part_sizes(len(piece.body))
        if len(sizes) == 1:
            await self.l2.put(key, piece, ttl, tier)
            return
        view = memoryview(piece.body)
        off = 0
        for i, size in enumerate(sizes):
            await self.l2.put(part_key(key, i), replace(piece, body=bytes(view[off:off + size])),
                              ttl, tier)
            off += size

    @staticmethod
    def _take_meta(entry: object) -> SliceFill | None:
        if isinstance(entry, PassMarker):
            return SliceFill("pass")
        if isinstance(entry, StoredObject) and entry.state(time.time()) == "fresh":
            return SliceFill("stored", meta=entry, tier="l2-collapsed")
        return None

    # ------------------------------------------------------------------ origin

    async def _fetch(self, ck: CacheKey, path: str, query: str, hdrs: Mapping[str, str],
                     index: int, lock: LockResult, expect: str | None) -> SliceFill:
        """Slice ``index`` from the origin (Range).  ``expect``: the version the caller's
        metadata names (None: a metadata fill - store the metadata too)."""
        f = self.filler
        assert f.session is not None
        target, headers = f._origin_request(path, query, hdrs)
        headers["Range"] = slice_request_range(index, self.size)
        deadline = f._deadline()
        resp = await f.origin_request(target, headers, deadline)
        if isinstance(resp, OriginFailure):
            return SliceFill("error", status=resp.status, reason=resp.reason)
        rheaders = tuple((k, v) for k, v in resp.headers.items())
        now = time.time()
        policy = self.cfg.cache_policy
        if resp.status not in (200, 206, 416):
            return await self._fetch_whole_answer(resp, ck, hdrs, lock, index, expect, now,
                                                  deadline)
        total: int | None = None
        if resp.status == 206:
            cr = parse_content_range(resp.headers.get("Content-Range"))
            if cr is not None and cr[2] is not None and \
                    (cr[0], cr[1]) == slice_span(index, self.size, cr[2]):
                total = cr[2]
        elif resp.status == 200:
            total = resp.content_length
        decision = decide_storage("GET", hdrs, 200, rheaders, policy, now, f._unkeyed) \
            if total is not None else StoreDecision(False, "not a slice")
        kept = tuple((k, v) for k, v in store_headers(rheaders)
                     if k.lower() != "content-range")
        ver = version(kept, total) if total is not None else None
        if total is None or not decision.store or decision.vary or ver is None or (
                resp.status == 200 and total > 0 and index >= slice_count(total, self.size)):
            # not a slice we may store: the client gets the origin's answer as it is
            self.m.origin_fetches.labels("pass").inc()
            if not decision.store and total is not None and f.shared_l2 and \
                    lock.tier is not None and expect is None:
                await self.l2.put(meta_key(ck.key, self.size), PassMarker(ck.url, now),
                                  self.cfg.lock_ttl_seconds, lock.tier)
            return SliceFill("pass", stream=OriginStream(resp, b"", decision, deadline=deadline),
                             index=index)
        assert total is not None
        meta = StoredObject(
            status=200, headers=kept, body=b"", url=ck.url, stored_at=now,
            fresh_until=now + decision.freshness_seconds,
            stale_while_revalidate=decision.stale_while_revalidate,
            stale_if_error=decision.stale_if_error, vary=(), selected=selected_headers((), hdrs),
            no_stale=decision.no_stale, revalidate=decision.revalidate, slice_total=total,
            initial_age=decision.age)
        ttl = max(1, policy.default_ttl_seconds) if meta.revalidate else meta.record_ttl(now)
        changed = expect is not None and ver != expect
        if resp.status == 200:
            return await self._whole(resp, ck, meta, ver, ttl, index, lock, changed, deadline)
        n = _span_len(index, self.size, total)
        if not f.budget.take(n):
            self.m.origin_fetches.labels("pass").inc()
            return SliceFill("pass", stream=OriginStream(resp, b"", decision, deadline=deadline),
                             index=index)
        data = await self._read_taken(resp, n, deadline, "slice")
        if isinstance(data, SliceFill):
            return data
        self.m.origin_fetches.labels("slice").inc()
        piece = replace(meta, status=206, headers=(), body=data)
        await self._put_piece(slice_key(ck.key, self.size, index, ver), piece, ttl, lock.tier)
        if expect is None or changed:
            await self.l2.put(meta_key(ck.key, self.size), meta, ttl, lock.tier)
        if changed:
            await self._changed(ck)
        return SliceFill("stored", meta=meta, body=piece, index=index, changed=changed)

    async def _read_taken(self, resp: aiohttp.ClientResponse, n: int, deadline: float,
                          what: str) -> bytes | SliceFill:
        """The ``n`` bytes of an origin answer by ``deadline``, their fill budget already
        taken: given back, and the response released, whatever happens."""
        try:
            async with asyncio.timeout_at(deadline):
                return await resp.content.readexactly(n) if n else b""
        except (TimeoutError, aiohttp.ClientError, asyncio.IncompleteReadError) as e:
            self.m.origin_fetches.labels("timeout").inc()
            return SliceFill("error", status=504, reason=f"Gateway Timeout: origin {what} "
                             f"incomplete ({type(e).__name__})")
        finally:
            self.filler.budget.give(n)
            resp.release()

    async def _fetch_whole_answer(self, resp: aiohttp.ClientResponse, ck: CacheKey,
                                  hdrs: Mapping[str, str], lock: LockResult, index: int,
                                  expect: str | None, now: float,
                                  deadline: float) -> SliceFill:
        """An answer that is no part of an object (404, a redirect, 304, ...): stored as a
        whole at the object's metadata key when a shared cache may store it and it is small
        (up to a slice and maxObjectSizeBytes), so slicing caches these as before."""
        f = self.filler
        policy = self.cfg.cache_policy
        rheaders = tuple((k, v) for k, v in resp.headers.items())
        decision = decide_storage("GET", hdrs, resp.status, rheaders, policy, now, f._unkeyed)
        n = resp.content_length
        if not decision.store or decision.vary or n is None or \
                n > min(self.size, policy.max_object_size_bytes) or not f.budget.take(n):
            self.m.origin_fetches.labels("pass").inc()
            if not decision.store and f.shared_l2 and lock.tier is not None and expect is None:
                await self.l2.put(meta_key(ck.key, self.size), PassMarker(ck.url, now),
                                  self.cfg.lock_ttl_seconds, lock.tier)
            return SliceFill("pass", stream=OriginStream(resp, b"", decision, deadline=deadline),
                             index=index)
        data = await self._read_taken(resp, n, deadline, "body")
        if isinstance(data, SliceFill):
            return data
        self.m.origin_fetches.labels("stored").inc()
        obj = StoredObject(
            status=resp.status, headers=store_headers(rheaders), body=data, url=ck.url,
            stored_at=now, fresh_until=now + decision.freshness_seconds,
            stale_while_revalidate=decision.stale_while_revalidate,
            stale_if_error=decision.stale_if_error, no_stale=decision.no_stale,
            revalidate=decision.revalidate, initial_age=decision.age)
        ttl = max(1, policy.default_ttl_seconds) if obj.revalidate else obj.record_ttl(now)
        await self.l2.put(meta_key(ck.key, self.size), obj, ttl, lock.tier)
        changed = expect is not None
        if changed:
            await self._changed(ck)  # it was an object in slices: gone, or moved
        return SliceFill("stored", meta=obj, index=index, changed=changed)

    async def _whole(self, resp: aiohttp.ClientResponse, ck: CacheKey, meta: StoredObject,
                     ver: str, ttl: int, index: int, lock: LockResult, changed: bool,
                     deadline: float) -> SliceFill:
        """The origin ignored Range and sends the whole object: store it slice by slice as it
        arrives (in the background: the request waits only for its own slice)."""
        total = meta.slice_total
        f = self.filler
        if not f.budget.take(self.size):
            self.m.origin_fetches.labels("pass").inc()
            return SliceFill("pass", stream=OriginStream(resp, b"", StoreDecision(False, "budget"),
                                                          deadline=deadline), index=index)
        await self.l2.put(meta_key(ck.key, self.size), meta, ttl, lock.tier)
        keys = [slice_key(ck.key, self.size, j, ver) for j in range(slice_count(total, self.size))]
        loop = asyncio.get_running_loop()
        futs: dict[str, asyncio.Future[StoredObject | None]] = {}
        for k in keys:
            if k not in self.pending:
                futs[k] = self.pending[k] = loop.create_future()
        mine = futs.get(keys[index]) if total else None

        async def read_all() -> None:
            buf = bytearray()
            j = 0
            try:
                async with asyncio.timeout_at(deadline):
                    async for chunk in resp.content.iter_chunked(65536):
                        view = memoryview(chunk)
                        while view and j < len(keys):  # never past the stated length
                            want = _span_len(j, self.size, total) - len(buf)
                            buf += view[:want]
                            view = view[want:]
                            if len(buf) == _span_len(j, self.size, total):
                                # kept as read, never mutated again: no copy
                                piece = replace(meta, status=206, headers=(), body=buf)
                                buf = bytearray()
                                await self._put_piece(keys[j], piece, ttl, lock.tier)
                                fut = futs.get(keys[j])
                                if fut is not None and not fut.done():
                                    fut.set_result(piece)
                                j += 1
                self.m.origin_fetches.labels("slice-whole").inc()
            except (TimeoutError, aiohttp.ClientError) as e:
                self.m.origin_fetches.labels("timeout").inc()
                log.warning("slices: %s: whole-object read stopped at slice %d: %s",
                            ck.url, j, type(e).__name__)
            finally:
                f.budget.give(self.size)
                resp.release()
                for k, fut in futs.items():
                    if not fut.done():
                        fut.set_result(None)
                    if self.pending.get(k) is fut:
                        del self.pending[k]

        task = asyncio.ensure_future(read_all())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if changed:
            await self._changed(ck)
        if mine is None:
            if total:
                # another read of this version already stores that slice: take it from there
                fut = self.pending.get(keys[index])
                got = await asyncio.shield(fut) if fut is not None else None
                if got is None:
                    got = await self._get_piece(keys[index],
                                                _span_len(index, self.size, total))
                if got is None:
                    return SliceFill("error", status=502,
                                     reason="Bad Gateway: origin body incomplete")
                return SliceFill("stored", meta=meta, body=got, index=index, changed=changed)
            return SliceFill("stored", meta=meta, index=index, changed=changed)
        piece = await asyncio.shield(mine)
        if piece is None:
            return SliceFill("error", status=504, reason="Gateway Timeout: origin body incomplete")
        return SliceFill("stored", meta=meta, body=piece, index=index, changed=changed)

    async def _changed(self, ck: CacheKey) -> None:
        """The object has a new version: this pod's nginx forgets the old slices now (other
        pods' within l1MaxTTLSeconds; nginx refuses to join slices of two ETags meanwhile)."""
        self.m.origin_fetches.labels("slice-changed").inc()
        if self.on_change is None:
            return
        host, _, pq = ck.url.partition("/")
        try:
            await self.on_change(ck.url, host, "/" + pq)
        except Exception:
            log.exception("slices: forgetting %s in nginx failed", ck.url)

    async def close(self) -> None:
        for t in list(self._tasks):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(t, 5)


def _span_len(index: int, size: int, total: int) -> int:
    a, b = slice_span(index, size, total)
    return max(0, b - a + 1)


def _discard_untaken(s: OriginStream) -> None:
    if not s.taken:
        s.taken = True
        s.discard()
