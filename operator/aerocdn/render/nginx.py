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


def nginx_cache_key(policy: CacheKeyConfig, path_var: str = "$aerocdn_path",
                    slice_var: str | None = None) -> str:
    """The L1 key: the same parts, in the same order, as ``aerocdn.edge.policy.cache_key``
    (host, path, kept query, ``|`` + the key policy's request header values), and with
    slicing ``|`` + the slice's range (``bytes=S-E``: the canonical target + the slice)."""
    if not policy.include_query_string:
        query = ""
    elif policy.query_params is None:
        query = "$is_args$args"
    else:
        query = "?" + "&".join(f"{p}=$arg_{p}" for p in policy.query_params)
    vary = "|".join(_var(h) for h in policy.vary_headers)
    key = f"$host{path_var}{query}|{vary}"
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
        cache_key=nginx_cache_key(policy.cache_key, "$aerocdn_path",
                                  "$slice_range" if slices else None),
        purge_key=nginx_cache_key(policy.cache_key, "$aerocdn_purge_path",
                                  _var(SLICE_PURGE_HEADER) if slices else None),
        slice_size=policy.slices.size_bytes if slices else None,
        l1_max_size=_nginx_size(policy.l1_cache_bytes),
        rl=cfg.rate_limits,
        tls=cfg.tls if cfg.tls is not None and cfg.tls.certificates else None,
        upstream_read_timeout=upstream_read,
    )
