"""The one wrapper through which the operator talks to the Kubernetes API.

Every request goes through :meth:`Kube.request`, which counts it (and every write) for
/metrics and turns HTTP errors into :class:`KubeError`. Children are written with
server-side apply under one field manager; blocking client calls run in a thread.
"""

from __future__ import annotations

import asyncio
import builtins
import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from kubernetes import client, config

from aerocdn.constants import FIELD_MANAGER
from aerocdn.controller import metrics

log = logging.getLogger(__name__)

# apiVersion/kind -> plural. Only what the operator touches.
PLURALS: dict[tuple[str, str], str] = {
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Service"): "services",
    ("v1", "Pod"): "pods",
    ("v1", "Event"): "events",
    ("v1", "Secret"): "secrets",
    ("v1", "PersistentVolumeClaim"): "persistentvolumeclaims",
    ("storage.k8s.io/v1", "StorageClass"): "storageclasses",
    ("apps/v1", "StatefulSet"): "statefulsets",
    ("apps/v1", "Deployment"): "deployments",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudgets",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "horizontalpodautoscalers",
    ("networking.k8s.io/v1", "NetworkPolicy"): "networkpolicies",
    ("externaldns.k8s.io/v1alpha1", "DNSEndpoint"): "dnsendpoints",
    ("aerocdn.dev/v1alpha1", "CacheCluster"): "cacheclusters",
    ("aerocdn.dev/v1alpha1", "ContentEdge"): "contentedges",
    ("aerocdn.dev/v1alpha1", "ContentPurge"): "contentpurges",
}
WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE"}


class KubeError(Exception):
    def __init__(self, status: int, reason: str, body: Any = None):
        self.status = status
        self.reason = reason
        self.body = body
        message = body.get("message") if isinstance(body, dict) else None
        super().__init__(f"{status} {reason}: {message or body}")


@dataclass(frozen=True)
class Ref:
    api_version: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, obj: dict[str, Any]) -> Ref:
        meta = obj["metadata"]
        return cls(obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])


def path(api_version: str, kind: str, namespace: str | None, name: str | None = None,
         sub: str | None = None) -> str:
    plural = PLURALS[(api_version, kind)]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    if namespace:
        base += f"/namespaces/{quote(namespace)}"
    base += f"/{plural}"
    if name:
        base += f"/{quote(name)}"
    if sub:
        base += f"/{sub}"
    return base


def load_config() -> client.ApiClient:
    """In-cluster config in a pod, else KUBECONFIG / ~/.kube/config."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


class Kube:
    def __init__(self, api: client.ApiClient | None = None):
        self.api = api or load_config()

    def _call(self, method: str, url_path: str, query: list[tuple[str, str]] | None,
              body: Any, content_type: str | None) -> Any:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        m, url, hdrs, data, post = self.api.param_serialize(
            method=method, resource_path=url_path, query_params=query or [],
            header_params=headers, body=body, auth_settings=["BearerToken"])
        resp = self.api.call_api(m, url, hdrs, data, post, _request_timeout=(10, 60))
        raw = resp.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
        if not 200 <= resp.status < 300:
            raise KubeError(resp.status, resp.reason or "", parsed)
        return parsed

    async def request(self, method: str, url_path: str, *, kind: str,
                      query: list[tuple[str, str]] | None = None, body: Any = None,
                      content_type: str | None = None, count: bool = True) -> Any:
        """One API call. ``count=False`` keeps it out of the request/write metrics (lease
        renewals of leader election: they are not reconcile work)."""
        if count:
            metrics.API_REQUESTS.labels(verb=method, kind=kind).inc()
            if method in WRITE_VERBS:
                metrics.API_WRITES.labels(verb=method, kind=kind).inc()
        return await asyncio.to_thread(self._call, method, url_path, query, body, content_type)

    async def get(self, api_version: str, kind: str, namespace: str, name: str, *,
                  fresh: bool = False) -> dict[str, Any] | None:
        """``fresh``: callers that must not be answered from a cache say so (CachedKube)."""
        try:
            obj: dict[str, Any] = await self.request(
                "GET", path(api_version, kind, namespace, name), kind=kind)
            return obj
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, api_version: str, kind: str, namespace: str | None,
                   selector: dict[str, str] | None = None, *,
                   fresh: bool = False) -> builtins.list[dict[str, Any]]:
        query = []
        if selector:
            query.append(("labelSelector", ",".join(f"{k}={v}" for k, v in
                                                    sorted(selector.items()))))
        result = await self.request("GET", path(api_version, kind, namespace), kind=kind,
                                    query=query)
        items: builtins.list[dict[str, Any]] = result.get("items", [])
        for item in items:  # list items carry no apiVersion/kind
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return items

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply under the aerocdn field manager (conflicts forced: we own these)."""
        ref = Ref.of(obj)
        result: dict[str, Any] = await self.request(
            "PATCH", path(ref.api_version, ref.kind, ref.namespace, ref.name), kind=ref.kind,
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")], body=obj,
            content_type="application/apply-patch+yaml")
        return result

    async def delete(self, api_version: str, kind: str, namespace: str, name: str, *,
                     propagation: str = "Background") -> bool:
        """``propagation="Orphan"`` leaves the object's dependents (a StatefulSet's pods)."""
        try:
            await self.request("DELETE", path(api_version, kind, namespace, name), kind=kind,
                               body={"propagationPolicy": propagation})
            return True
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise

    async def patch_status(self, api_version: str, kind: str, namespace: str, name: str,
                           status: dict[str, Any]) -> dict[str, Any]:
        # The whole status is replaced (a merge patch would keep keys we dropped).
        result: dict[str, Any] = await self.request(
            "PATCH", path(api_version, kind, namespace, name, "status"), kind=kind,
            body=[{"op": "add", "path": "/status", "value": status}],
            content_type="application/json-patch+json")
        return result

    async def patch_pod_conditions(self, namespace: str, name: str,
                                   conditions: builtins.list[dict[str, Any]]) -> None:
        # Strategic merge on pods/status merges conditions by type.
        await self.request("PATCH", path("v1", "Pod", namespace, name, "status"), kind="Pod",
                           body={"status": {"conditions": conditions}},
                           content_type="application/strategic-merge-patch+json")

    async def delete_pod(self, namespace: str, name: str) -> None:
        await self.delete("v1", "Pod", namespace, name)

    async def event(self, involved: dict[str, Any], type_: str, reason: str,
                    message: str) -> None:
        """Record a core/v1 Event on an object; failures are logged, never raised."""
        meta = involved["metadata"]
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": involved["apiVersion"], "kind": involved["kind"],
                "name": meta["name"], "namespace": meta["namespace"], "uid": meta.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "aerocdn"},
            "reportingComponent": "aerocdn",
            "reportingInstance": "aerocdn",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self.request("POST", path("v1", "Event", meta["namespace"]), kind="Event",
                               body=body)
        except Exception as exc:  # an Event is best effort; never fail a reconcile for it
            log.warning("could not record event %s on %s/%s: %s", reason, involved["kind"],
                        meta["name"], exc)
