"""The cluster under test behaves like a real one: CRDs, examples, controllers, admission, RBAC.

Runs against the local control plane or the cluster named by KUBECONFIG (see conftest.py).
"""

from __future__ import annotations

import copy
import functools
import json
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import config, dynamic
from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

REPO = Path(__file__).resolve().parents[2]
FIELD_MANAGER = "aerocdn-integration-tests"
WAIT_SECONDS = 120.0


def load_documents(paths: list[Path]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in paths:
        if path.name == "kustomization.yaml":
            continue
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def examples(kind: str | None = None) -> list[dict[str, Any]]:
    docs = load_documents(sorted((REPO / "manifests" / "examples").glob("*.yaml")))
    return [d for d in docs if kind is None or d["kind"] == kind]


def wait_for(what: str, check: Callable[[], Any], timeout: float = WAIT_SECONDS) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def api_message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "")["message"])
    except (TypeError, ValueError, KeyError):
        return str(error.body)


def is_subset(expected: Any, actual: Any) -> bool:
    """Everything in `expected` is in `actual` (which may hold more, e.g. defaults)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and is_subset(v, actual[k]) for k, v in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(is_subset(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return bool(expected == actual)


def is_true(obj: dict[str, Any], condition: str) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == condition and c.get("status") == "True" for c in conditions)


# The dynamic client caches discovery in a file, by default /tmp/osrcp-<hash of the URL>.json,
# never removed (a new one per run: the apiserver's port changes): here, in a directory
# removed at exit.
_DISCOVERY_CACHE = tempfile.TemporaryDirectory(prefix="aerocdn-discovery-")


class Kube:
    """The few calls these tests make, on plain dicts, through the dynamic client."""

    def __init__(self, api: ApiClient) -> None:
        self.dyn = dynamic.DynamicClient(
            api, cache_file=str(Path(_DISCOVERY_CACHE.name) / "discovery.json"))

    def _resource(self, api_version: str, kind: str) -> Any:
        return self.dyn.resources.get(api_version=api_version, kind=kind)

    def create(self, body: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        resource = self._resource(body["apiVersion"], body["kind"])
        body = copy.deepcopy(body)
        if resource.namespaced:
            body["metadata"]["namespace"] = namespace
        created = self.dyn.create(resource, body=body, namespace=namespace)
        return dict(created.to_dict())

    def apply(self, body: dict[str, Any]) -> None:
        resource = self._resource(body["apiVersion"], body["kind"])
        self.dyn.server_side_apply(
            resource, body=body, name=body["metadata"]["name"], field_manager=FIELD_MANAGER,
            force_conflicts=True,
        )  # fmt: skip

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Any:
        resource = self._resource(api_version, kind)
        got = self.dyn.get(
            resource, name=name, namespace=namespace if resource.namespaced else None
        )
        return got.to_dict()

    def list(self, api_version: str, kind: str, namespace: str | None = None, **kw: Any) -> Any:
        resource = self._resource(api_version, kind)
        return self.dyn.get(resource, namespace=namespace, **kw).to_dict()["items"]

    def merge_patch(
        self, api_version: str, kind: str, name: str, namespace: str, patch: dict[str, Any]
    ) -> None:
        self.dyn.patch(
            self._resource(api_version, kind), body=patch, name=name, namespace=namespace,
            content_type="application/merge-patch+json",
        )  # fmt: skip

    def delete(self, api_version: str, kind: str, name: str) -> None:
        self.dyn.delete(self._resource(api_version, kind), name=name)


@pytest.fixture(scope="module")
def api(kubeconfig: str) -> Iterator[ApiClient]:
    api_client = config.new_client_from_config(config_file=kubeconfig)
    yield api_client
    api_client.close()


@pytest.fixture(scope="module")
def crds(api: ApiClient) -> list[dict[str, Any]]:
    """Every CRD in crds/, server-side applied and Established (left installed)."""
    docs = load_documents(sorted((REPO / "crds").glob("aerocdn.dev_*.yaml")))
    assert docs, "crds/ holds no CustomResourceDefinition"
    kube = Kube(api)
    for doc in docs:
        assert doc["kind"] == "CustomResourceDefinition", f"crds/ holds a {doc['kind']}"
        kube.apply(doc)

    def established(name: str) -> bool:
        crd = kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
        return is_true(crd, "Established")

    for doc in docs:
        name = doc["metadata"]["name"]
        wait_for(f"CRD {name} to be Established", functools.partial(established, name))
    return docs


@pytest.fixture
def kube(api: ApiClient, crds: list[dict[str, Any]]) -> Kube:
    """A client whose discovery already knows the CRDs."""
    return Kube(api)


@pytest.fixture
def namespace(api: ApiClient) -> Iterator[str]:
    kube = Kube(api)
    name = f"it-{uuid.uuid4().hex[:8]}"
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    kube.delete("v1", "Namespace", name)


def test_crds_are_served_and_examples_round_trip(kube: Kube, namespace: str) -> None:
    docs = examples()
    assert docs, "manifests/examples/ holds no objects"
    for doc in docs:
        kube.create(doc, namespace)
    for doc in docs:
        got = kube.get(doc["apiVersion"], doc["kind"], doc["metadata"]["name"], namespace)
        for section in ("spec", "data"):
            if section in doc:
                assert is_subset(doc[section], got.get(section)), (
                    f"{doc['kind']}/{doc['metadata']['name']}: {section} read back differs:\n"
                    f"sent {doc[section]}\ngot  {got.get(section)}"
                )


def test_statefulset_pods_become_ready_on_simulated_nodes(kube: Kube, namespace: str) -> None:
    labels = {"app": "probe"}
    kube.create(
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "probe"},
            "spec": {
                "replicas": 3,
                "serviceName": "probe",
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        # Nothing is pulled on kwok nodes; on a real cluster this image is tiny.
                        "containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10"}],
                        "topologySpreadConstraints": [
                            {
                                "maxSkew": 1,
                                "topologyKey": "kubernetes.io/hostname",
                                "whenUnsatisfiable": "DoNotSchedule",
                                "labelSelector": {"matchLabels": labels},
                            }
                        ],
                    },
                },
            },
        },
        namespace,
    )

    def ready_pods() -> list[dict[str, Any]] | None:
        pods = kube.list("v1", "Pod", namespace, label_selector="app=probe")
        ready = [p for p in pods if p["status"].get("phase") == "Running" and is_true(p, "Ready")]
        return ready if len(ready) == 3 else None

    pods = wait_for("3 Ready pods of StatefulSet probe", ready_pods)
    assert sorted(p["metadata"]["name"] for p in pods) == ["probe-0", "probe-1", "probe-2"]
    schedulable = [n for n in kube.list("v1", "Node") if not n["spec"].get("unschedulable")]
    assert len({p["spec"]["nodeName"] for p in pods}) == min(3, len(schedulable))

    def ready_replicas() -> Any:
        return kube.get("apps/v1", "StatefulSet", "probe", namespace)["status"].get("readyReplicas")

    wait_for("StatefulSet probe to report 3 ready replicas", lambda: ready_replicas() == 3)


def _cache_cluster_example() -> dict[str, Any]:
    found = examples("CacheCluster")
    assert found, "manifests/examples/ holds no CacheCluster"
    return found[0]


@pytest.mark.parametrize(
    ("value", "why"), [(-1, "a negative size"), ("three", "a size that is not an integer")]
)
def test_invalid_cachecluster_is_rejected_naming_the_field(
    kube: Kube, namespace: str, value: object, why: str
) -> None:
    bad = copy.deepcopy(_cache_cluster_example())
    bad["spec"]["size"] = value
    with pytest.raises(ApiException) as rejected:
        kube.create(bad, namespace)
    assert rejected.value.status == 422, f"{why} was not rejected as invalid: {rejected.value}"
    assert "spec.size" in api_message(rejected.value)


def test_cachecluster_region_change_is_rejected_by_cel(kube: Kube, namespace: str) -> None:
    example = _cache_cluster_example()
    kube.create(example, namespace)
    moved = {"spec": {"region": example["spec"]["region"] + "-elsewhere"}}
    with pytest.raises(ApiException) as rejected:
        kube.merge_patch(
            example["apiVersion"], "CacheCluster", example["metadata"]["name"], namespace, moved
        )
    message = api_message(rejected.value)
    assert rejected.value.status == 422
    assert "spec.region" in message and "immutable" in message, message


def test_rbac_denies_a_service_account_without_a_role(
    kube: Kube, kubeconfig: str, namespace: str
) -> None:
    kube.create(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "nobody"}}, namespace
    )
    as_sa_client = config.new_client_from_config(config_file=kubeconfig)
    as_sa_client.set_default_header("Impersonate-User", f"system:serviceaccount:{namespace}:nobody")
    as_sa = Kube(as_sa_client)
    try:
        with pytest.raises(ApiException) as denied:
            as_sa.list("v1", "Pod", namespace)
        assert denied.value.status == 403
        assert "forbidden" in api_message(denied.value)
        # The same identity is allowed once a Role grants it: the 403 came from RBAC.
        rbac = "rbac.authorization.k8s.io/v1"
        kube.create(
            {
                "apiVersion": rbac,
                "kind": "Role",
                "metadata": {"name": "pod-reader"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}],
            },
            namespace,
        )
        kube.create(
            {
                "apiVersion": rbac,
                "kind": "RoleBinding",
                "metadata": {"name": "nobody-reads-pods"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "pod-reader",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "nobody", "namespace": namespace}],
            },
            namespace,
        )

        def allowed() -> bool:
            try:
                as_sa.list("v1", "Pod", namespace)
            except ApiException as e:
                if e.status != 403:
                    raise
                return False
            return True

        wait_for("the RoleBinding to take effect", allowed)
    finally:
        as_sa_client.close()
