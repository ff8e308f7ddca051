"""List + watch of the children the operator owns, without kopf.

kopf's per-event machinery (a worker per object, body wrappers, filters in Python, handler
invocation) cost the operator most of its CPU at 200 ContentEdges: children send far more
events than CacheClusters and ContentEdges (a Deployment or PDB status update per pod
readiness step). Children need none of it: an event only updates the watch cache
(cache.Store) and queues the parent named in the child's labels. So each child kind is listed
once and then watched here, over one aiohttp stream per kind and namespace scope, filtered by
label on the server:

- the list replaces the kind in the store (``Store.replace``), which marks it synced;
- the watch resumes from the last resourceVersion seen (bookmarks included), with a
  server-side timeout and a client-side read deadline, so a stream that silently hangs is
  dropped and resumed;
- a resourceVersion that is too old (410 Gone) means events were lost: the kind is listed
  again and every parent of what changed is queued;
- errors back off (1 s doubling to 30 s) and never stop the watch.

CacheClusters and ContentEdges stay with kopf (handlers.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from kubernetes import client

from aerocdn.controller.kube import path

log = logging.getLogger(__name__)

OnEvent = Callable[[str, Mapping[str, Any]], None]


class Gone(Exception):
    """The resourceVersion to resume from is too old: list again."""


@dataclass(frozen=True)
class WatchedKind:
    api_version: str
    kind: str
    labels: Mapping[str, str]

    def selector(self) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))

    def params(self) -> dict[str, str]:
        return {"labelSelector": self.selector()} if self.labels else {}


@dataclass
class ApiAccess:
    """How to reach the API server with the credentials of the operator's Kubernetes client
    (kubeconfig or in-cluster; the bearer token is read on every connection, so a rotated
    service-account token is picked up)."""

    host: str
    ssl_context: ssl.SSLContext | bool
    configuration: Any

    @classmethod
    def of(cls, api: client.ApiClient) -> ApiAccess:
        cfg = api.configuration
        ctx: ssl.SSLContext | bool
        if cfg.host.startswith("https"):
            ctx = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
            if cfg.cert_file:
                ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
            if not cfg.verify_ssl:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx = False
        return cls(cfg.host.rstrip("/"), ctx, cfg)

    def headers(self) -> dict[str, str]:
        # as the Kubernetes client itself reads it (its refresh hook rotates in-cluster tokens)
        token = self.configuration.get_api_key_with_prefix("BearerToken", alias="authorization")
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = token
        return headers


@dataclass
class Watch:
    """One kind in one scope (a namespace, or all namespaces with ``namespace=None``)."""

    access: ApiAccess
    what: WatchedKind
    namespace: str | None
    on_list: Callable[[WatchedKind, list[dict[str, Any]], str | None], None]
    on_event: OnEvent
    server_timeout: int = 300
    read_timeout: float = 330.0
    page_size: int = 500
    synced: asyncio.Event = field(default_factory=asyncio.Event)
    resource_version: str | None = None
    events: int = 0
    relists: int = 0

    def _url(self) -> str:
        return self.access.host + path(self.what.api_version, self.what.kind, self.namespace)

    async def list(self, session: aiohttp.ClientSession) -> None:
        items: list[dict[str, Any]] = []
        params = {**self.what.params(), "limit": str(self.page_size)}
        while True:
            async with session.get(self._url(), params=params, headers=self.access.headers(),
                                   ssl=self.access.ssl_context,
                                   timeout=aiohttp.ClientTimeout(total=60)) as r:
                if r.status != 200:
                    raise aiohttp.ClientResponseError(
                        r.request_info, r.history, status=r.status,
                        message=(await r.text())[:300])
                page = await r.json()
            items += page.get("items") or []
            meta = page.get("metadata") or {}
            if not meta.get("continue"):
                self.resource_version = meta.get("resourceVersion")
                break
            params = {**params, "continue": meta["continue"]}
        self.on_list(self.what, items, self.namespace)
        self.synced.set()

    async def stream(self, session: aiohttp.ClientSession) -> None:
        """One watch request, until the server ends it; events go to ``on_event``."""
        params = {"watch": "1", "allowWatchBookmarks": "true", **self.what.params(),
                  "timeoutSeconds": str(self.server_timeout)}
        if self.resource_version:
            params["resourceVersion"] = self.resource_version
        async with session.get(self._url(), params=params, headers=self.access.headers(),
                               ssl=self.access.ssl_context,
                               timeout=aiohttp.ClientTimeout(
                                   total=None, connect=15, sock_read=self.read_timeout)) as r:
            if r.status == 410:
                raise Gone()
            if r.status != 200:
                raise aiohttp.ClientResponseError(r.request_info, r.history, status=r.status,
                                                   message=(await r.text())[:300])
            buffer = b""
            async for chunk in r.content.iter_any():
                buffer += chunk
                while True:
                    line, sep, rest = buffer.partition(b"\n")
                    if not sep:
                        break
                    buffer = rest
                    if line.strip():
                        self._event(json.loads(line))

    def _event(self, event: Mapping[str, Any]) -> None:
        type_, obj = event.get("type"), event.get("object") or {}
        if type_ == "ERROR":
            if obj.get("code") == 410:
                raise Gone()
            raise aiohttp.ClientPayloadError(f"watch error: {obj.get('message')}")
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if rv:
            self.resource_version = rv
        if type_ == "BOOKMARK" or type_ not in ("ADDED", "MODIFIED", "DELETED"):
            return
        self.events += 1
        obj.setdefault("apiVersion", self.what.api_version)
        obj.setdefault("kind", self.what.kind)
        self.on_event(str(type_), obj)

    async def run(self, session: aiohttp.ClientSession) -> None:
        delay = 1.0
        while True:
            try:
                if not self.synced.is_set() or self.resource_version is None:
                    await self.list(session)
                await self.stream(session)
                delay = 1.0
            except Gone:
                log.info("watch of %s (%s): resourceVersion too old, listing again",
                         self.what.kind, self.namespace or "all namespaces")
                self.relists += 1
                self.resource_version = None
                self.synced.clear()
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, TimeoutError, ValueError, OSError) as exc:
                log.warning("watch of %s (%s) failed: %s; again in %.0fs", self.what.kind,
                            self.namespace or "all namespaces", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)


class Watcher:
    """Every child kind in every scope, in one aiohttp session."""

    def __init__(self, api: client.ApiClient, kinds: list[WatchedKind],
                 namespaces: list[str],
                 on_list: Callable[[WatchedKind, list[dict[str, Any]], str | None], None],
                 on_event: OnEvent):
        access = ApiAccess.of(api)
        scopes: list[str | None] = [*namespaces] or [None]
        self.watches = [Watch(access, k, ns, on_list, on_event) for k in kinds for ns in scopes]
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), json_serialize=json.dumps)
        self._tasks = [asyncio.create_task(w.run(self._session),
                                           name=f"watch-{w.what.kind}-{w.namespace or '*'}")
                       for w in self.watches]

    async def wait_synced(self) -> None:
        await asyncio.gather(*(w.synced.wait() for w in self.watches))

    def synced(self) -> bool:
        return all(w.synced.is_set() for w in self.watches)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._session is not None:
            await self._session.close()
            self._session = None
