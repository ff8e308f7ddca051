"""The shared-cache policy (RFC 9111 / RFC 5861) and the cache key: pure functions."""

from __future__ import annotations

import pytest

from aerocdn.edge.config import CacheKeyConfig, CachePolicyConfig
from aerocdn.edge.policy import (
    PurgeRules,
    StoredObject,
    answer_headers,
    cache_key,
    decide_storage,
    normalize_query,
    not_modified,
    pass_headers,
    tier_of,
)
from aerocdn.render.nginx import nginx_cache_key

NOW = 1_000_000.0
POLICY = CachePolicyConfig()


def decide(cc: str | None = None, status: int = 200, method: str = "GET",
           req: dict[str, str] | None = None, policy: CachePolicyConfig = POLICY,
           **extra: str) -> tuple[bool, str, float]:
    headers = [("Cache-Control", cc)] if cc is not None else []
    headers += [(k.replace("_", "-"), v) for k, v in extra.items()]
    d = decide_storage(method, req or {}, status, tuple(headers), policy, NOW)
    return d.store, d.reason, d.freshness_seconds


# ----------------------------------------------------------------------------- storing


def test_max_age_response_is_stored_for_max_age() -> None:
    assert decide("max-age=120") == (True, "storable", 120)


def test_s_maxage_wins_over_max_age_for_a_shared_cache() -> None:
    assert decide("max-age=10, s-maxage=600")[2] == 600


def test_age_from_upstream_is_subtracted() -> None:
    assert decide("max-age=100", Age="30")[2] == 70


def test_the_age_an_answer_arrives_with_counts_in_the_age_the_edge_sends() -> None:
    """RFC 9111 4.2.3: Age = the Age it came with + the time kept since. An Age that left the
    origin's out told a downstream cache the object was younger than it is."""
    d = decide_storage("GET", {}, 200, (("Cache-Control", "max-age=100"), ("Age", "30")),
                       POLICY, NOW)
    assert d.age == 30
    o = obj(fresh_for=d.freshness_seconds, initial_age=d.age)
    assert o.age(NOW + 5) == 35
    h = dict(answer_headers(o, NOW + 5, l1_max_ttl=600, tier="l2"))
    assert h["X-Aerocdn-Born"] == f"{NOW - 30:.3f} l2"  # nginx: Age = now - born
    assert int(h["X-Accel-Expires"]) == 65  # what is left of max-age 100 at age 35
    from aerocdn.edge.tiers import from_bins, to_bins
    back = from_bins(to_bins(o))
    assert back is not None and back.age(NOW + 5) == 35  # kept in the L2 record
    assert obj().age(NOW + 5) == 5 and "ia" not in to_bins(obj())  # none: as before


def test_expires_minus_date_is_the_lifetime() -> None:
    d = decide(None, Date="Mon, 01 Jan 2024 00:00:00 GMT", Expires="Mon, 01 Jan 2024 00:05:00 GMT")
    assert d[:1] == (True,) and d[2] == 300


def test_invalid_expires_means_already_expired() -> None:
    store, _, fresh = decide(None, Expires="0")
    assert fresh == 0  # stored only for the stale-if-error window
    assert store is True


def test_heuristic_statuses_without_freshness_get_the_default_ttl() -> None:
    assert decide(None)[2] == POLICY.default_ttl_seconds
    assert decide(None, status=404)[2] == POLICY.default_ttl_seconds


@pytest.mark.parametrize("cc,reason", [
    ("no-store", "response says no-store"),
    ("private, max-age=60", "response is private"),
    ("no-cache", "no-cache without a validator"),
    ("max-age=abc", "malformed Cache-Control"),
])
def test_responses_a_shared_cache_must_not_store(cc: str, reason: str) -> None:
    assert decide(cc)[:2] == (False, reason)


def test_field_qualified_private_is_not_stored() -> None:
    assert decide('private="X-User", max-age=60')[:2] == (False, "response is private")


def test_set_cookie_is_never_stored_even_when_public() -> None:
    assert decide("public, max-age=60", Set_Cookie="a=b")[:2] == (False, "response sets a cookie")


def test_vary_star_is_not_stored() -> None:
    assert decide("max-age=60", Vary="*")[:2] == (False, "Vary: *")


def test_vary_names_outside_the_key_policy_are_reported() -> None:
    d = decide_storage("GET", {}, 200, (("Cache-Control", "max-age=60"),
                                         ("Vary", "Accept-Encoding, Accept-Language")), POLICY, NOW)
    assert d.vary == ("accept-language",)


def test_authorization_requests_are_stored_only_when_the_response_allows_it() -> None:
    auth = {"authorization": "Bearer x"}
    assert decide("max-age=60", req=auth)[0] is False
    assert decide("public, max-age=60", req=auth)[0] is True
    assert decide("s-maxage=60", req=auth)[0] is True


def test_request_no_store_prevents_storing() -> None:
    assert decide("max-age=60", req={"cache-control": "no-store"})[0] is False


@pytest.mark.parametrize("method", ["POST", "HEAD", "PUT"])
def test_only_get_is_stored(method: str) -> None:
    assert decide("max-age=60", method=method)[0] is False


@pytest.mark.parametrize("status", [206, 302, 500, 503, 201])
def test_other_statuses_need_explicit_freshness_or_are_not_stored(status: int) -> None:
    store = decide(None, status=status)[0]
    assert store is False
    assert decide("max-age=60", status=status)[0] is (status == 302)


def test_301_with_no_store_is_not_stored() -> None:
    # hishel 0.1's controller would store it (permanent redirects checked first)
    assert decide("no-store", status=301)[0] is False


def test_ignoring_cache_control_uses_the_default_ttl_but_keeps_the_safety_rules() -> None:
    policy = CachePolicyConfig(honour_cache_control=False, default_ttl_seconds=42)
    assert decide("max-age=9999", policy=policy)[2] == 42
    assert decide("private", policy=policy)[0] is False


def test_l2_lifetime_is_capped() -> None:
    policy = CachePolicyConfig(l2_max_ttl_seconds=100)
    assert decide("max-age=31536000", policy=policy)[2] == 100


# ----------------------------------------------------------------------------- stale


def test_stale_windows_default_from_the_policy_and_can_be_set_by_the_origin() -> None:
    d = decide_storage("GET", {}, 200, (("Cache-Control", "max-age=60"),), POLICY, NOW)
    assert (d.stale_while_revalidate, d.stale_if_error) == (60, 600)
    d = decide_storage("GET", {}, 200, (("Cache-Control",
                                         "max-age=60, stale-while-revalidate=5, "
                                         "stale-if-error=7"),), POLICY, NOW)
    assert (d.stale_while_revalidate, d.stale_if_error) == (5, 7)


@pytest.mark.parametrize("cc", ["max-age=60, must-revalidate", "max-age=60, proxy-revalidate",
                                "s-maxage=60"])
def test_revalidate_directives_forbid_serving_stale(cc: str) -> None:
    d = decide_storage("GET", {}, 200, (("Cache-Control", cc),), POLICY, NOW)
    assert (d.stale_while_revalidate, d.stale_if_error) == (0, 0)


def obj(fresh_for: float = 60, swr: float = 10, sie: float = 100, **kw: object) -> StoredObject:
    return StoredObject(status=200, headers=(("ETag", '"v1"'),), body=b"x", url="h/p",
                        stored_at=NOW, fresh_until=NOW + fresh_for, stale_while_revalidate=swr,
                        stale_if_error=sie, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("at,state", [(0, "fresh"), (59, "fresh"), (60, "stale-revalidate"),
                                      (69, "stale-revalidate"), (70, "stale"), (159, "stale"),
                                      (160, "expired")])
def test_object_state_over_time(at: float, state: str) -> None:
    assert obj().state(NOW + at) == state


def test_record_ttl_covers_freshness_and_the_longest_stale_window() -> None:
    assert obj().record_ttl(NOW) == 161


def test_answer_headers_carry_the_birth_stamp_and_the_capped_l1_lifetime() -> None:
    """nginx makes Age from X-Aerocdn-Born (on L1 hits too): the edge sends no Age itself."""
    h = dict(answer_headers(obj(fresh_for=300), NOW + 30, l1_max_ttl=60, tier="l2"))
    assert h["X-Accel-Expires"] == "60" and tier_of(h) == "l2" and "Age" not in h
    assert "X-Aerocdn-Tier" not in h  # in the stamp's header: one stored line less
    assert h["X-Aerocdn-Born"] == f"{NOW:.3f} l2"  # born when stored: Age 30 at NOW + 30
    h = dict(answer_headers(obj(fresh_for=300), NOW + 290, l1_max_ttl=60, tier="l2"))
    assert h["X-Accel-Expires"] == "10"
    h = dict(answer_headers(obj(fresh_for=300), NOW + 400, l1_max_ttl=60, tier="stale"))
    assert h["X-Accel-Expires"] == "0"


def test_pass_headers_keep_l1_out_and_drop_hop_by_hop() -> None:
    h = pass_headers((("Connection", "close"), ("Set-Cookie", "a=b"), ("X-Accel-Expires", "99")))
    assert ("X-Accel-Expires", "0") in h and ("Set-Cookie", "a=b") in h
    assert all(k.lower() != "connection" for k, _ in h)
    assert [v for k, v in h if k == "X-Accel-Expires"] == ["0"]


def test_conditional_requests_are_answered_from_the_stored_validators() -> None:
    o = obj()
    assert not_modified(o, {"if-none-match": '"v1"'})
    assert not_modified(o, {"if-none-match": 'W/"v1", "v0"'})
    assert not not_modified(o, {"if-none-match": '"v2"'})
    assert not not_modified(o, {})


# ----------------------------------------------------------------------------- cache key


def test_key_keeps_the_whole_query_by_default_and_the_key_headers() -> None:
    k = cache_key(CacheKeyConfig(), "CDN.example:443", "/a", "b=1&a=2", {"accept-encoding": "gzip"})
    assert k.url == "cdn.example/a?b=1&a=2"
    assert k.key == "cdn.example/a?b=1&a=2|gzip"


def test_key_without_query_string() -> None:
    k = cache_key(CacheKeyConfig(include_query_string=False), "h", "/a", "x=1", {})
    assert k.url == "h/a"


def test_key_with_a_query_allow_list_keeps_listed_params_in_listed_order() -> None:
    policy = CacheKeyConfig(query_params=("page", "size"))
    assert normalize_query(policy, "utm=1&size=10&page=2&page=3") == "page=2&size=10"
    a = cache_key(policy, "h", "/l", "size=10&page=2&utm_source=x", {})
    b = cache_key(policy, "h", "/l", "page=2&size=10", {})
    assert a == b


def test_different_key_header_values_make_different_keys() -> None:
    policy = CacheKeyConfig(vary_headers=("Accept-Encoding", "X-Device"))
    a = cache_key(policy, "h", "/", "", {"accept-encoding": "gzip", "x-device": "m"})
    b = cache_key(policy, "h", "/", "", {"accept-encoding": "gzip", "x-device": "d"})
    assert a.url == b.url and a.key != b.key


def test_variant_key_depends_only_on_the_named_headers() -> None:
    k = cache_key(CacheKeyConfig(), "h", "/", "", {})
    assert k.variant(["accept-language"], {"accept-language": "fr", "x": "1"}) == \
        k.variant(["accept-language"], {"accept-language": "fr", "x": "2"})
    assert k.variant(["accept-language"], {"accept-language": "fr"}) != \
        k.variant(["accept-language"], {"accept-language": "en"})


@pytest.mark.parametrize("policy,expected", [
    (CacheKeyConfig(), "$host$request_uri|$aerocdn_accept_encoding"),
    (CacheKeyConfig(include_query_string=False, vary_headers=()), "$host$aerocdn_path|"),
    (CacheKeyConfig(query_params=("page", "size"), vary_headers=("Accept-Encoding", "X-Dev")),
     "$host$aerocdn_path?page=$arg_page&size=$arg_size|$aerocdn_accept_encoding|$http_x_dev"),
])
def test_nginx_key_has_the_same_parts_as_the_edge_key(policy: CacheKeyConfig,
                                                      expected: str) -> None:
    assert nginx_cache_key(policy) == expected


# ----------------------------------------------------------------------------- purge rules


def test_purge_rules_hide_objects_stored_before_a_matching_rule() -> None:
    rules = PurgeRules(exact={"h/a?x=1": NOW}, prefixes={"h/img/": NOW})
    assert rules.purged("h/a?x=1", NOW - 1)
    assert not rules.purged("h/a?x=1", NOW + 1)  # stored after the purge
    assert not rules.purged("h/a?x=2", NOW - 1)
    assert rules.purged("h/img/1.png", NOW - 1)
    assert not rules.purged("h/css/1.css", NOW - 1)


def test_purge_rules_older_than_any_object_are_pruned() -> None:
    rules = PurgeRules(exact={"old": 1.0, "new": NOW}, prefixes={"p": 1.0})
    pruned = rules.prune(NOW - 10)
    assert pruned.exact == {"new": NOW} and pruned.prefixes == {}
