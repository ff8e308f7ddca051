"""An Enterprise CacheCluster's Secrets on the real control plane: the operator (as the
ServiceAccount of manifests/base, RBAC on) watches Secrets; a missing Secret or key is a
condition and an Event naming them, and creating or fixing the Secret alone - no change to
the CacheCluster - lets the reconcile go on. The edges of a ContentEdge using the cluster
mount its edge password Secret.

The operator runs with --aerospike-probe=kubernetes (kwok pods, no Aerospike): users are not
applied here (the condition says why); no Enterprise server exists on this machine.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from tests.integration.operator_harness import (
    Kubectl,
    Operator,
    condition,
    small_cc,
    small_ce,
    wait_for,
)


def secret(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def enterprise_cc(name: str, region: str) -> dict[str, Any]:
    cc = small_cc(name, region, size=1)
    cc["spec"].update({
        "edition": "enterprise", "featureKeySecretRef": {"name": "features"},
        "accessControl": {"adminSecretRef": {"name": "ops"}, "edgeSecretName": "edge-pw"}})
    return cc


def degraded_message(kubectl: Kubectl, ns: str, name: str) -> str:
    cond = condition(kubectl.get("cc", name, ns), "Degraded")
    return str(cond.get("message", "")) if cond.get("status") == "True" else ""


def events(kubectl: Kubectl, ns: str, name: str) -> list[dict[str, Any]]:
    out = kubectl.run("get", "events", "-n", ns, "-o", "json",
                      "--field-selector", f"involvedObject.name={name}").stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def test_missing_secrets_are_named_and_fixing_the_secret_alone_resumes(
        kubectl: Kubectl, operator: Operator, ns: str) -> None:
    kubectl.apply(enterprise_cc("ee", "eu-west"), namespace=ns)
    first = wait_for("Degraded naming the admin Secret", lambda: (
        m := degraded_message(kubectl, ns, "ee")) and "Secret ops does not exist" in m and m)
    assert "spec.accessControl.adminSecretRef" in first
    assert "spec.accessControl.edgeSecretName: Secret edge-pw does not exist" in first
    assert condition(kubectl.get("cc", "ee", ns), "Degraded")["reason"] == "SecretInvalid"
    assert kubectl.get("statefulset", "ee", ns) is None
    wait_for("a Warning Event naming the Secret", lambda: any(
        e["type"] == "Warning" and e["reason"] == "SecretInvalid"
        and "Secret ops does not exist" in e["message"] for e in events(kubectl, ns, "ee")))
    generation = kubectl.get("cc", "ee", ns)["metadata"]["generation"]  # type: ignore[index]

    # a Secret with a key missing: its creation alone re-runs the reconcile
    kubectl.apply(secret("ops", username="operator"), namespace=ns)
    wait_for("Degraded naming the missing key", lambda: "Secret ops has no key password"
             in degraded_message(kubectl, ns, "ee"))

    kubectl.apply(secret("ops", username="operator", password="s3cret"),
                  secret("edge-pw", password="edge"), namespace=ns)
    wait_for("the StatefulSet once the Secrets are complete",
             lambda: kubectl.get("statefulset", "ee", ns))
    wait_for("Degraded cleared", lambda: condition(kubectl.get("cc", "ee", ns),
                                                   "Degraded").get("status") == "False")
    cc = kubectl.get("cc", "ee", ns)
    assert cc is not None and cc["metadata"]["generation"] == generation
    users = condition(cc, "UsersApplied")
    assert (users.get("status"), users.get("reason")) == ("False", "NoAerospikeProbe")
    assert "s3cret" not in json.dumps(cc)

    # the edges of a ContentEdge using the cluster mount its edge password
    kubectl.apply(small_ce("web", [{"name": "eu-west", "replicas": 1,
                                    "cacheCluster": "ee"}]), namespace=ns)
    dep = wait_for("the edge Deployment", lambda: kubectl.get("deployment", "web-eu-west", ns))
    pod = dep["spec"]["template"]["spec"]
    logins = [v for v in pod["volumes"] if v["name"].startswith("aerospike-login-")]
    assert [v["secret"]["secretName"] for v in logins] == ["edge-pw"]
    edge = next(c for c in pod["containers"] if c["name"] == "edge")
    assert {"name": "aerospike-login-0", "mountPath": "/etc/aerocdn/aerospike/ee",
            "readOnly": True} in edge["volumeMounts"]
