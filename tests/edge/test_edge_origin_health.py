"""Origin health in the ContentEdge's status: the reconcile (in process, against the fake API
of the controller tests) asks two real ``aerocdn edge`` processes' admin ports for their
origins' circuits, at most every originHealthSeconds, and writes the status only when the
health changes."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from tests.edge.edgeharness import HOST, Origin, PodFactory, free_port
from tests.unit.controller.fakekube import FakeKube

from aerocdn.api import parse_object
from aerocdn.api.contentedge import NamedOrigin
from aerocdn.controller import originhealth
from aerocdn.controller.contentedge import reconcile_contentedge
from aerocdn.controller.context import Context
from aerocdn.controller.queue import WorkQueue

pytestmark = pytest.mark.timeout(60)

CE: dict[str, Any] = {
    "apiVersion": "aerocdn.dev/v1alpha1", "kind": "ContentEdge",
    "metadata": {"name": "shop", "namespace": "default"},
    "spec": {"hosts": [HOST], "regions": [{"name": "eu", "replicas": 2}],
             "origins": [{"name": "live", "url": "http://127.0.0.1:1"},
                         {"name": "dead", "url": "http://127.0.0.1:2", "priority": 1}]}}


def pod(name: str, ip: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default",
                         "labels": {"app.kubernetes.io/name": "aerocdn-edge",
                                    "aerocdn.dev/contentedge": "shop",
                                    "aerocdn.dev/region": "eu"}},
            "status": {"phase": "Running", "podIP": ip}}


def origins() -> list[NamedOrigin]:
    ce = parse_object(CE)
    return list(ce.spec.origins or [])  # type: ignore[union-attr]


def report(**circuits: str) -> dict[str, Any]:
    return {"origins": {n: {"circuit": c, **({"lastError": "refused"} if c != "closed" else {})}
                        for n, c in circuits.items()}}


def test_the_summary_counts_the_pods_that_see_each_circuit_closed() -> None:
    health = originhealth.summarize(origins(), {
        "p1": report(live="closed", dead="open"), "p2": report(live="closed", dead="closed"),
        "p3": None})
    assert [(h.name, h.state, h.pods_up, h.last_error) for h in health] == [
        ("live", "Healthy", "2/2", None), ("dead", "Degraded", "1/2", "refused")]
    cond = originhealth.condition(health)
    assert (cond.status, cond.reason) == (False, "OriginDegraded") and "dead" in cond.message
    down = originhealth.summarize(origins(), {"p1": report(live="closed", dead="half-open")})
    assert [h.state for h in down] == ["Healthy", "Down"]
    assert originhealth.condition(down).reason == "OriginDown"
    unknown = originhealth.summarize(origins(), {"p1": None})
    assert [h.state for h in unknown] == ["Unknown", "Unknown"]
    assert originhealth.condition(unknown).reason == "NoReport"
    ok = originhealth.summarize(origins(), {"p1": report(live="closed", dead="closed")})
    assert originhealth.condition(ok).status is True


def test_pods_are_asked_again_only_after_the_poll_interval() -> None:
    assert originhealth.due(None, 0, 30)
    last = originhealth.Polled(100.0, {})
    assert not originhealth.due(last, 129.9, 30) and originhealth.due(last, 130, 30)


async def test_the_reconcile_reports_what_the_edge_pods_breakers_see(
        pods: PodFactory, client: aiohttp.ClientSession) -> None:
    live = Origin()
    live.set("/x", body=b"x")
    await live.start()
    try:
        dead = f"http://127.0.0.1:{free_port()}"
        cfg = {"origin": None, "circuitFailures": 1, "circuitOpenSeconds": 600,
               "origins": [{"name": "live", "url": live.url},
                           {"name": "dead", "url": dead, "priority": 1}]}
        p1 = await pods(nginx=False, **cfg)
        p2 = await pods(nginx=False, **cfg)
        # on p1 both circuits open: live is stopped for one request, which fails over to
        # dead, which refuses the connection too
        await live.stop()
        async with client.get(p1.edge_url + "/y", headers={"Host": HOST}) as r:
            assert r.status == 502
        await live.start()

        kube = FakeKube()
        kube.put(CE)
        kube.put(pod("shop-eu-1", "10.0.0.1"))
        kube.put(pod("shop-eu-2", "10.0.0.2"))
        now = [1000.0]
        ctx = Context(kube=kube, queue=WorkQueue(reconcile_contentedge_stub),  # type: ignore[arg-type]
                      edge_admin_addresses={"shop-eu-1": p1.admin_url.removeprefix("http://"),
                                            "shop-eu-2": p2.admin_url.removeprefix("http://")},
                      origin_health_seconds=30, monotonic=lambda: now[0])
        wait = await reconcile_contentedge(ctx, "default", "shop")
        assert wait is not None and wait <= 30  # it comes back to ask again
        status = kube.obj("ContentEdge", "default", "shop")["status"]  # type: ignore[index]
        by_name = {o["name"]: o for o in status["origins"]}
        # p1 saw both fail (both circuits open there), p2 saw nothing fail
        assert [(o["name"], o["group"], o["priority"], o["state"], o["podsUp"])
                for o in status["origins"]] == [("live", "default", 0, "Degraded", "1/2"),
                                                ("dead", "default", 1, "Degraded", "1/2")]
        assert by_name["dead"]["lastError"] and by_name["live"]["lastError"]
        cond = next(c for c in status["conditions"] if c["type"] == "OriginsHealthy")
        assert cond["status"] == "False" and "dead" in cond["message"]
        pod_lists = [c for c in kube.calls if c.verb == "LIST" and c.kind == "Pod"]
        assert len(pod_lists) == 1

        # again within the interval: no Pod list, nothing written
        kube.reset_calls()
        await reconcile_contentedge(ctx, "default", "shop")
        assert not [c for c in kube.calls if c.kind == "Pod"] and kube.writes() == []

        # after it: asked again; the health did not change, so still nothing written
        now[0] += 31
        kube.reset_calls()
        await reconcile_contentedge(ctx, "default", "shop")
        assert [c.kind for c in kube.calls if c.verb == "LIST"].count("Pod") == 1
        assert kube.writes() == []
    finally:
        await live.stop()


async def reconcile_contentedge_stub(key: Any) -> None:  # the queue is not run here
    raise AssertionError("not used")
