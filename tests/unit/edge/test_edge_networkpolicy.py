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
from aerocdn.render.networkpolicy import cachecluster_network_policy

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


def cc(name: str) -> CacheCluster:
    return CacheCluster.model_validate({
        "apiVersion": "aerocdn.dev/v1alpha1", "kind": "CacheCluster",
        "metadata": {"name": name, "namespace": NS, "uid": "u-" + name},
        "spec": {"region": "eu", "size": 1}})


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
    nps += [cachecluster_network_policy(n, NS, "aerocdn-system") for n in clusters]
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
