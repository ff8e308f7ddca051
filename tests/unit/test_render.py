"""What gets created for a spec: aerospike.conf, StatefulSets, edges; determinism and hashes."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest
import yaml
from tests.conftest import EXAMPLES

from aerocdn.api import CacheCluster, ContentEdge, parse_object
from aerocdn.cli import load_manifests
from aerocdn.render import render_all
from aerocdn.render.cachecluster import render_cachecluster
from aerocdn.render.contentedge import render_contentedge
from aerocdn.yamlio import dump_all

K8S_VERSION = "1.34.0"


def cachecluster(spec: dict[str, Any], name: str = "eu", uid: str | None = None) -> CacheCluster:
    meta: dict[str, Any] = {"name": name, "namespace": "cdn"}
    if uid:
        meta["uid"] = uid
    obj = parse_object({"apiVersion": "aerocdn.dev/v1alpha1", "kind": "CacheCluster",
                        "metadata": meta, "spec": {"region": "eu", **spec}})
    assert isinstance(obj, CacheCluster)
    return obj


def contentedge(spec: dict[str, Any] | None = None, uid: str | None = None) -> ContentEdge:
    base: dict[str, Any] = {"hosts": ["www.example.com"], "origin": {"url": "http://o.example"},
                            "regions": [{"name": "eu"}, {"name": "us", "cacheCluster": "us-1"}]}
    meta: dict[str, Any] = {"name": "web", "namespace": "cdn"}
    if uid:
        meta["uid"] = uid
    obj = parse_object({"apiVersion": "aerocdn.dev/v1alpha1", "kind": "ContentEdge",
                        "metadata": meta, "spec": {**base, **(spec or {})}})
    assert isinstance(obj, ContentEdge)
    return obj


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def conf_of(objects: list[dict[str, Any]], name: str) -> str:
    (cm,) = [o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"] == name]
    text: str = cm["data"]["aerospike.conf"]
    return text


def test_examples_validate_against_kubernetes_schemas_strictly() -> None:
    objects = render_all(load_manifests([str(EXAMPLES)]))
    kinds = {o["kind"] for o in objects}
    assert {"ConfigMap", "Service", "StatefulSet", "Deployment", "PodDisruptionBudget"} <= kinds
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_in_memory_namespace_conf() -> None:
    objs = render_cachecluster(cachecluster({"namespaces": [
        {"name": "cache", "storage": {"type": "memory", "size": "2Gi"}, "defaultTTLSeconds": 600,
         "replicationFactor": 3}]}))
    conf = conf_of(objs, "eu-config")
    assert "storage-engine memory {\n        data-size 2048M\n" in conf
    assert "replication-factor 3\n" in conf
    assert "default-ttl 600\n" in conf and "nsup-period 120\n" in conf
    assert "access-address __POD_IP__" in conf
    assert "mode mesh" in conf
    assert "mesh-seed-address-port eu-0.eu-headless.cdn.svc 3002" in conf
    assert "rack-id" not in conf
    (sts,) = by_kind(objs, "StatefulSet")
    assert "volumeClaimTemplates" not in sts["spec"]
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"]["memory"] == "2560Mi"  # data + 512Mi overhead


def test_expiry_runs_without_a_default_ttl() -> None:
    # edges write records with a TTL: Aerospike refuses them while nsup-period is 0
    conf = conf_of(render_cachecluster(cachecluster(
        {"namespaces": [{"name": "cache", "defaultTTLSeconds": 0}]})), "eu-config")
    assert "default-ttl 0\n" in conf and "nsup-period 120\n" in conf


def test_persistent_namespace_conf_and_volume() -> None:
    objs = render_cachecluster(cachecluster({"namespaces": [
        {"name": "data", "storage": {"type": "persistent", "size": "10Gi",
                                     "storageClassName": "fast"}}]}))
    conf = conf_of(objs, "eu-config")
    assert "storage-engine device {\n        file /opt/aerospike/data/data/data.dat\n" in conf
    assert "filesize 9216M" in conf  # 90% of the volume, room for the filesystem
    (sts,) = by_kind(objs, "StatefulSet")
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data-data"
    assert claim["spec"]["storageClassName"] == "fast"
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    mounts = sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "data-data", "mountPath": "/opt/aerospike/data/data"} in mounts


def test_racks_one_statefulset_and_config_each() -> None:
    objs = render_cachecluster(cachecluster({"size": 5, "racks": [
        {"id": 2, "zone": "z-b"}, {"id": 1, "zone": "z-a"}, {"id": 3, "zone": "z-c"}]}))
    sts = {s["metadata"]["name"]: s for s in by_kind(objs, "StatefulSet")}
    assert {n: s["spec"]["replicas"] for n, s in sts.items()} == {
        "eu-r1": 2, "eu-r2": 2, "eu-r3": 1}
    for rack in (1, 2, 3):
        conf = conf_of(objs, f"eu-r{rack}-config")
        assert "rack-id" not in conf  # Community Edition refuses rack-id
        # every rack seeds from every rack, so racks find each other
        assert "mesh-seed-address-port eu-r1-0.eu-headless.cdn.svc 3002" in conf
        assert "mesh-seed-address-port eu-r3-1.eu-headless.cdn.svc 3002" in conf
        pod = sts[f"eu-r{rack}"]["spec"]["template"]
        assert pod["spec"]["nodeSelector"] == {"topology.kubernetes.io/zone": f"z-{'abc'[rack-1]}"}
        assert pod["metadata"]["labels"]["aerocdn.dev/rack"] == str(rack)
        selector = sts[f"eu-r{rack}"]["spec"]["selector"]["matchLabels"]
        assert selector["aerocdn.dev/rack"] == str(rack)
    (pdb,) = by_kind(objs, "PodDisruptionBudget")
    assert "aerocdn.dev/rack" not in pdb["spec"]["selector"]["matchLabels"]


def test_enterprise_racks_are_rack_aware() -> None:
    objs = render_cachecluster(cachecluster({
        "size": 2, "edition": "enterprise", "featureKeySecretRef": {"name": "features"}, "racks": [
        {"id": 1, "zone": "z-a"}, {"id": 7, "zone": "z-b"}]}))
    assert "rack-id 1\n" in conf_of(objs, "eu-r1-config")
    assert "rack-id 7\n" in conf_of(objs, "eu-r7-config")


def test_pods_are_gated_on_cluster_stability_and_spread() -> None:
    (sts,) = by_kind(render_cachecluster(cachecluster({})), "StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    assert pod["readinessGates"] == [{"conditionType": "aerocdn.dev/cluster-stable"}]
    anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["topologyKey"] == "kubernetes.io/hostname"
    assert pod["securityContext"]["runAsNonRoot"] is True
    for c in pod["containers"] + pod["initContainers"]:
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert sts["spec"]["updateStrategy"] == {"type": "OnDelete"}


def test_replica_override_does_not_change_config() -> None:
    cc = cachecluster({"size": 3})
    full = render_cachecluster(cc)
    shrunk = render_cachecluster(cc, replicas={"eu": 2})
    assert by_kind(shrunk, "StatefulSet")[0]["spec"]["replicas"] == 2
    assert conf_of(full, "eu-config") == conf_of(shrunk, "eu-config")


def pod_hash(objs: list[dict[str, Any]], kind: str, name: str) -> str:
    (obj,) = [o for o in by_kind(objs, kind) if o["metadata"]["name"] == name]
    value: str = obj["spec"]["template"]["metadata"]["annotations"]["aerocdn.dev/config-hash"]
    return value


def test_config_change_rolls_pods_but_scaling_does_not() -> None:
    base = pod_hash(render_cachecluster(cachecluster({"size": 3})), "StatefulSet", "eu")
    assert pod_hash(render_cachecluster(cachecluster({"size": 5})), "StatefulSet", "eu") == base
    changed = cachecluster({"size": 3, "namespaces": [{"name": "cache", "replicationFactor": 3}]})
    assert pod_hash(render_cachecluster(changed), "StatefulSet", "eu") != base
    image = cachecluster({"size": 3, "image": "aerospike/aerospike-server:8.1.3.0"})
    assert pod_hash(render_cachecluster(image), "StatefulSet", "eu") != base


def test_edge_config_change_rolls_edges() -> None:
    base = pod_hash(render_contentedge(contentedge()), "Deployment", "web-eu")
    assert pod_hash(render_contentedge(contentedge({"regions": [
        {"name": "eu", "replicas": 7}, {"name": "us", "cacheCluster": "us-1"}]})),
        "Deployment", "web-eu") == base
    ttl = contentedge({"cachePolicy": {"defaultTTLSeconds": 10}})
    assert pod_hash(render_contentedge(ttl), "Deployment", "web-eu") != base


def test_rendering_is_deterministic() -> None:
    objects = load_manifests([str(EXAMPLES)])
    first = dump_all(render_all(objects))
    again = dump_all(render_all(load_manifests([str(EXAMPLES)])))
    assert first == again
    assert dump_all(render_all(list(reversed(objects)))).count("---") == first.count("---")


def test_owner_references_and_labels() -> None:
    objs = render_cachecluster(cachecluster({}, uid="1234"))
    objs += render_contentedge(contentedge(uid="5678"))
    for obj in objs:
        meta = obj["metadata"]
        (ref,) = meta["ownerReferences"]
        assert ref["controller"] is True and ref["uid"] in ("1234", "5678")
        for key in ("name", "instance", "component", "part-of", "managed-by"):
            assert f"app.kubernetes.io/{key}" in meta["labels"], (obj["kind"], key)
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "aerocdn"
    assert all("ownerReferences" not in o["metadata"]
               for o in render_cachecluster(cachecluster({})))


def test_contentedge_children_per_region() -> None:
    objs = render_contentedge(contentedge({"purgeTokenSecretRef": {"name": "tok"}}))
    names = sorted((o["kind"], o["metadata"]["name"]) for o in objs)
    assert names == sorted(
        [(k, f"web-{r}") for r in ("eu", "us")
         for k in ("ConfigMap", "Deployment", "Service", "PodDisruptionBudget")]
        + [("Service", f"web-{r}-peers") for r in ("eu", "us")])
    (dep,) = [o for o in by_kind(objs, "Deployment") if o["metadata"]["name"] == "web-us"]
    pod = dep["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["nginx", "edge"]
    assert dep["spec"]["replicas"] == 2
    cm = next(o for o in by_kind(objs, "ConfigMap") if o["metadata"]["name"] == "web-us")
    edge = yaml.safe_load(cm["data"]["edge.yaml"])
    assert edge["region"] == "us"
    # the region's own cluster plus every other region's, for fail-over routes
    assert sorted(edge["cacheClusters"]) == ["eu", "us-1"]
    assert edge["cacheClusters"]["us-1"]["seeds"] == ["us-1.cdn.svc:3000"]
    assert "server_name" in cm["data"]["nginx.conf"]
    secret_vol = next(v for v in pod["volumes"] if v["name"] == "purge-token")
    assert secret_vol["secret"]["secretName"] == "tok"


def test_default_cache_cluster_is_the_one_of_the_region() -> None:
    clusters = {"main-eu": cachecluster({"namespaces": [{"name": "hot"}]}, name="main-eu")}
    objs = render_contentedge(contentedge(), clusters)
    cm = next(o for o in by_kind(objs, "ConfigMap") if o["metadata"]["name"] == "web-eu")
    edge = yaml.safe_load(cm["data"]["edge.yaml"])
    assert edge["cacheClusters"]["main-eu"] == {"seeds": ["main-eu.cdn.svc:3000"],
                                                "namespace": "hot"}


def test_autoscaling_renders_hpa_and_leaves_replicas_to_it() -> None:
    objs = render_contentedge(contentedge({"autoscaling": {"enabled": True, "minReplicas": 3,
                                                            "maxReplicas": 9}}))
    hpas = by_kind(objs, "HorizontalPodAutoscaler")
    assert [(h["spec"]["minReplicas"], h["spec"]["maxReplicas"]) for h in hpas] == [(3, 9)] * 2
    assert all("replicas" not in d["spec"] for d in by_kind(objs, "Deployment"))
    for obj in objs:
        kubernetes_validate.validate(copy.deepcopy(obj), K8S_VERSION, strict=True)


@pytest.mark.parametrize("exporter", [True, False])
def test_exporter_sidecar(exporter: bool) -> None:
    (sts,) = by_kind(render_cachecluster(cachecluster({"exporter": {"enabled": exporter}})),
                     "StatefulSet")
    names = [c["name"] for c in sts["spec"]["template"]["spec"]["containers"]]
    assert names == (["aerospike", "exporter"] if exporter else ["aerospike"])
