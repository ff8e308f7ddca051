"""The real apiserver refuses every value the API's pydantic models refuse: each field
constraint (walked from the models, tests/unit/api_walk.py) and each cross-field rule (CEL),
sent as a server-side dry run, so nothing the CRD admits fails later in the operator."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config
from tests.integration.operator_harness import Kubectl
from tests.unit.api_walk import BASE, CROSS_FIELD, Case, constraint_cases

PLURAL = {"CacheCluster": "cacheclusters", "ContentEdge": "contentedges",
          "ContentPurge": "contentpurges"}


@pytest.fixture(scope="module")
def api(kubectl: Kubectl, kubeconfig: str) -> Iterator[tuple[client.CustomObjectsApi, str]]:
    ns = f"parity-{uuid.uuid4().hex[:6]}"
    kubectl.run("create", "namespace", ns)
    with config.new_client_from_config(kubeconfig) as api_client:
        yield client.CustomObjectsApi(api_client), ns
    kubectl.run("delete", "namespace", ns, "--wait=false", check=False)


def dry_run(api: tuple[client.CustomObjectsApi, str], obj: dict[str, Any]) -> str | None:
    """None when the apiserver admits ``obj``, else its refusal."""
    custom, ns = api
    try:
        custom.create_namespaced_custom_object("aerocdn.dev", "v1alpha1", ns,
                                               PLURAL[obj["kind"]], obj, dry_run="All")
    except client.ApiException as exc:
        if exc.status in (400, 422):
            return str(exc.body)
        raise
    return None


@pytest.mark.parametrize("kind", sorted(BASE))
def test_base_objects_are_admitted(api: Any, kind: str) -> None:
    assert dry_run(api, BASE[kind]) is None


@pytest.mark.parametrize("case", constraint_cases() + CROSS_FIELD, ids=str)
def test_apiserver_refuses_what_the_models_refuse(api: Any, case: Case) -> None:
    assert dry_run(api, case.obj) is not None, f"the apiserver admitted {case}"
