"""The CacheCluster and ContentEdge models: defaults, and the errors users see."""

from __future__ import annotations

from typing import Any

import pytest

from aerocdn.api import CacheCluster, ContentEdge, InputError, parse_object
from aerocdn.api.common import parse_quantity


def cc(spec: dict[str, Any], name: str = "eu") -> dict[str, Any]:
    return {"apiVersion": "aerocdn.dev/v1alpha1", "kind": "CacheCluster",
            "metadata": {"name": name}, "spec": spec}


def ce(spec: dict[str, Any], name: str = "web") -> dict[str, Any]:
    base: dict[str, Any] = {"hosts": ["www.example.com"], "origin": {"url": "http://o.example"},
                            "regions": [{"name": "eu"}]}
    return {"apiVersion": "aerocdn.dev/v1alpha1", "kind": "ContentEdge",
            "metadata": {"name": name}, "spec": {**base, **spec}}


def problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(InputError) as exc:
        parse_object(raw, "f.yaml")
    return [str(p) for p in exc.value.problems]


def test_cachecluster_defaults() -> None:
    obj = parse_object(cc({"region": "eu-west"}))
    assert isinstance(obj, CacheCluster)
    spec = obj.spec
    assert spec.size == 3
    assert spec.image.startswith("aerospike/aerospike-server:8")
    assert [n.name for n in spec.namespaces] == ["cache"]
    ns = spec.namespaces[0]
    assert (ns.replication_factor, ns.storage.type, ns.storage.size) == (2, "memory", "1Gi")
    assert spec.max_unavailable == 1 and not spec.paused and not spec.exporter.enabled
    assert obj.namespace == "default"


def test_contentedge_defaults() -> None:
    obj = parse_object(ce({}))
    assert isinstance(obj, ContentEdge)
    spec = obj.spec
    assert spec.cache_policy.default_ttl_seconds == 300
    assert spec.cache_policy.cache_key.vary_headers == ["Accept-Encoding"]
    assert spec.regions[0].replicas == 2 and spec.regions[0].cache_cluster is None
    assert spec.routing.headroom == 1.25
    assert spec.origin.tls_verify is True and spec.purge_token_secret_ref is None


def test_every_problem_is_reported_with_object_and_field() -> None:
    found = problems(cc({"size": 0, "namespaces": [{"name": "Bad_Name"}], "sizee": 3}))
    assert found == [
        "f.yaml: CacheCluster/eu: spec.region: required field is missing",
        "f.yaml: CacheCluster/eu: spec.size: Input should be greater than or equal to 1 (got 0)",
        "f.yaml: CacheCluster/eu: spec.namespaces[0].name: String should match pattern "
        "'^[a-z0-9]([-a-z0-9]*[a-z0-9])?$' (got 'Bad_Name')",
        "f.yaml: CacheCluster/eu: spec.sizee: unknown field (check spelling; fields are camelCase)",
    ]


@pytest.mark.parametrize(
    ("spec", "field", "text"),
    [
        ({"region": "eu", "namespaces": [{"name": "c", "storage": {"size": "256Mi"}}]},
         "spec.namespaces[0].storage", "below 512Mi"),
        ({"region": "eu", "size": 1, "racks": [{"id": 1, "zone": "a"}, {"id": 2, "zone": "b"}]},
         "spec", "at least the number of racks"),
        ({"region": "eu", "racks": [{"id": 1, "zone": "a"}, {"id": 1, "zone": "b"}]},
         "spec", "rack ids must be unique"),
        ({"region": "eu", "namespaces": [{"name": "c"}, {"name": "c"}]},
         "spec", "namespace names must be unique"),
        ({"region": "eu", "namespaces": [{"name": "c", "evictUsedPct": 95}]},
         "spec.namespaces[0]", "must be below stopWritesUsedPct"),
        ({"region": "eu", "size": "three"}, "spec.size", "valid integer"),
    ],
)
def test_cachecluster_rejects(spec: dict[str, Any], field: str, text: str) -> None:
    found = problems(cc(spec))
    assert any(f"CacheCluster/eu: {field}: " in p and text in p for p in found), found


@pytest.mark.parametrize(
    ("spec", "field", "text"),
    [
        ({"hosts": []}, "spec.hosts", "at least 1 item"),
        ({"hosts": ["Upper.Example"]}, "spec.hosts[0]", "should match pattern"),
        ({"hosts": ["a.example", "a.example"]}, "spec", "hosts must be unique"),
        ({"origin": {"url": "ftp://x"}}, "spec.origin.url", "should match pattern"),
        ({"origin": {}}, "spec.origin.url", "required field is missing"),
        ({"regions": [{"name": "eu"}, {"name": "eu"}]}, "spec", "region names must be unique"),
        ({"regions": [{"name": "eu", "replicas": -1}]}, "spec.regions[0].replicas",
         "greater than or equal to 0"),
        ({"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}},
         "spec.autoscaling", "must not exceed maxReplicas"),
        ({"routing": {"headroom": 0.5}}, "spec.routing.headroom", "greater than or equal to 1"),
    ],
)
def test_contentedge_rejects(spec: dict[str, Any], field: str, text: str) -> None:
    found = problems(ce(spec))
    assert any(f"ContentEdge/web: {field}: " in p and text in p for p in found), found


def test_unknown_kind_and_version() -> None:
    assert problems({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}) == [
        "f.yaml: Pod/p: kind: unknown kind 'Pod'; aerocdn knows CacheCluster, ContentEdge, "
        "ContentPurge"
    ]
    raw = cc({"region": "eu"})
    raw["apiVersion"] = "aerocdn.dev/v2"
    assert problems(raw) == [
        "f.yaml: CacheCluster/eu: apiVersion: expected aerocdn.dev/v1alpha1, got 'aerocdn.dev/v2'"
    ]


def test_models_are_frozen() -> None:
    obj = parse_object(cc({"region": "eu"}))
    assert isinstance(obj, CacheCluster)
    with pytest.raises(ValueError):
        obj.spec.size = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "value"),
    [("512Mi", 512 * 2**20), ("1Gi", 2**30), ("1.5Gi", 3 * 2**29), ("1000", 1000),
     ("2G", 2 * 10**9)],
)
def test_parse_quantity(text: str, value: int) -> None:
    assert parse_quantity(text) == value


def test_parse_quantity_rejects() -> None:
    with pytest.raises(ValueError, match="not a quantity"):
        parse_quantity("1 GB")
