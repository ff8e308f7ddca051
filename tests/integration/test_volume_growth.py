"""Growing a persistent namespace's volume (issue 13 item 3, AKO #604) on a real API server.

The claims are bound to pre-made CSI PersistentVolumes (the kube-controller-manager's PV
binder binds them); the apiserver's PersistentVolumeClaimResize admission enforces the
StorageClass rule. No storage driver runs here, so after the operator has patched the claims
this test does what a CSI external-resizer would: it sets the volume's and the claim's
capacity. Everything else - the claim patches, the orphaning re-creation of the
StatefulSet, the refusal, the progress condition - is the operator's, as its
least-privilege ServiceAccount.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from tests.integration.operator_harness import (
    Kubectl,
    Operator,
    condition,
    small_cc,
    wait_for,
)

DRIVER = "volume-growth.test.aerocdn.dev"


def storage_class(name: str, expand: bool) -> dict[str, Any]:
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": name}, "provisioner": DRIVER,
            "allowVolumeExpansion": expand, "reclaimPolicy": "Retain"}


def volume(name: str, sc: str, claim: str, ns: str, size: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": sc, "persistentVolumeReclaimPolicy": "Retain",
                     "csi": {"driver": DRIVER, "volumeHandle": name},
                     "claimRef": {"namespace": ns, "name": claim}}}


@pytest.fixture
def storage(kubectl: Kubectl, ns: str) -> Iterator[list[str]]:
    """Two StorageClasses (one expandable) and the PVs made for this test; removed after."""
    made: list[str] = []
    classes = [f"{ns}-grow", f"{ns}-fixed"]
    kubectl.apply(storage_class(classes[0], True), storage_class(classes[1], False))
    yield made
    kubectl.run("delete", "pv", "--ignore-not-found", "--wait=false", *made, check=False)
    kubectl.run("delete", "storageclass", "--ignore-not-found", *classes, check=False)


def persistent_cc(name: str, sc: str, size: str) -> dict[str, Any]:
    cc = small_cc(name, "eu-west", size=2)
    cc["spec"]["namespaces"] = [{"name": "data", "storage": {
        "type": "persistent", "size": size, "storageClassName": sc}}]
    return cc


def bind_claims(kubectl: Kubectl, ns: str, cc: str, sc: str, size: str, made: list[str]
                ) -> None:
    for i in range(2):
        pv = f"{ns}-{cc}-{i}"
        made.append(pv)
        kubectl.apply(volume(pv, sc, f"data-data-{cc}-{i}", ns, size))
    wait_for("the claims bound", lambda: sorted(
        (c.get("status") or {}).get("phase") for c in kubectl.items("pvc", ns))
        == ["Bound", "Bound"])


def bound_cluster(kubectl: Kubectl, ns: str, name: str, sc: str, made: list[str]) -> None:
    """A 2-node CacheCluster with 2Gi claims of StorageClass ``sc``, bound."""
    kubectl.apply(persistent_cc(name, sc, "2Gi"), namespace=ns)
    wait_for("the StatefulSet", lambda: kubectl.get("statefulset", name, ns))
    bind_claims(kubectl, ns, name, sc, "2Gi", made)


def ask_for(kubectl: Kubectl, ns: str, name: str, sc: str, size: str) -> None:
    kubectl.patch("cc", name, ns, {"spec": {"namespaces": [{"name": "data", "storage": {
        "type": "persistent", "size": size, "storageClassName": sc}}]}})


def test_growing_a_volume_patches_the_claims_and_keeps_the_pods(
        kubectl: Kubectl, operator: Operator, ns: str, storage: list[str]) -> None:
    sc = f"{ns}-grow"
    bound_cluster(kubectl, ns, "grow", sc, storage)
    wait_for("both pods running", lambda: len([
        p for p in kubectl.items("pod", ns, "app.kubernetes.io/instance=grow")
        if (p.get("status") or {}).get("phase") == "Running"]) == 2)
    pods_before = {p["metadata"]["name"]: p["metadata"]["uid"]
                   for p in kubectl.items("pod", ns, "app.kubernetes.io/instance=grow")}
    sts_before = kubectl.get("statefulset", "grow", ns)
    assert sts_before is not None

    ask_for(kubectl, ns, "grow", sc, "4Gi")

    def claims_asked() -> bool:
        return all(c["spec"]["resources"]["requests"]["storage"] == "4Gi"
                   for c in kubectl.items("pvc", ns))
    wait_for("every claim asks for 4Gi", claims_asked)

    def replaced() -> dict[str, Any] | None:
        sts = kubectl.get("statefulset", "grow", ns)
        if sts is None or sts["metadata"]["uid"] == sts_before["metadata"]["uid"]:
            return None
        return sts
    sts = wait_for("the StatefulSet re-created", replaced)
    (template,) = sts["spec"]["volumeClaimTemplates"]
    assert template["spec"]["resources"]["requests"]["storage"] == "4Gi"
    assert sts["spec"]["replicas"] == 2
    growing = wait_for("progress reported", lambda: (
        c := condition(kubectl.get("cc", "grow", ns), "VolumesResized"))
        and c.get("reason") == "GrowingVolumes" and c)
    assert growing["status"] == "False" and "2Gi of 4Gi" in growing["message"], growing
    # The StatefulSet was replaced without restarting a pod (orphaned, then adopted), and
    # the restarts for the new filesize wait while the driver has not grown the volumes.
    for p in kubectl.items("pod", ns, "app.kubernetes.io/instance=grow"):
        assert pods_before[p["metadata"]["name"]] == p["metadata"]["uid"]
        wait_for(f"{p['metadata']['name']} adopted", lambda n=p["metadata"]["name"]: [
            o["uid"] for o in (kubectl.get("pod", n, ns) or {}).get("metadata", {}).get(
                "ownerReferences", [])] == [sts["metadata"]["uid"]])
    cc = kubectl.get("cc", "grow", ns)
    assert "wait until the storage driver has grown the volumes" in \
        condition(cc, "Progressing")["message"], cc

    # The storage driver's part (a CSI external-resizer): the volumes reach the new size.
    for i in range(2):
        kubectl.run("patch", "pv", f"{ns}-grow-{i}", "--type=merge", "-p",
                    json.dumps({"spec": {"capacity": {"storage": "4Gi"}}}))
        kubectl.run("patch", "pvc", f"data-data-grow-{i}", "-n", ns, "--subresource=status",
                    "--type=merge", "-p", json.dumps({"status": {"capacity": {"storage": "4Gi"}}}))
    done = wait_for("VolumesResized", lambda: (
        c := condition(kubectl.get("cc", "grow", ns), "VolumesResized"))
        and c.get("status") == "True" and c)
    assert done["reason"] == "AtSize"
    # Then the pods roll, one at a time, onto the configuration with the new filesize.
    def rolled() -> bool:
        now = {p["metadata"]["name"]: p["metadata"]["uid"]
               for p in kubectl.items("pod", ns, "app.kubernetes.io/instance=grow")}
        return len(now) == 2 and not set(now.values()) & set(pods_before.values())
    wait_for("both pods restarted on the new configuration", rolled)
    reasons = [e["reason"] for e in kubectl.items("event", ns)
               if e["involvedObject"]["name"] == "grow"]
    assert "GrowingVolumes" in reasons and reasons.count("RollingRestart") == 2, reasons


def test_growing_without_expansion_support_is_refused_naming_the_class(
        kubectl: Kubectl, operator: Operator, ns: str, storage: list[str]) -> None:
    sc = f"{ns}-fixed"
    bound_cluster(kubectl, ns, "fixed", sc, storage)
    ask_for(kubectl, ns, "fixed", sc, "4Gi")
    got = wait_for("ChangeRefused", lambda: (c := kubectl.get("cc", "fixed", ns))
                   and condition(c, "Degraded").get("reason") == "ChangeRefused" and c)
    assert f"StorageClass {sc} does not allow volume expansion" in \
        condition(got, "Degraded")["message"]
    # nothing changed: claims and template as they were
    assert all(c["spec"]["resources"]["requests"]["storage"] == "2Gi"
               for c in kubectl.items("pvc", ns))
    sts = kubectl.get("statefulset", "fixed", ns)
    assert sts is not None
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"][
        "storage"] == "2Gi"
