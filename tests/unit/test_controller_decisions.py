"""The operator's pure decisions: when to write, conditions and their Events, the Kubernetes
stand-in for Aerospike's answer, refused changes, leader election, the work queue."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from aerocdn.aerospike.scale import Done, Hold, RackPods, RemoveOne, RestartPod, WaitMigrations
from aerocdn.controller.ccplan import (
    PodView,
    kubernetes_roll_step,
    kubernetes_scale_step,
    pod_view,
    refused_changes,
)
from aerocdn.controller.conditions import Cond, condition_events, merge_conditions
from aerocdn.controller.diff import needs_apply, status_changed
from aerocdn.controller.leader import LeaseView, may_acquire
from aerocdn.controller.queue import WorkQueue

LIVE_STS: dict[str, Any] = {
    "metadata": {"name": "eu", "namespace": "n", "resourceVersion": "7", "uid": "u",
                 "managedFields": [{"manager": "aerocdn"}], "labels": {"a": "1", "b": "2"}},
    "spec": {"replicas": 3, "template": {"spec": {"containers": [
        {"name": "aerospike", "image": "x", "resources": {"limits": {"memory": "1Gi"}},
         "terminationMessagePath": "/dev/termination-log"}]}}},
    "status": {"readyReplicas": 3},
}


def desired(**changes: Any) -> dict[str, Any]:
    container = {"name": "aerospike", "image": "x", "resources": {"limits": {"memory": "1024Mi"}},
                 **changes}
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "eu", "namespace": "n", "labels": {"a": "1"}},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [container]}}}}


def test_no_write_when_live_object_already_has_every_field_we_set() -> None:
    # defaults added by the apiserver and quantities stored canonically (1024Mi -> 1Gi)
    assert not needs_apply(desired(), LIVE_STS)


def test_empty_maps_we_set_match_their_absence_in_the_stored_object() -> None:
    # the apiserver drops `limits: {}` (omitempty): that is no drift
    assert not needs_apply(desired(resources={"limits": {"memory": "1Gi"}, "requests": {}}),
                           LIVE_STS)
    assert needs_apply(desired(resources={"limits": {"memory": "1Gi"},
                                          "requests": {"cpu": "1"}}), LIVE_STS)


def test_write_on_drift_or_absence() -> None:
    assert needs_apply(desired(image="y"), LIVE_STS)
    drifted = desired()
    drifted["spec"]["replicas"] = 2
    assert needs_apply(drifted, LIVE_STS)
    assert needs_apply(desired(), None)
    extra = desired()
    extra["spec"]["template"]["spec"]["containers"].append({"name": "exporter"})
    assert needs_apply(extra, LIVE_STS)


def test_status_write_only_on_change_and_never_for_timestamps() -> None:
    live = {"phase": "Ready", "routing": {"regions": {"a": {"share": 1}}}, "conditions": [
        {"type": "Ready", "status": "True", "reason": "R", "message": "m",
         "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    same = {"phase": "Ready", "routing": {"regions": {"a": {"share": 1.0}}}, "conditions": [
        {"type": "Ready", "status": "True", "reason": "R", "message": "m",
         "lastTransitionTime": "2026-02-02T00:00:00Z"}]}
    assert not status_changed(same, live)
    assert status_changed({**same, "phase": "Progressing"}, live)
    # a key that disappears from a nested map is a change (the whole status is replaced)
    assert status_changed({**same, "routing": {"regions": {}}}, live)
    assert status_changed({**same, "routing": {"regions": {"a": {"share": (1,)}}}}, live)


def test_transition_time_kept_while_status_unchanged() -> None:
    old = merge_conditions([], [Cond("Ready", False, "Wait", "0/3")], 1, "T1")
    same = merge_conditions(old, [Cond("Ready", False, "Wait", "1/3")], 2, "T2")
    flipped = merge_conditions(same, [Cond("Ready", True, "Ok", "3/3")], 2, "T3")
    assert [c["lastTransitionTime"] for c in (*old, *same, *flipped)] == ["T1", "T1", "T3"]
    assert same[0]["observedGeneration"] == 2 and same[0]["message"] == "1/3"


def test_events_for_condition_changes_warn_on_degraded() -> None:
    before = merge_conditions([], [Cond("Ready", True, "Ok", "fine"),
                                   Cond("Degraded", False, "AsExpected", "-")], 1, "T")
    after = merge_conditions(before, [Cond("Ready", True, "Ok", "still fine"),
                                      Cond("Degraded", True, "ChangeRefused", "shrink")], 1, "T")
    assert condition_events(before, after) == [
        ("Warning", "DegradedTrue", "ChangeRefused: shrink")]
    assert condition_events(after, after) == []
    # a new object announces Ready, but not its quiet conditions
    fresh = merge_conditions([], [Cond("Ready", False, "Wait", "0/1"),
                                  Cond("ScalingDown", False, "No", "-")], 1, "T")
    assert condition_events([], fresh) == [("Normal", "ReadyFalse", "Wait: 0/1")]


def pod(name: str, ready: bool = True, terminating: bool = False, hash_: str = "h",
        sts: str = "eu") -> PodView:
    return PodView(name=name, sts=sts, ordinal=int(name.rsplit("-", 1)[1]), ip="10.0.0.1",
                   running=True, ready=ready, terminating=terminating, config_hash=hash_,
                   gate="True", gate_reason=None, gate_message=None)


def test_kubernetes_stand_in_removes_one_pod_from_a_ready_cluster() -> None:
    pods = [pod("eu-0"), pod("eu-1"), pod("eu-2")]
    racks = (RackPods("eu", ("eu-0", "eu-1", "eu-2"), replicas=3, desired=1),)
    step = kubernetes_scale_step(racks, pods)
    assert isinstance(step, RemoveOne) and (step.pod, step.replicas) == ("eu-2", 2)
    assert "pod readiness stands in" in step.reason


def test_kubernetes_stand_in_waits_for_the_leaving_pod_and_for_readiness() -> None:
    leaving = (RackPods("eu", ("eu-0", "eu-1", "eu-2"), replicas=2, desired=1),)
    assert isinstance(kubernetes_scale_step(leaving, [pod("eu-0"), pod("eu-1"),
                                                      pod("eu-2", terminating=True)]),
                      WaitMigrations)
    racks = (RackPods("eu", ("eu-0", "eu-1"), replicas=2, desired=1),)
    held = kubernetes_scale_step(racks, [pod("eu-0"), pod("eu-1", ready=False)])
    assert isinstance(held, Hold) and "eu-1 not ready" in held.reason
    assert isinstance(kubernetes_scale_step((RackPods("eu", ("eu-0",), 1, 1),), [pod("eu-0")]),
                      Done)


def test_kubernetes_roll_restarts_the_highest_outdated_pod_one_at_a_time() -> None:
    pods = [pod("eu-0", hash_="old"), pod("eu-1", hash_="old"), pod("eu-2")]
    step = kubernetes_roll_step(pods, {"eu": "h"})
    assert isinstance(step, RestartPod) and step.pod == "eu-1"
    waiting = kubernetes_roll_step([pod("eu-0", hash_="old"), pod("eu-1", ready=False)],
                                   {"eu": "h"})
    assert isinstance(waiting, Hold)


def test_pod_view_reads_owner_ordinal_gate_and_hash() -> None:
    view = pod_view({
        "metadata": {"name": "eu-r1-4", "annotations": {"aerocdn.dev/config-hash": "abc"},
                     "ownerReferences": [{"kind": "StatefulSet", "name": "eu-r1"}]},
        "status": {"phase": "Running", "podIP": "10.1.2.3",
                   "containerStatuses": [{"ready": True}, {"ready": False}],
                   "conditions": [{"type": "aerocdn.dev/cluster-stable", "status": "False",
                                   "reason": "MigrationsRunning", "message": "412 left"}]}})
    assert (view.sts, view.ordinal, view.ip, view.config_hash) == ("eu-r1", 4, "10.1.2.3", "abc")
    assert not view.ready and view.gate == "False" and view.gate_reason == "MigrationsRunning"


def sts_with_claim(size: str) -> dict[str, Any]:
    return {"metadata": {"name": "eu"}, "spec": {"volumeClaimTemplates": [
        {"metadata": {"name": "data-cache"},
         "spec": {"resources": {"requests": {"storage": size}}}}]}}


def test_volume_changes_are_refused_before_anything_is_applied() -> None:
    live = {"eu": sts_with_claim("10Gi")}
    assert refused_changes([sts_with_claim("10Gi")], live) == []
    (shrink,) = refused_changes([sts_with_claim("5Gi")], live)
    assert "shrinking volume data-cache" in shrink and "lose data" in shrink
    assert refused_changes([sts_with_claim("20Gi")], live) == []  # volumes.py grows it
    (gone,) = refused_changes([{"metadata": {"name": "eu"}, "spec": {}}], live)
    assert "removing volume data-cache" in gone
    assert refused_changes([sts_with_claim("5Gi")], {}) == []  # a new StatefulSet is fine


def test_lease_may_be_taken_when_free_ours_or_expired() -> None:
    now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    fresh = now - dt.timedelta(seconds=5)
    stale = now - dt.timedelta(seconds=16)
    assert may_acquire(LeaseView("", fresh, 15), "me", now)
    assert may_acquire(LeaseView("me", fresh, 15), "me", now)
    assert not may_acquire(LeaseView("other", fresh, 15), "me", now)
    assert may_acquire(LeaseView("other", stale, 15), "me", now)


def test_work_queue_coalesces_events_and_retries_failures() -> None:
    runs: list[str] = []
    gate = asyncio.Event()

    async def reconcile(key: Any) -> float | None:
        runs.append(key)
        if key == "slow":
            await gate.wait()
        if key == "flaky" and runs.count("flaky") == 1:
            raise RuntimeError("API down")
        return None

    async def scenario() -> None:
        queue = WorkQueue(reconcile, workers=2)
        queue.start()
        queue.add("slow")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        for _ in range(5):  # five events while it runs: one more run, not five
            queue.add("slow")
        queue.add("flaky")
        gate.set()
        while runs.count("flaky") < 2 or runs.count("slow") < 2:
            await asyncio.sleep(0.05)
        await queue.idle.wait()
        await queue.stop()

    asyncio.run(asyncio.wait_for(scenario(), timeout=30))
    assert runs.count("slow") == 2
    assert runs.count("flaky") == 2  # failed once, retried after backoff


def test_work_queue_runs_a_key_at_most_once_per_min_interval() -> None:
    """Watch events of the operator's own writes come back at once: however many arrive, a
    key runs again only after min_interval (here a long one: the test ends before it)."""
    runs: list[Any] = []

    async def reconcile(key: Any) -> float | None:
        runs.append(key)
        return None

    async def scenario() -> None:
        queue = WorkQueue(reconcile, workers=2, min_interval=3600)
        queue.start()
        queue.add("cc")
        await queue.idle.wait()
        for _ in range(50):  # a burst of events right after the run
            queue.add("cc")
            await asyncio.sleep(0)
        queue.add("other")
        while "other" not in runs:
            await asyncio.sleep(0.01)
        await queue.stop()

    asyncio.run(asyncio.wait_for(scenario(), timeout=30))
    assert runs.count("cc") == 1


def test_growing_only_while_no_ready_pod_was_lost() -> None:
    from aerocdn.controller.ccplan import growing
    assert growing(True, 2, 2, 3, scaling_down=False, problem=False)  # 2 -> 3: a pod joins
    assert growing(True, 2, 3, 4, scaling_down=False, problem=False)
    assert not growing(True, 3, 2, 3, scaling_down=False, problem=False)  # a ready pod lost
    assert not growing(False, 0, 1, 3, scaling_down=False, problem=False)  # never was Ready
    assert not growing(True, 2, 2, 3, scaling_down=True, problem=False)
    assert not growing(True, 2, 2, 3, scaling_down=False, problem=True)
    assert not growing(True, 3, 3, 3, scaling_down=False, problem=False)  # simply ready


def test_watch_handlers_run_in_the_event_loop() -> None:
    """kopf runs a plain ``def`` handler in a worker thread, where the work queue and the
    watch cache (the event loop's) cannot be used: the queue raised 'no running event loop'
    and the event was lost. Every event handler is a coroutine."""
    import inspect

    from aerocdn.controller import handlers
    for fn in (handlers.cachecluster_event, handlers.contentedge_event):
        assert inspect.iscoroutinefunction(fn), fn.__name__


def test_only_a_cachecluster_routing_change_replans_only_its_contentedges() -> None:
    from aerocdn.controller.runtime import cluster_view, uses_cluster

    def cc(ready: str, message: str, ready_replicas: int = 1) -> dict[str, Any]:
        return {"metadata": {"name": "eu", "generation": 1, "uid": "u"},
                "spec": {"region": "eu-west"},
                "status": {"readyReplicas": ready_replicas, "conditions": [
                    {"type": "Ready", "status": ready, "message": message,
                     "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}
    # a new message or count is not a routing change; readiness is
    assert cluster_view("eu", cc("True", "1/1")) == cluster_view("eu", cc("True", "1/1 x", 1))
    assert cluster_view("eu", cc("True", "1/1")) != cluster_view("eu", cc("False", "0/1"))
    assert cluster_view("eu", None) != cluster_view("eu", cc("True", "1/1"))
    named = {"spec": {"regions": [{"name": "us-east", "cacheCluster": "eu"}]}}
    default = {"spec": {"regions": [{"name": "eu-west"}]}}
    other = {"spec": {"regions": [{"name": "us-east", "cacheCluster": "us"}]}}
    assert uses_cluster(named, "eu", "eu-west") and uses_cluster(default, "eu", "eu-west")
    assert not uses_cluster(other, "eu", "eu-west")


def test_a_status_change_alone_does_not_queue_a_reconcile() -> None:
    from aerocdn.controller.handlers import needs_reconcile

    def obj(generation: int = 1, status: str = "a", **meta: object) -> dict[str, object]:
        return {"metadata": {"uid": "u", "generation": generation, "resourceVersion": status,
                             **meta}, "status": {"phase": status}}  # meta overrides uid

    assert not needs_reconcile(obj(status="a"), obj(status="b"))  # the operator's own write
    assert needs_reconcile(obj(1), obj(2))  # a spec change
    assert needs_reconcile(None, obj())  # new, or first seen
    assert needs_reconcile(obj(), None)
    assert needs_reconcile(obj(), obj(labels={"x": "1"}))
    assert needs_reconcile(obj(), obj(deletionTimestamp="2026-12-02T00:00:00Z"))
    assert needs_reconcile(obj(), obj(uid="other"))  # deleted and created again


def test_the_operator_registers_only_event_handlers() -> None:
    """The watch cache keeps kopf's event bodies without copying them (cache.Store.observe):
    safe because kopf keeps and refreshes a body only for daemons and timers, and builds
    diff bases only for change handlers. Adding either must revisit that."""
    import kopf

    import aerocdn.controller.handlers  # noqa: F401  (registers the handlers)

    registry = kopf.get_default_registry()
    assert list(registry._spawning.get_all_handlers()) == []  # no daemons, no timers
    assert list(registry._changing.get_all_handlers()) == []  # no on.create/update/field
    # CacheClusters, ContentEdges and ContentPurges; children and Secrets are watched by
    # controller/watch.py
    assert len(list(registry._watching.get_all_handlers())) == 3


def test_a_child_event_is_news_only_when_a_reconcile_could_decide_otherwise() -> None:
    from aerocdn.controller.runtime import child_news

    def obj(kind: str, rv: str, status: object = None, **spec: object) -> dict[str, object]:
        return {"apiVersion": "v1", "kind": kind,
                "metadata": {"name": "x", "namespace": "n", "resourceVersion": rv,
                             "managedFields": [{"time": rv}]},
                "spec": dict(spec), "status": status or {}}

    assert child_news(None, obj("PodDisruptionBudget", "1"))  # first seen
    # the operator's own write, already stored from the API's answer
    assert not child_news(obj("Deployment", "5", {"readyReplicas": 1}),
                          obj("Deployment", "5", {"readyReplicas": 1}))
    # status a reconcile reads: an edge Deployment's ready count, a Service's load balancer,
    # any of an Aerospike pod's
    assert child_news(obj("Deployment", "5", {"readyReplicas": 1}),
                      obj("Deployment", "6", {"readyReplicas": 2}))
    assert child_news(obj("Service", "5", {}),
                      obj("Service", "6", {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}))
    assert child_news(obj("Pod", "5", {"ready": 1}), obj("Pod", "6", {"ready": 2}))
    # the rest of a Deployment's status (the controller's steps of a rollout) is no news
    assert not child_news(
        obj("Deployment", "5", {"readyReplicas": 1, "updatedReplicas": 1}),
        obj("Deployment", "6", {"readyReplicas": 1, "updatedReplicas": 2,
                                "conditions": [{"type": "Progressing"}]}))
    # status nobody reads, and bookkeeping
    for kind in ("PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy",
                 "StatefulSet"):
        assert not child_news(obj(kind, "5", {"currentHealthy": 1}),
                              obj(kind, "6", {"currentHealthy": 2}))
    # a StatefulSet's spec changing (someone scaled it) is news
    assert child_news(obj("StatefulSet", "5", replicas=3), obj("StatefulSet", "6", replicas=2))
    # drift of what the operator wrote is always news
    assert child_news(obj("PodDisruptionBudget", "5", minAvailable=1),
                      obj("PodDisruptionBudget", "6", minAvailable=0))
    drifted = obj("ConfigMap", "6")
    drifted["data"] = {"routes.json": "{}"}
    assert child_news(obj("ConfigMap", "5"), drifted)
    relabelled = obj("NetworkPolicy", "6")
    relabelled["metadata"]["labels"] = {"a": "b"}  # type: ignore[index]
    assert child_news(obj("NetworkPolicy", "5"), relabelled)


async def test_cachecluster_steps_in_a_window_replan_a_contentedge_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from aerocdn.controller import runtime

    monkeypatch.setattr(runtime, "FANOUT_SETTLE_SECONDS", 60.0)
    rt = runtime.Runtime()
    ce = {"apiVersion": "aerocdn.dev/v1alpha1", "kind": "ContentEdge",
          "metadata": {"name": "shop", "namespace": "n", "resourceVersion": "1"},
          "spec": {"regions": [{"name": "eu", "cacheCluster": "eu-cache"}]}}
    rt.store.upsert("aerocdn.dev/v1alpha1", "ContentEdge", ce)
    rt.known.add(("ContentEdge", "n", "shop"))
    rt.known.add(("ContentEdge", "n", "other"))  # not in the cache yet: queued too
    loop = asyncio.get_running_loop()
    try:
        first = loop.time()
        for _ in range(5):  # five readiness steps of the cluster in quick succession
            rt.cachecluster_changed("n", "eu-cache", {"spec": {"region": "eu"}})
        rt.cachecluster_changed("n", "unused", {"spec": {"region": "us"}})
        # nothing runs now; one pending run per ContentEdge, at the end of the first
        # step's window (later steps do not push it back)
        assert not rt.queue._queued
        timers = rt.queue._timers
        assert set(timers) == {("ContentEdge", "n", "shop"), ("ContentEdge", "n", "other")}
        assert all(first + 60 <= t.when() < first + 61 for t in timers.values())
    finally:
        await rt.queue.stop()


def test_each_watched_kind_has_exactly_one_watch() -> None:
    """kopf watches aerocdn's own kinds, controller/watch.py everything else the cache holds:
    a kind in both would be handled twice, a kind in neither never kept up to date."""
    import kopf

    import aerocdn.controller.handlers  # noqa: F401  (registers the handlers)
    from aerocdn.controller.cache import WATCHED
    from aerocdn.controller.runtime import CHILDREN

    kopf_kinds = {h.selector.any_name for h in kopf.get_default_registry()._watching
                  .get_all_handlers() if h.selector is not None}
    ours = {(w.api_version, w.kind) for w in CHILDREN}
    own = {k for k in WATCHED if k[0] == "aerocdn.dev/v1alpha1"}
    assert kopf_kinds == {"cacheclusters", "contentedges", "contentpurges"}
    assert ours | own == set(WATCHED) and not ours & own


def test_work_queue_tells_each_run_why_it_was_asked_for() -> None:
    """The first reason given since the last run is the run's cause; a failure's rerun is a
    retry, a returned delay a requeue, a timer keeps the reason it was set with."""
    seen: list[tuple[Any, str]] = []
    queue: WorkQueue

    async def reconcile(key: Any) -> float | None:
        seen.append((key, queue.cause(key)))
        n = sum(1 for k, _ in seen if k == key)
        if key == "flaky" and n == 1:
            raise RuntimeError("API down")
        if key == "poll" and n == 1:
            return 0.01
        return None

    async def scenario() -> None:
        nonlocal queue
        queue = WorkQueue(reconcile, workers=1, min_interval=0)
        queue.add("a", cause="resync")
        queue.add("a", cause="child")  # coalesced: the first reason stays
        queue.add("later", delay=0.01, cause="cachecluster")
        queue.add("flaky", cause="object")
        queue.add("poll", cause="start")
        queue.start()
        while len(seen) < 6:
            await asyncio.sleep(0.01)
        await queue.idle.wait()
        await queue.stop()

    asyncio.run(asyncio.wait_for(scenario(), timeout=30))
    assert sorted(seen) == sorted([("a", "resync"), ("later", "cachecluster"),
                                   ("flaky", "object"), ("flaky", "retry"),
                                   ("poll", "start"), ("poll", "requeue")])


def test_a_run_drops_the_later_run_a_timer_asked_for() -> None:
    """A key asked for in 60 s (a fan-out window, a requeue) and run now for another reason
    does not run again when the timer would have fired: this run saw what that one would."""
    runs: list[Any] = []

    async def reconcile(key: Any) -> float | None:
        runs.append(key)
        return None

    async def scenario() -> None:
        queue = WorkQueue(reconcile, workers=1, min_interval=0)
        queue.start()
        queue.add("ce", delay=60, cause="cachecluster")
        queue.add("ce", cause="child")
        await queue.idle.wait()
        assert not queue._timers  # the 60 s run is gone
        await queue.stop()

    asyncio.run(asyncio.wait_for(scenario(), timeout=30))
    assert runs == ["ce"]


async def test_a_contentedges_child_events_in_a_window_make_one_run() -> None:
    """Edges become ready a pod at a time: those events wait CHILD_SETTLE_SECONDS and make one
    run; a CacheCluster's pod events (they pace its scale steps) queue it at once."""
    from aerocdn.controller import runtime

    rt = runtime.Runtime()

    def child(kind: str, rv: str, labels: dict[str, str], **status: object) -> dict[str, Any]:
        return {"apiVersion": "apps/v1" if kind == "Deployment" else "v1", "kind": kind,
                "metadata": {"name": f"{kind.lower()}-x", "namespace": "n",
                             "resourceVersion": rv, "labels": labels},
                "spec": {}, "status": dict(status)}
    try:
        edge = {"aerocdn.dev/contentedge": "shop"}
        for rv, ready in (("1", 0), ("2", 1), ("3", 2)):
            rt.child_event("MODIFIED", child("Deployment", rv, edge, readyReplicas=ready))
        assert not rt.queue._queued
        assert set(rt.queue._timers) == {("ContentEdge", "n", "shop")}
        pod_labels = {"aerocdn.dev/cachecluster": "eu", "app.kubernetes.io/name": "aerospike"}
        rt.child_event("MODIFIED", child("Pod", "4", pod_labels, phase="Running"))
        assert ("CacheCluster", "n", "eu") in rt.queue._queued
    finally:
        await rt.queue.stop()


def test_an_origin_down_is_a_warning_event_also_on_a_new_content_edge() -> None:
    from aerocdn.api.contentedge import OriginHealth
    from aerocdn.controller.originhealth import condition

    def health(state: str) -> list[OriginHealth]:
        return [OriginHealth(name="a", group="default", priority=0, state=state,
                             pods_up="0/2" if state == "Down" else "2/2", last_error=None)]

    def as_api(c: Cond) -> dict[str, Any]:
        (stored,) = merge_conditions([], [c], 1, "T")
        return stored

    down = as_api(condition(health("Down")))
    no_report = as_api(condition(health("Unknown")))
    healthy = as_api(condition(health("Healthy")))
    # the first status of a ContentEdge whose origin is down already: a Warning
    (event,) = condition_events([], [down])
    assert event[:2] == ("Warning", "OriginsHealthyFalse")
    assert "origin a (group default) down" in event[2]
    # pods that have not answered yet: quiet on a new object, not a Warning later
    assert condition_events([], [no_report]) == []
    assert condition_events([healthy], [no_report])[0][0] == "Normal"
    # down after healthy, and back
    assert condition_events([healthy], [down])[0][0] == "Warning"
    assert condition_events([down], [healthy]) == [
        ("Normal", "OriginsHealthyTrue", healthy["reason"] + ": " + healthy["message"])]
