"""Where pods run and how images are pulled, on both kinds; the exporter sidecar's config;
the edge containers' start. What a real node showed (issue 16, items 2, 3, 4, 6)."""

from __future__ import annotations

import copy
import tomllib
from typing import Any

import kubernetes_validate
import pytest
from tests.unit.test_render import K8S_VERSION, by_kind, cachecluster, contentedge

from aerocdn.api.crd import contentedge_crd
from aerocdn.render.cachecluster import render_cachecluster
from aerocdn.render.contentedge import render_contentedge

REGION = "topology.kubernetes.io/region"
TOLERATION = {"key": "aerocdn.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


def region_terms(spec: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """(preferred expressions, required expressions) on the region label."""
    node = spec.get("affinity", {}).get("nodeAffinity", {})
    preferred = [
        e
        for p in node.get("preferredDuringSchedulingIgnoredDuringExecution", [])
        for e in p["preference"].get("matchExpressions", [])
        if e["key"] == REGION
    ]
    required = [
        e
        for t in node.get("requiredDuringSchedulingIgnoredDuringExecution", {}).get(
            "nodeSelectorTerms", []
        )
        for e in t.get("matchExpressions", [])
        if e["key"] == REGION
    ]
    return preferred, required


def validate(objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        kubernetes_validate.validate(copy.deepcopy(obj), K8S_VERSION, strict=True)


def test_cachecluster_without_racks_prefers_its_region() -> None:
    (sts,) = by_kind(render_cachecluster(cachecluster({})), "StatefulSet")
    preferred, required = region_terms(pod_spec(sts))
    assert preferred == [{"key": REGION, "operator": "In", "values": ["eu"]}]
    assert required == []


def test_cachecluster_with_racks_prefers_its_region_in_every_rack() -> None:
    racks = [{"id": 1, "zone": "eu-a"}, {"id": 2, "zone": "eu-b"}]
    stses = by_kind(render_cachecluster(cachecluster({"racks": racks})), "StatefulSet")
    assert len(stses) == 2
    for sts in stses:
        spec = pod_spec(sts)
        assert region_terms(spec)[0][0]["values"] == ["eu"]
        assert spec["nodeSelector"]["topology.kubernetes.io/zone"] in {"eu-a", "eu-b"}


def test_required_region_is_added_to_every_term_of_the_users_node_affinity() -> None:
    user_terms = [
        {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]},
        {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["nvme"]}]},
    ]
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": user_terms}
        }
    }
    cc = cachecluster({"placement": {"regionAffinity": "Required", "affinity": affinity}})
    objects = render_cachecluster(cc)
    validate(objects)
    (sts,) = by_kind(objects, "StatefulSet")
    spec = pod_spec(sts)
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    # Terms are ORed: each keeps the user's expression and gains the region.
    assert len(terms) == 2
    for term, disk in zip(terms, ["ssd", "nvme"], strict=True):
        keys = {e["key"]: e["values"] for e in term["matchExpressions"]}
        assert keys == {"disk": [disk], REGION: ["eu"]}
    # The user's affinity gave no podAntiAffinity: one pod per node still holds.
    assert "podAntiAffinity" in spec["affinity"]
    # The model is not changed by rendering (it is frozen and shared).
    assert cc.spec.placement.affinity == affinity


def test_ignored_region_and_users_anti_affinity_replace_the_defaults() -> None:
    anti = {"preferredDuringSchedulingIgnoredDuringExecution": []}
    cc = cachecluster(
        {"placement": {"regionAffinity": "Ignored", "affinity": {"podAntiAffinity": anti}}}
    )
    (sts,) = by_kind(render_cachecluster(cc), "StatefulSet")
    assert pod_spec(sts)["affinity"] == {"podAntiAffinity": anti}


def full_placement(**extra: Any) -> dict[str, Any]:
    return {
        "nodeSelector": {"aerocdn.dev/node-kind": "real"},
        "tolerations": [TOLERATION],
        "priorityClassName": "edge-critical",
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "aerocdn-edge"}},
            }
        ],
        **extra,
    }


def test_contentedge_placement_and_pull_settings_reach_every_edge_pod() -> None:
    ce = contentedge(
        {
            "placement": full_placement(),
            "imagePullPolicy": "Never",
            "imagePullSecrets": [{"name": "registry"}],
        }
    )
    objects = render_contentedge(ce)
    validate(objects)
    deployments = by_kind(objects, "Deployment")
    assert len(deployments) == 2
    for dep in deployments:
        spec = pod_spec(dep)
        assert spec["nodeSelector"] == {"aerocdn.dev/node-kind": "real"}
        assert spec["tolerations"] == [TOLERATION]
        assert spec["priorityClassName"] == "edge-critical"
        assert spec["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
        assert spec["imagePullSecrets"] == [{"name": "registry"}]
        assert {c["imagePullPolicy"] for c in spec["containers"]} == {"Never"}
        region = dep["metadata"]["labels"]["aerocdn.dev/region"]
        assert region_terms(spec)[0][0]["values"] == [region]


def test_region_placement_overrides_the_spec_field_by_field() -> None:
    ce = contentedge(
        {
            "placement": full_placement(regionAffinity="Required"),
            "regions": [
                {"name": "eu", "placement": {"nodeSelector": {"pool": "eu-edge"}}},
                {"name": "us", "cacheCluster": "us-1"},
            ],
        }
    )
    deps = {d["metadata"]["labels"]["aerocdn.dev/region"]: pod_spec(d)
            for d in by_kind(render_contentedge(ce), "Deployment")}
    # eu replaces nodeSelector only; tolerations, priority and the region rule stay the spec's.
    assert deps["eu"]["nodeSelector"] == {"pool": "eu-edge"}
    assert deps["us"]["nodeSelector"] == {"aerocdn.dev/node-kind": "real"}
    for region, spec in deps.items():
        assert spec["tolerations"] == [TOLERATION]
        assert spec["priorityClassName"] == "edge-critical"
        assert region_terms(spec) == ([], [{"key": REGION, "operator": "In", "values": [region]}])


def test_region_placement_has_no_schema_defaults_that_would_override_the_spec() -> None:
    """The apiserver fills schema defaults into every object given: a default inside
    regions[].placement would silently replace spec.placement's value."""
    crd = contentedge_crd()
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    region = schema["properties"]["spec"]["properties"]["regions"]["items"]
    placement = region["properties"]["placement"]["properties"]
    assert {k for k, v in placement.items() if "default" in v} == set()


def test_edges_default_to_spreading_over_nodes_without_placement() -> None:
    (dep, _) = by_kind(render_contentedge(contentedge()), "Deployment")
    spec = pod_spec(dep)
    assert spec["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    assert "nodeSelector" not in spec and "tolerations" not in spec
    assert "imagePullSecrets" not in spec
    assert all("imagePullPolicy" not in c for c in spec["containers"])


def test_cachecluster_pull_settings_on_every_container_including_init_and_exporter() -> None:
    cc = cachecluster(
        {
            "imagePullPolicy": "IfNotPresent",
            "imagePullSecrets": [{"name": "registry"}],
            "placement": full_placement(),
            "exporter": {"enabled": True},
        }
    )
    objects = render_cachecluster(cc)
    validate(objects)
    (sts,) = by_kind(objects, "StatefulSet")
    spec = pod_spec(sts)
    containers = spec["initContainers"] + spec["containers"]
    assert [c["name"] for c in containers] == ["config", "aerospike", "exporter"]
    assert {c["imagePullPolicy"] for c in containers} == {"IfNotPresent"}
    assert spec["imagePullSecrets"] == [{"name": "registry"}]
    assert spec["tolerations"] == [TOLERATION]


def test_exporter_runs_from_a_rendered_config_under_a_read_only_root() -> None:
    objects = render_cachecluster(cachecluster({"exporter": {"enabled": True}}))
    (sts,) = by_kind(objects, "StatefulSet")
    spec = pod_spec(sts)
    (exporter,) = [c for c in spec["containers"] if c["name"] == "exporter"]
    # The image's entrypoint (which edits files under /etc) is replaced by the binary.
    assert exporter["command"][0] == "aerospike-prometheus-exporter"
    config_path = exporter["command"][exporter["command"].index("--config") + 1]
    assert exporter["securityContext"]["readOnlyRootFilesystem"] is True
    (mount,) = [m for m in exporter["volumeMounts"] if config_path.startswith(m["mountPath"])]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    (cm,) = [o for o in by_kind(objects, "ConfigMap")
             if o["metadata"]["name"] == volume["configMap"]["name"]]
    key = config_path.rsplit("/", 1)[1]
    assert {"key": key, "path": key} in volume["configMap"]["items"]
    ape = tomllib.loads(cm["data"][key])
    assert ape["Agent"]["enable_prometheus"] is True
    assert ape["Agent"]["use_mock_datasource"] is False  # the image's default is true
    assert ape["Agent"]["bind"] == ":9145"
    assert ape["Agent"]["labels"] == {"cluster": "eu", "region": "eu"}
    assert (ape["Aerospike"]["db_host"], ape["Aerospike"]["db_port"]) == ("127.0.0.1", 3000)
    assert {"name": "metrics", "containerPort": 9145} in exporter["ports"]


def test_enabling_the_exporter_rolls_pods_and_disabled_clusters_keep_their_hash() -> None:
    def hash_of(spec: dict[str, Any]) -> str:
        (sts,) = by_kind(render_cachecluster(cachecluster(spec)), "StatefulSet")
        value: str = sts["spec"]["template"]["metadata"]["annotations"]["aerocdn.dev/config-hash"]
        return value

    assert hash_of({}) == hash_of({"exporter": {"enabled": False}})
    assert hash_of({}) != hash_of({"exporter": {"enabled": True}})


@pytest.mark.parametrize("container", ["nginx", "edge"])
def test_edge_containers_have_a_startup_probe(container: str) -> None:
    """Without one, the first readiness probe of every pod start fails (seen on a real
    node); probes wait until the container has started."""
    (dep, _) = by_kind(render_contentedge(contentedge()), "Deployment")
    (c,) = [c for c in pod_spec(dep)["containers"] if c["name"] == container]
    startup = c["startupProbe"]
    assert startup["failureThreshold"] * startup["periodSeconds"] >= 30
    assert startup.get("initialDelaySeconds", 0) >= 1
