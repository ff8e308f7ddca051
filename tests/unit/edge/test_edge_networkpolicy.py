"""NetworkPolicies for edges and cache clusters: valid objects, and - evaluated with the
NetworkPolicy ingress rules (a small evaluator of the Kubernetes semantics below) - exactly
the intended peers may reach each port."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest

from aerocdn.api.objects import CacheCluster, ContentEdge
from aerocdn.render.cachecluster import render_cachecluster
from aerocdn.render.contentedge import render_contentedge

NS = "web"


def ce(name: str, cc: str, **spec: Any) -> ContentEdge:
    return ContentEdge.model_validate({
        "apiVersion": "aerocdn.dev/v1alpha1", "kind": "ContentEdge",
        "metadata": {"name": name, "namespace": NS, "uid": "u-" + name},
        "spec": {"hosts": [f"{name}.example.com"], "origin": {"url": "https://o.example.com"},
                 "regions": [{"name": "eu", "cacheCluster": cc}, {"name": "us",
                                                                  "cacheCluster": cc}],
                 "networkPolicy": {"enabled": True, "metricsNamespaces": ["monitoring"]},
                 **spec}})


def cc(name: str, **spec: Any) -> CacheCluster:
    return CacheCluster.model_validate({
        "apiVersion": "aerocdn.dev/v1alpha1", "kind": "CacheCluster",
        "metadata": {"name": name, "namespace": NS, "uid": "u-" + name},
        "spec": {"region": "eu", "size": 1,
                 "networkPolicy": {"enabled": True, "metricsNamespaces": ["monitoring"]},
                 **spec}})


Pod = tuple[str, dict[str, str]]  # (namespace, labels)


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def allowed(policies: list[dict[str, Any]], target: Pod, port: int, source: Pod) -> bool:
    """Kubernetes semantics: a pod selected by no Ingress policy accepts everything; else a
    connection is allowed if any rule of any selecting policy admits the port and peer."""
    t_ns, t_labels = target
    selecting = [p for p in policies if p["metadata"]["namespace"] == t_ns
                 and _matches(p["spec"]["podSelector"], t_labels)]
    if not selecting:
        return True
    s_ns, s_labels = source
    ns_labels = {"kubernetes.io/metadata.name": s_ns}
    for p in selecting:
        for rule in p["spec"].get("ingress", []):
            if not any(x["port"] == port for x in rule.get("ports", [])):
                continue
            peers = rule.get("from")
            if peers is None:
                return True
            for peer in peers:
                ns_ok = (_matches(peer["namespaceSelector"], ns_labels)
                         if "namespaceSelector" in peer else s_ns == t_ns)
                pod_ok = _matches(peer["podSelector"], s_labels) if "podSelector" in peer \
                    else True
                if ns_ok and pod_ok:
                    return True
    return False


def edge_pod(ce_name: str, region: str = "eu") -> Pod:
    return NS, {"app.kubernetes.io/name": "aerocdn-edge", "app.kubernetes.io/instance": ce_name,
                "aerocdn.dev/region": region}


def aerospike_pod(name: str) -> Pod:
    (sts,) = [o for o in render_cachecluster(cc(name)) if o["kind"] == "StatefulSet"]
    return NS, sts["spec"]["template"]["metadata"]["labels"]


OPERATOR: Pod = ("aerocdn-system", {"app.kubernetes.io/name": "aerocdn",
                                    "app.kubernetes.io/component": "operator"})
STRANGER: Pod = ("default", {"app": "something"})
PROMETHEUS: Pod = ("monitoring", {"app": "prometheus"})


@pytest.fixture
def policies() -> list[dict[str, Any]]:
    clusters = {"cc-a": cc("cc-a"), "cc-b": cc("cc-b")}
    objects = (render_contentedge(ce("shop", "cc-a", tls=[
        {"hosts": ["shop.example.com"], "secretName": "shop-tls"}]), clusters)
        + render_contentedge(ce("blog", "cc-b"), clusters))
    nps = [o for o in objects if o["kind"] == "NetworkPolicy"]
    nps += [o for c in clusters.values() for o in render_cachecluster(c)
            if o["kind"] == "NetworkPolicy"]
    assert len(nps) == 2 * 2 + 2 + 2  # per edge region, per edge -> cluster, per cluster
    for o in nps:
        kubernetes_validate.validate(copy.deepcopy(o), "1.34.0", strict=True)
    return nps


def test_only_edges_of_a_contentedge_that_uses_a_cache_cluster_reach_its_aerospike_port(
        policies: list[dict[str, Any]]) -> None:
    a = aerospike_pod("cc-a")
    assert allowed(policies, a, 3000, edge_pod("shop"))
    assert allowed(policies, a, 3000, edge_pod("shop", "us"))
    assert not allowed(policies, a, 3000, edge_pod("blog"))
    assert allowed(policies, aerospike_pod("cc-b"), 3000, edge_pod("blog"))
    assert not allowed(policies, a, 3000, STRANGER)
    assert allowed(policies, a, 3000, OPERATOR)
    assert not allowed(policies, a, 3001, edge_pod("shop"))  # fabric: cluster pods only
    assert allowed(policies, a, 3001, a) and allowed(policies, a, 3002, a)
    assert not allowed(policies, a, 3002, STRANGER)
    assert not allowed(policies, a, 3001, aerospike_pod("cc-b"))  # another cluster's pods
    assert not allowed(policies, a, 9145, PROMETHEUS)  # no exporter in these clusters


def test_the_exporter_only_from_metrics_namespaces_and_tls_ports_for_clients() -> None:
    c = cc("cc-e", exporter={"enabled": True}, edition="enterprise",
           image="aerospike/aerospike-server-enterprise:8.1.0.0",
           featureKeySecretRef={"name": "fk"},
           tls={"secretName": "cc-tls", "service": True, "fabric": True})
    (np,) = [o for o in render_cachecluster(c) if o["kind"] == "NetworkPolicy"]
    kubernetes_validate.validate(copy.deepcopy(np), "1.34.0", strict=True)
    pod = aerospike_pod("cc-e")
    assert allowed([np], pod, 9145, PROMETHEUS)
    assert not allowed([np], pod, 9145, STRANGER)
    assert allowed([np], pod, 4333, OPERATOR) and allowed([np], pod, 3011, pod)
    assert not allowed([np], pod, 3011, OPERATOR)
    assert not allowed([np], pod, 4333, edge_pod("shop"))  # edges: through their own policy


def test_the_admin_port_only_from_the_same_contentedge_the_operator_and_metrics(
        policies: list[dict[str, Any]]) -> None:
    shop_eu = edge_pod("shop")
    assert allowed(policies, shop_eu, 9091, edge_pod("shop", "us"))
    assert allowed(policies, shop_eu, 9091, OPERATOR)
    assert allowed(policies, shop_eu, 9091, PROMETHEUS)
    assert not allowed(policies, shop_eu, 9091, edge_pod("blog"))
    assert not allowed(policies, shop_eu, 9091, STRANGER)
    for port in (8080, 8443):  # the public ports: anyone
        assert allowed(policies, shop_eu, port, STRANGER)
    assert not allowed(policies, edge_pod("blog"), 8443, STRANGER)  # blog has no TLS


def test_no_network_policy_unless_enabled() -> None:
    plain = ce("shop", "cc-a", networkPolicy={"enabled": False})
    assert not [o for o in render_contentedge(plain, {}) if o["kind"] == "NetworkPolicy"]
    plain_cc = cc("cc-a", networkPolicy={"enabled": False})
    assert not [o for o in render_cachecluster(plain_cc) if o["kind"] == "NetworkPolicy"]
