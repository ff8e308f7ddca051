"""Purge: the admin ``POST /purge`` endpoint and its fan-out.

A purge removes a URL (or every URL under a prefix, or every object carrying a tag) from L2
(a purge rule in each cache cluster) and from this pod's nginx (each entry ``L1Index`` knows
of, named exactly as nginx keyed it), then - unless it is a peer's fan-out call
(``X-Aerocdn-Fanout: 1``) or the operator's call for one pod of a ContentPurge
(``X-Aerocdn-Purge-Scope: pod``) - from every peer pod, and says which pods confirmed it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yarl
from aiohttp import web

from aerocdn.edge.config import EdgeConfig
from aerocdn.edge.l2 import TierSet
from aerocdn.edge.metrics import EdgeMetrics
from aerocdn.edge.peers import PeerSource
from aerocdn.edge.policy import (
    MAX_TAG_LENGTH,
    TAG_RE,
    cache_key,
    canonical_path,
    check_query,
    normalize_query,
)


@dataclass
class L1Entry:
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    expires_at: float
    tags: tuple[str, ...] = ()


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
            len(k) + len(v) + 120 for k, v in entry.headers) + sum(
            len(t) + 60 for t in entry.tags)
        return strings + 600

    def record(self, url: str, variant: str, entry: L1Entry) -> bool:
        """False: over the byte budget, not recorded: nginx must not keep the answer either,
        or a purge could not name it."""
        by_url = self.entries.get(url)
        if by_url is not None and variant in by_url:
            old = self.entry_bytes(url, variant, by_url[variant])
            n = self.entry_bytes(url, variant, entry)
            if n > old and self.bytes + n - old > self.max_bytes:
                self.overflowed += 1
                return False  # (more tags than before, past the budget)
            by_url[variant] = entry
            self.bytes += n - old
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

    def tagged(self, tag: str) -> list[tuple[str, str, L1Entry]]:
        """(url, variant, entry) of every entry carrying ``tag``."""
        return [(u, k, e) for u, v in self.entries.items() for k, e in v.items()
                if tag in e.tags]

    def drop_entries(self, doomed: list[tuple[str, str, L1Entry]]) -> None:
        for u, k, _ in doomed:
            by_url = self.entries.get(u)
            e = by_url.pop(k, None) if by_url is not None else None
            if e is not None:
                self._forget(u, k, e)
            if by_url is not None and not by_url:
                del self.entries[u]

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


class Purger:
    """``handle`` answers ``POST /purge``.  ``control`` (the session for nginx and the peers)
    is set by the edge when it starts."""

    def __init__(self, cfg: EdgeConfig, m: EdgeMetrics, l2: TierSet, l1: L1Index,
                 peers: PeerSource):
        self.cfg = cfg
        self.m = m
        self.l2 = l2
        self.l1 = l1
        self.peers = peers
        self.control: aiohttp.ClientSession | None = None

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

    @staticmethod
    def _purge_tag(body: Any) -> str | None:
        """The tag of a ``{"tag": "..."}`` body (None: another kind of body); a tag is what
        the origin's tag header can carry: printable ASCII, no space or comma."""
        if not isinstance(body, dict) or "tag" not in body:
            return None
        if set(body) != {"tag"}:
            raise ValueError('body must be exactly {"tag": "..."} (and "soft": true or false)')
        tag = body["tag"]
        if not isinstance(tag, str) or len(tag) > MAX_TAG_LENGTH or not TAG_RE.fullmatch(tag):
            raise ValueError(f"tag must be 1 to {MAX_TAG_LENGTH} printable ASCII characters "
                             "without space or comma")
        return tag

    @staticmethod
    def _soft(body: Any) -> bool:
        """``"soft": true``: mark stale instead of removing (L2: the objects count as expired,
        so stale-while-revalidate and stale-if-error still apply; L1 entries are removed, so
        the next request reaches L2)."""
        if not isinstance(body, dict):
            raise ValueError('body must be a JSON object such as {"url": "..."}')
        soft = body.get("soft", False)
        if not isinstance(soft, bool):
            raise ValueError("soft must be true or false")
        return soft

    async def _handle_tag(self, request: web.Request, body: Any, tag: str,
                          soft: bool) -> web.Response:
        fanout_call = request.headers.get("X-Aerocdn-Fanout") == "1"
        pod_scope = request.headers.get("X-Aerocdn-Purge-Scope") == "pod"
        self.m.purges.labels("tag", "peer" if fanout_call else
                             "operator" if pod_scope else "origin").inc()
        l2 = await self.l2.purge_tag(tag, time.time(), local_only=fanout_call, soft=soft)
        doomed = self.l1.tagged(tag)
        l1 = await self._purge_entries([(u.split("/", 1)[0], e) for u, _, e in doomed])
        self.l1.drop_entries(doomed)
        me = {"l2": l2, "l1": l1, "ok": all(v["status"] == "ok" for v in l2.values()) and
              l1.get("failed", 0) == 0}
        if fanout_call or pod_scope:
            return web.json_response(me)
        return await self._fan_out(request, body, me,
                                   {"tag": tag, **({"soft": True} if soft else {})})

    def _purge_target(self, body: Any) -> tuple[str, bool, str, str]:
        """-> (target url-key, prefix?, host, canonical path-and-query).  The target is made
        canonical exactly like a request's (``canonical_path``); what cannot be interpreted
        raises ValueError (400): other keys, wildcards, broken escapes, other schemes."""
        if not isinstance(body, dict) or set(body) - {"url", "prefix"} or \
                len({"url", "prefix"} & body.keys()) != 1:
            raise ValueError('body must be exactly {"url": "..."} or {"prefix": "..."} (and '
                             '"soft": true or false)')
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

    async def handle(self, request: web.Request) -> web.Response:
        ok, why = self._authorized(request)
        if not ok:
            return web.json_response({"error": why}, status=401 if "disabled" not in why else 403)
        try:
            body = await request.json()
            soft = self._soft(body)
            core = {k: v for k, v in body.items() if k != "soft"}
            tag = self._purge_tag(core)
            if tag is None:
                target, prefix, host, pq = self._purge_target(core)
        except (ValueError, json.JSONDecodeError) as e:
            return web.json_response({"error": str(e)}, status=400)
        if tag is not None:
            return await self._handle_tag(request, body, tag, soft)
        fanout_call = request.headers.get("X-Aerocdn-Fanout") == "1"
        # the operator's call for a ContentPurge: this pod alone, L2 rule written (each pod
        # writes it before purging its own nginx, so none refills L1 from the old object)
        pod_scope = request.headers.get("X-Aerocdn-Purge-Scope") == "pod"
        kind = "prefix" if prefix else "url"
        self.m.purges.labels(kind, "peer" if fanout_call else
                             "operator" if pod_scope else "origin").inc()
        at = time.time()
        l2 = await self.l2.purge(target, prefix, at, local_only=fanout_call, soft=soft)
        l1 = await self._purge_nginx(target, prefix, host, pq)
        me = {"l2": l2, "l1": l1, "ok": all(v["status"] == "ok" for v in l2.values()) and
              l1.get("failed", 0) == 0}
        if fanout_call or pod_scope:
            return web.json_response(me)
        return await self._fan_out(request, body, me,
                                   {kind: target, **({"soft": True} if soft else {})})

    async def _fan_out(self, request: web.Request, body: Any, me: dict[str, Any],
                       purged: dict[str, Any]) -> web.Response:
        peers = await self.peers.peers()
        results = await asyncio.gather(*(self._purge_peer(p, body, request) for p in peers))
        pods = {"self": me, **dict(zip(peers, results, strict=True))}
        confirmed = [p for p, r in pods.items() if r.get("ok")]
        complete = len(confirmed) == len(pods)
        return web.json_response(
            {"purged": purged, "complete": complete, "confirmed": confirmed,
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
                timeout=aiohttp.ClientTimeout(total=self.cfg.peers.purge_timeout_seconds),
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
        counts = await self._purge_entries([(host, e) for e in entries])
        self.l1.drop(target, prefix)
        return counts

    async def _purge_entries(self, entries: list[tuple[str, L1Entry]]) -> dict[str, int]:
        """Each (host, entry) named to this pod's nginx exactly as it keyed it."""
        if not self.cfg.nginx_control_url or self.control is None:
            return {}
        counts = {"purged": 0, "absent": 0, "failed": 0}
        base = self.cfg.nginx_control_url

        async def one(host: str, e: L1Entry) -> None:
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

        async def bounded(host: str, e: L1Entry) -> None:
            async with sem:
                await one(host, e)

        await asyncio.gather(*(bounded(h, e) for h, e in entries))
        return counts
