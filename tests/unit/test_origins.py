"""Several origins and path routes (issue 15 part 2): the API's rules, the edge's pure choices
(route, attempt order, smooth weighted round robin), the edge config and nginx.conf."""

from __future__ import annotations

import copy
import re
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aerocdn.api import InputError, parse_object
from aerocdn.api.objects import ContentEdge
from aerocdn.edge.breaker import CircuitBreaker
from aerocdn.edge.config import EdgeConfig, OriginConfig, RouteConfig
from aerocdn.edge.origins import OriginSet, attempt_order, choose_route, smooth_weighted
from aerocdn.edge.policy import canonical_path
from aerocdn.render.contentedge import edge_config
from aerocdn.render.nginx import locations, render_nginx_conf

CE: dict[str, Any] = {
    "apiVersion": "aerocdn.dev/v1alpha1", "kind": "ContentEdge",
    "metadata": {"name": "shop", "namespace": "default"},
    "spec": {"hosts": ["shop.example.com"], "regions": [{"name": "eu"}],
             "origins": [{"name": "web-a", "url": "http://a.example", "weight": 3},
                         {"name": "web-b", "url": "http://b.example"},
                         {"name": "dr", "url": "http://dr.example", "priority": 1},
                         {"name": "api", "url": "https://api.example", "group": "api"}],
             "routes": [{"pathPrefix": "/api/", "origin": "api",
                         "cachePolicy": {"l1MaxTTLSeconds": 0, "cookies": "bypass"}},
                        {"pathPrefix": "/static/",
                         "cachePolicy": {"defaultTTLSeconds": 86400,
                                         "staleIfErrorSeconds": 3600}}]}}


def ce_with(**spec: Any) -> dict[str, Any]:
    obj = copy.deepcopy(CE)
    for k, v in spec.items():
        if v is None:
            obj["spec"].pop(k, None)
        else:
            obj["spec"][k] = v
    return obj


def refused(obj: dict[str, Any]) -> str:
    with pytest.raises(InputError) as e:
        parse_object(obj)
    return str(e.value)


# ----------------------------------------------------------------------------- API


def test_several_origins_and_routes_are_accepted_with_their_defaults() -> None:
    ce = parse_object(CE)
    assert isinstance(ce, ContentEdge)
    origins = ce.spec.origins or []
    assert [(o.name, o.group, o.priority, o.weight) for o in origins] == [
        ("web-a", "default", 0, 3), ("web-b", "default", 0, 1), ("dr", "default", 1, 1),
        ("api", "api", 0, 1)]
    assert ce.spec.routes[1].origin == "default"
    assert ce.spec.origin_groups() == {"default", "api"}


def test_origin_shorthand_still_works_and_takes_routes_for_the_default_group() -> None:
    obj = ce_with(origins=None, origin={"url": "http://o.example"},
                  routes=[{"pathPrefix": "/img/", "cachePolicy": {"defaultTTLSeconds": 5}}])
    ce = parse_object(obj)
    assert isinstance(ce, ContentEdge) and ce.spec.origin is not None


@pytest.mark.parametrize(("spec", "field", "words"), [
    ({"origin": {"url": "http://o.example"}}, "origin, origins", "exactly one"),
    ({"origins": None}, "origin, origins", "exactly one"),
    ({"origins": [{"name": "a", "url": "http://a"}, {"name": "a", "url": "http://b"}]},
     "origins[1].name", "used twice"),
    ({"routes": [{"pathPrefix": "/x/", "origin": "nope"}]}, "routes[0].origin",
     "not an origin group"),
    ({"routes": [{"pathPrefix": "/x/"}, {"pathPrefix": "/x/"}]}, "routes[1].pathPrefix",
     "used twice"),
    ({"origins": [{"name": "a", "url": "http://a", "group": "web"}],
      "routes": [{"pathPrefix": "/x/", "origin": "web"}]}, "origins", "group 'default'"),
])
def test_bad_origins_and_routes_are_refused_naming_the_field(
        spec: dict[str, Any], field: str, words: str) -> None:
    msg = refused(ce_with(**spec))
    assert field in msg and words in msg, msg


def test_a_route_for_slash_replaces_the_default_group() -> None:
    obj = ce_with(origins=[{"name": "a", "url": "http://a", "group": "web"}],
                  routes=[{"pathPrefix": "/", "origin": "web"}])
    parse_object(obj)


@pytest.mark.parametrize("prefix", ["api", "/a//b", "/a/./b", "/a/../b", "/.", "/a/..",
                                    "/a b", "/a%2Fb", "/a?b", "/a;b"])
def test_path_prefixes_must_be_canonical(prefix: str) -> None:
    msg = refused(ce_with(routes=[{"pathPrefix": prefix}]))
    assert "routes" in msg and "pathPrefix" in msg, msg


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="/a.~_-%2F", min_size=1, max_size=12))
def test_every_admitted_prefix_is_its_own_canonical_form(prefix: str) -> None:
    """A prefix the API takes matches canonical paths byte for byte: it is canonical."""
    try:
        RouteConfig(path_prefix=prefix)
    except ValueError:
        return
    assert canonical_path(prefix) == prefix


# ----------------------------------------------------------------------------- route choice


ROUTES = (RouteConfig(path_prefix="/api"), RouteConfig(path_prefix="/api/v2/"),
          RouteConfig(path_prefix="/"), RouteConfig(path_prefix="/img/"))


@pytest.mark.parametrize(("path", "index"), [
    ("/api", 0), ("/apis", 0), ("/api/v1/x", 0), ("/api/v2/x", 1), ("/api/v2", 0),
    ("/img/a.png", 3), ("/img", 2), ("/", 2), ("/other", 2)])
def test_the_longest_matching_prefix_wins(path: str, index: int) -> None:
    assert choose_route(ROUTES, path) == index


def test_no_route_matches_without_a_slash_route() -> None:
    assert choose_route(ROUTES[:2], "/img/a") is None


# ----------------------------------------------------------------------------- attempt order


def origin(name: str, priority: int = 0, weight: int = 1, group: str = "default"
           ) -> OriginConfig:
    return OriginConfig(name=name, url=f"http://{name}.example", priority=priority,
                        weight=weight, group=group)


A, B, C, D = origin("a", weight=3), origin("b"), origin("c", priority=1), origin("d", 2, 5)
ALL = (A, B, C, D)


def names(order: list[OriginConfig]) -> list[str]:
    return [o.name for o in order]


def test_smooth_weighted_round_robin_gives_each_origin_exactly_its_weight() -> None:
    current: dict[str, int] = {}
    picks = []
    for _ in range(8):
        pick, current = smooth_weighted((A, B), current)
        picks.append(pick.name)
    assert picks == ["a", "a", "b", "a", "a", "a", "b", "a"]  # smooth: no long runs
    assert Counter(picks) == {"a": 6, "b": 2}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 20), min_size=1, max_size=6), st.integers(1, 5))
def test_every_round_of_sum_weights_picks_each_origin_weight_times(
        weights: list[int], rounds: int) -> None:
    group = tuple(origin(f"o{i}", weight=w) for i, w in enumerate(weights))
    current: dict[str, int] = {}
    seen: Counter[str] = Counter()
    for _ in range(sum(weights) * rounds):
        pick, current = smooth_weighted(group, current)
        seen[pick.name] += 1
    assert seen == {o.name: o.weight * rounds for o in group}


def test_failover_goes_to_the_same_priority_first_then_the_next_priorities() -> None:
    order, _ = attempt_order(ALL, {"a", "b", "c", "d"}, {})
    assert names(order) == ["a", "b", "c", "d"]
    order, _ = attempt_order(ALL, {"a", "b", "c", "d"}, {"a": 2, "b": 0})
    assert names(order)[:2] in (["a", "b"], ["b", "a"]) and names(order)[2:] == ["c", "d"]


def test_an_open_circuit_is_skipped_and_the_next_priority_serves() -> None:
    assert names(attempt_order(ALL, {"b", "c", "d"}, {})[0]) == ["b", "c", "d"]
    assert names(attempt_order(ALL, {"c", "d"}, {})[0]) == ["c", "d"]
    assert names(attempt_order(ALL, {"d"}, {})[0]) == ["d"]


def test_with_every_circuit_open_every_origin_is_listed_by_preference() -> None:
    assert names(attempt_order(ALL, set(), {})[0]) == ["a", "b", "c", "d"]


def test_only_the_best_healthy_priority_takes_new_requests() -> None:
    current: dict[str, int] = {}
    firsts: Counter[str] = Counter()
    for _ in range(40):
        order, current = attempt_order(ALL, {"a", "b", "c", "d"}, current)
        firsts[order[0].name] += 1
    assert firsts == {"a": 30, "b": 10}
    for _ in range(10):
        order, current = attempt_order(ALL, {"c", "d"}, current)
        firsts[order[0].name] += 1
    assert firsts["c"] == 10 and firsts["d"] == 0


def edge_cfg(**kw: Any) -> EdgeConfig:
    base: dict[str, Any] = {"contentEdge": "shop", "region": "eu", "hosts": ["cdn.example.com"]}
    return EdgeConfig.model_validate({**base, **kw})


def test_origin_set_follows_each_origins_breaker() -> None:
    cfg = edge_cfg(origins=[o.model_dump(by_alias=True) for o in ALL], circuitFailures=2,
                   circuitOpenSeconds=10, originAttempts=3)
    s = OriginSet(cfg)
    assert names(s.plan("default", 0)) == ["a", "b", "c"]  # originAttempts
    for t in (1, 2):
        s.breaker("a").failure(t, "refused")
    assert s.status(3)["a"]["circuit"] == "open" and s.status(3)["a"]["lastError"] == "refused"
    assert all(names(s.plan("default", 3))[0] == "b" for _ in range(5))
    assert names(s.plan("default", 13))[0] in ("a", "b")  # half-open: a is tried again


# ----------------------------------------------------------------------------- edge config


def test_edge_config_takes_exactly_one_of_origin_and_origins() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        edge_cfg()
    with pytest.raises(ValueError, match="exactly one"):
        edge_cfg(origin={"url": "http://a"}, origins=[{"name": "b", "url": "http://b"}])
    with pytest.raises(ValueError, match=r"routes\[0\].origin"):
        edge_cfg(origin={"url": "http://a"}, routes=[{"pathPrefix": "/a", "origin": "x"}])
    cfg = edge_cfg(origin={"url": "http://a"})
    assert [o.name for o in cfg.origin_list] == ["origin"]


def test_route_policy_overrides_only_what_the_route_sets_and_keeps_l1_the_longest() -> None:
    cfg = edge_cfg(origin={"url": "http://a"},
                   cachePolicy={"defaultTTLSeconds": 10, "staleIfErrorSeconds": 100},
                   routes=[{"pathPrefix": "/long/", "cachePolicy": {
                       "staleIfErrorSeconds": 5000, "cookies": "bypass"}}])
    default, long_ = cfg.route_policy(None), cfg.route_policy(cfg.routes[0])
    assert (default.default_ttl_seconds, default.stale_if_error_seconds) == (10, 100)
    assert (long_.default_ttl_seconds, long_.stale_if_error_seconds) == (10, 5000)
    assert long_.cookies == "bypass" and default.cookies == "strip"
    assert cfg.l1_keep_seconds == 60 + 5000
    assert default.l1_keep_seconds == long_.l1_keep_seconds == cfg.l1_keep_seconds
    assert f"inactive={cfg.l1_keep_seconds}s" in render_nginx_conf(cfg)


# ----------------------------------------------------------------------------- render


def test_render_puts_origins_and_routes_in_the_edge_config() -> None:
    ce = parse_object(CE)
    assert isinstance(ce, ContentEdge)
    cfg = edge_config(ce, ce.spec.regions[0], {})
    assert cfg.origin is None
    assert [(o.name, o.group, o.priority, o.weight) for o in cfg.origins] == [
        ("web-a", "default", 0, 3), ("web-b", "default", 0, 1), ("dr", "default", 1, 1),
        ("api", "api", 0, 1)]
    assert [(r.path_prefix, r.origin) for r in cfg.routes] == [
        ("/api/", "api"), ("/static/", "default")]
    assert cfg.route_policy(cfg.routes[1]).default_ttl_seconds == 86400


def test_nginx_has_one_location_per_route_naming_it_to_the_edge() -> None:
    ce = parse_object(CE)
    assert isinstance(ce, ContentEdge)
    cfg = edge_config(ce, ce.spec.regions[0], {})
    conf = render_nginx_conf(cfg)
    server = conf[conf.index("server_name shop.example.com"):]
    server = server[:server.index("\n    }\n")]
    assert re.findall(r"location (\S+(?: \S+)?) \{", server) == ["/", "^~ /api/", "^~ /static/"]
    assert re.findall(r'X-Aerocdn-Route "([^"]+)"', server) == ["-", "0", "1"]
    api = server[server.index("location ^~ /api/"):server.index("location ^~ /static/")]
    assert "proxy_cache_bypass $http_cookie;" in api
    assert "proxy_cache_bypass $http_cookie;" not in server.replace(api, "")
    assert [loc.policy.stale_if_error_seconds for loc in locations(cfg)] == [600, 600, 3600]


def test_without_routes_nginx_has_one_location_and_no_route_header() -> None:
    cfg = edge_cfg(origin={"url": "http://a"})
    conf = render_nginx_conf(cfg)
    assert "X-Aerocdn-Route" not in conf
    assert conf.count("location / {") == 2  # the server's and the control server's


def test_a_route_for_slash_is_nginx_s_slash_location() -> None:
    cfg = edge_cfg(origins=[{"name": "a", "url": "http://a", "group": "web"}],
                   routes=[{"pathPrefix": "/", "origin": "web"},
                           {"pathPrefix": "/x/", "origin": "web"}])
    assert [(loc.match, loc.route_id) for loc in locations(cfg)] == [("/", "0"),
                                                                     ("^~ /x/", "1")]


def test_nginx_waits_for_the_origin_attempts_of_one_request() -> None:
    one = edge_cfg(origin={"url": "http://a", "connectTimeoutSeconds": 1,
                           "readTimeoutSeconds": 2})
    assert "proxy_read_timeout 13s;" in render_nginx_conf(one)  # 1 + 2 + lockWait 5 + 5
    three = edge_cfg(origins=[{"name": n, "url": f"http://{n}", "connectTimeoutSeconds": 1,
                               "readTimeoutSeconds": 2} for n in "abc"])
    assert "proxy_read_timeout 19s;" in render_nginx_conf(three)  # 3 x 3 + 5 + 5


def test_breaker_abandon_lets_a_half_open_trial_run_again() -> None:
    b = CircuitBreaker(failures_to_open=1, open_seconds=1)
    b.failure(0, "x")
    assert b.allow(2) and not b.allow(2)
    b.abandon()
    assert b.allow(2)
