"""ContentEdge: one CDN property served by edge proxies in one or more regions."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from aerocdn.api.common import (
    ApiModel,
    Condition,
    DnsLabel,
    ImagePull,
    Placement,
    Quantity,
    ResourceRequirements,
    StatusModel,
)

KIND = "ContentEdge"
PLURAL = "contentedges"
DEFAULT_IMAGE = "aerocdn:0.1.0"

HOSTNAME = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class Origin(ApiModel):
    """The origin the edges fetch from on a miss."""

    url: str = Field(
        pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
        description="Base URL of the origin, http:// or https://.",
    )
    host_header: str | None = Field(
        default=None, description="Host header sent to the origin (default: the URL's host)."
    )
    connect_timeout_seconds: float = Field(
        default=5.0, gt=0, le=60, description="Connect timeout to the origin."
    )
    read_timeout_seconds: float = Field(
        default=30.0, gt=0, le=600, description="Timeout for the origin's response."
    )
    tls_verify: bool = Field(default=True, description="Verify the origin's TLS certificate.")


class CacheKey(ApiModel):
    """What distinguishes two cached objects."""

    include_query_string: bool = Field(
        default=True, description="Include the query string in the cache key."
    )
    query_params: list[str] | None = Field(
        default=None,
        description="Only these query parameters are part of the key (sorted). Unset: all.",
    )
    vary_headers: list[str] = Field(
        default_factory=lambda: ["Accept-Encoding"],
        description="Request headers always part of the key; an origin's Vary adds to these.",
    )


class CachePolicy(ApiModel):
    """How long and what the edges cache."""

    default_ttl_seconds: int = Field(
        default=300, ge=0, description="Freshness of responses that carry no caching headers."
    )
    max_object_size_bytes: int = Field(
        default=10 * 2**20,
        ge=1,
        description="Larger responses are streamed through and never stored.",
    )
    honour_cache_control: bool = Field(
        default=True, description="Follow the origin's Cache-Control and Expires (RFC 9111)."
    )
    stale_while_revalidate_seconds: int = Field(
        default=60, ge=0, description="Serve stale while refreshing in the background."
    )
    stale_if_error_seconds: int = Field(
        default=600, ge=0, description="Serve stale when the origin fails."
    )
    l1_max_ttl_seconds: int = Field(
        default=60,
        ge=0,
        description="Cap on freshness in each pod's nginx cache; bounds how long a purge "
        "that misses a pod can be served from it.",
    )
    l1_cache_size: Quantity = Field(
        default="1Gi", description="Size of each pod's nginx cache (an emptyDir)."
    )
    cache_key: CacheKey = Field(default_factory=CacheKey, description="Cache key policy.")


class EdgeRegion(ApiModel):
    """Edge proxies in one region."""

    name: DnsLabel = Field(description="Region name.")
    replicas: int = Field(default=2, ge=0, le=1000, description="Edge pods in this region.")
    cache_cluster: DnsLabel | None = Field(
        default=None,
        description="CacheCluster the edges use (default: the CacheCluster of the same "
        "region in this namespace).",
    )
    capacity_per_replica: int = Field(
        default=1000, ge=1, description="Requests/s one edge pod can serve."
    )
    expected_demand: int = Field(
        default=0, ge=0, description="Requests/s expected from clients in this region."
    )
    dns_target: str | None = Field(
        default=None,
        max_length=253,
        description="Public address of this region's edges (a load balancer's host name or "
        "IP) for the weighted DNS records (default: the region's Service name).",
    )
    placement: Placement | None = Field(
        default=None,
        description="Placement of this region's edge pods; each field set here replaces "
        "the same field of spec.placement.",
    )


class DnsOutput(ApiModel):
    """Weighted DNS records (ExternalDNS DNSEndpoint) following the traffic weights."""

    enabled: bool = Field(default=False, description="Render DNSEndpoint objects.")
    hostname: str | None = Field(
        default=None, description="Record name (default: the first host)."
    )
    ttl: int = Field(default=60, ge=1, le=86400, description="Record TTL in seconds.")
    weight_key: str = Field(
        default="weight",
        description="providerSpecific property ExternalDNS reads the record weight from "
        "(for example aws/weight).",
    )


class RoutingPolicy(ApiModel):
    """How traffic and cache routes are spread between regions."""

    latencies_ms: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description="Latency between regions in ms: latenciesMs[a][b]. Missing pairs are "
        "taken as symmetric when the reverse is given, else as unreachable.",
    )
    headroom: float = Field(
        default=1.25,
        ge=1.0,
        le=10.0,
        description="Overprovisioning factor: usable capacity is capacity / headroom.",
    )
    slow_start_seconds: int = Field(
        default=120, ge=0, description="Window over which new capacity ramps in."
    )
    hysteresis: float = Field(
        default=0.05, ge=0.0, le=1.0, description="Changes below this fraction move nothing."
    )
    dns: DnsOutput = Field(default_factory=DnsOutput, description="Optional DNS output.")


class ServiceSpec(ApiModel):
    """The Service in front of each region's edges."""

    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(default="ClusterIP")
    port: int = Field(default=80, ge=1, le=65535, description="Service port.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Service annotations.")


class Autoscaling(ApiModel):
    """A HorizontalPodAutoscaler per region (replaces regions[].replicas when enabled)."""

    enabled: bool = Field(default=False)
    min_replicas: int = Field(default=2, ge=1)
    max_replicas: int = Field(default=10, ge=1)
    target_cpu_utilization_percentage: int = Field(default=70, ge=1, le=100)

    @model_validator(mode="after")
    def _check(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"minReplicas ({self.min_replicas}) must not exceed maxReplicas "
                f"({self.max_replicas})"
            )
        return self


class SecretKeyRef(ApiModel):
    name: DnsLabel = Field(description="Secret name in the ContentEdge's namespace.")
    key: str = Field(default="token", min_length=1, description="Key in the Secret.")


class EdgeResources(ApiModel):
    edge: ResourceRequirements | None = Field(default=None, description="aerocdn edge container.")
    nginx: ResourceRequirements | None = Field(default=None, description="nginx container.")


class ContentEdgeSpec(ImagePull):
    """Desired state of a ContentEdge."""

    hosts: list[Annotated[str, Field(pattern=HOSTNAME, max_length=253)]] = Field(
        min_length=1,
        max_length=100,
        description="Host names served (lower case; *.example.com for a wildcard); requests "
        "for other hosts are refused.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    origin: Origin = Field(description="Where misses are fetched from.")
    cache_policy: CachePolicy = Field(default_factory=CachePolicy, description="Cache policy.")
    regions: list[EdgeRegion] = Field(
        min_length=1,
        max_length=100,
        description="Regions with edges; names are unique.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    routing: RoutingPolicy = Field(default_factory=RoutingPolicy, description="Routing policy.")
    image: str = Field(default=DEFAULT_IMAGE, description="Image with nginx and aerocdn edge.")
    resources: EdgeResources = Field(default_factory=EdgeResources, description="Resources.")
    service: ServiceSpec = Field(default_factory=ServiceSpec, description="Per-region Service.")
    autoscaling: Autoscaling = Field(default_factory=Autoscaling, description="Autoscaling.")
    purge_token_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret holding the bearer token for POST /purge."
    )
    placement: Placement = Field(
        default_factory=Placement,
        description="Placement of the edge pods in every region (regions[].placement "
        "overrides it field by field).",
    )

    @model_validator(mode="after")
    def _check(self) -> ContentEdgeSpec:
        if len(set(self.hosts)) != len(self.hosts):
            raise ValueError("hosts must be unique")
        names = [r.name for r in self.regions]
        if len(set(names)) != len(names):
            raise ValueError(f"region names must be unique, got {names}")
        for a, row in self.routing.latencies_ms.items():
            for b, ms in row.items():
                if ms < 0:
                    raise ValueError(f"routing.latenciesMs[{a}][{b}] must not be negative")
        return self


CEL_RULES: list[dict[str, str]] = [
    {
        "rule": "!has(self.autoscaling) || !has(self.autoscaling.minReplicas) || "
        "!has(self.autoscaling.maxReplicas) || "
        "self.autoscaling.minReplicas <= self.autoscaling.maxReplicas",
        "message": "autoscaling.minReplicas must not exceed autoscaling.maxReplicas",
        "fieldPath": ".autoscaling",
    },
]
FIELD_CEL_RULES: dict[str, list[dict[str, str]]] = {}


class RegionStatus(StatusModel):
    name: str
    desired: int = 0
    ready: int = 0
    cache_cluster: str | None = None
    cache_cluster_ready: bool | None = None


class ContentEdgeStatus(StatusModel):
    observed_generation: int | None = None
    phase: str | None = None
    ready: str | None = Field(default=None, description="Ready regions, e.g. 3/3.")
    regions: list[RegionStatus] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)
    routing: dict[str, Any] | None = None
