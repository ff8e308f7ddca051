"""ContentEdge: one CDN property served by edge proxies in one or more regions."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from aerocdn.api.common import (
    HEADER_NAME,
    HOSTNAME,
    QUERY_PARAM,
    ApiModel,
    Condition,
    DnsLabel,
    ImagePull,
    NetworkPolicySpec,
    Placement,
    Quantity,
    ResourceRequirements,
    StatusModel,
    find_condition,
)

# The edge's bounds (aerocdn.edge.config.SlicesConfig), so nothing the CRD admits fails later.
SLICE_MIN_BYTES = 64 * 1024
SLICE_MAX_BYTES = 16 * 2**20
SLICE_DEFAULT_BYTES = 2**20

KIND = "ContentEdge"
PLURAL = "contentedges"
DEFAULT_IMAGE = "aerocdn:0.1.0"

# The edge's own checks (aerocdn.edge.config), so nothing the CRD admits fails later: nginx
# variables ($arg_x, $http_x) take only these characters.
HeaderName = Annotated[str, Field(pattern=HEADER_NAME, min_length=1, max_length=128)]


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
    fetch_timeout_seconds: float = Field(
        default=60.0, gt=0, le=3600,
        description="Deadline for a whole origin fetch (connect, headers, body): an origin "
        "that trickles cannot hold a fill longer; stale is served where allowed.",
    )
    tls_verify: bool = Field(default=True, description="Verify the origin's TLS certificate.")
    forward_headers: list[HeaderName] = Field(
        default_factory=list, max_length=64,
        description="Request headers sent to the origin besides cacheKey.varyHeaders (all "
        "others are dropped). An answer is cached only if its Vary names each of them the "
        "request carried, so no header outside the key changes a cached answer.",
    )


# A route's pathPrefix: a canonical path prefix of unreserved characters (the same bytes in the
# edge's canonical path and in nginx's $uri, and safe in an nginx location): no "//", no "." or
# ".." segment.
_SEGMENT = r"[A-Za-z0-9._~-]*[A-Za-z0-9_~-][A-Za-z0-9._~-]*"
PATH_PREFIX = rf"^/({_SEGMENT}/)*({_SEGMENT})?$"
DEFAULT_ORIGIN_GROUP = "default"
# The one origin of the spec.origin shorthand, as the edge names it (metrics, status).
SHORTHAND_ORIGIN_NAME = "origin"


class NamedOrigin(Origin):
    """One of several origins (spec.origins): a member of an origin group, with a priority
    and a weight inside it."""

    name: DnsLabel = Field(description="Origin name (metrics, status); unique.")
    group: DnsLabel = Field(
        default=DEFAULT_ORIGIN_GROUP,
        description="Origin group: routes name a group (routes[].origin); requests no route "
        "matches go to the group 'default'. Within a group the edge sends each request to "
        "the best priority that has a healthy origin, weighted among those, and fails over "
        "to the next origin (same priority first, then the next priority) on a connect "
        "error, a timeout or a 5xx.",
    )
    priority: int = Field(
        default=0, ge=0, le=100,
        description="Lower is preferred: origins of a higher value get requests only while "
        "no origin of a lower value in the group is healthy, or as failover.",
    )
    weight: int = Field(
        default=1, ge=1, le=1000,
        description="Share of requests among the healthy origins of the same group and "
        "priority (smooth weighted round robin).",
    )


class RouteCachePolicy(ApiModel):
    """Per-route overrides of cachePolicy: unset fields keep spec.cachePolicy's value. The
    cache key, slices, L1 size and tag header are the whole ContentEdge's (a purge names an
    object the same way whatever its route)."""

    default_ttl_seconds: int | None = Field(
        default=None, ge=0, description="Freshness of responses without caching headers.")
    max_object_size_bytes: int | None = Field(
        default=None, ge=1, description="Larger responses are streamed, never stored.")
    honour_cache_control: bool | None = Field(
        default=None, description="Follow the origin's Cache-Control and Expires.")
    stale_while_revalidate_seconds: int | None = Field(
        default=None, ge=0, description="Serve stale while refreshing in the background.")
    stale_if_error_seconds: int | None = Field(
        default=None, ge=0, description="Serve stale when the origin fails.")
    l1_max_ttl_seconds: int | None = Field(
        default=None, ge=0, description="Cap on freshness in each pod's nginx cache.")
    cookies: Literal["strip", "bypass", "forward"] | None = Field(
        default=None, description="Requests with Cookie: strip, bypass or forward.")
    authorization: Literal["rfc9111", "bypass"] | None = Field(
        default=None, description="Requests with Authorization: rfc9111 or bypass.")


class Route(ApiModel):
    """Requests whose canonical path starts with pathPrefix (the longest matching prefix
    wins) go to an origin group, with optional cache policy overrides."""

    path_prefix: str = Field(
        pattern=PATH_PREFIX, min_length=1, max_length=256,
        description="Path prefix, matched on the canonical path as a plain string prefix "
        "(/api matches /api/x and /apix; end it with / for a directory): letters, digits, "
        "'-', '.', '_', '~' and '/', no '//', '.' or '..' segment.",
    )
    origin: DnsLabel = Field(
        default=DEFAULT_ORIGIN_GROUP,
        description="Origin group (origins[].group) serving this route; with the "
        "spec.origin shorthand only 'default'.",
    )
    cache_policy: RouteCachePolicy | None = Field(
        default=None, description="Overrides of spec.cachePolicy for this route.")


class CacheKey(ApiModel):
    """What distinguishes two cached objects."""

    include_query_string: bool = Field(
        default=True, description="Include the query string in the cache key."
    )
    query_params: list[Annotated[str, Field(pattern=QUERY_PARAM, max_length=128)]] | None = Field(
        default=None,
        description="Only these query parameters are part of the key (sorted). Unset: all.",
    )
    vary_headers: list[HeaderName] = Field(
        default_factory=lambda: ["Accept-Encoding"],
        description="Request headers always part of the key; an origin's Vary adds to these.",
    )


class Slices(ApiModel):
    """Range slicing: objects are fetched, stored and served in fixed-size slices."""

    enabled: bool = Field(
        default=False,
        description="Fetch and cache every GET in slices of sizeBytes (nginx's slice module "
        "in each pod, one L2 record per slice, one origin Range request per slice across the "
        "region): objects of any size are cached, ranges are answered from cache, "
        "maxObjectSizeBytes no longer applies. Responses without an ETag or Last-Modified "
        "are streamed, not stored (slices of them could not be checked to belong together).",
    )
    size_bytes: int = Field(
        default=SLICE_DEFAULT_BYTES, ge=SLICE_MIN_BYTES, le=SLICE_MAX_BYTES,
        description="Slice size in bytes (64Ki to 16Mi). Each slice is one L2 record: with "
        "Aerospike, the namespace's max-record-size must exceed it plus a few KiB of "
        "headers, or slices are served without being stored.",
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
    cookies: Literal["strip", "bypass", "forward"] = Field(
        default="strip",
        description="Requests with Cookie: strip (the origin never sees cookies; cached as "
        "usual), bypass (sent to the origin with the cookie, never cached nor answered from "
        "cache), forward (sent with the cookie; cached only if the answer says Vary: Cookie).",
    )
    tag_header: HeaderName = Field(
        default="Surrogate-Key",
        description="The origin's header naming an object's tags (surrogate keys), separated "
        "by spaces or commas (Surrogate-Key: a b, Cache-Tag: a,b): a ContentPurge's tags "
        "purge every object carrying one. Stripped, as are Surrogate-Key and Cache-Tag, "
        "before nginx or a client sees the answer.",
    )
    authorization: Literal["rfc9111", "bypass"] = Field(
        default="rfc9111",
        description="Requests with Authorization: rfc9111 (forwarded; the answer is shared "
        "only when public, s-maxage or must-revalidate, RFC 9111 3.5) or bypass (never "
        "cached nor answered from cache).",
    )
    slices: Slices = Field(default_factory=Slices, description="Range slicing of objects.")


def _ip_or_cidr(v: str) -> str:
    """The same set as the CRD's CEL ``isIP(c) || isCIDR(c)``: an address or a network,
    no zone."""
    try:
        addr = (ipaddress.ip_network(v, strict=False).network_address if "/" in v
                else ipaddress.ip_address(v))
    except ValueError:
        raise ValueError(f"{v!r} is not an IP address or CIDR") from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        # Kubernetes' CEL isIP/isCIDR refuse IPv4-mapped IPv6 (checked against a real
        # apiserver): write the IPv4 address
        raise ValueError(f"{v!r}: IPv4-mapped IPv6 is not allowed, use the IPv4 form")
    return v


IpOrCidr = Annotated[
    str,
    Field(min_length=2, max_length=64, pattern=r"^[0-9a-fA-F:.]+(/(0|[1-9][0-9]{0,2}))?$"),
    AfterValidator(_ip_or_cidr),
]


class RateLimits(ApiModel):
    """Per-client-IP limits enforced by nginx (limit_req / limit_conn); over them a client
    gets 429 with Retry-After."""

    requests_per_second: int | None = Field(
        default=None, ge=1, le=1_000_000,
        description="Sustained requests per second per client IP (unset: no rate limit).",
    )
    burst: int = Field(
        default=0, ge=0, le=1_000_000,
        description="Requests above the rate a client may send at once before getting 429.",
    )
    connections_per_client: int | None = Field(
        default=None, ge=1, le=100_000,
        description="Requests in progress at once per client IP (unset: no limit).",
    )
    trusted_proxies: list[IpOrCidr] = Field(
        default_factory=list, max_length=64,
        description="Addresses/CIDRs of load balancers in front of the edges: only for "
        "connections from these is the client IP taken from clientIPHeader.",
    )
    client_ip_header: str = Field(
        default="X-Forwarded-For", pattern=HEADER_NAME, max_length=128,
        description="Header carrying the client IP, set by a trusted proxy.",
    )


class TLSEntry(ApiModel):
    """A certificate for some of the hosts: a kubernetes.io/tls Secret (what cert-manager
    writes), served with SNI on the HTTPS port (TLS 1.2+, HTTP/2)."""

    hosts: list[Annotated[str, Field(pattern=HOSTNAME, max_length=253)]] = Field(
        min_length=1, max_length=100,
        description="Hosts (of spec.hosts) this certificate serves.",
    )
    secret_name: DnsLabel = Field(description="kubernetes.io/tls Secret in this namespace.")


class TLSPolicy(ApiModel):
    """HTTPS for the whole ContentEdge."""

    redirect_http: bool = Field(
        default=False, description="Answer plain HTTP with a 308 redirect to HTTPS."
    )
    http2: bool = Field(default=True, description="Offer HTTP/2 (ALPN h2) on HTTPS.")


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
        min_length=1,
        max_length=253,
        description="Public address of this region's edges (a load balancer's host name or "
        "IP) for the DNS records (default: the address of the region's LoadBalancer "
        "Service, spec.service.type LoadBalancer; a region with neither gets no record).",
    )
    placement: Placement | None = Field(
        default=None,
        description="Placement of this region's edge pods; each field set here replaces "
        "the same field of spec.placement.",
    )


class ProviderProperty(ApiModel):
    """One providerSpecific property of an ExternalDNS endpoint."""

    name: str = Field(
        pattern=r"^[a-z0-9]([a-z0-9./-]*[a-z0-9])?$",
        max_length=63,
        description="Property name, e.g. aws/geolocation-continent-code or aws/region.",
    )
    value: str = Field(max_length=253, description="Property value, e.g. EU or *.")


class ClientRegionMatch(ApiModel):
    """How the DNS provider recognises clients of one region."""

    region: DnsLabel = Field(description="A region of spec.regions.")
    provider_specific: list[ProviderProperty] = Field(
        min_length=1,
        max_length=8,
        description="Properties that select these clients, e.g. [{name: "
        "aws/geolocation-continent-code, value: EU}]. A region may be listed several times "
        "(one record each), e.g. once more with aws/geolocation-country-code: '*' as the "
        "default for clients no other record matches.",
    )


class DnsOutput(ApiModel):
    """ExternalDNS DNSEndpoint records following the traffic weights."""

    enabled: bool = Field(default=False, description="Render a DNSEndpoint.")
    hostname: str | None = Field(
        default=None, pattern=HOSTNAME, max_length=253,
        description="Record name (default: the first host). Not a wildcard when "
        "clientRegions is set (the per-client sets are named <region>.<hostname>).",
    )
    ttl: int = Field(default=60, ge=1, le=86400, description="Record TTL in seconds.")
    weight_key: str = Field(
        default="weight",
        description="providerSpecific property ExternalDNS reads the record weight from "
        "(for example aws/weight).",
    )
    client_regions: list[ClientRegionMatch] = Field(
        default_factory=list,
        max_length=100,
        description="Per-client-region routing. Set: each listed client region gets its own "
        "weighted record set (<region>.<hostname>, weights of that region's row of the "
        "plan) and <hostname> answers a CNAME to it for the clients these properties "
        "select (geolocation or latency routing; AWS Route 53 through ExternalDNS). "
        "Empty: one weighted set for all clients, from each region's global share (the "
        "ContentEdge then says so in a DnsRouting condition).",
    )
class RoutingPolicy(ApiModel):
    """How traffic and cache routes are spread between regions."""

    latencies_ms: dict[str, dict[str, Annotated[int, Field(ge=0)]]] = Field(
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
    origin: Origin | None = Field(
        default=None,
        description="The one origin misses are fetched from (shorthand for one entry of "
        "origins); set exactly one of origin and origins.")
    origins: list[NamedOrigin] | None = Field(
        default=None, min_length=1, max_length=16,
        description="Several origins, in groups with priorities and weights, with failover "
        "(each origin behind its own circuit breaker); set exactly one of origin and "
        "origins.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    routes: list[Route] = Field(
        default_factory=list, max_length=64,
        description="Path routes: the longest pathPrefix matching a request's canonical path "
        "chooses its origin group and cache policy overrides; requests no route matches use "
        "the group 'default' and spec.cachePolicy.",
        json_schema_extra={"x-kubernetes-list-type": "map",
                           "x-kubernetes-list-map-keys": ["pathPrefix"]},
    )
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
    rate_limits: RateLimits | None = Field(
        default=None, description="Per-client-IP request and connection limits."
    )
    tls: list[TLSEntry] = Field(
        default_factory=list, max_length=50,
        description="Certificates (kubernetes.io/tls Secrets) for HTTPS, one per host set.",
    )
    tls_policy: TLSPolicy = Field(default_factory=TLSPolicy, description="HTTPS options.")
    network_policy: NetworkPolicySpec = Field(
        default_factory=NetworkPolicySpec,
        description="NetworkPolicies for the edges: the admin port only from this "
        "ContentEdge's pods, the operator and metricsNamespaces; this ContentEdge's edges may "
        "reach the Aerospike port of the CacheClusters it uses.",
    )
    paused: bool = Field(
        default=False,
        description="When true the operator leaves this ContentEdge's children and routing "
        "alone.",
    )

    @model_validator(mode="after")
    def _check(self) -> ContentEdgeSpec:
        if len(set(self.hosts)) != len(self.hosts):
            raise ValueError("hosts must be unique")
        names = [r.name for r in self.regions]
        if len(set(names)) != len(names):
            raise ValueError(f"region names must be unique, got {names}")
        for i, match in enumerate(self.routing.dns.client_regions):
            if match.region not in names:
                raise ValueError(
                    f"routing.dns.clientRegions[{i}].region: {match.region!r} is not a region "
                    f"of spec.regions ({', '.join(names)})"
                )
        dns = self.routing.dns
        if dns.client_regions:
            name = dns.hostname or self.hosts[0]
            if name.startswith("*"):
                raise ValueError(
                    f"routing.dns.hostname: {name!r} is a wildcard, but with "
                    "routing.dns.clientRegions each client region gets a record set named "
                    "<region>.<hostname>: set routing.dns.hostname to a name without '*'"
                )
            for i, match in enumerate(dns.client_regions):
                if len(match.region) + 1 + len(name) > 253:
                    raise ValueError(
                        f"routing.dns.clientRegions[{i}].region: {match.region}.{name} is "
                        "longer than 253 characters: use a shorter region or hostname"
                    )
        for i, region in enumerate(self.regions):
            if region.dns_target is not None and not dns_target_ok(region.dns_target):
                raise ValueError(
                    f"regions[{i}].dnsTarget: {region.dns_target!r} is neither an IP address "
                    "nor a DNS name"
                )
        for t in self.tls:
            for h in t.hosts:
                if h not in self.hosts:
                    raise ValueError(f"tls: host {h!r} is not one of spec.hosts")
        self._check_origins()
        return self

    def _check_origins(self) -> None:
        if (self.origin is None) == (self.origins is None):
            raise ValueError("origin, origins: set exactly one (origin: one origin; origins: "
                             "several, with groups, priorities and weights)")
        names = [o.name for o in self.origins or ()]
        for i, n in enumerate(names):
            if n in names[:i]:
                raise ValueError(f"origins[{i}].name: {n!r} is used twice; names are unique")
        groups = self.origin_groups()
        prefixes = [r.path_prefix for r in self.routes]
        for i, r in enumerate(self.routes):
            if r.path_prefix in prefixes[:i]:
                raise ValueError(f"routes[{i}].pathPrefix: {r.path_prefix!r} is used twice")
            if r.origin not in groups:
                raise ValueError(
                    f"routes[{i}].origin: {r.origin!r} is not an origin group of this "
                    f"ContentEdge (groups: {', '.join(sorted(groups))}; origins[].group)")
        if DEFAULT_ORIGIN_GROUP not in groups and "/" not in prefixes:
            raise ValueError(
                "origins: no origin is in the group 'default', which serves requests no route "
                "matches: put one there (origins[].group) or add a route with pathPrefix /")

    def origin_groups(self) -> set[str]:
        """The origin groups: 'default' for the shorthand, else the origins' groups."""
        if self.origins is None:
            return {DEFAULT_ORIGIN_GROUP}
        return {o.group for o in self.origins}


# A DNS name a record may point to (a load balancer's host name); else an IP address.
_LABEL = "[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?"
DNS_TARGET_NAME = f"^{_LABEL}([.]{_LABEL})*$"


def dns_target_ok(target: str) -> bool:
    """regions[].dnsTarget: an IP address (no zone) or a DNS name, as the CEL rule says."""
    if "%" not in target:
        try:
            ipaddress.ip_address(target)
            return True
        except ValueError:
            pass
    return re.fullmatch(DNS_TARGET_NAME, target) is not None


_DNS_NAME = "(has(self.routing.dns.hostname) ? self.routing.dns.hostname : self.hosts[0])"
_CLIENT_REGIONS = ("!has(self.routing) || !has(self.routing.dns) || "
                   "!has(self.routing.dns.clientRegions) || "
                   "size(self.routing.dns.clientRegions) == 0 || ")
CEL_RULES: list[dict[str, str]] = [
    {
        "rule": "!has(self.routing) || !has(self.routing.dns) || "
        "!has(self.routing.dns.clientRegions) || "
        "self.routing.dns.clientRegions.all(m, self.regions.exists(r, r.name == m.region))",
        "message": "routing.dns.clientRegions[].region must be a region of spec.regions",
        "fieldPath": ".routing.dns.clientRegions",
    },
    {
        "rule": "!has(self.autoscaling) || !has(self.autoscaling.minReplicas) || "
        "!has(self.autoscaling.maxReplicas) || "
        "self.autoscaling.minReplicas <= self.autoscaling.maxReplicas",
        "message": "autoscaling.minReplicas must not exceed autoscaling.maxReplicas",
        "fieldPath": ".autoscaling",
    },
]
CEL_RULES += [
    {
        "rule": _CLIENT_REGIONS + f"!{_DNS_NAME}.startsWith('*')",
        "message": "routing.dns.hostname (default: hosts[0]) must not be a wildcard with "
        "routing.dns.clientRegions (record sets are named <region>.<hostname>)",
        "fieldPath": ".routing.dns.hostname",
    },
    {
        "rule": _CLIENT_REGIONS + "self.routing.dns.clientRegions.all(m, "
        f"size(m.region) + 1 + size({_DNS_NAME}) <= 253)",
        "message": "routing.dns.clientRegions: <region>.<hostname> must be at most 253 "
        "characters",
        "fieldPath": ".routing.dns.clientRegions",
    },
    {
        "rule": "self.regions.all(r, !has(r.dnsTarget) || "
        "(!r.dnsTarget.contains('%') && isIP(r.dnsTarget)) || "
        f"r.dnsTarget.matches('{DNS_TARGET_NAME}'))",
        "message": "regions[].dnsTarget must be an IP address or a DNS name",
        "fieldPath": ".regions",
    },
    {
        "rule": "has(self.origin) != has(self.origins)",
        "message": "origin, origins: set exactly one",
        "fieldPath": ".origins",
    },
    {
        # route groups as pydantic checks them: defaults (group, origin: 'default') are
        # applied before CEL runs, the has() guards are for objects written without them
        "rule": "!has(self.routes) || self.routes.all(r, "
        "(has(r.origin) ? r.origin : 'default') == 'default' && has(self.origin) || "
        "has(self.origins) && self.origins.exists(o, (has(o.group) ? o.group : 'default') "
        "== (has(r.origin) ? r.origin : 'default')))",
        "message": "routes[].origin must be an origin group (origins[].group; 'default' with "
        "the origin shorthand)",
        "fieldPath": ".routes",
    },
    {
        "rule": "!has(self.origins) || "
        "self.origins.exists(o, (has(o.group) ? o.group : 'default') == 'default') || "
        "(has(self.routes) && self.routes.exists(r, r.pathPrefix == '/'))",
        "message": "origins: one origin must be in the group 'default' (requests no route "
        "matches go there), or a route must have pathPrefix /",
        "fieldPath": ".origins",
    },
]
CEL_RULES.append({
    "rule": "!has(self.tls) || self.tls.all(t, t.hosts.all(h, h in self.hosts))",
    "message": "tls: every host must be one of spec.hosts",
    "fieldPath": ".tls",
})
FIELD_CEL_RULES: dict[str, list[dict[str, str]]] = {
    "rateLimits": [{
        "rule": "!has(self.trustedProxies) || "
        "self.trustedProxies.all(c, !c.contains('%') && (isIP(c) || isCIDR(c)))",
        "message": "rateLimits.trustedProxies: each entry must be an IP address or CIDR",
    }],
}


class RegionStatus(StatusModel):
    name: str
    desired: int = 0
    ready: int = 0
    cache_cluster: str | None = None
    cache_cluster_ready: bool | None = None


class OriginHealth(StatusModel):
    """One origin of spec.origins as the edge pods see it (their circuit breakers)."""

    name: str
    group: str
    priority: int = 0
    state: str = Field(description="Healthy (every answering pod's circuit is closed), "
                       "Degraded (some), Down (none), Unknown (no pod answered).")
    pods_up: str = Field(default="0/0", description="Pods whose circuit is closed / pods "
                         "that answered.")
    last_error: str | None = None


class ContentEdgeStatus(StatusModel):
    observed_generation: int | None = None
    phase: str | None = None
    ready: str | None = Field(default=None, description="Ready regions, e.g. 3/3.")
    regions: list[RegionStatus] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)
    routing: dict[str, Any] | None = Field(
        default=None, description="Summary of the routing plan (aerocdn.routing Plan.summary).")
    origins: list[OriginHealth] | None = Field(
        default=None, description="Health of each origin of spec.origins, as the edge pods' "
        "circuit breakers see it (asked at most every --origin-health-seconds).")

    def condition(self, type_: str) -> Condition | None:
        return find_condition(self.conditions, type_)
