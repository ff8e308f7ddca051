"""Circuit breaker, routing plan, memory tier, L2 fallback, EdgeConfig, nginx.conf render."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aerocdn.edge.breaker import CircuitBreaker
from aerocdn.edge.config import EdgeConfig, EdgeConfigError, host_allowed, load_edge_config
from aerocdn.edge.l2 import TierSet
from aerocdn.edge.policy import StoredObject
from aerocdn.edge.routing import PlanWatcher, cluster_order
from aerocdn.edge.tiers import Entry, MemoryTier, TierError
from aerocdn.render.nginx import render_nginx_conf
from aerocdn.routing.model import Plan

MIN = {"contentEdge": "shop", "region": "eu", "hosts": ["cdn.example.com"],
       "origin": {"url": "https://origin.example.com/"}}


def o(url: str, size: int = 10, at: float = 0.0) -> StoredObject:
    return StoredObject(200, (), b"x" * size, url, at, at + 60)


# ----------------------------------------------------------------------------- breaker


def test_breaker_opens_after_consecutive_failures_and_half_opens_after_the_cooldown() -> None:
    b = CircuitBreaker(failures_to_open=3, open_seconds=5)
    for t in range(2):
        b.failure(t, "boom")
    assert b.state(2) == "closed" and b.allow(2)
    b.failure(2, "boom")
    assert b.state(3) == "open" and not b.allow(3)
    assert b.state(7) == "half-open"
    assert b.allow(7) and not b.allow(7)  # one trial at a time
    b.failure(7, "still down")
    assert b.state(8) == "open"
    assert b.allow(12)
    b.success()
    assert b.state(12) == "closed" and b.last_error == ""


def test_a_cancelled_call_from_before_the_circuit_opened_leaves_the_trial_alone() -> None:
    b = CircuitBreaker(failures_to_open=1, open_seconds=5)
    early = b.allow(0)  # let through while closed, still running
    assert early == "closed"
    b.failure(0, "boom")  # another call fails: open
    trial = b.allow(5)
    assert trial == "trial" and not b.allow(5)
    b.abandon(early)  # the early call is cancelled: no verdict, and not the trial
    assert not b.allow(5), "a second trial while the first one runs"
    b.abandon(trial)
    assert b.allow(5) == "trial"


# ----------------------------------------------------------------------------- routing


PLAN = {"generation": 7, "overloaded": False, "trafficWeights": {}, "extra": 1,
        "cacheRoutes": {"eu": [{"cacheCluster": "cc-us", "weight": 0.2},
                               {"cacheCluster": "cc-eu", "weight": 0.8},
                               {"cacheCluster": "cc-drained", "weight": 0.0},
                               {"cacheCluster": "cc-unknown", "weight": 1.0}]}}


def test_cluster_order_follows_the_plan_for_known_clusters_and_skips_drained_ones() -> None:
    configured = ("cc-eu", "cc-us", "cc-drained")
    assert cluster_order(Plan.from_json(json.dumps(PLAN)), "eu", configured) == ("cc-us", "cc-eu")


def test_cluster_order_without_a_plan_or_a_route_is_the_configured_order() -> None:
    assert cluster_order(None, "eu", ("a", "b")) == ("a", "b")
    assert cluster_order(Plan.from_json(json.dumps(PLAN)), "ap", ("a", "b")) == ("a", "b")


def test_the_edge_reads_a_partial_plan_and_a_route_without_weight_counts() -> None:
    """What the edge needs of routes.json: generation and cacheRoutes (the rest may be
    absent); a route without ``weight`` is used."""
    text = json.dumps({"generation": 3, "cacheRoutes": {"eu": [{"cacheCluster": "cc-us"},
                                                               {"cacheCluster": "cc-eu"}]}})
    assert cluster_order(Plan.from_json(text), "eu", ("cc-eu", "cc-us")) == ("cc-us", "cc-eu")


@pytest.mark.parametrize("text,msg", [("[", "not JSON"), ("[]", "object"),
                                      ("{}", "generation: is required"),
                                      ('{"generation": "1"}', "generation"),
                                      ('{"generation": true}', "generation"),
                                      ('{"generation": 1, "cacheRoutes": []}', "cacheRoutes"),
                                      ('{"generation": 1, "cacheRoutes": {"eu": [1]}}',
                                       "cacheRoutes.eu.0: should be an object"),
                                      ('{"generation": 1, "cacheRoutes": {"eu": [{}]}}',
                                       "cacheRoutes.eu.0.cacheCluster"),
                                      ('{"generation": 1, "cacheRoutes": {"eu": '
                                       '[{"cacheCluster": "a", "weight": "1"}]}}',
                                       "cacheRoutes.eu.0.weight")])
def test_bad_plans_are_rejected_with_the_field(text: str, msg: str) -> None:
    with pytest.raises(ValueError, match=msg) as e:
        Plan.from_json(text, "/etc/aerocdn/routing/routes.json")
    assert str(e.value).startswith("/etc/aerocdn/routing/routes.json: ")


def test_watcher_reloads_on_change_and_keeps_the_last_good_plan(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    w = PlanWatcher(str(path), "eu", ("cc-eu", "cc-us"))
    assert not w.poll() and w.snapshot.source == "config"
    path.write_text(json.dumps(PLAN))
    assert w.poll() and w.snapshot.generation == 7 and w.snapshot.order == ("cc-us", "cc-eu")
    assert not w.poll()  # unchanged
    path.write_text("{broken")
    assert not w.poll()
    assert w.snapshot.generation == 7 and "not JSON" in w.snapshot.error
    assert w.snapshot.error.startswith(str(path))
    path.unlink()
    assert not w.poll()
    assert w.snapshot.generation == 7 and w.snapshot.error == f"{path}: missing"


# ----------------------------------------------------------------------------- memory tier


async def test_memory_tier_is_a_bounded_lru() -> None:
    t = MemoryTier(max_bytes=3 * (10 + 256 + 3 + 3 + 400))  # body, entry, url, key, slot
    for name in ("h/a", "h/b", "h/c"):
        await t.put(name, o(name), 60)
    await t.get("h/a")  # a is now the most recent
    await t.put("h/d", o("h/d"), 60)
    assert await t.get("h/b") is None
    assert {k for k in ("h/a", "h/c", "h/d") if await t.get(k) is not None} == {"h/a", "h/c", "h/d"}
    assert t.bytes <= t.max_bytes


async def test_memory_tier_expires_entries_by_ttl() -> None:
    now = [0.0]
    t = MemoryTier(1 << 20, clock=lambda: now[0])
    await t.put("k", o("h/k"), 10)
    now[0] = 9.9
    assert await t.get("k") is not None
    now[0] = 10.0
    assert await t.get("k") is None and t.bytes == 0


async def test_memory_tier_purges_a_url_with_all_its_variants_and_a_prefix() -> None:
    t = MemoryTier(1 << 20)
    await t.put("h/a|gzip", o("h/a"), 60)
    await t.put("h/a|br", o("h/a"), 60)
    await t.put("h/ab|", o("h/ab"), 60)
    await t.put("h/img/1|", o("h/img/1"), 60)
    await t.purge("h/a", prefix=False, at=0)
    assert len(t) == 2
    await t.purge("h/img/", prefix=True, at=0)
    assert len(t) == 1 and await t.get("h/ab|") is not None


# ----------------------------------------------------------------------------- fallback


class Broken(MemoryTier):
    async def get(self, key: str) -> Entry | None:
        raise TierError("down")


async def test_a_failing_cluster_falls_back_to_the_next_and_is_circuit_broken() -> None:
    broken, good = Broken(1 << 20, name="a"), MemoryTier(1 << 20, name="b")
    await good.put("k", o("h/k"), 60)
    breakers = {n: CircuitBreaker(2, 30) for n in ("a", "b")}
    errors: list[str] = []
    ts = TierSet({"a": broken, "b": good}, breakers, lambda: ("a", "b"),
                 on_error=lambda n, e: errors.append(n), clock=lambda: 100.0)
    for _ in range(3):
        entry, tier = await ts.get("k")
        assert entry is not None and tier is good
    assert errors == ["a", "a"]  # third call skipped the open circuit
    assert ts.status()["a"]["circuit"] == "open" and ts.any_up()


async def test_a_half_open_cluster_further_down_is_tried_when_its_turn_comes() -> None:
    """Only the breakers of the clusters actually called are asked: a half-open cluster
    behind one that answers is not left with a trial "running" that never ran (it was then
    skipped until the next probe, even once it was the only one left)."""
    first, second = MemoryTier(1 << 20, name="a"), MemoryTier(1 << 20, name="b")
    await first.put("k", o("h/k"), 60)
    await second.put("k", o("h/k"), 60)
    breakers = {"a": CircuitBreaker(1, 30), "b": CircuitBreaker(1, 30)}
    breakers["b"].failure(0.0, "was down")  # open at 0, half-open from 30
    now = [40.0]
    ts = TierSet({"a": first, "b": second}, breakers, lambda: ("a", "b"),
                 clock=lambda: now[0])
    assert (await ts.get("k"))[1] is first
    assert not breakers["b"].trial_running
    breakers["a"].failure(now[0], "down now")
    entry, tier = await ts.get("k")
    assert tier is second and entry is not None  # b's trial ran and closed its circuit
    assert ts.status()["b"]["circuit"] == "closed"


async def test_no_cluster_answering_means_a_miss_not_an_error() -> None:
    ts = TierSet({"a": Broken(1, name="a")}, {"a": CircuitBreaker(1, 30)}, lambda: ("a",))
    assert await ts.get("k") == (None, None)
    assert not ts.any_up()
    lock = await ts.acquire_lock("k", "me", 5)
    assert lock.tier is None and lock.acquired  # fetch without a cross-pod lock


# ----------------------------------------------------------------------------- config


def test_config_defaults_are_the_production_pod() -> None:
    cfg = EdgeConfig.model_validate(MIN)
    assert cfg.listen == "127.0.0.1:8081" and cfg.admin_listen == "0.0.0.0:9091"
    assert cfg.routing_plan_path == "/etc/aerocdn/routing/routes.json"
    assert cfg.purge_token_path == "/etc/aerocdn/purge/token"
    assert cfg.nginx_control_url == "http://127.0.0.1:8082"
    assert cfg.nginx.cache_dir == "/var/cache/aerocdn" and cfg.nginx.listen == "8080"
    assert cfg.origin.url == "https://origin.example.com"
    assert cfg.cache_policy.l1_cache_bytes == 1 << 30
    assert cfg.cache_policy.cache_key.vary_headers == ("accept-encoding",)


def test_config_reads_camel_case_with_ttl_upper_case() -> None:
    cfg = EdgeConfig.model_validate({**MIN, "cachePolicy": {"defaultTTLSeconds": 5,
                                                           "l1MaxTTLSeconds": 3},
                                     "cacheClusters": {"cc-eu": {"seeds": ["cc-eu:3000"]}}})
    assert cfg.cache_policy.default_ttl_seconds == 5 and cfg.cache_policy.l1_max_ttl_seconds == 3
    assert cfg.cluster_set("cc-eu") == "shop" and cfg.cache_clusters["cc-eu"].namespace == "cache"


@pytest.mark.parametrize("patch,field", [
    ({"hosts": []}, "hosts"),
    ({"hosts": ["bad host"]}, "hosts"),
    ({"origin": {"url": "ftp://x"}}, "origin.url"),
    ({"cachePolicy": {"l1CacheSize": "lots"}}, "cachePolicy.l1CacheSize"),
    ({"cachePolicy": {"cacheKey": {"queryParams": ["a-b"]}}}, "cachePolicy.cacheKey.queryParams"),
    ({"cacheClusters": {"c": {"seeds": ["nohost"]}}}, "cacheClusters.c.seeds"),
    ({"lockWaitSeconds": 30}, "lockWaitSeconds"),
    ({"unknownField": 1}, "unknownField"),
])
def test_config_errors_name_the_file_and_the_field(tmp_path: Path, patch: dict[str, object],
                                                   field: str) -> None:
    p = tmp_path / "edge.yaml"
    p.write_text(json.dumps({**MIN, **patch}))
    with pytest.raises(EdgeConfigError) as e:
        load_edge_config(p)
    assert str(p) in str(e.value)
    assert field.split(".")[0] in str(e.value)


def test_host_matching_is_exact_or_leading_wildcard() -> None:
    hosts = ("cdn.example.com", "*.img.example.com")
    assert host_allowed(hosts, "CDN.example.com:8080")
    assert host_allowed(hosts, "a.img.example.com")
    assert not host_allowed(hosts, "img.example.com")
    assert not host_allowed(hosts, "evil.com")
    assert not host_allowed(hosts, "")


# ----------------------------------------------------------------------------- nginx.conf


def test_nginx_conf_has_the_production_paths_and_limits() -> None:
    cfg = EdgeConfig.model_validate({**MIN, "cachePolicy": {"l1CacheSize": "2Gi"}})
    text = render_nginx_conf(cfg)
    for line in (
        "load_module /usr/lib/nginx/modules/ngx_http_cache_purge_module.so;",
        "load_module /usr/lib/nginx/modules/ngx_http_aerocdn_age_module.so;",
        "proxy_hide_header X-Aerocdn-Born;",
        "proxy_hide_header Age;",
        'aerocdn_response_headers "1.1 aerocdn";',
        "pid /tmp/nginx.pid;",
        "proxy_cache_path /var/cache/aerocdn levels=1:2 keys_zone=aerocdn:64m",
        "max_size=2048m inactive=660s",
        "server 127.0.0.1:8081;",
        "listen 8080 default_server;",
        "return 421",
        "server_name cdn.example.com;",
        "listen 127.0.0.1:8082;",
        "stub_status;",
        "proxy_cache_purge aerocdn",
        "proxy_cache_lock on;",
        "proxy_cache_revalidate off;",
        "proxy_cache_background_update on;",
        "access_log /dev/stdout aerocdn_json;",
        "client_max_body_size 1m;",
        "client_body_temp_path /tmp/nginx-client-body;",
    ):
        assert line in text, line
    assert "user " not in text
    # Age, X-Cache and Via come from aerocdn's module, the log's tier too: no add_header or
    # map on the L1-hit path
    assert "add_header Age" not in text and "map $upstream_cache_status" not in text


def test_nginx_conf_for_a_host_list_serves_only_those_hosts() -> None:
    cfg = EdgeConfig.model_validate({**MIN, "hosts": ["a.example.com", "*.b.example.com"]})
    assert "server_name a.example.com *.b.example.com;" in render_nginx_conf(cfg)
