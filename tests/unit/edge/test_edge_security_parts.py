"""Pure parts behind issue 11: the canonical target, variant selection, header stripping,
storage rules for no-cache / revalidate / forwarded headers, byte budgets, and the new API
fields validated identically by the CRD schema and by pydantic."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from aerocdn.api.contentedge import ContentEdgeSpec
from aerocdn.edge.config import CacheKeyConfig, CachePolicyConfig, EdgeConfig, budgets
from aerocdn.edge.fill import ByteBudget
from aerocdn.edge.policy import (
    BadTarget,
    StoredObject,
    canonical_path,
    check_query,
    decide_storage,
    l1_seconds,
    normalize_query,
    store_headers,
)
from aerocdn.edge.purge import L1Entry, L1Index

ROOT = Path(__file__).resolve().parents[3]


# ----------------------------------------------------------------------------- target


@pytest.mark.parametrize("raw,canonical", [
    ("/", "/"),
    ("/static/app.js", "/static/app.js"),
    ("//static/app.js", "/static/app.js"),
    ("/" * 500 + "a", "/a"),
    ("/a/./b", "/a/b"),
    ("/a/../b", "/b"),
    ("/a/b/..", "/a/"),
    ("/a/.", "/a/"),
    ("/a//", "/a/"),
    ("/%73tatic", "/static"),  # unreserved: decoded
    ("/a%2e%2E/b", "/a../b"),
    ("/%2E%2E/x", None),  # decoded dot-segments climb too
    ("/a%2fb", "/a%2Fb"),  # reserved: stays encoded, hex upper-cased
    ("/a%3Fb", "/a%3Fb"),
    ("/a b", "/a%20b"),
    ("/é", "/%C3%A9"),
    ("/a%20b", "/a%20b"),
    ("/a;b=c,d", "/a;b=c,d"),
    ("/..", None),
    ("/a/../..", None),
    ("a", None),
    ("/%zz", None),
    ("/%4", None),
    ("/%", None),
    ("/%00", None),
    ("/a\r\nb", None),
])
def test_canonical_path(raw: str, canonical: str | None) -> None:
    if canonical is None:
        with pytest.raises(BadTarget):
            canonical_path(raw)
    else:
        assert canonical_path(raw) == canonical
        assert canonical_path(canonical) == canonical  # idempotent


@pytest.mark.parametrize("q", ["a b", "a#b", "a\x00", "a\x7f"])
def test_query_with_characters_no_parser_should_pass_is_refused(q: str) -> None:
    with pytest.raises(BadTarget):
        check_query(q)


def test_query_params_match_names_like_nginx_arg_first_value_any_case() -> None:
    p = CacheKeyConfig(query_params=("page", "Size"))
    assert normalize_query(p, "PAGE=2&page=3&size=9&x=1") == "page=2&Size=9"


# ----------------------------------------------------------------------------- variants


def _obj(**kw: Any) -> StoredObject:
    base: dict[str, Any] = {"status": 200, "headers": (), "body": b"x", "url": "h/a",
                            "stored_at": 0.0, "fresh_until": 100.0}
    return StoredObject(**{**base, **kw})


def test_an_object_is_only_the_variant_of_requests_with_the_same_vary_values() -> None:
    o = _obj(vary=("cookie",), selected=(("cookie", "sid=alice"),))
    assert o.matches({"cookie": "sid=alice"})
    assert not o.matches({"cookie": "sid=bob"})
    assert not o.matches({})
    absent = _obj(vary=("cookie",), selected=(("cookie", ""),))
    assert absent.matches({}) and not absent.matches({"cookie": "a"})
    assert _obj().matches({"cookie": "anything"})


# ----------------------------------------------------------------------------- headers


def test_connection_named_x_accel_and_hop_by_hop_headers_are_never_kept() -> None:
    h = (("Connection", "close, X-Hop"), ("X-Hop", "1"), ("X-Accel-Redirect", "/s"),
         ("X-Accel-Expires", "9"), ("Transfer-Encoding", "chunked"), ("ETag", '"a"'),
         ("X-Aerocdn-Tier", "l2"))
    assert store_headers(h) == (("ETag", '"a"'),)


POLICY = CachePolicyConfig()


def test_a_forwarded_header_outside_the_key_must_be_named_by_vary() -> None:
    def d(vary: str | None, req: dict[str, str]) -> bool:
        h = (("Cache-Control", "max-age=60"),) + ((("Vary", vary),) if vary else ())
        return decide_storage("GET", req, 200, h, POLICY, 0.0,
                              forwarded_unkeyed=("accept-language",)).store

    assert d(None, {}) is True  # the request did not carry it
    assert d(None, {"accept-language": "fr"}) is False
    assert d("Accept-Language", {"accept-language": "fr"}) is True


def test_no_cache_is_stored_for_revalidation_only_with_a_validator() -> None:
    dec = decide_storage("GET", {}, 200, (("Cache-Control", "no-cache"), ("ETag", '"1"')),
                         POLICY, 0.0)
    assert dec.store and dec.revalidate and dec.freshness_seconds == 0
    assert not decide_storage("GET", {}, 200, (("Cache-Control", "no-cache"),), POLICY, 0.0).store


@pytest.mark.parametrize("cc,no_stale", [
    ("max-age=60", False),
    ("max-age=60, must-revalidate", True),
    ("max-age=60, proxy-revalidate", True),
    ("s-maxage=60", True),
    ("s-maxage=60, stale-if-error=30", False),  # the origin grants it explicitly
    ("s-maxage=60, must-revalidate, stale-if-error=30", True),
])
def test_objects_that_must_not_be_served_stale_stay_out_of_l1(cc: str, no_stale: bool) -> None:
    dec = decide_storage("GET", {}, 200, (("Cache-Control", cc),), POLICY, 0.0)
    assert dec.store and dec.no_stale is no_stale
    if no_stale:
        assert dec.stale_if_error == 0 and dec.stale_while_revalidate == 0
    obj = _obj(fresh_until=60.0, no_stale=dec.no_stale)
    assert (l1_seconds(obj, 0.0, 60) == 0) is no_stale


# ----------------------------------------------------------------------------- budgets


def test_budgets_follow_the_memory_limit() -> None:
    b = budgets(512 * 2**20, 256 * 2**20)
    assert b.fills + b.memory_tier + b.l1_index < b.limit * 0.6
    assert budgets(512 * 2**20, 16 * 2**20).memory_tier == 16 * 2**20
    cfg = EdgeConfig.model_validate({"contentEdge": "a", "region": "r", "hosts": ["a.test"],
                                     "origin": {"url": "http://o"}, "memoryLimit": "100Mi"})
    assert cfg.budgets.limit == 100 * 2**20 and cfg.memory_tier_bytes <= 25 * 2**20


def test_byte_budget_refuses_what_does_not_fit() -> None:
    b = ByteBudget(10)
    assert b.take(6) and not b.take(5) and b.take(4)
    b.give(6)
    assert b.used == 4


def test_l1_index_counts_bytes_and_refuses_past_its_budget() -> None:
    idx = L1Index(max_bytes=20_000)
    n = 0
    while idx.record(f"h/q?{'x' * 3000}{n}", "()", L1Entry("/q", "x" * 3000, (), 1e12)):
        n += 1
    assert 2 <= n < 10 and idx.bytes <= 20_000 and idx.overflowed == 1
    idx.drop("h/q", prefix=True)
    assert idx.bytes == 0 and idx.size == 0
    assert idx.record("h/a", "()", L1Entry("/a", "", (), 1.0))
    idx.prune(2.0)
    assert idx.bytes == 0


# ----------------------------------------------------------------------------- API = CRD


def _crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load((ROOT / "crds" / "aerocdn.dev_contentedges.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema["properties"]["spec"]  # type: ignore[no-any-return]


SPEC = {"hosts": ["cdn.example.com"], "origin": {"url": "https://o.example.com"},
        "regions": [{"name": "eu"}]}


@pytest.mark.parametrize("path,value,ok", [
    (("origin", "forwardHeaders"), ["Accept-Language", "X-Dev"], True),
    (("origin", "forwardHeaders"), ["X Bad"], False),
    (("origin", "forwardHeaders"), ["X_Under"], False),
    (("origin", "fetchTimeoutSeconds"), 5, True),
    (("origin", "fetchTimeoutSeconds"), 0, False),
    (("cachePolicy", "cookies"), "bypass", True),
    (("cachePolicy", "cookies"), "maybe", False),
    (("cachePolicy", "authorization"), "bypass", True),
    (("cachePolicy", "authorization"), "never", False),
    (("cachePolicy", "cacheKey", "queryParams"), ["page", "Size_2"], True),
    (("cachePolicy", "cacheKey", "queryParams"), ["a-b"], False),
    (("cachePolicy", "cacheKey", "varyHeaders"), ["Accept-Encoding"], True),
    (("cachePolicy", "cacheKey", "varyHeaders"), ["Accept Encoding"], False),
])
def test_new_fields_are_validated_identically_by_the_crd_and_pydantic(
        path: tuple[str, ...], value: Any, ok: bool) -> None:
    from aerocdn.api.objects import ContentEdge
    from aerocdn.render.contentedge import edge_config

    spec = copy.deepcopy(SPEC)
    node: dict[str, Any] = spec
    for p in path[:-1]:
        node = node.setdefault(p, {})
    node[path[-1]] = value
    crd_ok = True
    try:
        jsonschema.Draft4Validator(_crd_schema()).validate(spec)  # OpenAPI v3.0 = draft 4
    except jsonschema.ValidationError:
        crd_ok = False
    api_ok = True
    try:
        ContentEdgeSpec.model_validate(spec)
    except ValueError:
        api_ok = False
    assert (crd_ok, api_ok) == (ok, ok)
    if ok:  # and what the API admits, the edge loads
        ce = ContentEdge.model_validate({
            "apiVersion": "aerocdn.dev/v1alpha1", "kind": "ContentEdge",
            "metadata": {"name": "shop", "namespace": "web", "uid": "u"}, "spec": spec})
        cfg = edge_config(ce, ce.spec.regions[0], {})
        assert cfg.memory_limit == "512Mi"


@pytest.mark.parametrize("field,values", [
    ("forwardHeaders", ["X-Dev", "X Bad", "X_Under", "X-Dev\n", "", "Ä"]),
    ("varyHeaders", ["Accept-Encoding", "Accept Encoding", "Accept-Encoding\n", "a:b"]),
    ("queryParams", ["page", "Size_2", "a-b", "page\n", "a b", ""]),
    ("hosts", ["cdn.example.com", "*.example.com", "a..b", "cdn.example.com\n", "-a.com",
               "a_b.com", "*", "x.*.com"]),
])
def test_the_edge_config_admits_exactly_the_names_the_api_admits(
        field: str, values: list[str]) -> None:
    """The edge config checks names with the API's patterns (aerocdn.api.common)."""
    where: dict[str, tuple[str, ...]] = {
        "forwardHeaders": ("origin",), "varyHeaders": ("cachePolicy", "cacheKey"),
        "queryParams": ("cachePolicy", "cacheKey"), "hosts": ()}
    edge_base = {"contentEdge": "shop", "region": "eu", "hosts": ["cdn.example.com"],
                 "origin": {"url": "https://o.example.com"}}
    for value in values:
        verdicts = []
        for base, model in ((SPEC, ContentEdgeSpec), (edge_base, EdgeConfig)):
            doc: dict[str, Any] = copy.deepcopy(base)
            node = doc
            for p in where[field]:
                node = node.setdefault(p, {})
            node[field] = [value]
            try:
                model.model_validate(doc)
                verdicts.append(True)
            except ValueError:
                verdicts.append(False)
        assert verdicts[0] == verdicts[1], (field, value, "api, edge:", verdicts)


# ----------------------------------------------------------------------------- render


def test_tls_secrets_are_mounted_and_served_and_the_objects_are_valid() -> None:
    import kubernetes_validate

    from aerocdn.api.objects import ContentEdge
    from aerocdn.render.contentedge import render_contentedge

    spec = {**SPEC, "hosts": ["cdn.example.com", "*.img.example.com"],
            "tls": [{"hosts": ["cdn.example.com"], "secretName": "cdn-tls"},
                    {"hosts": ["*.img.example.com"], "secretName": "img-tls"}],
            "rateLimits": {"requestsPerSecond": 50, "burst": 100, "connectionsPerClient": 20,
                           "trustedProxies": ["10.0.0.0/8", "2001:db8::/32"]}}
    ce = ContentEdge.model_validate({
        "apiVersion": "aerocdn.dev/v1alpha1", "kind": "ContentEdge",
        "metadata": {"name": "shop", "namespace": "web", "uid": "u"}, "spec": spec})
    objects = render_contentedge(ce)
    for obj in objects:
        kubernetes_validate.validate(copy.deepcopy(obj), "1.34.0", strict=True)
    (dep,) = [o for o in objects if o["kind"] == "Deployment"]
    pod = dep["spec"]["template"]["spec"]
    assert pod["shareProcessNamespace"] is True
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {"cdn-tls", "img-tls"}
    for c in pod["containers"]:
        paths = {m["mountPath"] for m in c["volumeMounts"]}
        assert {"/etc/aerocdn/tls/cdn-tls", "/etc/aerocdn/tls/img-tls"} <= paths
    (svc,) = [o for o in objects if o["kind"] == "Service"
              and o["spec"].get("clusterIP") != "None"]
    assert {"name": "https", "port": 443, "targetPort": "https"} in svc["spec"]["ports"]
    (cm,) = [o for o in objects if o["kind"] == "ConfigMap" and "nginx.conf" in o["data"]]
    conf = cm["data"]["nginx.conf"]
    assert "ssl_certificate /etc/aerocdn/tls/img-tls/tls.crt;" in conf
    assert "server_name *.img.example.com;" in conf and "ssl_reject_handshake on;" in conf
    assert "set_real_ip_from 2001:db8::/32;" in conf
    assert "limit_req zone=aerocdn_req burst=100 nodelay;" in conf
    edge = yaml.safe_load(cm["data"]["edge.yaml"])
    assert edge["tls"]["certificates"][0]["certFile"] == "/etc/aerocdn/tls/cdn-tls/tls.crt"
    EdgeConfig.model_validate(edge)


@pytest.mark.parametrize("proxies,ok", [
    (["10.0.0.0/8", "192.168.1.7", "2001:db8::/32", "::1"], True),
    (["10.0.0.0/33"], False),
    (["300.1.1.1"], False),
    (["example.com"], False),
    (["fe80::1%eth0"], False),
    (["1.2.3.4/024"], False),  # refused by the apiserver's isCIDR too
    (["::ffff:1.2.3.4"], False),  # ditto isIP
    (["::ffff:0:0/96"], False),
])
def test_trusted_proxies_are_validated_identically_by_the_crd_pattern_and_pydantic(
        proxies: list[str], ok: bool) -> None:
    """The CRD also has CEL isIP/isCIDR (checked by the apiserver); the pattern is the part a
    JSON-schema validator sees here."""
    spec = {**SPEC, "rateLimits": {"trustedProxies": proxies}}
    api_ok = True
    try:
        ContentEdgeSpec.model_validate(spec)
    except ValueError:
        api_ok = False
    assert api_ok is ok
    if not ok:
        return
    jsonschema.Draft4Validator(_crd_schema()).validate(spec)


def test_query_bytes_outside_printable_ascii_are_encoded_the_rest_kept_as_sent() -> None:
    assert check_query("a=%7e&b=+&c=%2B") == "a=%7e&b=+&c=%2B"
    assert check_query("x=\u00e9") == "x=%C3%A9"
    assert check_query("x=\udce9") == "x=%E9"  # a raw byte as aiohttp hands it over
