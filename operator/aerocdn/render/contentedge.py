"""What gets created for a ContentEdge: per region an edge config, Deployment, Services,
PodDisruptionBudget and (optionally) HorizontalPodAutoscaler; plus the routing ConfigMap."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aerocdn.api.common import parse_quantity
from aerocdn.api.contentedge import KIND, EdgeRegion
from aerocdn.api.enterprise import EDGE_USER
from aerocdn.api.objects import CacheCluster, ContentEdge
from aerocdn.edge.config import CacheClusterRef, EdgeConfig
from aerocdn.render.cachecluster import CONTAINER_SECURITY, PORTS, pod_selector
from aerocdn.render.dns import dns_endpoint, dns_plan
from aerocdn.render.engine import config_hash, finish, labels, owner_references, render_objects
from aerocdn.render.networkpolicy import edge_network_policy, edge_to_cache_policy
from aerocdn.render.nginx import render_nginx_conf
from aerocdn.render.placement import image_pull, pod_placement
from aerocdn.routing.model import Plan
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
    logins = cache_logins(ce, clusters)
    for r in ce.spec.regions:
        cc_name = cache_cluster_of(r, clusters)
        cc = clusters.get(cc_name)
        refs[cc_name] = CacheClusterRef(
            seeds=(f"{cc_name}.{ce.namespace}.svc:{PORTS['service']}",),
            namespace=cc.spec.namespaces[0].name if cc else "cache",
            **({"user": EDGE_USER, "password_file": f"{CREDENTIALS_DIR}/{cc_name}/password"}
               if cc_name in logins else {}),
        )
    spec = ce.spec
    return EdgeConfig.model_validate(
        {
            "contentEdge": ce.name,
            "namespace": ce.namespace,
            "region": region.name,
            "hosts": list(spec.hosts),
            **({"origin": spec.origin.model_dump(by_alias=True, exclude_none=True)}
               if spec.origin is not None else
               {"origins": [o.model_dump(by_alias=True, exclude_none=True)
                            for o in spec.origins or ()]}),
            "routes": [r.model_dump(by_alias=True, exclude_none=True) for r in spec.routes],
            "cachePolicy": spec.cache_policy.model_dump(by_alias=True, exclude_none=True),
            "cacheClusters": {k: v.model_dump(by_alias=True) for k, v in sorted(refs.items())},
            "peers": {"dnsName": f"{region_name(ce.name, region.name)}-peers.{ce.namespace}.svc"},
            # the edge container's limit: its per-pod byte budgets are derived from it
            "memoryLimit": edge_memory_limit(ce),
            "rateLimits": (spec.rate_limits.model_dump(by_alias=True)
                           if spec.rate_limits is not None else None),
            "tls": tls_config(ce),
        }
    )


TLS_DIR = "/etc/aerocdn/tls"
# Enterprise access control: each CacheCluster's edge password at CREDENTIALS_DIR/<cluster>/
CREDENTIALS_DIR = "/etc/aerocdn/aerospike"


def cache_logins(ce: ContentEdge, clusters: Mapping[str, CacheCluster]) -> dict[str, str]:
    """CacheCluster -> the Secret with the password its edges log in with, for the clusters
    of ``ce`` with access control (spec.accessControl.edgeSecretName); the edges keep the
    plain service port 3000, so no TLS here."""
    out: dict[str, str] = {}
    for r in ce.spec.regions:
        cc = clusters.get(cache_cluster_of(r, clusters))
        if cc is not None and cc.spec.access_control is not None:
            out[cc.name] = cc.spec.access_control.edge_secret_name
    return dict(sorted(out.items()))


def tls_config(ce: ContentEdge) -> dict[str, Any] | None:
    """spec.tls as the edge/nginx config: each Secret mounted at TLS_DIR/<secretName>."""
    if not ce.spec.tls:
        return None
    return {
        "certificates": [{"hosts": list(t.hosts),
                          "certFile": f"{TLS_DIR}/{t.secret_name}/tls.crt",
                          "keyFile": f"{TLS_DIR}/{t.secret_name}/tls.key"}
                         for t in ce.spec.tls],
        "redirectHttp": ce.spec.tls_policy.redirect_http,
        "http2": ce.spec.tls_policy.http2,
    }


def edge_memory_limit(ce: ContentEdge) -> str:
    res = _resources(ce.spec.resources.edge, DEFAULT_EDGE_RESOURCES)
    limit = (res.get("limits") or {}).get("memory")
    return str(limit or DEFAULT_EDGE_RESOURCES["limits"]["memory"])


def _resources(value: Any, default: dict[str, Any]) -> dict[str, Any]:
    return value.model_dump(exclude_defaults=True) if value is not None else default


def render_contentedge(
    ce: ContentEdge,
    clusters: Mapping[str, CacheCluster] | None = None,
    routes_json: str | None = None,
    addresses: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """All children of a ContentEdge. ``clusters`` are the CacheClusters of its namespace
    (by name); ``routes_json`` the routing plan to publish, when one has been made;
    ``addresses`` the external address of each region's Service, where one is known."""
    return finish(render_contentedge_regions(ce, clusters or {})
                  + render_contentedge_routing(ce, routes_json, addresses),
                  owner_references(KIND, ce.name, ce.metadata.uid))


def render_contentedge_routing(ce: ContentEdge, routes_json: str | None,
                               addresses: Mapping[str, str] | None = None
                               ) -> list[dict[str, Any]]:
    """The children that follow the routing plan (it changes as clusters scale): the
    routing ConfigMap and the DNSEndpoint. Not finished (no owner, not sorted)."""
    if routes_json is None:
        return []
    out = [routing_configmap(ce, routes_json)]
    if ce.spec.routing.dns.enabled:
        out.append(dns_endpoint(ce, dns_plan(ce, Plan.from_json(routes_json), addresses)))
    return out


def render_contentedge_regions(ce: ContentEdge, clusters: Mapping[str, CacheCluster]
                               ) -> list[dict[str, Any]]:
    """The children that follow the spec and the CacheClusters it names: per region the
    edge Deployment, Services, ConfigMap, PDB, HPA; the NetworkPolicies. Not finished."""
    spec = ce.spec
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
            tls_secrets=sorted({t.secret_name for t in spec.tls}),
            cache_logins=cache_logins(ce, clusters),
            credentials_dir=CREDENTIALS_DIR,
            l1_size_limit=f"{l1_limit}Mi",
            service=spec.service,
            autoscaling=spec.autoscaling,
        )
    if spec.network_policy.enabled:
        objects += network_policies(ce, clusters)
    return objects


def network_policies(ce: ContentEdge, clusters: Mapping[str, CacheCluster]) -> list[dict[str, Any]]:
    np = ce.spec.network_policy
    out = []
    for region in ce.spec.regions:
        name = region_name(ce.name, region.name)
        out.append(edge_network_policy(
            name=name, namespace=ce.namespace, ce_name=ce.name,
            selector={"app.kubernetes.io/name": "aerocdn-edge",
                      "app.kubernetes.io/instance": ce.name, "aerocdn.dev/region": region.name},
            obj_labels={**labels("aerocdn-edge", ce.name, "edge"),
                        "aerocdn.dev/contentedge": ce.name, "aerocdn.dev/region": region.name},
            operator_namespace=np.operator_namespace,
            metrics_namespaces=np.metrics_namespaces, https=bool(ce.spec.tls)))
    for cc in sorted({cache_cluster_of(r, clusters) for r in ce.spec.regions}):
        out.append(edge_to_cache_policy(
            ce_name=ce.name, namespace=ce.namespace, cache_cluster=cc,
            cache_selector=pod_selector(cc), service_port=PORTS["service"],
            obj_labels={**labels("aerocdn-edge", ce.name, "network"),
                        "aerocdn.dev/contentedge": ce.name}))
    return out


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
