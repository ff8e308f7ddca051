"""kopf wiring only: watch events feed the cache (reads from memory, cache.py) and become
work-queue keys; startup configures kopf.

The handlers are coroutines: kopf runs them in the event loop (a plain ``def`` handler runs in
a worker thread, where the work queue and the store - both the event loop's - must not be
touched).

Handlers are ``on.event`` only: kopf then stores no progress or diff-base annotations on our
objects and adds no finalizer (children go with garbage collection; nothing has to happen
before a CacheCluster or ContentEdge is deleted).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from aerocdn.controller.context import API_VERSION, CC_KIND, CE_KIND, CP_KIND
from aerocdn.controller.runtime import RUNTIME, cluster_view


class WatchOnlyDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf builds a diff base (a deep copy of the whole object, status included) on every
    watch event, for on.create/on.update/on.field handlers. This operator has only on.event
    handlers, which never read it: an empty essence makes every event's diff empty and
    saves most of kopf's per-event CPU (profiled: a third of the operator's)."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return kopf.BodyEssence()


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Watches that silently hang are kopf's known failure: bound them on both sides.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.watching.inactivity_timeout = 600
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 15
    # Our own Events say what happened; kopf's per-handler events would be noise.
    settings.posting.enabled = False
    settings.persistence.finalizer = "aerocdn.dev/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="aerocdn.dev")
    settings.persistence.diffbase_storage = WatchOnlyDiffBase(
        prefix="aerocdn.dev", key="last-handled-configuration")
    await RUNTIME.start()


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    await RUNTIME.stop()


def needs_reconcile(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> bool:
    """Whether a watch event of one of our objects is a reason to reconcile it: anything but
    a change of its status alone. The operator is the only writer of the status, and each of
    its status writes came back as an event that queued one more reconcile of the object,
    which then found nothing to do (a third of all reconciles at 200 ContentEdges); work in
    progress is re-queued by the reconcile itself (poll)."""
    if before is None or after is None:
        return True
    b, a = before.get("metadata") or {}, after.get("metadata") or {}
    return any(b.get(k) != a.get(k) for k in
               ("uid", "generation", "labels", "annotations", "deletionTimestamp"))


def _own_event(kind: str, type: str, body: kopf.Body, namespace: str, name: str
               ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """An event of one of aerocdn's own kinds: kept in the cache, the object queued when it
    needs a reconcile; -> its stored versions before and after."""
    before = RUNTIME.store.get(API_VERSION, kind, namespace, name)
    RUNTIME.observe(type, body)
    after = RUNTIME.store.get(API_VERSION, kind, namespace, name)
    RUNTIME.seen(kind, namespace, name, deleted=type == "DELETED",
                 enqueue=needs_reconcile(before, after))
    return before, after


@kopf.on.event("aerocdn.dev", "v1alpha1", "cacheclusters")
async def cachecluster_event(type: str, body: kopf.Body, namespace: str | None, name: str,
                       **_: Any) -> None:
    assert namespace is not None
    before, after = _own_event(CC_KIND, type, body, namespace, name)
    if cluster_view(name, before) != cluster_view(name, after):
        RUNTIME.cachecluster_changed(namespace, name, after or before)


@kopf.on.event("aerocdn.dev", "v1alpha1", "contentedges")
async def contentedge_event(type: str, body: kopf.Body, namespace: str | None, name: str,
                      **_: Any) -> None:
    assert namespace is not None
    _own_event(CE_KIND, type, body, namespace, name)


@kopf.on.event("aerocdn.dev", "v1alpha1", "contentpurges")
async def contentpurge_event(type: str, body: kopf.Body, namespace: str | None, name: str,
                             **_: Any) -> None:
    assert namespace is not None
    _own_event(CP_KIND, type, body, namespace, name)


# Children (Deployments, StatefulSets, ..., Aerospike pods) are listed and watched by
# watch.py, not kopf: their events only update the cache and queue the parent.


# Secrets a CacheCluster names (Enterprise TLS, access control) are watched by watch.py too:
# the store keeps only those, and a change re-runs the CacheClusters naming them
# (Runtime.secret_changed, controller/secrets.py).


logging.getLogger("kopf.objects").setLevel(logging.WARNING)
