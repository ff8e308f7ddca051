"""NetworkPolicies around the edges and the cache clusters (issue 11).

Pure: models in, objects out.

- per ContentEdge region (``<ce>-<region>``): the edge pods accept the public ports from
  anywhere, and the admin port (purge fan-out, /metrics, probes) only from the same
  ContentEdge's edge pods, the operator, and namespaces listed for metrics scraping;
- per CacheCluster a ContentEdge uses (``<ce>-to-<cc>``): that ContentEdge's edge pods may
  reach the cluster's Aerospike service port.  An allow-rule; it isolates nothing alone;
- per CacheCluster (``cachecluster_network_policy``, CacheCluster ``spec.networkPolicy``):
  the Aerospike pods are isolated - service port from the operator (and whatever
  ``<ce>-to-<cc>`` policies allow), fabric and heartbeat only between the cluster's own
  pods, the exporter port from the metrics namespaces.

Knows no port or label of its own: the renderers of each kind pass them in (no import
cycle with render.cachecluster, which renders the cluster side).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

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
    admin_from = [same_ce, operator_peer(operator_namespace), *_namespaces(metrics_namespaces)]
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
                         cache_selector: dict[str, str], service_port: int,
                         obj_labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"{ce_name}-to-{cache_cluster}", "namespace": namespace,
                     "labels": obj_labels},
        "spec": {
            "podSelector": {"matchLabels": cache_selector},
            "policyTypes": ["Ingress"],
            "ingress": [{
                "ports": [_tcp(service_port)],
                "from": [{"podSelector": {"matchLabels": {
                    "app.kubernetes.io/name": "aerocdn-edge",
                    "app.kubernetes.io/instance": ce_name}}}],
            }],
        },
    }


def _namespaces(names: Iterable[str]) -> list[dict[str, Any]]:
    return [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}
            for ns in sorted(set(names))]


def cachecluster_network_policy(*, name: str, namespace: str, selector: dict[str, str],
                                obj_labels: dict[str, str], operator_namespace: str,
                                client_ports: Iterable[int], peer_ports: Iterable[int],
                                metrics_port: int | None,
                                metrics_namespaces: Iterable[str] = ()) -> dict[str, Any]:
    """Isolate a CacheCluster's pods: the operator reaches the client ports (info calls),
    the cluster's own pods reach the client and peer ports (migrations, clustering); edges
    get in only through their ContentEdge's ``<ce>-to-<cc>`` policy; Prometheus from
    ``metrics_namespaces`` reaches the exporter."""
    clients = [_tcp(p) for p in client_ports]
    ingress: list[dict[str, Any]] = [
        {"ports": clients, "from": [operator_peer(operator_namespace)]},
        {"ports": clients + [_tcp(p) for p in peer_ports],
         "from": [{"podSelector": {"matchLabels": selector}}]},
    ]
    if metrics_port is not None and metrics_namespaces:
        ingress.append({"ports": [_tcp(metrics_port)], "from": _namespaces(metrics_namespaces)})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace, "labels": obj_labels},
        "spec": {"podSelector": {"matchLabels": selector},
                 "policyTypes": ["Ingress"], "ingress": ingress},
    }
