"""The apiserver refuses at admission what the model refuses in spec.aerospikeConfig, and
admits what it admits: nothing the CRD admits may fail to render (issue 13, item 1)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from tests.integration.operator_harness import Kubectl, install
from tests.unit.test_aerospikeconfig import OWNED_CASES, placed

from aerocdn.api import CacheCluster, parse_object
from aerocdn.api.objects import InputError
from aerocdn.render.cachecluster import render_cachecluster

NAMESPACE = f"admission-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def kubectl(kubeconfig: str) -> Iterator[Kubectl]:
    k = Kubectl(kubeconfig)
    install(k)
    k.run("create", "namespace", NAMESPACE)
    yield k
    k.run("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def cc(config: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "aerocdn.dev/v1alpha1", "kind": "CacheCluster",
            "metadata": {"name": "adm", "namespace": "default"},
            "spec": {"region": "eu", "aerospikeConfig": config, **spec}}


def admitted(kubectl: Kubectl, obj: dict[str, Any]) -> tuple[bool, str]:
    obj = {**obj, "metadata": {**obj["metadata"], "namespace": NAMESPACE}}
    result = kubectl.run("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(obj),
                         check=False)
    return result.returncode == 0, result.stderr


def model_admits(obj: dict[str, Any]) -> bool:
    try:
        parsed = parse_object(obj)
        assert isinstance(parsed, CacheCluster)
        render_cachecluster(parsed)
    except InputError:
        return False
    return True


GOOD = [
    {"service": {"proto-fd-max": 20000, "migrate-threads": 2}},
    {"logging": {"console": {"migrate": "debug", "any": "info"}}},
    {"network": {"heartbeat": {"interval": 250, "timeout": 20}, "fabric": {"send-threads": 4}}},
    {"namespaces": [{"name": "cache", "config": {"nsup-period": 60},
                     "storageEngine": {"evict-sys-memory-pct": 90}}]},
    {"service": {"enable-health-check": "true"}},
]
BAD = [
    {"service": {"migrate-threads": "1\n}\nnamespace evil {"}},
    {"service": {"migrate-threads": "a b"}},
    {"service": {"Bad": 1}},
    {"service": {"enable-health-check": True}},
    {"logging": {"console": {"any": "loud"}}},
    {"logging": {"console": {"Any Context": "info"}}},
    {"namespaces": [{"name": "other", "config": {"nsup-period": 60}}]},
    {"service": {"migrate-threads": "x" * 300}},
]


@pytest.mark.parametrize("config", GOOD)
def test_admitted_and_renders(kubectl: Kubectl, config: dict[str, Any]) -> None:
    ok, err = admitted(kubectl, cc(config))
    assert ok, err
    assert model_admits(cc(config))


@pytest.mark.parametrize("config", BAD)
def test_refused_by_both(kubectl: Kubectl, config: dict[str, Any]) -> None:
    ok, _ = admitted(kubectl, cc(config))
    assert not ok
    assert not model_admits(cc(config))


@pytest.mark.parametrize(("section", "key"), OWNED_CASES)
def test_owned_keys_refused_at_admission_with_the_models_reason(
    kubectl: Kubectl, section: str, key: str
) -> None:
    ok, err = admitted(kubectl, cc(placed(section, key)))
    assert not ok
    assert f"{key} is set by the operator" in err


def test_rack_overrides_name_declared_namespaces(kubectl: Kubectl) -> None:
    racks = [{"id": 1, "zone": "a", "aerospikeConfig": {"namespaces": [{"name": "other"}]}}]
    ok, err = admitted(kubectl, cc({}, racks=racks))
    assert not ok and "must be a namespace of spec.namespaces" in err
    declared = [{"name": "other"}]
    ok, err = admitted(kubectl, cc({}, racks=racks, namespaces=declared))
    assert ok, err
