"""NetworkPolicies around the edges and the cache clusters (issue 11).

Pure: models in, objects out.

- per ContentEdge region (``<ce>-<region>``): the edge pods accept the public ports from
  anywhere, and the admin port (purge fan-out, /metrics, probes) only from the same
  ContentEdge's edge pods, the operator, and namespaces listed for metrics scraping;
- per CacheCluster a ContentEdge uses (``<ce>-to-<cc>``): that ContentEdge's edge pods may
  reach the cluster's Aerospike service port.  An allow-rule; it isolates nothing alone;
- per CacheCluster (``cachecluster_network_policy``): the Aerospike pods are isolated -
  service port from the operator (and whatever ``<ce>-to-<cc>`` policies allow), fabric and
  heartbeat only between the cluster's own pods.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aerocdn.render.cachecluster import PORTS, pod_selector
from aerocdn.render.engine import labels

EDGE_PORTS = {"http": 8080, "https": 8443, "admin": 9091}


def operator_peer(operator_namespace: str) -> dict[str, Any]:
    return {
        "namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": operator_namespace}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "aerocdn",
                                        "app.kubernetes.io/component": "operator"}},
    }


def _tcp(port: int) -> dict[str, Any]:
    return {"protocol": "TCP", "port": port}


def edge_network_policy(*, name: str, namespace: str, ce_name: str,
                        selector: dict[str, str], obj_labels: dict[str, str],
                        operator_namespace: str, metrics_namespaces: Iterable[str],
                        https: bool) -> dict[str, Any]:
    same_ce = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "aerocdn-edge",
                                               "app.kubernetes.io/instance": ce_name}}}
    admin_from = [same_ce, operator_peer(operator_namespace)] + [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}
        for ns in sorted(set(metrics_namespaces))]
    public = [_tcp(EDGE_PORTS["http"])] + ([_tcp(EDGE_PORTS["https"])] if https else [])
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace, "labels": obj_labels},
        "spec": {
            "podSelector": {"matchLabels": selector},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"ports": public},
                {"ports": [_tcp(EDGE_PORTS["admin"])], "from": admin_from},
            ],
        },
    }


def edge_to_cache_policy(*, ce_name: str, namespace: str, cache_cluster: str,
                         obj_labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"{ce_name}-to-{cache_cluster}", "namespace": namespace,
                     "labels": obj_labels},
        "spec": {
            "podSelector": {"matchLabels": pod_selector(cache_cluster)},
            "policyTypes": ["Ingress"],
            "ingress": [{
                "ports": [_tcp(PORTS["service"])],
                "from": [{"podSelector": {"matchLabels": {
                    "app.kubernetes.io/name": "aerocdn-edge",
                    "app.kubernetes.io/instance": ce_name}}}],
            }],
        },
    }


def cachecluster_network_policy(name: str, namespace: str, operator_namespace: str,
                                metrics_namespaces: Iterable[str] = ()) -> dict[str, Any]:
    """Isolate a CacheCluster's pods: the operator reaches the service port (info calls),
    the cluster's own pods reach fabric/heartbeat/service (migrations, clustering); edges
    get in only through their ContentEdge's ``<ce>-to-<cc>`` policy."""
    own = {"podSelector": {"matchLabels": pod_selector(name)}}
    ingress: list[dict[str, Any]] = [
        {"ports": [_tcp(PORTS["service"])], "from": [operator_peer(operator_namespace)]},
        {"ports": [_tcp(PORTS[p]) for p in ("service", "fabric", "heartbeat")], "from": [own]},
    ]
    if metrics_namespaces:
        ingress.append({"ports": [_tcp(9145)], "from": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}
            for ns in sorted(set(metrics_namespaces))]})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {**labels("aerospike", name, "cache"),
                                "aerocdn.dev/cachecluster": name}},
        "spec": {"podSelector": {"matchLabels": pod_selector(name)},
                 "policyTypes": ["Ingress"], "ingress": ingress},
    }
