"""Routing on the local control plane: a CacheCluster scale-down drains its cache routes
before its capacity goes, capacity that comes back ramps in over the slow-start window, and a
cluster that grows stays in the routes (asserted as properties of the recorded versions, not
of timings: the scale-up may come while the ramp still runs)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import pytest
from kubernetes import client, config
from tests.integration.operator_harness import (
    Kubectl,
    Operator,
    Recorder,
    is_ready,
    small_cc,
    small_ce,
    wait_for,
)

SLOW_START = 20


@pytest.fixture
def api(kubeconfig: str) -> Iterator[client.ApiClient]:
    with config.new_client_from_config(kubeconfig) as api:
        yield api


def weights(cm: dict[str, Any], region: str) -> dict[str, float]:
    if not cm:
        return {}
    routes = json.loads(cm["data"]["routes.json"])["cacheRoutes"].get(region, [])
    return {r["cacheCluster"]: r["weight"] for r in routes}


def test_scale_down_drains_cache_routes_first_and_capacity_ramps_back(
        kubectl: Kubectl, operator: Operator, ns: str, api: client.ApiClient) -> None:
    kubectl.apply(small_cc("eu", "eu-west"), small_cc("us", "us-east"),
                  small_cc("ap", "ap-south"), namespace=ns)
    regions = [{"name": "eu-west", "cacheCluster": "eu"}, {"name": "us-east", "cacheCluster": "us"},
               {"name": "ap-south", "cacheCluster": "ap"}]
    ce = small_ce("rt", regions)
    ce["spec"]["routing"] = {"slowStartSeconds": SLOW_START, "latenciesMs": {
        "eu-west": {"us-east": 80, "ap-south": 120}, "us-east": {"ap-south": 200}}}
    kubectl.apply(ce, namespace=ns)
    wait_for("rt Ready", lambda: is_ready(kubectl.get("ce", "rt", ns)))
    # steady state: every region on its own cluster alone, every slow-start ramp finished
    # (right after creation a plan can show eu at 1.0 only because the others are not ready)
    own = {"eu-west": "eu", "us-east": "us", "ap-south": "ap"}
    wait_for("every region on its own cluster at full weight", lambda: all(
        weights(kubectl.get("configmap", "rt-routing", ns) or {}, region) == {cluster: 1.0}
        for region, cluster in own.items()), timeout=SLOW_START * 3)
    # A region alone on its own cluster shows 1.0 even while that cluster still ramps, and
    # another cluster's ramp moves eu-west's shares: wait until every cluster has been Ready
    # for a whole slow-start window (the ramps are a function of that time, by design).
    wait_for("every cluster past its slow-start window", lambda: all(
        ramp_over(kubectl.get("cc", name, ns)) for name in own.values()),
        timeout=SLOW_START * 4)

    maps, sets = Recorder(api, ns, "configmap"), Recorder(api, ns, "statefulset")
    clusters = Recorder(api, ns, "cachecluster")
    try:
        wait_for("the watches to list", lambda: maps.seen and sets.seen and clusters.seen)
        kubectl.run("scale", "cc/eu", "-n", ns, "--replicas=1")
        wait_for("eu shrunk and Ready", lambda: is_ready(kubectl.get("cc", "eu", ns))
                 and (kubectl.get("statefulset", "eu", ns) or {})["spec"]["replicas"] == 1)
        drained_rv = next(rv for rv, cm in maps.seen if cm["metadata"]["name"] == "rt-routing"
                          and weights(cm, "eu-west").get("eu", 0) == 0)
        drained = next(cm for rv, cm in maps.seen if rv == drained_rv)
        # the nearest other region's cluster now comes first (others may still be ramping)
        routes = json.loads(drained["data"]["routes.json"])["cacheRoutes"]["eu-west"]
        serving = [r for r in routes if r["weight"] > 0]
        assert serving[0]["cacheCluster"] == "us", routes
        assert max(r["weight"] for r in serving) == serving[0]["weight"]
        shrunk_rv = next(rv for rv, sts in sets.seen if sts["metadata"]["name"] == "eu"
                         and sts["spec"]["replicas"] == 1)
        assert drained_rv < shrunk_rv, "the StatefulSet shrank before routes were drained"

        # Scale up at once, while eu still ramps in after the drain (what made the old
        # timing-based assertion flaky): a growing cluster is not weighted out again.
        kubectl.run("scale", "cc/eu", "-n", ns, "--replicas=2")
        wait_for("eu 2 nodes Ready", lambda: (cc := kubectl.get("cc", "eu", ns)) and is_ready(cc)
                 and cc["status"]["readyReplicas"] == 2)
        wait_for("eu back at full weight", lambda: weights(
            kubectl.get("configmap", "rt-routing", ns) or {}, "eu-west").get("eu") == 1.0,
            timeout=SLOW_START * 4)
    finally:
        maps.stop()
        sets.stop()
        clusters.stop()
    # The property: after eu's last transition to Ready, its weight never decreases.
    eu = sorted((rv, _ready(cc)) for rv, cc in clusters.seen if cc["metadata"]["name"] == "eu")
    became_ready = [rv for (_, before), (rv, now) in pairwise(eu)
                    if now and not before]
    assert became_ready, f"eu never became Ready again after the drain: {eu}"
    last_ready = became_ready[-1]
    ramp = [weights(cm, "eu-west").get("eu", 0.0) for rv, cm in sorted(maps.seen,
                                                                          key=lambda x: x[0])
            if rv > last_ready and cm["metadata"]["name"] == "rt-routing"]
    assert ramp and ramp[-1] == 1.0, ramp
    routes_after = [json.loads(cm["data"]["routes.json"])["cacheRoutes"]["eu-west"]
                    for rv, cm in sorted(maps.seen, key=lambda x: x[0])
                    if rv > last_ready and cm["metadata"]["name"] == "rt-routing"]
    ready_times = sorted({(cc["metadata"]["name"], c.get("lastTransitionTime"))
                          for _, cc in clusters.seen
                          for c in (cc.get("status") or {}).get("conditions", [])
                          if c["type"] == "Ready" and c["status"] == "True"})
    assert ramp == sorted(ramp), (
        f"eu's weight went down after it became Ready: {ramp}; eu-west's routes: "
        f"{routes_after}; Ready since, per cluster: {ready_times}")
    steps = [w for w in ramp if 0 < w < 1]
    assert len(steps) >= 3, f"no ramp over the slow-start window: {ramp}"
    events = [e for e in kubectl.items("events", ns) if e["reason"] == "RoutingChanged"]
    assert events, "no Event said that routing changed"


def ramp_over(cc: dict[str, Any] | None) -> bool:
    """Ready for longer than the slow-start window (by its Ready condition's transition)."""
    since = next((c.get("lastTransitionTime") for c in ((cc or {}).get("status") or {})
                  .get("conditions", []) if c["type"] == "Ready" and c["status"] == "True"),
                 None)
    if not since:
        return False
    ready_at = dt.datetime.fromisoformat(since.replace("Z", "+00:00"))
    return dt.datetime.now(dt.UTC) >= ready_at + dt.timedelta(seconds=SLOW_START + 1)


def _ready(cc: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in (cc.get("status") or {}).get("conditions", []))

