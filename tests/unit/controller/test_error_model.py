"""Permanent failures become a condition and a Warning Event naming the field and are not
retried until the object changes; temporary ones are retried and reported once they persist."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError
from tests.unit.controller.ccworld import NS, World, cc_object

from aerocdn.controller.errors import FailureReason, PermanentError, classify
from aerocdn.controller.kube import KubeError
from aerocdn.controller.runtime import reconcile_once
from aerocdn.edge.config import CacheKeyConfig


def ce_object(**cache_key: Any) -> dict[str, Any]:
    return {"apiVersion": "aerocdn.dev/v1alpha1", "kind": "ContentEdge",
            "metadata": {"name": "site", "namespace": NS},
            "spec": {"hosts": ["site.example.com"], "origin": {"url": "http://origin.test"},
                     "regions": [{"name": "eu-west", "cacheCluster": "cc"}],
                     "cachePolicy": {"cacheKey": cache_key}}}


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    return next((c for c in ((obj or {}).get("status") or {}).get("conditions", [])
                 if c["type"] == type_), {})


async def test_a_spec_that_slipped_past_admission_is_reported_once_with_its_field() -> None:
    """The seen case: queryParams ["a-b"] (stored without the CRD's pattern, as an apiserver
    with an older CRD would) made the reconcile raise on every retry with stale status."""
    world = World.make()
    world.kube.put(cc_object())
    world.kube.put(ce_object(queryParams=["a-b"]))
    assert await reconcile_once(world.ctx, "ContentEdge", NS, "site") is None
    ce = world.kube.obj("ContentEdge", NS, "site")
    degraded, ready = condition(ce, "Degraded"), condition(ce, "Ready")
    assert degraded["status"] == "True" and ready["status"] == "False"
    assert "spec.cachePolicy.cacheKey.queryParams[0]" in degraded["message"]
    (warning,) = [e for e in world.kube.events if e["type"] == "Warning"]
    assert "spec.cachePolicy.cacheKey.queryParams[0]" in warning["message"]
    assert world.kube.kind_of("Deployment", NS) == []

    world.kube.reset_calls()  # an event of a child, a resync: the same generation
    assert await reconcile_once(world.ctx, "ContentEdge", NS, "site") is None
    assert [c.verb for c in world.kube.calls] == ["GET"]

    fixed = copy.deepcopy(world.kube.obj("ContentEdge", NS, "site"))
    assert fixed is not None
    fixed["spec"]["cachePolicy"]["cacheKey"] = {"queryParams": ["a_b"]}
    fixed["metadata"]["generation"] += 1
    world.kube.put(fixed)
    await reconcile_once(world.ctx, "ContentEdge", NS, "site")
    assert [d["metadata"]["name"] for d in world.kube.kind_of("Deployment", NS)] == [
        "site-eu-west"]
    assert condition(world.kube.obj("ContentEdge", NS, "site"), "Degraded")["reason"] != (
        "InvalidSpec")


def test_a_model_built_from_the_spec_refusing_a_value_names_the_spec_field() -> None:
    with pytest.raises(ValidationError) as err:
        CacheKeyConfig.model_validate({"queryParams": ["a-b"]})
    verdict = classify(err.value)
    assert isinstance(verdict, PermanentError)
    assert verdict.reason is FailureReason.INVALID_SPEC
    assert verdict.field == "spec.queryParams"


@pytest.mark.parametrize(("status", "reason"), [
    (409, FailureReason.API_CONFLICT), (500, FailureReason.API_UNAVAILABLE),
    (503, FailureReason.API_UNAVAILABLE), (429, FailureReason.API_UNAVAILABLE),
    (403, FailureReason.API_FORBIDDEN)])
def test_api_errors_are_temporary(status: int, reason: FailureReason) -> None:
    assert classify(KubeError(status, "x")) is reason


def test_a_child_the_apiserver_refuses_is_permanent() -> None:
    verdict = classify(KubeError(422, "Unprocessable Entity", {"message": "bad port"}))
    assert isinstance(verdict, PermanentError) and verdict.reason is FailureReason.CHILD_REFUSED


async def test_a_temporary_failure_is_retried_and_reported_once_it_persists() -> None:
    world = World.make()
    world.ctx.probe = "kubernetes"
    world.kube.put(cc_object(size=1))
    broken = True
    world.kube.faults[("PATCH", "StatefulSet")] = lambda name: (
        KubeError(500, "Internal Server Error", {"message": "etcdserver: timeout"})
        if broken else None)
    for attempt in (1, 2):
        with pytest.raises(KubeError):
            await reconcile_once(world.ctx, "CacheCluster", NS, "cc", attempt)
        assert condition(world.cc(), "ReconcileFailed") == {}
    with pytest.raises(KubeError):
        await reconcile_once(world.ctx, "CacheCluster", NS, "cc", 3)
    failed = condition(world.cc(), "ReconcileFailed")
    assert failed["status"] == "True" and failed["reason"] == "APIUnavailable"
    assert "etcdserver: timeout" in failed["message"]
    assert any(e["reason"] == "ReconcileFailed" and e["type"] == "Warning"
               for e in world.kube.events)
    broken = False
    await reconcile_once(world.ctx, "CacheCluster", NS, "cc", 4)
    assert condition(world.cc(), "ReconcileFailed") == {}
    assert world.replicas() == 1
