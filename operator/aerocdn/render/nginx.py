"""nginx.conf (the L1 cache in every edge pod) rendered from ``templates/nginx.conf.j2``.

Pure: EdgeConfig in, text out.  Production paths and ports are EdgeConfig defaults
(``EdgeConfig.nginx``); tests override them through the same fields.
"""

from __future__ import annotations

import re
from pathlib import Path

import jinja2

from aerocdn.edge.config import CacheKeyConfig, EdgeConfig

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


def _nginx_size(n: int) -> str:
    mib = 1024 * 1024
    return f"{max(1, n // mib)}m"


def render_nginx_conf(cfg: EdgeConfig) -> str:
    policy = cfg.cache_policy
    slices = policy.slices.enabled
    upstream_read = int(
        cfg.origin.connect_timeout_seconds + cfg.origin.read_timeout_seconds + cfg.lock_wait_seconds
    ) + 5
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
        upstream_read_timeout=upstream_read,
    )
