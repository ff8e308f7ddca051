"""NetworkPolicies of a ContentEdge and of a CacheCluster are children like any other: the
operator (as its least-privilege ServiceAccount) creates them when spec.networkPolicy.enabled,
repairs them and deletes them when it is turned off."""

from __future__ import annotations

from tests.integration.operator_harness import (
    Kubectl,
    Operator,
    is_ready,
    small_cc,
    small_ce,
    wait_for,
)


def policies(kubectl: Kubectl, ns: str) -> set[str]:
    return {p["metadata"]["name"]
            for p in kubectl.items("networkpolicy", ns, "aerocdn.dev/contentedge=np")}


def cluster_policies(kubectl: Kubectl, ns: str) -> set[str]:
    return {p["metadata"]["name"]
            for p in kubectl.items("networkpolicy", ns, "aerocdn.dev/cachecluster=eu-west")}


def test_network_policies_follow_the_spec(kubectl: Kubectl, operator: Operator, ns: str) -> None:
    kubectl.apply(small_cc("eu-west", "eu-west"), namespace=ns)
    edge = small_ce("np", [{"name": "eu-west", "replicas": 1}],
                    networkPolicy={"enabled": True})
    kubectl.apply(edge, namespace=ns)
    made = wait_for("NetworkPolicies created", lambda: policies(kubectl, ns))
    assert any(name.startswith("np-eu-west") for name in made), made
    wait_for("ce/np Ready", lambda: is_ready(kubectl.get("ce", "np", ns)))
    for name in made:
        obj = kubectl.get("networkpolicy", name, ns)
        assert obj is not None
        (ref,) = obj["metadata"]["ownerReferences"]
        assert ref["kind"] == "ContentEdge"

    # Drift is repaired: a deleted policy comes back.
    victim = sorted(made)[0]
    kubectl.run("delete", "networkpolicy", victim, "-n", ns)
    wait_for(f"{victim} recreated", lambda: victim in policies(kubectl, ns))

    # Turned off: the operator removes what it made.
    kubectl.patch("ce", "np", ns, {"spec": {"networkPolicy": {"enabled": False}}})
    wait_for("NetworkPolicies deleted", lambda: not policies(kubectl, ns))


def test_cache_cluster_network_policy_follows_the_spec(
        kubectl: Kubectl, operator: Operator, ns: str) -> None:
    cc = small_cc("eu-west", "eu-west")
    cc["spec"]["networkPolicy"] = {"enabled": True, "metricsNamespaces": ["monitoring"]}
    kubectl.apply(cc, namespace=ns)
    wait_for("the CacheCluster's NetworkPolicy", lambda: cluster_policies(kubectl, ns))
    obj = kubectl.get("networkpolicy", "eu-west", ns)
    assert obj is not None
    (ref,) = obj["metadata"]["ownerReferences"]
    assert ref["kind"] == "CacheCluster"
    assert obj["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "eu-west"
    wait_for("cc/eu-west Ready", lambda: is_ready(kubectl.get("cc", "eu-west", ns)))

    kubectl.run("delete", "networkpolicy", "eu-west", "-n", ns)
    wait_for("eu-west recreated", lambda: cluster_policies(kubectl, ns))

    kubectl.patch("cc", "eu-west", ns, {"spec": {"networkPolicy": {"enabled": False}}})
    wait_for("NetworkPolicy deleted", lambda: not cluster_policies(kubectl, ns))
