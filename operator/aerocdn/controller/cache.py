"""Reads from memory: an informer-like store of the objects the watches deliver, and the Kube
wrapper that answers reads from it.

kopf's ``on.event`` handlers (handlers.py) put every version of every watched object here.
When the operator starts leading, each watched kind is listed once from the API (so a
reconcile never decides from a store that has not seen everything yet: a missing
StatefulSet read as absent could be re-applied with fewer replicas). After that, reconciles
read CacheClusters, ContentEdges and their children from memory; writes go to the API and
their answers update the store at once (so the next reconcile does not write again before the
watch event arrives). Reads that decide safety ask the API directly (``fresh=True``: the pods
and StatefulSets right before a node may leave).
"""

from __future__ import annotations

import builtins
import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aerocdn.constants import API_VERSION, CC_KIND, CE_KIND, CP_KIND, MANAGED
from aerocdn.controller.kube import Kube, KubeError

Kind = tuple[str, str]  # apiVersion, kind
# What the store keeps of an object of a kind: the object (or a part of it), or None to keep
# nothing (and forget an older version).
Shape = Callable[[Mapping[str, Any]], "Mapping[str, Any] | None"]


def _rv(obj: Mapping[str, Any]) -> int:
    try:
        return int(obj["metadata"].get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return 0


def _copy(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of a JSON object (dicts, lists, scalars): what the watches and the API
    deliver. Several times faster than copy.deepcopy, which every watch event went through."""
    def copy_(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: copy_(v) for k, v in value.items()}
        if isinstance(value, list):
            return [copy_(v) for v in value]
        return value
    return {k: copy_(v) for k, v in obj.items()}


class Store:
    """Objects by kind, namespace and name; a newer resourceVersion never loses to an older."""

    def __init__(self, kinds: Iterable[Kind]):
        self._objects: dict[Kind, dict[tuple[str, str], dict[str, Any]]] = {
            k: {} for k in kinds}
        # (namespace, label, value) -> keys, and (namespace, "", "") -> every key of the
        # namespace: a reconcile lists its children by label thousands of times a minute.
        self._index: dict[Kind, dict[tuple[str, str, str], set[tuple[str, str]]]] = {
            k: {} for k in kinds}
        self.synced: set[Kind] = set()
        self.shapes: dict[Kind, Shape] = {}

    @staticmethod
    def _terms(key: tuple[str, str], obj: Mapping[str, Any]) -> list[tuple[str, str, str]]:
        labels = obj["metadata"].get("labels") or {}
        return [(key[0], "", ""), *((key[0], k, str(v)) for k, v in labels.items())]

    def _unindex(self, kind: Kind, key: tuple[str, str], obj: Mapping[str, Any]) -> None:
        index = self._index[kind]
        for term in self._terms(key, obj):
            keys = index.get(term)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del index[term]

    def watches(self, kind: Kind) -> bool:
        return kind in self._objects

    def ready(self, kind: Kind) -> bool:
        return kind in self.synced

    def upsert(self, api_version: str, kind: str, obj: Mapping[str, Any], *,
               owned: bool = False) -> None:
        """``owned``: ``obj`` was made for the store alone (a watch event's body: kopf parses
        each event afresh and never edits it), so it is kept without a deep copy."""
        bucket = self._objects.get((api_version, kind))
        if bucket is None:
            return
        meta = obj["metadata"]
        key = (meta.get("namespace") or "", meta["name"])
        old = bucket.get(key)
        if old is not None and _rv(old) > _rv(obj):
            return
        shape = self.shapes.get((api_version, kind))
        if shape is not None:
            shaped = shape(obj)
            if shaped is None:
                self.remove(api_version, kind, key[0], key[1])
                return
            obj, owned = shaped, owned or shaped is not obj
        stored = dict(obj) if owned else _copy(obj)
        stored.setdefault("apiVersion", api_version)
        stored.setdefault("kind", kind)
        if old is not None:
            self._unindex((api_version, kind), key, old)
        bucket[key] = stored
        index = self._index[(api_version, kind)]
        for term in self._terms(key, stored):
            index.setdefault(term, set()).add(key)

    def remove(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        bucket = self._objects.get((api_version, kind))
        if bucket is not None:
            old = bucket.pop((namespace, name), None)
            if old is not None:
                self._unindex((api_version, kind), (namespace, name), old)

    def replace(self, api_version: str, kind: str, items: Iterable[Mapping[str, Any]],
                namespace: str | None = None) -> list[dict[str, Any]]:
        """A full listing (of one namespace, or of all): what it does not contain is gone,
        unless a watch event newer than every listed object brought it meanwhile. Returns
        the objects that are gone."""
        bucket = self._objects.setdefault((api_version, kind), {})
        self._index.setdefault((api_version, kind), {})
        listed = list(items)
        newest = max((_rv(i) for i in listed), default=0)
        kept = {(i["metadata"].get("namespace") or "", i["metadata"]["name"]) for i in listed}
        gone = []
        for key, o in list(bucket.items()):
            if (namespace is None or key[0] == namespace) and key not in kept \
                    and _rv(o) <= newest:
                gone.append(o)
                self.remove(api_version, kind, *key)
        for item in listed:
            self.upsert(api_version, kind, item)
        self.synced.add((api_version, kind))
        return gone

    def observe(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A watch event (kopf's ``type``: None while listing, ADDED, MODIFIED, DELETED).
        The body is kept as it is (see ``upsert``): kopf parses every event's object from
        the stream and neither keeps nor edits it - the operator has no daemons or timers,
        for which kopf would keep the last body."""
        api_version, kind = body.get("apiVersion", ""), body.get("kind", "")
        if event_type == "DELETED":
            meta = body["metadata"]
            self.remove(api_version, kind, meta.get("namespace") or "", meta["name"])
        else:
            self.upsert(api_version, kind, body, owned=True)

    # Reads hand out the stored objects themselves (no copy: reconciles read thousands of
    # them); they are read-only by contract - the store replaces, never edits, an object.
    def get(self, api_version: str, kind: str, namespace: str, name: str
            ) -> dict[str, Any] | None:
        return self._objects[(api_version, kind)].get((namespace, name))

    def list(self, api_version: str, kind: str, namespace: str | None,
             selector: Mapping[str, str] | None = None) -> builtins.list[dict[str, Any]]:
        bucket = self._objects[(api_version, kind)]
        selector = selector or {}
        if namespace:
            index = self._index[(api_version, kind)]
            terms = [(namespace, k, v) for k, v in selector.items()] or [(namespace, "", "")]
            candidates: list[set[tuple[str, str]]] = [index.get(t, set()) for t in terms]
            keys: Iterable[tuple[str, str]] = sorted(candidates, key=len)[0]
        else:
            keys = bucket.keys()
        out = []
        for key in sorted(keys):
            obj = bucket[key]
            labels = obj["metadata"].get("labels") or {}
            if all(labels.get(k) == v for k, v in selector.items()):
                out.append(obj)
        return out


class CachedKube:
    """The Kube wrapper with reads of watched kinds answered from a Store; every other call
    goes to ``api`` (the real Kube; a stand-in in tests)."""

    def __init__(self, store: Store, api: Kube):
        self.store = store
        self.api = api
        # writes (applies, deletes, status patches, Events) made through this wrapper so far:
        # a reconcile during which it did not move wrote nothing
        self.writes = 0

    def _cached(self, api_version: str, kind: str, fresh: bool) -> bool:
        return not fresh and self.store.ready((api_version, kind))

    async def get(self, api_version: str, kind: str, namespace: str, name: str, *,
                  fresh: bool = False) -> dict[str, Any] | None:
        if self._cached(api_version, kind, fresh):
            return self.store.get(api_version, kind, namespace, name)
        obj = await self.api.get(api_version, kind, namespace, name)
        if obj is not None:
            self.store.upsert(api_version, kind, obj)
        return obj

    async def list(self, api_version: str, kind: str, namespace: str | None,
                   selector: dict[str, str] | None = None, *,
                   fresh: bool = False) -> builtins.list[dict[str, Any]]:
        if self._cached(api_version, kind, fresh):
            return self.store.list(api_version, kind, namespace, selector)
        items = await self.api.list(api_version, kind, namespace, selector)
        for item in items:
            self.store.upsert(api_version, kind, item)
        return items

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.writes += 1
        result = await self.api.apply(obj)
        if result:
            # the API's answer, parsed for this call alone: kept without a copy (and
            # read-only from now on, as everything the store hands out)
            self.store.upsert(obj["apiVersion"], obj["kind"], result, owned=True)
        return result

    async def delete(self, api_version: str, kind: str, namespace: str, name: str, *,
                     propagation: str = "Background") -> bool:
        self.writes += 1
        deleted = await self.api.delete(api_version, kind, namespace, name,
                                        propagation=propagation)
        if kind == "Pod" and deleted:
            # a deleted pod terminates first: keep it, terminating, until the watch says gone
            pod = copy.deepcopy(self.store.get(api_version, kind, namespace, name))
            if pod is not None:
                pod["metadata"].setdefault("deletionTimestamp", "deleting")
                self.store.upsert(api_version, kind, pod)
        else:
            self.store.remove(api_version, kind, namespace, name)
        return deleted

    async def delete_pod(self, namespace: str, name: str) -> None:
        await self.delete("v1", "Pod", namespace, name)

    async def patch_status(self, api_version: str, kind: str, namespace: str, name: str,
                           status: dict[str, Any]) -> dict[str, Any]:
        self.writes += 1
        result = await self.api.patch_status(api_version, kind, namespace, name, status)
        if result:
            self.store.upsert(api_version, kind, result, owned=True)  # as in apply
        return result

    async def patch_pod_conditions(self, namespace: str, name: str,
                                   conditions: builtins.list[dict[str, Any]]) -> None:
        self.writes += 1
        await self.api.patch_pod_conditions(namespace, name, conditions)
        pod = copy.deepcopy(self.store.get("v1", "Pod", namespace, name))
        if pod is not None:
            status = pod.setdefault("status", {})
            by_type = {c.get("type"): c for c in status.get("conditions") or []}
            by_type.update({c["type"]: c for c in conditions})
            status["conditions"] = list(by_type.values())
            self.store.upsert("v1", "Pod", pod)

    async def event(self, involved: dict[str, Any], type_: str, reason: str,
                    message: str) -> None:
        self.writes += 1
        await self.api.event(involved, type_, reason, message)

    async def request(self, method: str, url_path: str, **kwargs: Any) -> Any:
        if method.upper() != "GET":
            self.writes += 1
        return await self.api.request(method, url_path, **kwargs)

    async def sync(self, namespaces: builtins.list[str],
                   kinds: Iterable[Kind] | None = None) -> None:
        """List every watched kind (or ``kinds``) once (all namespaces, or each of
        ``namespaces``)."""
        for api_version, kind in list(kinds if kinds is not None else self.store._objects):
            items: builtins.list[dict[str, Any]] = []
            scopes: builtins.list[str | None] = [*namespaces] or [None]
            try:
                for ns in scopes:
                    items += await self.api.list(api_version, kind, ns, LABELS.get(kind))
            except KubeError as exc:
                if exc.status == 404:  # an API that is not installed
                    continue
                raise
            self.store.replace(api_version, kind, items)


# Only what the watches deliver (handlers.py): managed children and Aerospike pods.
LABELS: dict[str, dict[str, str]] = {
    "StatefulSet": MANAGED, "Deployment": MANAGED, "ConfigMap": MANAGED, "Service": MANAGED,
    "PodDisruptionBudget": MANAGED, "HorizontalPodAutoscaler": MANAGED,
    "NetworkPolicy": MANAGED,
    "Pod": {"app.kubernetes.io/name": "aerospike", **MANAGED},
}
WATCHED: list[Kind] = [
    (API_VERSION, CC_KIND), (API_VERSION, CE_KIND), (API_VERSION, CP_KIND),
    ("apps/v1", "StatefulSet"), ("apps/v1", "Deployment"), ("v1", "ConfigMap"),
    ("v1", "Service"), ("policy/v1", "PodDisruptionBudget"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"), ("networking.k8s.io/v1", "NetworkPolicy"),
    ("v1", "Pod"),
    # Only the Secrets CacheClusters name, and of them only their data (controller/secrets.py)
    ("v1", "Secret"),
]


_PARSED: dict[tuple[str, str, str], Any] = {}
_PARSED_MAX = 4096


def parse_cached(raw: Mapping[str, Any]) -> Any:
    """parse_object(raw), remembered per object version (uid, resourceVersion): a ContentEdge
    reconcile reads every CacheCluster of its namespace, and most have not changed since."""
    from aerocdn.api import parse_object

    meta = raw["metadata"]
    key = (raw.get("kind", ""), str(meta.get("uid")), str(meta.get("resourceVersion")))
    if meta.get("resourceVersion") is None or meta.get("uid") is None:
        return parse_object(raw, "")
    found = _PARSED.get(key)
    if found is None:
        found = parse_object(raw, "")  # InputError propagates, and is not remembered
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.pop(next(iter(_PARSED)))
        _PARSED[key] = found
    return found
