"""What gets created for a ContentEdge: per region an edge config, Deployment, Services,
PodDisruptionBudget and (optionally) HorizontalPodAutoscaler; plus the routing ConfigMap."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from typing import Any

from aerocdn.api.common import parse_quantity
from aerocdn.api.contentedge import KIND, EdgeRegion
from aerocdn.api.objects import CacheCluster, ContentEdge
from aerocdn.edge.config import CacheClusterRef, EdgeConfig
from aerocdn.render.cachecluster import CONTAINER_SECURITY, PORTS
from aerocdn.render.engine import config_hash, finish, labels, owner_references, render_objects
from aerocdn.render.nginx import render_nginx_conf
from aerocdn.render.placement import image_pull, pod_placement
from aerocdn.yamlio import dump

DEFAULT_EDGE_RESOURCES = {
    "requests": {"cpu": "250m", "memory": "256Mi"},
    "limits": {"memory": "512Mi"},
}
DEFAULT_NGINX_RESOURCES = {
    "requests": {"cpu": "250m", "memory": "128Mi"},
    "limits": {"memory": "256Mi"},
}
# The emptyDir under nginx's cache holds its temp files too: leave room above max_size.
L1_SLACK = 1.1


def region_name(ce_name: str, region: str) -> str:
    return f"{ce_name}-{region}"


def routing_configmap_name(ce_name: str) -> str:
    return f"{ce_name}-routing"


def cache_cluster_of(region: EdgeRegion, clusters: Mapping[str, CacheCluster]) -> str:
    """The CacheCluster a region uses: named explicitly, else the one serving that region."""
    if region.cache_cluster:
        return region.cache_cluster
    for cc in sorted(clusters.values(), key=lambda c: c.name):
        if cc.spec.region == region.name:
            return cc.name
    return region.name


def edge_config(
    ce: ContentEdge, region: EdgeRegion, clusters: Mapping[str, CacheCluster]
) -> EdgeConfig:
    """The edge config of one region: every CacheCluster of the ContentEdge is listed, so
    the edge can follow cache routes to another region's cluster without a restart."""
    refs: dict[str, CacheClusterRef] = {}
    for r in ce.spec.regions:
        cc_name = cache_cluster_of(r, clusters)
        cc = clusters.get(cc_name)
        refs[cc_name] = CacheClusterRef(
            seeds=(f"{cc_name}.{ce.namespace}.svc:{PORTS['service']}",),
            namespace=cc.spec.namespaces[0].name if cc else "cache",
        )
    spec = ce.spec
    return EdgeConfig.model_validate(
        {
            "contentEdge": ce.name,
            "namespace": ce.namespace,
            "region": region.name,
            "hosts": list(spec.hosts),
            "origin": spec.origin.model_dump(by_alias=True, exclude_none=True),
            "cachePolicy": spec.cache_policy.model_dump(by_alias=True, exclude_none=True),
            "cacheClusters": {k: v.model_dump(by_alias=True) for k, v in sorted(refs.items())},
            "peers": {"dnsName": f"{region_name(ce.name, region.name)}-peers.{ce.namespace}.svc"},
        }
    )


def _resources(value: Any, default: dict[str, Any]) -> dict[str, Any]:
    return value.model_dump(exclude_defaults=True) if value is not None else default


def render_contentedge(
    ce: ContentEdge,
    clusters: Mapping[str, CacheCluster] | None = None,
    routes_json: str | None = None,
) -> list[dict[str, Any]]:
    """All children of a ContentEdge. ``clusters`` are the CacheClusters of its namespace
    (by name); ``routes_json`` the routing plan to publish, when one has been made."""
    clusters = clusters or {}
    spec = ce.spec
    owner = owner_references(KIND, ce.name, ce.metadata.uid)
    objects: list[dict[str, Any]] = []
    edge_resources = _resources(spec.resources.edge, DEFAULT_EDGE_RESOURCES)
    nginx_resources = _resources(spec.resources.nginx, DEFAULT_NGINX_RESOURCES)
    l1_limit = int(parse_quantity(spec.cache_policy.l1_cache_size) * L1_SLACK) // 2**20
    for region in spec.regions:
        name = region_name(ce.name, region.name)
        cfg = edge_config(ce, region, clusters)
        edge_yaml = dump(cfg.model_dump(by_alias=True, mode="json", exclude_defaults=True))
        nginx_conf = render_nginx_conf(cfg)
        selector = {
            "app.kubernetes.io/name": "aerocdn-edge",
            "app.kubernetes.io/instance": ce.name,
            "aerocdn.dev/region": region.name,
        }
        objects += render_objects(
            "contentedge-region.yaml.j2",
            name=name,
            peers_name=f"{name}-peers",
            routing_name=routing_configmap_name(ce.name),
            namespace=ce.namespace,
            region=region.name,
            labels={
                **labels("aerocdn-edge", ce.name, "edge"),
                "aerocdn.dev/contentedge": ce.name,
                "aerocdn.dev/region": region.name,
            },
            selector=selector,
            placement=pod_placement(
                spec.placement.overlay(region.placement),
                region.name,
                selector,
                spread_over_nodes=True,
            ),
            pull=image_pull(spec),
            replicas=None if spec.autoscaling.enabled else region.replicas,
            image=spec.image,
            edge_yaml=edge_yaml,
            nginx_conf=nginx_conf,
            config_hash=config_hash(edge_yaml, nginx_conf, spec.image, edge_resources,
                                    nginx_resources),
            edge_resources=edge_resources,
            nginx_resources=nginx_resources,
            container_security=CONTAINER_SECURITY,
            purge_secret=spec.purge_token_secret_ref,
            l1_size_limit=f"{l1_limit}Mi",
            service=spec.service,
            autoscaling=spec.autoscaling,
        )
    if routes_json is not None:
        objects.append(routing_configmap(ce, routes_json))
        if spec.routing.dns.enabled:
            objects.append(dns_endpoint(ce, json.loads(routes_json)))
    return finish(objects, owner)


DNS_WEIGHT_SCALE = 100


def region_weights(plan: dict[str, Any]) -> dict[str, float]:
    """Share of all demand each edge region serves under a routing plan (sums to 1)."""
    demand = {n: b.get("demand", 0.0) for n, b in
              (plan.get("basis", {}).get("regions") or {}).items()}
    load: dict[str, float] = {}
    for client, row in (plan.get("trafficWeights") or {}).items():
        for edge, share in row.items():
            load[edge] = load.get(edge, 0.0) + demand.get(client, 0.0) * share
    total = sum(load.values())
    return {e: (v / total if total else 0.0) for e, v in sorted(load.items())}


def dns_endpoint(ce: ContentEdge, plan: dict[str, Any]) -> dict[str, Any]:
    """ExternalDNS DNSEndpoint: one weighted record set per region, following the traffic
    weights, so a GSLB in front of the regions sends clients where the plan says."""
    dns = ce.spec.routing.dns
    shares = region_weights(plan)
    if not any(shares.values()):  # no demand declared: spread by region
        shares = {r.name: 1.0 for r in ce.spec.regions}
    endpoints = []
    for region in ce.spec.regions:
        target = region.dns_target or f"{region_name(ce.name, region.name)}.{ce.namespace}.svc"
        weight = round(shares.get(region.name, 0.0) * DNS_WEIGHT_SCALE)
        endpoints.append({
            "dnsName": dns.hostname or ce.spec.hosts[0],
            "recordType": "A" if _is_ipv4(target) else "CNAME",
            "targets": [target],
            "recordTTL": dns.ttl,
            "setIdentifier": region.name,
            "providerSpecific": [{"name": dns.weight_key, "value": str(weight)}],
        })
    return {
        "apiVersion": "externaldns.k8s.io/v1alpha1",
        "kind": "DNSEndpoint",
        "metadata": {
            "name": ce.name,
            "namespace": ce.namespace,
            "labels": {**labels("aerocdn-edge", ce.name, "dns"),
                       "aerocdn.dev/contentedge": ce.name},
        },
        "spec": {"endpoints": endpoints},
    }


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def routing_configmap(ce: ContentEdge, routes_json: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": routing_configmap_name(ce.name),
            "namespace": ce.namespace,
            "labels": {
                **labels("aerocdn-edge", ce.name, "routing"),
                "aerocdn.dev/contentedge": ce.name,
            },
        },
        "data": {"routes.json": routes_json},
    }
