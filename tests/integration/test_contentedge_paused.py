"""spec.paused on a ContentEdge, like on a CacheCluster: children and routing are left alone
until it is unpaused (issue 13, item 6)."""

from __future__ import annotations

from tests.integration.operator_harness import (
    Kubectl,
    Operator,
    is_ready,
    small_cc,
    small_ce,
    wait_for,
)


def replicas(kubectl: Kubectl, ns: str) -> int | None:
    dep = kubectl.get("deployment", "pz-eu-west", ns)
    return None if dep is None else int(dep["spec"]["replicas"])


def test_paused_contentedge_is_left_alone(kubectl: Kubectl, operator: Operator, ns: str
                                          ) -> None:
    kubectl.apply(small_cc("eu-west", "eu-west"), namespace=ns)
    kubectl.apply(small_ce("pz", [{"name": "eu-west", "replicas": 1}]), namespace=ns)
    wait_for("pz Ready", lambda: is_ready(kubectl.get("ce", "pz", ns)))
    kubectl.patch("ce", "pz", ns, {"spec": {"paused": True,
                                            "regions": [{"name": "eu-west", "replicas": 2}]}})
    paused = wait_for("Paused", lambda: (c := kubectl.get("ce", "pz", ns)) and
                      c.get("status", {}).get("phase") == "Paused" and c)
    assert paused["status"]["observedGeneration"] == paused["metadata"]["generation"]
    assert replicas(kubectl, ns) == 1
    kubectl.patch("ce", "pz", ns, {"spec": {"paused": False}})
    wait_for("resumed to 2", lambda: replicas(kubectl, ns) == 2)
    wait_for("pz Ready again", lambda: is_ready(kubectl.get("ce", "pz", ns)))
