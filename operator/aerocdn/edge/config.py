"""EdgeConfig: the content of the per-region ConfigMap key ``edge.yaml``.

One frozen pydantic model read by ``aerocdn edge --config FILE`` and by the nginx template
(``aerocdn.render.nginx``).  YAML uses camelCase; attributes are snake_case.  Every field has a
production default so the operator only fills in what the ContentEdge says.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from aerocdn.api.common import HEADER_NAME, HOSTNAME, QUERY_PARAM, camel
from aerocdn.api.common import parse_quantity as api_parse_quantity
from aerocdn.api.contentedge import (
    DEFAULT_ORIGIN_GROUP,
    PATH_PREFIX,
    SHORTHAND_ORIGIN_NAME,
    SLICE_DEFAULT_BYTES,
    SLICE_MAX_BYTES,
    SLICE_MIN_BYTES,
)

# The API's own patterns (so nothing a ContentEdge admits fails here): nginx variable names
# ($arg_x, $http_x) only take these characters, and the key must be the same in nginx (L1) and
# in the edge (L2), so names outside them are refused here, with the field.  fullmatch: "$"
# alone would also take a trailing newline.
_HOST_RE = re.compile(HOSTNAME)
_QUERY_PARAM_RE = re.compile(QUERY_PARAM)
_HEADER_RE = re.compile(HEADER_NAME)
_PATH_PREFIX_RE = re.compile(PATH_PREFIX)


# Tag headers of the usual CDNs: always stripped (they are meant for a surrogate, not a client).
TAG_HEADERS = ("surrogate-key", "cache-tag")


def parse_quantity(value: str | int) -> int:
    """A Kubernetes-style byte quantity ("1Gi", "512Mi", "1000") as bytes."""
    if isinstance(value, int):
        return value
    return api_parse_quantity(value.strip())


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True, alias_generator=camel, populate_by_name=True, extra="forbid"
    )


class OriginConfig(_Model):
    # name, group, priority, weight: spec.origins (aerocdn.edge.origins chooses among them);
    # the spec.origin shorthand is one origin named "origin" in the group "default"
    name: str = SHORTHAND_ORIGIN_NAME
    group: str = DEFAULT_ORIGIN_GROUP
    priority: int = Field(default=0, ge=0)
    weight: int = Field(default=1, ge=1)
    url: str
    host_header: str | None = None
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    read_timeout_seconds: float = Field(default=30.0, gt=0)
    # the whole fetch (connect + headers + body): a trickling origin cannot hold a fill longer
    fetch_timeout_seconds: float = Field(default=60.0, gt=0)
    tls_verify: bool = True
    # request headers sent to the origin besides the key's (cacheKey.varyHeaders); an answer
    # is stored only if its Vary names each of them that the request carried
    forward_headers: tuple[str, ...] = ()

    @field_validator("forward_headers")
    @classmethod
    def _fwd(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for h in v:
            if not _HEADER_RE.fullmatch(h):
                raise ValueError(f"origin.forwardHeaders entry {h!r} is not a header name")
        return tuple(h.lower() for h in v)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not (v.startswith("http://") or v.startswith("https://")):
            raise ValueError(f"origin.url {v!r} must start with http:// or https://")
        return v.rstrip("/")


class RoutePolicyConfig(_Model):
    """A route's overrides of cachePolicy (ContentEdge spec.routes[].cachePolicy): unset
    fields keep the ContentEdge's value; the key, slices, L1 size and tag header are never
    per route (a purge names an object the same way whatever its route)."""

    default_ttl_seconds: int | None = Field(default=None, ge=0)
    max_object_size_bytes: int | None = Field(default=None, gt=0)
    honour_cache_control: bool | None = None
    stale_while_revalidate_seconds: int | None = Field(default=None, ge=0)
    stale_if_error_seconds: int | None = Field(default=None, ge=0)
    l1_max_ttl_seconds: int | None = Field(default=None, ge=0)
    cookies: Literal["strip", "bypass", "forward"] | None = None
    authorization: Literal["rfc9111", "bypass"] | None = None


class RouteConfig(_Model):
    path_prefix: str
    origin: str = DEFAULT_ORIGIN_GROUP  # the origin group
    cache_policy: RoutePolicyConfig = RoutePolicyConfig()

    @field_validator("path_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not _PATH_PREFIX_RE.fullmatch(v):
            raise ValueError(f"routes[].pathPrefix {v!r}: a canonical path prefix of letters, "
                             "digits, '-', '.', '_', '~' and '/' (no '//', '.' or '..')")
        return v


class CacheKeyConfig(_Model):
    include_query_string: bool = True
    query_params: tuple[str, ...] | None = None
    vary_headers: tuple[str, ...] = Field(default=("Accept-Encoding",), validate_default=True)

    @field_validator("query_params")
    @classmethod
    def _params(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for p in v or ():
            if not _QUERY_PARAM_RE.fullmatch(p):
                raise ValueError(
                    f"cacheKey.queryParams entry {p!r}: only letters, digits and '_' are allowed"
                )
        return v

    @field_validator("vary_headers")
    @classmethod
    def _headers(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for h in v:
            if not _HEADER_RE.fullmatch(h):
                raise ValueError(f"cacheKey.varyHeaders entry {h!r} is not a header name")
        return tuple(h.lower() for h in v)


class SlicesConfig(_Model):
    """Range slicing (cachePolicy.slices): nginx asks the edge for fixed-size slices
    (``slice``), the edge fetches each with a Range request and stores it as its own L2
    record, so objects of any size are cached."""

    enabled: bool = False
    # the API's bounds: a slice is one L2 record and one buffer of the pod's fill budget
    size_bytes: int = Field(default=SLICE_DEFAULT_BYTES, ge=SLICE_MIN_BYTES, le=SLICE_MAX_BYTES)


class CachePolicyConfig(_Model):
    default_ttl_seconds: int = Field(default=300, ge=0)
    max_object_size_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    honour_cache_control: bool = True
    stale_while_revalidate_seconds: int = Field(default=60, ge=0)
    stale_if_error_seconds: int = Field(default=600, ge=0)
    l1_max_ttl_seconds: int = Field(default=60, ge=0)
    l1_cache_size: str = "1Gi"
    l2_max_ttl_seconds: int = Field(default=7 * 86400, gt=0)
    cache_key: CacheKeyConfig = CacheKeyConfig()
    # Requests with Cookie: strip (the origin never sees cookies), bypass (to the origin with
    # the cookie, never stored nor answered from cache), forward (to the origin; stored only
    # if the answer says Vary: Cookie, then one variant per cookie value).
    cookies: Literal["strip", "bypass", "forward"] = "strip"
    # Requests with Authorization: rfc9111 (forwarded; the answer is shared only if it is
    # public / s-maxage / must-revalidate, RFC 9111 3.5) or bypass (never stored nor answered
    # from cache).
    authorization: Literal["rfc9111", "bypass"] = "rfc9111"
    slices: SlicesConfig = SlicesConfig()
    # The origin's header carrying an object's tags (surrogate keys; purge by tag): tags are
    # separated by spaces or commas (Surrogate-Key: "a b", Cache-Tag: "a,b"). It, and the
    # other usual names (surrogate-key, cache-tag), never reach nginx or a client.
    tag_header: str = "Surrogate-Key"
    # set by EdgeConfig.route_policy, not by a ContentEdge: with routes, nginx's inactive=
    # and the L1 index keep objects as long as the longest route's window
    l1_keep_min_seconds: int = Field(default=0, ge=0)

    @field_validator("tag_header")
    @classmethod
    def _tag_header(cls, v: str) -> str:
        if not _HEADER_RE.fullmatch(v):
            raise ValueError(f"cachePolicy.tagHeader {v!r} is not a header name")
        return v

    @property
    def tag_headers(self) -> frozenset[str]:
        """Lower-case names of the headers stripped from what is stored and sent on."""
        return frozenset({self.tag_header.lower(), *TAG_HEADERS})

    @field_validator("l1_cache_size")
    @classmethod
    def _size(cls, v: str) -> str:
        try:
            parse_quantity(v)
        except ValueError as e:
            raise ValueError(f"cachePolicy.l1CacheSize: {e}") from None
        return v

    @property
    def l1_cache_bytes(self) -> int:
        return parse_quantity(self.l1_cache_size)

    @property
    def l1_keep_seconds(self) -> int:
        """How long nginx may keep an object (fresh or stale) in L1: the L1 freshness cap plus
        the stale window.  nginx's ``inactive=`` and the edge's index of what L1 holds (for
        prefix purge) both use it."""
        return max(60, self.l1_max_ttl_seconds + self.stale_if_error_seconds,
                   self.l1_keep_min_seconds)


class CacheClusterRef(_Model):
    seeds: tuple[str, ...]
    namespace: str = "cache"
    set: str | None = None  # default: the ContentEdge name
    # Enterprise access control: the user to log in as and the file holding its password
    # (the CacheCluster's edgeSecretName, mounted by the operator); neither without security.
    user: str | None = None
    password_file: str | None = None

    @model_validator(mode="after")
    def _login(self) -> CacheClusterRef:
        if (self.user is None) != (self.password_file is None):
            raise ValueError("cacheClusters.<name>: user and passwordFile go together")
        return self

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("cacheClusters.<name>.seeds must list at least one host:port")
        for s in v:
            host, sep, port = s.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"cacheClusters seed {s!r} must be host:port")
        return v


class PeersConfig(_Model):
    """Where the other edge pods of the region are, for purge fan-out.

    Production: ``dnsName`` = the headless Service ``<ce>-<region>-peers`` (one A record per
    ready pod).  ``static`` lists ``host:port`` admin addresses explicitly (tests, laptops).
    """

    dns_name: str | None = None
    static: tuple[str, ...] = ()
    admin_port: int = Field(default=9091, gt=0, lt=65536)
    timeout_seconds: float = Field(default=2.0, gt=0)
    # a peer's whole purge (its L2 rule and every nginx entry it names): a prefix can name
    # thousands, so this deadline is longer than a single control call's
    purge_timeout_seconds: float = Field(default=30.0, gt=0)


class LimitsConfig(_Model):
    client_max_body_size: str = "1m"
    client_header_timeout_seconds: int = Field(default=10, gt=0)
    client_body_timeout_seconds: int = Field(default=10, gt=0)
    send_timeout_seconds: int = Field(default=30, gt=0)
    keepalive_timeout_seconds: int = Field(default=65, ge=0)
    large_client_header_buffers: str = "4 16k"


class RateLimitsConfig(_Model):
    """nginx limit_req / limit_conn per client IP (ContentEdge spec.rateLimits, validated
    there; no stricter checks here)."""

    requests_per_second: int | None = None
    burst: int = 0
    connections_per_client: int | None = None
    trusted_proxies: tuple[str, ...] = ()
    client_ip_header: str = "X-Forwarded-For"
    zone_mb: int = Field(default=10, gt=0)

    @property
    def retry_after_seconds(self) -> int:
        return 1


class TLSCertConfig(_Model):
    hosts: tuple[str, ...]
    cert_file: str
    key_file: str


class TLSConfig(_Model):
    """HTTPS listeners: one nginx ``server`` per certificate, chosen by SNI."""

    listen: str = "8443"
    certificates: tuple[TLSCertConfig, ...] = ()
    redirect_http: bool = False
    http2: bool = True
    # how often the edge looks at the mounted certificates; a change reloads nginx (SIGHUP)
    reload_poll_seconds: float = Field(default=10.0, gt=0)


class NginxConfig(_Model):
    """nginx knobs; the defaults are the production pod, tests override ports and paths."""

    listen: str = "8080"
    control_listen: str = "127.0.0.1:8082"
    cache_dir: str = "/var/cache/aerocdn"
    temp_dir: str = "/tmp"
    pid_file: str = "/tmp/nginx.pid"
    user: str | None = None  # only when the master runs as root (tests as root); pods: non-root
    purge_module_path: str = "/usr/lib/nginx/modules/ngx_http_cache_purge_module.so"
    # aerocdn's own module (nginx-modules/aerocdn_age, built by scripts/nginx-module.sh; the
    # image has it here): $aerocdn_age, the Age of every answer, L1 hits included
    age_module_path: str = "/usr/lib/nginx/modules/ngx_http_aerocdn_age_module.so"
    worker_processes: str = "auto"
    worker_connections: int = Field(default=4096, gt=0)
    access_log: str = "/dev/stdout"
    error_log: str = "stderr"
    keys_zone_mb: int = Field(default=64, gt=0)
    cache_lock_timeout_seconds: int = Field(default=10, gt=0)
    via: str = "1.1 aerocdn"
    # Measured (docs/benchmarks-edge.md): sendfile + tcp_nopush cost ~15% more nginx CPU per
    # 1 KiB L1 hit than read/write; turn on for properties serving mostly large objects.
    sendfile: bool = False


class EdgeConfig(_Model):
    content_edge: str
    namespace: str = "default"
    region: str
    hosts: tuple[str, ...]
    # exactly one: origin (the shorthand) or origins (groups, priorities, weights)
    origin: OriginConfig | None = None
    origins: tuple[OriginConfig, ...] = ()
    routes: tuple[RouteConfig, ...] = ()
    # origins one request may try (failover on connect errors, timeouts, 5xx), within the
    # largest fetchTimeoutSeconds of its group
    origin_attempts: int = Field(default=3, ge=1)
    cache_policy: CachePolicyConfig = CachePolicyConfig()
    limits: LimitsConfig = LimitsConfig()
    nginx: NginxConfig = NginxConfig()
    rate_limits: RateLimitsConfig | None = None
    tls: TLSConfig | None = None

    listen: str = "127.0.0.1:8081"
    admin_listen: str = "0.0.0.0:9091"
    cache_clusters: dict[str, CacheClusterRef] = Field(default_factory=dict)
    memory_tier_size: str = "256Mi"
    routing_plan_path: str = "/etc/aerocdn/routing/routes.json"
    routing_poll_seconds: float = Field(default=2.0, gt=0)
    purge_token_path: str = "/etc/aerocdn/purge/token"
    peers: PeersConfig = PeersConfig()
    nginx_control_url: str | None = "http://127.0.0.1:8082"

    lock_ttl_seconds: int = Field(default=10, ge=1)
    lock_wait_seconds: float = Field(default=5.0, gt=0)
    tier_timeout_ms: int = Field(default=50, gt=0)
    tier_threads: int = Field(default=16, gt=0)
    circuit_failures: int = Field(default=5, ge=1)
    circuit_open_seconds: float = Field(default=5.0, gt=0)
    purge_rules_refresh_seconds: float = Field(default=1.0, gt=0)
    # On SIGTERM: /readyz fails at once, requests are still accepted for shutdownDelaySeconds
    # (endpoints and nginx catch up), then listeners close and in-flight requests get up to
    # drainSeconds.  Keep the sum under the pod's terminationGracePeriodSeconds.
    shutdown_delay_seconds: float = Field(default=5.0, ge=0)
    drain_seconds: float = Field(default=20.0, ge=0)
    max_request_header_bytes: int = Field(default=16384, gt=0)
    # The container's memory limit; every per-pod structure gets a byte budget from it (unset:
    # the cgroup's memory.max, else 512Mi).
    memory_limit: str | None = None
    admin_header_timeout_seconds: float = Field(default=10.0, gt=0)

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("hosts must list at least one host name")
        out = []
        for h in v:
            low = h.lower().rstrip(".")
            if not _HOST_RE.fullmatch(low):
                raise ValueError(f"hosts entry {h!r} is not a DNS name (a leading '*.' is allowed)")
            out.append(low)
        return tuple(out)

    @field_validator("memory_tier_size")
    @classmethod
    def _mem(cls, v: str) -> str:
        try:
            parse_quantity(v)
        except ValueError as e:
            raise ValueError(f"memoryTierSize: {e}") from None
        return v

    @model_validator(mode="after")
    def _waits(self) -> EdgeConfig:
        if self.lock_wait_seconds > self.lock_ttl_seconds:
            raise ValueError(
                f"lockWaitSeconds ({self.lock_wait_seconds}) must not exceed lockTTLSeconds "
                f"({self.lock_ttl_seconds}): a waiter would outlive the lock it waits on"
            )
        return self

    @model_validator(mode="after")
    def _origins(self) -> EdgeConfig:
        if (self.origin is None) == (not self.origins):
            raise ValueError("origin, origins: set exactly one")
        names = [o.name for o in self.origin_list]
        for i, n in enumerate(names):
            if n in names[:i]:
                raise ValueError(f"origins[{i}].name: {n!r} is used twice")
        groups = {o.group for o in self.origin_list}
        prefixes = [r.path_prefix for r in self.routes]
        for i, r in enumerate(self.routes):
            if r.path_prefix in prefixes[:i]:
                raise ValueError(f"routes[{i}].pathPrefix: {r.path_prefix!r} is used twice")
            if r.origin not in groups:
                raise ValueError(f"routes[{i}].origin: {r.origin!r} is not an origin group "
                                 f"({', '.join(sorted(groups))})")
        if DEFAULT_ORIGIN_GROUP not in groups and "/" not in prefixes:
            raise ValueError("origins: no origin in the group 'default' and no route for /")
        return self

    @property
    def origin_list(self) -> tuple[OriginConfig, ...]:
        """Every origin: the shorthand's one, or spec.origins."""
        return (self.origin,) if self.origin is not None else self.origins

    def group(self, name: str) -> tuple[OriginConfig, ...]:
        return tuple(o for o in self.origin_list if o.group == name)

    def _merged(self, route: RouteConfig | None) -> CachePolicyConfig:
        over = route.cache_policy.model_dump(exclude_none=True) if route is not None else {}
        return self.cache_policy.model_copy(update=over) if over else self.cache_policy

    def route_policy(self, route: RouteConfig | None) -> CachePolicyConfig:
        """cachePolicy with the route's overrides applied (None: requests no route
        matches), keeping objects in L1 as long as the longest route does."""
        policy = self._merged(route)
        keep = self.l1_keep_seconds
        if keep > policy.l1_keep_seconds:
            policy = policy.model_copy(update={"l1_keep_min_seconds": keep})
        return policy

    def for_route(self, route: RouteConfig | None) -> EdgeConfig:
        """This config as one route's requests see it: its cache policy."""
        policy = self.route_policy(route)
        return self if policy is self.cache_policy else self.model_copy(
            update={"cache_policy": policy})

    @property
    def l1_keep_seconds(self) -> int:
        """How long nginx may keep an object in L1 (its ``inactive=``) and the L1 index
        remembers one: the longest of every route's."""
        return max(self._merged(r).l1_keep_seconds for r in (None, *self.routes))

    @field_validator("memory_limit")
    @classmethod
    def _limit(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                parse_quantity(v)
            except ValueError as e:
                raise ValueError(f"memoryLimit: {e}") from None
        return v

    @property
    def memory_limit_bytes(self) -> int:
        if self.memory_limit is not None:
            return parse_quantity(self.memory_limit)
        return cgroup_memory_limit() or 512 * 2**20

    @property
    def budgets(self) -> Budgets:
        return budgets(self.memory_limit_bytes, parse_quantity(self.memory_tier_size))

    @property
    def memory_tier_bytes(self) -> int:
        return self.budgets.memory_tier

    def cluster_set(self, name: str) -> str:
        return self.cache_clusters[name].set or self.content_edge

    def serves_host(self, host: str) -> bool:
        return host_allowed(self.hosts, host)


class Budgets(_Model):
    """Byte budgets of the per-pod structures, from the container's memory limit.  What is
    left (65%) is the interpreter (~70 MiB), aiohttp's and the Aerospike client's buffers, and
    the allocator's slack: memory freed by evicting many small objects is not always returned
    to the OS before large ones take their place, so the memory tier can hold its budget twice
    over in RSS (measured: bench/edge/bench_edge_tls.py (e))."""

    limit: int
    memory_tier: int  # the L2 memory tier (no Aerospike)
    fills: int  # bodies of fills in flight; past it a fill streams without storing
    l1_index: int  # the index of what nginx holds (for purge)


def budgets(limit: int, memory_tier_size: int) -> Budgets:
    return Budgets(limit=limit, memory_tier=min(memory_tier_size, limit * 15 // 100),
                   fills=limit * 15 // 100, l1_index=limit * 5 // 100)


def cgroup_memory_limit(path: str = "/sys/fs/cgroup/memory.max") -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def host_allowed(hosts: tuple[str, ...], host: str) -> bool:
    """Same semantics as nginx ``server_name``: exact names and leading ``*.`` wildcards."""
    h = host.lower().rstrip(".")
    if h.startswith("[") or not h:
        return False
    h = h.split(":", 1)[0]
    for pattern in hosts:
        if pattern.startswith("*."):
            if h.endswith(pattern[1:]) and len(h) > len(pattern) - 1:
                return True
        elif h == pattern:
            return True
    return False


class EdgeConfigError(Exception):
    """The edge config file cannot be used; the message names the file and the field."""


def load_edge_config(path: str | Path) -> EdgeConfig:
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text())
    except OSError as e:
        raise EdgeConfigError(f"{p}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise EdgeConfigError(f"{p}: not YAML: {e}") from None
    if not isinstance(raw, dict):
        raise EdgeConfigError(f"{p}: expected a mapping at the top level")
    try:
        return EdgeConfig.model_validate(raw)
    except ValidationError as e:
        lines = [
            f"  {'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()
        ]
        raise EdgeConfigError(f"{p}: invalid edge config:\n" + "\n".join(lines)) from None
