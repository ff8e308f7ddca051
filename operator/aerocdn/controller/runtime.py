"""The operator's process-wide state: the work queue, the objects seen, the resync loop and
the metrics/health endpoint."""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aerocdn.aerospike.client import parse_address_overrides
from aerocdn.constants import LABEL_CACHECLUSTER, LABEL_CONTENTEDGE
from aerocdn.controller import metrics
from aerocdn.controller.cache import LABELS, WATCHED, CachedKube, Store
from aerocdn.controller.cachecluster import reconcile_cachecluster
from aerocdn.controller.contentedge import CHILD_KINDS as CE_CHILD_KINDS
from aerocdn.controller.contentedge import reconcile_contentedge
from aerocdn.controller.contentpurge import reconcile_contentpurge
from aerocdn.controller.context import API_VERSION, CC_KIND, CE_KIND, CP_KIND, Context
from aerocdn.controller.errors import RETRIES_BEFORE_REPORT, PermanentError, classify
from aerocdn.controller.kube import Kube
from aerocdn.controller.leader import LeaderElector
from aerocdn.controller.queue import WorkQueue
from aerocdn.controller.secrets import SECRET, clusters_using, secret_shape
from aerocdn.controller.status import report_permanent, report_retrying
from aerocdn.controller.unchanged import UnchangedMemo, contentedge_inputs
from aerocdn.controller.watch import WatchedKind, Watcher
from aerocdn.routing.inputs import cache_facts

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self) -> None:
        self.options = argparse.Namespace(resync_seconds=60.0, metrics_port=0,
                                          aerospike_probe="aerospike", aerospike_address=[],
                                          edge_admin_address=[],
                                          leader_election=False)
        self.queue = WorkQueue(self._reconcile)
        self.unchanged = UnchangedMemo()
        self.store = Store(WATCHED)
        self.store.shapes[SECRET] = secret_shape(self.store)
        self.ctx: Context | None = None
        self.known: set[tuple[str, str, str]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._resync_task: asyncio.Task[None] | None = None
        self._site: web.AppRunner | None = None
        self.watcher: Watcher | None = None
        self.started = False

    def configure(self, options: argparse.Namespace) -> None:
        self.options = options

    async def start(self) -> None:
        overrides = parse_address_overrides(",".join(self.options.aerospike_address))
        api = Kube()
        self.ctx = Context(kube=CachedKube(self.store, api), queue=self.queue,
                           probe=self.options.aerospike_probe, address_overrides=overrides,
                           edge_admin_addresses=parse_edge_admin_addresses(
                               getattr(self.options, "edge_admin_address", [])),
                           origin_health_seconds=getattr(self.options,
                                                         "origin_health_seconds", 30.0))
        # children: our own list + watch (watch.py); CacheClusters/ContentEdges: kopf
        self.watcher = Watcher(api.api, CHILDREN, self._namespaces(), self.child_list,
                               self.child_event)
        self.watcher.start()
        if self.options.leader_election:
            elector = LeaderElector(
                api, self.options.leader_election_namespace,
                self.options.leader_election_id, self.options.identity,
                on_start=self._lead, on_stop=self._stand_by)
            self._tasks.append(asyncio.create_task(elector.run(), name="leader-election"))
        else:
            await self._lead()
        if self.options.metrics_port:
            app = web.Application()
            app.router.add_get("/metrics", _metrics)
            app.router.add_get("/healthz", self._healthz)
            app.router.add_get("/readyz", self._healthz)
            self._site = web.AppRunner(app, access_log=None)
            await self._site.setup()
            await web.TCPSite(self._site, "0.0.0.0", self.options.metrics_port).start()
        self.started = True
        log.info("aerocdn operator started (probe=%s)", self.options.aerospike_probe)

    async def _lead(self) -> None:
        """Start reconciling: the cache listed once, workers, resyncs, and a pass over
        everything seen so far."""
        metrics.LEADER.set(1)
        self.unchanged = UnchangedMemo()  # a new term starts from full reconciles
        await self._sync()
        self.queue.start()
        self._resync_task = asyncio.create_task(self._resync(), name="resync")
        for key in sorted(self.known):
            self.queue.add(key, cause="start")

    def _namespaces(self) -> list[str]:
        return list(getattr(self.options, "namespace", []) or [])

    async def _sync(self) -> None:
        """Every watched kind listed: our own kinds here (kopf watches them), children and
        Secrets by their own watches (watch.py)."""
        assert self.ctx is not None and isinstance(self.ctx.kube, CachedKube)
        delay = 1.0
        while True:
            try:
                await self.ctx.kube.sync(self._namespaces(), [
                    (API_VERSION, k) for k in (CC_KIND, CE_KIND, CP_KIND)])
                if self.watcher is not None:
                    await self.watcher.wait_synced()
                return
            except Exception as exc:  # the API may be briefly unreachable at start
                log.warning("listing the watched objects failed (%s); retrying in %.0fs",
                            exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    def observe(self, event_type: str | None, body: Any) -> None:
        """A watch event: keep the cache (reads from memory) up to date."""
        self.store.observe(event_type, body)

    def child_event(self, event_type: str, body: Mapping[str, Any]) -> None:
        """A child's watch event: any change (readiness, drift, deletion) re-runs its
        parent's reconcile promptly. A Secret's re-runs the CacheClusters naming it."""
        meta = body["metadata"]
        if body.get("kind") == "Secret":
            if meta.get("namespace"):
                self.secret_changed(event_type, body, meta["namespace"], meta["name"])
            return
        old = self.store.get(body.get("apiVersion", ""), body.get("kind", ""),
                             meta.get("namespace") or "", meta["name"])
        self.store.observe(event_type, body)
        if event_type == "DELETED" or child_news(old, body):
            self._parent(body, "child")

    def child_list(self, what: WatchedKind, items: list[dict[str, Any]],
                   namespace: str | None) -> None:
        """A (re)listing of a child kind (or of Secrets): events may have been missed, so
        every parent of what is listed or gone is queued (the first listing queues nothing
        new: leading queues every object anyway)."""
        gone = self.store.replace(what.api_version, what.kind, items, namespace)
        for obj in (*items, *gone):
            if what.kind == "Secret":
                meta = obj["metadata"]
                for cluster in clusters_using(self.store, meta.get("namespace") or "",
                                              meta["name"]):
                    self.queue.add((CC_KIND, meta.get("namespace") or "", cluster),
                                   cause="relist")
            else:
                self._parent(obj, "relist")

    def _parent(self, obj: Mapping[str, Any], cause: str) -> None:
        meta = obj.get("metadata") or {}
        labels, namespace = meta.get("labels") or {}, meta.get("namespace")
        if not namespace:
            return
        if LABEL_CACHECLUSTER in labels:
            self.queue.add((CC_KIND, namespace, labels[LABEL_CACHECLUSTER]), cause=cause)
        if LABEL_CONTENTEDGE in labels:
            # a ContentEdge's edges become ready a pod at a time in each region: their
            # events within CHILD_SETTLE_SECONDS make one run (a CacheCluster's pods, which
            # pace its scale steps, are not held back)
            self.queue.add((CE_KIND, namespace, labels[LABEL_CONTENTEDGE]), cause=cause,
                           delay=CHILD_SETTLE_SECONDS if cause == "child" else 0.0)

    async def _stand_by(self) -> None:
        metrics.LEADER.set(0)
        if self._resync_task is not None:
            self._resync_task.cancel()
        await self.queue.stop()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._stand_by()
        if self.watcher is not None:
            await self.watcher.stop()
        if self._site is not None:
            await self._site.cleanup()

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n" if self.started else "starting\n",
                            status=200 if self.started else 503)

    def seen(self, kind: str, namespace: str, name: str, deleted: bool = False,
             enqueue: bool = True) -> None:
        key = (kind, namespace, name)
        if deleted:
            self.known.discard(key)
            self.queue.forget(key)
            self.unchanged.forget(key)
            if self.ctx is not None:  # per-object memory of the reconciles goes with it
                self.ctx.origin_health.pop((namespace, name), None)
                self.ctx.dns_checked.discard((namespace, name))
            return
        self.known.add(key)
        if enqueue:
            self.queue.add(key, cause="object")

    def secret_changed(self, event_type: str | None, body: Any, namespace: str,
                       name: str) -> None:
        """A Secret's watch event: kept (its data) only when a CacheCluster names it; those
        CacheClusters are reconciled again, also after a permanent error (a missing or bad
        Secret is fixed by changing the Secret, not the CacheCluster)."""
        self.store.observe(event_type, body)
        for cluster in clusters_using(self.store, namespace, name):
            key = (CC_KIND, namespace, cluster)
            if self.ctx is not None:
                self.ctx.failed_generation.pop(key, None)
            self.queue.add(key, cause="secret")

    def enqueue(self, kind: str, namespace: str, name: str) -> None:
        self.queue.add((kind, namespace, name), cause="object")

    def cachecluster_changed(self, namespace: str, name: str,
                             cluster: Mapping[str, Any] | None) -> None:
        """A CacheCluster's routing state changed: reconcile the ContentEdges that use it
        (named in a region, or serving its region by default; all of them when a
        ContentEdge is not in the cache yet) - after FANOUT_SETTLE_SECONDS, so that the steps
        of clusters scaling at the same time (each pod's readiness is one) re-plan each
        ContentEdge once, not once per step of every cluster it uses."""
        region = ((cluster or {}).get("spec") or {}).get("region")
        for kind, ns, ce_name in list(self.known):
            if kind != CE_KIND or ns != namespace:
                continue
            ce = self.store.get(API_VERSION, CE_KIND, ns, ce_name)
            if ce is None or uses_cluster(ce, name, region):
                self.queue.add((kind, ns, ce_name), delay=FANOUT_SETTLE_SECONDS,
                               cause="cachecluster")

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.options.resync_seconds)
            for key in sorted(self.known):
                self.queue.add(key, cause="resync")

    async def _reconcile(self, key: Hashable) -> float | None:
        assert self.ctx is not None
        assert isinstance(key, tuple)
        kind, namespace, name = (str(k) for k in key)
        started = time.perf_counter()
        result = "error"
        inputs = None
        kube = self.ctx.kube
        if kind == CE_KIND and isinstance(kube, CachedKube):
            # controller/unchanged.py: the same versions of everything it reads -> done
            inputs = contentedge_inputs(self.store, namespace, name, CE_CHILD_KINDS)
            if self.unchanged.unchanged(key, inputs, time.monotonic()):
                metrics.RECONCILES.labels(kind=kind, result="unchanged",
                                          cause=self.queue.cause(key)).inc()
                return None
        writes = kube.writes if isinstance(kube, CachedKube) else 0
        requeue: float | None = None
        try:
            requeue = await reconcile_once(self.ctx, kind, namespace, name,
                                           self.queue.failures(key) + 1)
            result = "ok"
            return requeue
        finally:
            if kind == CE_KIND and isinstance(kube, CachedKube):
                # another reconcile's write meanwhile also counts: then nothing is recorded
                self.unchanged.record(key, inputs, time.monotonic(), idle=(
                    result == "ok" and requeue is None and kube.writes == writes))
            metrics.RECONCILES.labels(kind=kind, result=result,
                                      cause=self.queue.cause(key)).inc()
            metrics.RECONCILE_SECONDS.labels(kind=kind).observe(time.perf_counter() - started)


def parse_edge_admin_addresses(items: list[str]) -> dict[str, str]:
    """``--edge-admin-address POD=HOST:PORT`` items as a mapping; a bad item is a ValueError
    naming it."""
    out: dict[str, str] = {}
    for item in items:
        pod, eq, address = item.partition("=")
        host, colon, port = address.rpartition(":")
        if not eq or not pod.strip() or not colon or not host or not port.isdigit():
            raise ValueError(f"edge admin address {item!r}: expected pod=host:port")
        out[pod.strip()] = address.strip()
    return out


def cluster_view(name: str, cluster: Mapping[str, Any] | None) -> tuple[Any, ...]:
    """What ContentEdges read of a CacheCluster: its routing facts, spec version, readiness.
    Another status message or count is no reason to re-plan 200 ContentEdges."""
    if cluster is None:
        return (None,)
    try:
        facts = cache_facts(name, cluster)
    except ValueError:
        facts = None
    meta = cluster.get("metadata") or {}
    return (facts, meta.get("generation"), meta.get("uid"))


def uses_cluster(ce: Mapping[str, Any], cluster: str, region: str | None) -> bool:
    for r in ((ce.get("spec") or {}).get("regions") or []):
        named = r.get("cacheCluster")
        if named == cluster or (not named and (r.get("name") == region or
                                               r.get("name") == cluster)):
            return True
    return False


async def reconcile_once(ctx: Context, kind: str, namespace: str, name: str,
                         attempt: int = 1) -> float | None:
    """One reconcile with the error model of errors.py: a permanent failure is reported and
    not retried (returns None); a temporary one is raised for the queue's backoff, reported
    in the status from the RETRIES_BEFORE_REPORT-th attempt in a row."""
    try:
        if kind == CC_KIND:
            return await reconcile_cachecluster(ctx, namespace, name)
        if kind == CP_KIND:
            return await reconcile_contentpurge(ctx, namespace, name)
        return await reconcile_contentedge(ctx, namespace, name)
    except Exception as exc:
        verdict = classify(exc)
        raw = await _fresh(ctx, kind, namespace, name)
        if isinstance(verdict, PermanentError):
            log.warning("%s %s/%s: %s (not retried until the object changes)", kind,
                        namespace, name, verdict)
            if raw is not None:
                await report_permanent(ctx, raw, verdict)
            return None
        if attempt >= RETRIES_BEFORE_REPORT and raw is not None:
            try:
                await report_retrying(ctx, raw, verdict, exc, attempt)
            except Exception as report_exc:  # the API may be what fails
                log.warning("could not report the failure of %s %s/%s: %s", kind, namespace,
                            name, report_exc)
        raise


async def _fresh(ctx: Context, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return await ctx.kube.get(API_VERSION, kind, namespace, name, fresh=True)
    except Exception:
        return None


async def _metrics(_: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


# The children the operator owns, watched by label (watch.py), and the Aerospike pods.
# A CacheCluster's routing change reaches the ContentEdges using it this much later (at most:
# a pending reconcile is not pushed back), coalescing the changes of that window.
FANOUT_SETTLE_SECONDS = 2.0
# A ContentEdge's children's events (its edges' readiness) coalesce over this window: 959
# runs for 200 ContentEdges becoming Ready without it (bench_operator, quiet machine).
CHILD_SETTLE_SECONDS = 2.0

# What of a child's status a reconcile reads, by kind: an edge Deployment's ready count
# (ContentEdge), a Service's load-balancer address (DNS), all of an Aerospike pod's (readiness,
# the gate, its IP). Nothing else reads a child's status - not even a StatefulSet's (the
# CacheCluster reads its pods): a change of the rest of a status is no news. The Deployment
# controller alone writes 4-6 status versions per rollout, each of which re-ran a ContentEdge.
STATUS_READ: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "Deployment": lambda status: status.get("readyReplicas"),
    "Service": lambda status: status.get("loadBalancer"),
    "Pod": lambda status: status,
}
_VOLATILE_META = ("resourceVersion", "managedFields")


def child_news(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether a child's watch event can change what its parent's reconcile decides. Not:
    the store already holds that very version (the operator's own write, stored from the
    API's answer, coming back as an event), or only bookkeeping metadata or a part of the
    status no reconcile reads (STATUS_READ) changed."""
    if old is None:
        return True
    old_meta, new_meta = old.get("metadata") or {}, new.get("metadata") or {}
    if old_meta.get("resourceVersion") == new_meta.get("resourceVersion"):
        return False
    read = STATUS_READ.get(new.get("kind", ""))

    def essence(obj: Mapping[str, Any]) -> dict[str, Any]:
        meta = {k: v for k, v in (obj.get("metadata") or {}).items()
                if k not in _VOLATILE_META}
        return {**{k: v for k, v in obj.items() if k not in ("status", "metadata")},
                "metadata": meta,
                "status": read(obj.get("status") or {}) if read is not None else None}
    return essence(old) != essence(new)


# Secrets: all of them (a CacheCluster names its own, unlabelled; the store keeps only
# those, controller/secrets.py).
CHILDREN = [WatchedKind(api_version, kind, LABELS.get(kind, {})) for api_version, kind
            in WATCHED if api_version != API_VERSION]

RUNTIME = Runtime()
