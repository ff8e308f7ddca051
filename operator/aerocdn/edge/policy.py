"""Shared-cache policy: pure functions of requests, responses and the ContentEdge policy.

What may a *shared* cache store, for how long, and may it serve it stale (RFC 9111, RFC 5861)?

Cache-Control is parsed by ``aerocdn.edge.cachecontrol`` (RFC 9111 5.2).  Off-the-shelf HTTP
cache libraries decide for a private client cache, which differs from what a shared cache must
do (hishel 0.1's ``Controller.is_cachable``, for one: it accepts 301/308 before looking at
``no-store`` or the request method, ignores ``s-maxage``, knows nothing of ``Set-Cookie`` or
``Authorization`` (RFC 9111 3.5) and has no notion of RFC 5861 stale windows).  The rules below
are the short list a shared cache needs; each one is a unit test in
tests/unit/edge/test_edge_policy.py.
"""

from __future__ import annotations

import dataclasses
import email.utils
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from aerocdn.api.common import MAX_TAG_LENGTH, TAG_PATTERN
from aerocdn.edge.cachecontrol import CacheControl, parse_cache_control
from aerocdn.edge.config import CacheKeyConfig, CachePolicyConfig

Headers = tuple[tuple[str, str], ...]

# RFC 9111 4.2.2 heuristically cacheable statuses, without 206: partial answers are stored only
# as slices (cachePolicy.slices, aerocdn.edge.slicepath), which judge them as the whole 200.
HEURISTIC_STATUSES = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})
# Final statuses we store when the response gives explicit freshness.
EXPLICIT_ONLY_STATUSES = frozenset({302, 307})
LOOKUP_METHODS = frozenset({"GET", "HEAD"})

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        # ours, recomputed per answer
        "age",
        "x-accel-expires",
        "x-aerocdn-tier",
        "x-aerocdn-born",
    }
)


# --------------------------------------------------------------------------- request target

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# What may stay literal in a path segment (RFC 3986 pchar minus '%'): everything else is
# percent-encoded in the canonical form.
_PCHAR = _UNRESERVED | frozenset(b"!$&'()*+,;=:@")
_HEX = frozenset(b"0123456789abcdefABCDEF")


class BadTarget(ValueError):
    """A request target (or purge target) that cannot be interpreted: answer 400."""


def canonical_path(raw: str) -> str:
    """The one canonical form of a request path (RFC 3986 6.2.2 syntax-based normalisation,
    plus nginx's ``merge_slashes``): unreserved characters percent-decoded, other escapes
    kept with upper-case hex, every byte outside ``pchar`` encoded, runs of ``/`` merged,
    ``.``/``..`` segments removed.  ``%2F`` and ``%3F`` stay encoded: they are data, not
    structure.  It drives the L1 key, the L2 key, the origin request and purge; nginx lets
    L1 keep only answers whose raw target already is canonical (the edge says so with
    ``X-Accel-Expires``), so nginx and the edge never disagree about what a URL is.

    Raises ``BadTarget`` for what no origin could mean: not starting with ``/``, a broken
    escape, an encoded NUL, or ``..`` above the root.
    """
    if not raw.startswith("/"):
        raise BadTarget("path must start with /")
    data = raw.encode("utf-8", "surrogateescape")
    out = bytearray()
    i = 0
    while i < len(data):
        c = data[i]
        if c == 0x25:  # '%'
            if i + 2 >= len(data) or data[i + 1] not in _HEX or data[i + 2] not in _HEX:
                raise BadTarget(f"broken percent-escape at byte {i}")
            v = int(data[i + 1:i + 3], 16)
            if v == 0:
                raise BadTarget("encoded NUL in path")
            if v in _UNRESERVED:
                out.append(v)
            else:
                out += b"%%%02X" % v
            i += 3
            continue
        if c == 0 or c in (0x0D, 0x0A):
            raise BadTarget("control character in path")
        if c == 0x2F or c in _PCHAR:
            out.append(c)
        else:
            out += b"%%%02X" % c
        i += 1
    segments: list[str] = []
    parts = out.decode("ascii").split("/")[1:]
    for n, seg in enumerate(parts):
        last = n == len(parts) - 1
        if seg == "..":
            if not segments:
                raise BadTarget("path climbs above the root")
            segments.pop()
            if last:
                segments.append("")
        elif seg == "." or seg == "":
            if last:
                segments.append("")
        else:
            segments.append(seg)
    return "/" + "/".join(segments)


_QUERY_BAD = re.compile(r"[\x00-\x20\x7f#]")
_QUERY_OK = frozenset(range(0x21, 0x7F)) - {ord("#")}


def check_query(raw_query: str) -> str:
    """The query as keyed and as sent to the origin: byte for byte what the client sent
    (nginx's ``$args``), except bytes outside printable ASCII, which are percent-encoded (the
    edge then tells nginx not to keep the answer: its raw key would differ).  Control
    characters, spaces and '#' are refused."""
    if _QUERY_BAD.search(raw_query):
        raise BadTarget("control character, space or '#' in the query")
    data = raw_query.encode("utf-8", "surrogateescape")
    if all(b in _QUERY_OK for b in data):
        return raw_query
    return "".join(chr(b) if b in _QUERY_OK else f"%{b:02X}" for b in data)


# --------------------------------------------------------------------------- cache key


@dataclass(frozen=True)
class CacheKey:
    """``url``: host + path + the query the key keeps (what purge matches on).
    ``key``: url + the request header values the key policy names (one L2 record each)."""

    url: str
    key: str

    def variant(self, vary_names: Iterable[str], headers: Mapping[str, str]) -> str:
        """Key of the variant selected by the response's own ``Vary`` header names."""
        parts = [f"{n}={headers.get(n, '')}" for n in sorted(vary_names)]
        return self.key + "#v:" + "&".join(parts)


def normalize_query(policy: CacheKeyConfig, raw_query: str) -> str:
    """The query string as the cache key (and the origin request) keep it.

    Raw (not percent-decoded) so it matches nginx's ``$args`` / ``$arg_NAME``.  With an allow-list
    only the listed names are kept, in the listed order, first value only, names matched
    without regard to case — exactly nginx's ``$arg_NAME`` in the key ``?a=$arg_a&b=$arg_b``.
    """
    if not policy.include_query_string:
        return ""
    if policy.query_params is None:
        return raw_query
    values: dict[str, str] = {}
    for part in raw_query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        values.setdefault(name.lower(), value)
    return "&".join(f"{n}={values.get(n.lower(), '')}" for n in policy.query_params)


def cache_key(
    policy: CacheKeyConfig, host: str, path: str, raw_query: str, headers: Mapping[str, str]
) -> CacheKey:
    """``headers`` has lower-case names."""
    host = host.lower().split(":", 1)[0]
    q = normalize_query(policy, raw_query)
    url = host + path + ("?" + q if q else "")
    vary = "|".join(headers.get(h, "") for h in policy.vary_headers)
    return CacheKey(url=url, key=url + "|" + vary)


def digest(key: str) -> str:
    """Short fixed-size record key for tiers that limit key length."""
    return hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=20).hexdigest()


# --------------------------------------------------------------------------- storage decision


@dataclass(frozen=True)
class StoreDecision:
    store: bool
    reason: str
    freshness_seconds: float = 0.0  # remaining freshness at ``now``
    stale_while_revalidate: float = 0.0
    stale_if_error: float = 0.0
    vary: tuple[str, ...] = ()  # response Vary names (lower-case) outside the key policy
    no_stale: bool = False  # must-revalidate, proxy-revalidate, s-maxage: never served stale
    revalidate: bool = False  # no-cache: stored, revalidated with the origin on every use
    # the origin's Age (RFC 9111 5.1): how old the answer already was when it arrived; the
    # Age the edge's answers carry counts from there (4.2.3), as freshness above does
    age: float = 0.0


def _first(headers: Headers, name: str) -> str | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def _all(headers: Headers, name: str) -> list[str]:
    return [v for k, v in headers if k.lower() == name]


def _parse_cc(values: list[str]) -> CacheControl | None:
    if not values:
        return CacheControl()
    try:
        return parse_cache_control(values)
    except ValueError:  # malformed
        return None


def _extension_seconds(values: list[str], name: str) -> int | None:
    """RFC 5861 extensions (``parse_cache_control`` ignores directives the policy does not
    name)."""
    for v in values:
        for d in v.split(","):
            k, _, arg = d.strip().partition("=")
            if k.strip().lower() == name and arg.strip().strip('"').isdigit():
                return int(arg.strip().strip('"'))
    return None


def _http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        dt = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return dt.timestamp() if dt is not None else None


def decide_storage(
    method: str,
    request_headers: Mapping[str, str],
    status: int,
    response_headers: Headers,
    policy: CachePolicyConfig,
    now: float,
    forwarded_unkeyed: Iterable[str] = (),
) -> StoreDecision:
    """May a shared cache store this response, and for how long?  ``request_headers`` has
    lower-case names.  ``forwarded_unkeyed``: request headers (lower-case) that reached the
    origin although the key policy does not name them; the answer is stored only if its
    ``Vary`` names each of them (then they select the variant), so nothing outside the key
    changes a cached answer."""
    if method != "GET":
        return StoreDecision(False, f"method {method} is not stored")
    if status not in HEURISTIC_STATUSES and status not in EXPLICIT_ONLY_STATUSES:
        return StoreDecision(False, f"status {status} is not stored")
    req_values = [request_headers["cache-control"]] if "cache-control" in request_headers else []
    req_cc = _parse_cc(req_values)
    if req_cc is not None and req_cc.no_store:
        return StoreDecision(False, "request says no-store")
    cc_values = _all(response_headers, "cache-control")
    cc = _parse_cc(cc_values)
    if cc is None:
        return StoreDecision(False, "malformed Cache-Control")
    if cc.no_store:
        return StoreDecision(False, "response says no-store")
    if cc.private:
        return StoreDecision(False, "response is private")
    if _all(response_headers, "set-cookie"):
        return StoreDecision(False, "response sets a cookie")
    vary_names: list[str] = []
    for v in _all(response_headers, "vary"):
        for n in v.split(","):
            n = n.strip().lower()
            if n == "*":
                return StoreDecision(False, "Vary: *")
            if n and n not in policy.cache_key.vary_headers and n not in vary_names:
                vary_names.append(n)
    for n in forwarded_unkeyed:
        if n in request_headers and n not in vary_names:
            return StoreDecision(False, f"answer may depend on {n}, which its Vary does not name")
    if "authorization" in request_headers and not (
        cc.public or cc.s_maxage is not None or cc.must_revalidate
    ):
        return StoreDecision(False, "request carries Authorization")
    if cc.no_cache:
        # RFC 9111 5.2.2.4: may be stored, must be revalidated before each use - worth it
        # only with a validator to revalidate with
        if not (_first(response_headers, "etag") or _first(response_headers, "last-modified")):
            return StoreDecision(False, "no-cache without a validator")
        if cc.no_cache is not True:
            return StoreDecision(False, "no-cache on named fields")
        return StoreDecision(True, "storable, revalidate on each use",
                             freshness_seconds=0.0, vary=tuple(vary_names), no_stale=True,
                             revalidate=True)

    lifetime: float | None
    if policy.honour_cache_control:
        if cc.s_maxage is not None:
            lifetime = cc.s_maxage
        elif cc.max_age is not None:
            lifetime = cc.max_age
        else:
            expires = _first(response_headers, "expires")
            if expires is not None:
                exp = _http_date(expires)
                date = _http_date(_first(response_headers, "date")) or now
                lifetime = max(0.0, exp - date) if exp is not None else 0.0  # invalid = expired
            elif status in HEURISTIC_STATUSES:
                lifetime = float(policy.default_ttl_seconds)
            else:
                lifetime = None
        if lifetime is None:
            return StoreDecision(False, f"status {status} without explicit freshness")
    else:
        lifetime = float(policy.default_ttl_seconds)

    age_header = _first(response_headers, "age")
    age = int(age_header) if age_header and age_header.strip().isdigit() else 0
    remaining = min(float(lifetime) - age, float(policy.l2_max_ttl_seconds))
    # must-revalidate / proxy-revalidate forbid stale; s-maxage implies proxy-revalidate
    # (RFC 9111 5.2.2.10) unless the origin grants RFC 5861 windows explicitly.
    no_stale = bool(cc.must_revalidate or cc.proxy_revalidate or cc.s_maxage is not None)
    implied = cc.s_maxage is None
    swr = _extension_seconds(cc_values, "stale-while-revalidate")
    sie = _extension_seconds(cc_values, "stale-if-error")
    swr_default = policy.stale_while_revalidate_seconds if implied else 0
    sie_default = policy.stale_if_error_seconds if implied else 0
    explicit_grant = cc.s_maxage is not None and not (cc.must_revalidate or cc.proxy_revalidate)
    # s-maxage implies proxy-revalidate, unless the origin grants RFC 5861 windows itself
    if explicit_grant and (swr is not None or sie is not None):
        no_stale = False
    swr_s = 0.0 if no_stale else float(swr if swr is not None else swr_default)
    sie_s = 0.0 if no_stale else float(sie if sie is not None else sie_default)
    if remaining <= 0 and swr_s <= 0 and sie_s <= 0:
        return StoreDecision(False, "already expired")
    return StoreDecision(
        True,
        "storable",
        freshness_seconds=max(0.0, remaining),
        stale_while_revalidate=swr_s,
        stale_if_error=sie_s,
        vary=tuple(vary_names),
        no_stale=no_stale,
        age=float(age),
    )


# --------------------------------------------------------------------------- stored objects


@dataclass(frozen=True)
class StoredObject:
    status: int
    headers: Headers
    body: bytes | bytearray  # a fill's buffer, kept without a copy; never mutated
    url: str
    stored_at: float
    fresh_until: float
    stale_while_revalidate: float = 0.0
    stale_if_error: float = 0.0
    vary: tuple[str, ...] = ()
    # the values the Vary-named request headers had when it was fetched (lower-case names)
    selected: Headers = ()
    no_stale: bool = False
    revalidate: bool = False
    # cachePolicy.slices: the full length of the object this record describes (its slice
    # metadata record, empty body) or belongs to (a slice); -1: a whole object
    slice_total: int = -1
    # the origin's tags (surrogate keys): purge by tag removes every object carrying one
    tags: tuple[str, ...] = ()
    # the origin's Age when it was fetched (StoreDecision.age): the object is that much
    # older than stored_at (which purges compare with) says
    initial_age: float = 0.0

    def matches(self, request_headers: Mapping[str, str]) -> bool:
        """Is this the variant the request selects (RFC 9111 4.1)?  The one check before any
        object is handed to a request: lookups, in-pod collapsing, cross-pod waits."""
        chosen = dict(self.selected)
        return all(request_headers.get(n, "") == chosen.get(n, "") for n in self.vary)

    def state(self, now: float) -> str:
        """fresh | stale-revalidate (serve + refresh in background) | stale (serve on error
        only) | expired."""
        if now < self.fresh_until:
            return "fresh"
        if now < self.fresh_until + self.stale_while_revalidate:
            return "stale-revalidate"
        if now < self.fresh_until + self.stale_if_error:
            return "stale"
        return "expired"

    def record_ttl(self, now: float) -> int:
        """How long a tier should keep it: freshness plus the longest stale window."""
        extra = max(self.stale_while_revalidate, self.stale_if_error)
        return max(1, int(self.fresh_until + extra - now) + 1)

    def age(self, now: float) -> int:
        """RFC 9111 4.2.3: the Age it arrived with plus the time it has been kept since."""
        return max(0, int(now - self.stored_at + self.initial_age))

    def born(self) -> float:
        """When it was new at the origin, as far as its Age says (X-Aerocdn-Born)."""
        return self.stored_at - self.initial_age


@dataclass(frozen=True)
class VaryMarker:
    """Stored at the base key when the response varies on headers outside the key policy."""

    url: str
    vary: tuple[str, ...]
    stored_at: float
    expires_at: float


def store_headers(headers: Headers, drop: frozenset[str] = frozenset()) -> Headers:
    """What of an origin's answer may be stored or passed on: not hop-by-hop headers, not
    the fields its ``Connection`` header names (RFC 9110 7.6.1), no ``X-Accel-*`` (nginx
    control headers: only the edge may speak to nginx), nothing in ``drop`` (lower-case: the
    tag headers, kept as the object's tags)."""
    named = {n.strip().lower() for k, v in headers if k.lower() == "connection"
             for n in v.split(",")}
    return tuple((k, v) for k, v in headers
                 if k.lower() not in HOP_BY_HOP and k.lower() not in named
                 and not k.lower().startswith("x-accel-") and k.lower() not in drop)


MAX_TAGS = 64
_TAG_SPLIT = re.compile(r"[\s,]+")
TAG_RE = re.compile(TAG_PATTERN.removesuffix("$"))  # with fullmatch: "$" takes a final "\n"


def parse_tags(headers: Headers, name: str) -> tuple[str, ...]:
    """The tags in every ``name`` header (spaces or commas between them), in order, each once;
    at most MAX_TAGS, each at most MAX_TAG_LENGTH bytes (longer ones are not tags a purge
    could name: dropped)."""
    name = name.lower()
    out: dict[str, None] = {}
    for k, v in headers:
        if k.lower() != name:
            continue
        for t in _TAG_SPLIT.split(v):
            if len(t) <= MAX_TAG_LENGTH and TAG_RE.fullmatch(t):
                out.setdefault(t, None)
    return tuple(out)[:MAX_TAGS]


def selected_headers(vary: Iterable[str], request_headers: Mapping[str, str]) -> Headers:
    return tuple((n, request_headers.get(n, "")) for n in vary)


def l1_seconds(obj: StoredObject, now: float, l1_max_ttl: int) -> int:
    """How long nginx may keep it: remaining freshness capped by l1MaxTTLSeconds; 0 for what
    must be revalidated on use or must never be served stale (nginx's stale serving knows
    nothing of must-revalidate, so such objects stay out of L1)."""
    if obj.no_stale or obj.revalidate:
        return 0
    return min(max(0, int(obj.fresh_until - now)), l1_max_ttl)


def answer_headers(
    obj: StoredObject, now: float, l1_max_ttl: int, tier: str
) -> list[tuple[str, str]]:
    """Headers the edge sends nginx for a stored object: ``X-Accel-Expires`` = what L1 may
    keep it (remaining freshness capped by l1MaxTTLSeconds; nginx reads X-Accel-Expires before
    Cache-Control and never passes it on), and ``X-Aerocdn-Born: <born> <tier>`` = when the
    object was fetched or last validated at the origin (unix seconds, less the Age it came
    with) and the tier that answered: nginx stores it with the answer, sends ``Age`` = its
    now - born on every answer, L1 hits included, and logs the tier of misses (aerocdn's
    module, nginx-modules/aerocdn_age), and never passes the header on. No ``Age`` of the
    edge's own and no separate tier header: every header line nginx stores is parsed again on
    every L1 hit (~600 instructions each, bench/edge/l1_cost.py)."""
    out = list(obj.headers)
    out.append(("X-Aerocdn-Born", f"{obj.born():.3f} {tier}"))
    out.append(("X-Accel-Expires", str(l1_seconds(obj, now, l1_max_ttl))))
    return out


def pass_headers(headers: Headers, tier: str = "pass",
                 drop: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """Headers for a response streamed from the origin without being stored (not storable,
    too big, other methods): not in L2, so not in L1 either (``X-Accel-Expires: 0``)."""
    out = list(store_headers(headers, drop))
    out.append(("X-Accel-Expires", "0"))
    out.append(("X-Aerocdn-Born", f"- {tier}"))  # no stamp (so no Age), and the tier
    return out


def tier_of(headers: Mapping[str, str]) -> str:
    """The tier an answer of the edge names (``X-Aerocdn-Born: <stamp|-> <tier>``); the
    header looked up as sent or in lower case."""
    born = headers.get("X-Aerocdn-Born") or headers.get("x-aerocdn-born") or ""
    return born.partition(" ")[2]


def not_modified(obj: StoredObject, request_headers: Mapping[str, str]) -> bool:
    """Conditional request from nginx (proxy_cache_revalidate) that the stored object meets."""
    inm = request_headers.get("if-none-match")
    ims_value = request_headers.get("if-modified-since")
    if inm is None and ims_value is None:
        return False
    etag = _first(obj.headers, "etag")
    if inm is not None:
        if etag is None:
            return False
        tags = [t.strip().removeprefix("W/") for t in inm.split(",")]
        return "*" in tags or etag.removeprefix("W/") in tags
    ims = _http_date(ims_value)
    lm = _http_date(_first(obj.headers, "last-modified"))
    return ims is not None and lm is not None and lm <= ims


# --------------------------------------------------------------------------- purge rules


@dataclass
class PurgeRules:
    """Purges recorded as (url, prefix or tag, time).  An object stored before a rule that
    matches its url or one of its tags is treated as absent.  Used by the Aerospike tier
    (records are keyed by digest, so neither a prefix nor a tag can be found by key); rules
    are kept as long as an object can live."""

    exact: dict[str, float] = field(default_factory=dict)
    prefixes: dict[str, float] = field(default_factory=dict)
    tags: dict[str, float] = field(default_factory=dict)
    # soft purges: an object stored before one counts as expired from the rule's time on
    # (stale-while-revalidate and stale-if-error still apply), not as absent
    soft_exact: dict[str, float] = field(default_factory=dict)
    soft_prefixes: dict[str, float] = field(default_factory=dict)
    soft_tags: dict[str, float] = field(default_factory=dict)

    @staticmethod
    def _first(exact: dict[str, float], prefixes: dict[str, float], tags_: dict[str, float],
               url: str, stored_at: float, tags: tuple[str, ...]) -> float | None:
        """The earliest time of a rule matching the object and made after it was stored."""
        times = [exact.get(url), *(tags_.get(g) for g in tags),
                 *(t for p, t in prefixes.items() if url.startswith(p))]
        after = [t for t in times if t is not None and stored_at <= t]
        return min(after) if after else None

    def purged(self, url: str, stored_at: float, tags: tuple[str, ...] = ()) -> bool:
        if not (self.exact or self.prefixes or self.tags):
            return False  # the common case, on every L2 read
        return self._first(self.exact, self.prefixes, self.tags, url, stored_at,
                           tags) is not None

    def expired_at(self, url: str, stored_at: float, tags: tuple[str, ...] = ()
                   ) -> float | None:
        """When a soft purge made the object expire (None: no soft purge since it was
        stored)."""
        if not (self.soft_exact or self.soft_prefixes or self.soft_tags):
            return None
        return self._first(self.soft_exact, self.soft_prefixes, self.soft_tags, url,
                           stored_at, tags)

    def prune(self, older_than: float) -> PurgeRules:
        def keep(d: dict[str, float]) -> dict[str, float]:
            return {k: t for k, t in d.items() if t >= older_than}
        return PurgeRules(keep(self.exact), keep(self.prefixes), keep(self.tags),
                          keep(self.soft_exact), keep(self.soft_prefixes), keep(self.soft_tags))


def soft_expired(obj: StoredObject, at: float) -> StoredObject:
    """The object as a soft purge at ``at`` leaves it: expired from then on (its stale
    windows count from there), nothing else changed."""
    if obj.fresh_until <= at:
        return obj
    return dataclasses.replace(obj, fresh_until=at)
