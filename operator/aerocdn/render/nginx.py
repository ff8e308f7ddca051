"""nginx.conf (the L1 cache in every edge pod) rendered from ``templates/nginx.conf.j2``.

Pure: EdgeConfig in, text out.  Production paths and ports are EdgeConfig defaults
(``EdgeConfig.nginx``); tests override them through the same fields.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import jinja2

from aerocdn.edge.config import CacheKeyConfig, CachePolicyConfig, EdgeConfig

_TEMPLATES = Path(__file__).parent / "templates"
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _var(header: str) -> str:
    """The nginx variable of a request header.  Accept-Encoding has a slot of its own in
    nginx's request (aerocdn's module reads it); ``$http_<name>`` scans every request header
    for the name, about 350 instructions an L1 hit.  Both give the first of repeated
    headers (nginx 1.22)."""
    if header.lower() == "accept-encoding":
        return "$aerocdn_accept_encoding"
    return "$http_" + re.sub(r"[^a-z0-9]", "_", header.lower())


# With cachePolicy.slices the L1 key of each slice ends in ``|`` + the slice's range; the purge
# location (which has no ``slice``) reads the same value from this header, sent by the edge.
SLICE_PURGE_HEADER = "X-Aerocdn-Slice"


def nginx_cache_key(policy: CacheKeyConfig, purge: bool = False,
                    slice_var: str | None = None) -> str:
    """The L1 key: the same parts, in the same order, as ``aerocdn.edge.policy.cache_key``
    (host, path, kept query, ``|`` + the key policy's request header values), and with
    slicing ``|`` + the slice's range (``bytes=S-E``: the canonical target + the slice).

    With the whole query kept (the default) the key takes the raw request target whole
    (``$request_uri``): the edge lets nginx store an answer only when that target is
    canonical, where path + ``?`` + query is exactly the target, and a regex capture of the
    path costs each L1 hit about as much as the rest of the key (``docs/benchmarks-edge.md``).
    ``purge``: the same key for the control server's ``/purge<target>`` requests."""
    if policy.include_query_string and policy.query_params is None:
        target = "$aerocdn_purge_target" if purge else "$request_uri"
    else:
        target = "$aerocdn_purge_path" if purge else "$aerocdn_path"
        if policy.include_query_string:
            target += "?" + "&".join(f"{p}=$arg_{p}" for p in policy.query_params or ())
    vary = "|".join(_var(h) for h in policy.vary_headers)
    key = f"$host{target}|{vary}"
    return key + f"|{slice_var}" if slice_var else key


@dataclass(frozen=True)
class Location:
    """One nginx ``location`` to the edge: ``route_id`` is what nginx tells the edge about
    its choice (None without routes), ``policy`` the route's cache policy."""

    match: str
    route_id: str | None
    policy: CachePolicyConfig
    comment: str = ""


def locations(cfg: EdgeConfig) -> list[Location]:
    """One location per route (prefix match, ``^~``: the longest prefix wins, as in the
    edge's choice) and ``/`` for requests no route matches (unless a route is ``/``)."""
    if not cfg.routes:
        return [Location("/", None, cfg.cache_policy)]
    out = []
    if all(r.path_prefix != "/" for r in cfg.routes):
        out.append(Location("/", "-", cfg.route_policy(None),
                            "requests no route matches: origin group default"))
    for i, r in enumerate(cfg.routes):
        out.append(Location("/" if r.path_prefix == "/" else f"^~ {r.path_prefix}", str(i),
                            cfg.route_policy(r),
                            f"routes[{i}] {r.path_prefix}: origin group {r.origin}"))
    return out


def upstream_read_timeout(cfg: EdgeConfig) -> int:
    """nginx's wait for the edge's answer: the longest origin attempts one request can make
    (connect + read each, originAttempts of them, at most the longest fetch deadline), plus
    the wait for another pod's fill."""
    spans = sorted((o.connect_timeout_seconds + o.read_timeout_seconds
                    for o in cfg.origin_list), reverse=True)
    fetch = max(o.fetch_timeout_seconds for o in cfg.origin_list)
    origin = spans[0] if len(spans) == 1 else min(fetch, sum(spans[:cfg.origin_attempts]))
    return int(origin + cfg.lock_wait_seconds) + 5


def _nginx_size(n: int) -> str:
    mib = 1024 * 1024
    return f"{max(1, n // mib)}m"


def render_nginx_conf(cfg: EdgeConfig) -> str:
    policy = cfg.cache_policy
    slices = policy.slices.enabled
    return _ENV.get_template("nginx.conf.j2").render(
        cfg=cfg,
        ngx=cfg.nginx,
        lim=cfg.limits,
        cache_key=nginx_cache_key(policy.cache_key,
                                  slice_var="$slice_range" if slices else None),
        purge_key=nginx_cache_key(policy.cache_key, purge=True,
                                  slice_var=_var(SLICE_PURGE_HEADER) if slices else None),
        slice_size=policy.slices.size_bytes if slices else None,
        l1_max_size=_nginx_size(policy.l1_cache_bytes),
        rl=cfg.rate_limits,
        tls=cfg.tls if cfg.tls is not None and cfg.tls.certificates else None,
        upstream_read_timeout=upstream_read_timeout(cfg),
        locations=locations(cfg),
    )
