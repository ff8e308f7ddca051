"""The operator on a real API server (kwok nodes; pod readiness stands in for Aerospike:
--aerospike-probe=kubernetes), running with the least-privilege role of manifests/base."""

from __future__ import annotations

from pathlib import Path

from kubernetes import config
from tests.integration.operator_harness import (
    EXAMPLES,
    Kubectl,
    Operator,
    Recorder,
    condition,
    is_ready,
    serviceaccount_kubeconfig,
    small_cc,
    small_ce,
    wait_for,
)


def test_create_makes_children_and_reports_ready(kubectl: Kubectl, operator: Operator,
                                                 ns: str) -> None:
    kubectl.run("apply", "-n", ns, "-f", str(EXAMPLES))
    for kind, name in [("cc", "eu-west"), ("cc", "us-east"), ("cc", "ap-south"), ("ce", "web")]:
        wait_for(f"{kind}/{name} Ready", lambda k=kind, n=name: is_ready(kubectl.get(k, n, ns)))
    cc = kubectl.get("cc", "eu-west", ns)
    assert cc is not None
    assert cc["status"]["phase"] == "Ready" and cc["status"]["readyReplicas"] == 3
    assert cc["status"]["probe"] == "kubernetes"
    assert "Aerospike was not asked" in condition(cc, "Ready")["message"]
    sts = kubectl.items("statefulset", ns, "aerocdn.dev/cachecluster=eu-west")
    assert sorted(s["metadata"]["name"] for s in sts) == ["eu-west-r1", "eu-west-r2"]
    for s in sts:
        (ref,) = s["metadata"]["ownerReferences"]
        assert ref["kind"] == "CacheCluster" and ref["uid"] == cc["metadata"]["uid"]
    pods = kubectl.items("pod", ns, "aerocdn.dev/cachecluster=eu-west")
    assert all(condition(p, "aerocdn.dev/cluster-stable").get("status") == "True" for p in pods)
    ce = kubectl.get("ce", "web", ns)
    assert ce is not None and ce["status"]["ready"] == "3/3"
    deps = kubectl.items("deployment", ns, "aerocdn.dev/contentedge=web")
    assert sorted(d["metadata"]["name"] for d in deps) == [
        "web-ap-south", "web-eu-west", "web-us-east"]
    routing = kubectl.get("configmap", "web-routing", ns)
    assert routing is not None and "cacheRoutes" in routing["data"]["routes.json"]
    events = kubectl.run("get", "events", "-n", ns, "-o", "json").stdout
    assert "ReadyTrue" in events


def test_idle_resync_makes_zero_writes(kubectl: Kubectl, operator: Operator, ns: str) -> None:
    kubectl.apply(small_cc("idle", "eu-west"), namespace=ns)
    kubectl.apply(small_ce("idle", [{"name": "eu-west", "cacheCluster": "idle"}]),
                  namespace=ns)
    wait_for("idle objects Ready", lambda: is_ready(kubectl.get("cc", "idle", ns))
             and is_ready(kubectl.get("ce", "idle", ns)))
    # Settle: no write in a window of reconciles, then measure a longer window of resyncs.
    def settled() -> bool:
        before, runs = operator.writes(), operator.reconciles()
        wait_for("two resyncs", lambda: operator.reconciles() >= runs + 4)
        return operator.writes() == before
    wait_for("the operator to stop writing", settled)
    before, runs = operator.metrics(), operator.reconciles()
    wait_for("more resyncs", lambda: operator.reconciles() >= runs + 12)
    after = operator.metrics()
    written = {k: after[k] - before.get(k, 0) for k in after
               if k.startswith("aerocdn_api_writes_total") and after[k] != before.get(k, 0)}
    assert written == {}


def test_update_rolls_config_one_pod_at_a_time(kubectl: Kubectl, operator: Operator,
                                               ns: str) -> None:
    kubectl.apply(small_cc("roll", "eu-west", size=3), namespace=ns)
    wait_for("roll Ready", lambda: is_ready(kubectl.get("cc", "roll", ns)))
    old = {p["metadata"]["name"]: p["metadata"]["uid"]
           for p in kubectl.items("pod", ns, "aerocdn.dev/cachecluster=roll")}

    def pod_hash() -> str:
        sts = kubectl.get("statefulset", "roll", ns) or {}
        value: str = sts["spec"]["template"]["metadata"]["annotations"]["aerocdn.dev/config-hash"]
        return value
    old_hash = pod_hash()
    kubectl.patch("cc", "roll", ns, {"spec": {"namespaces": [
        {"name": "cache", "storage": {"size": "512Mi"}, "replicationFactor": 3}]}})
    new_hash = wait_for("a new pod template", lambda: (h := pod_hash()) != old_hash and h)
    assert "replication-factor 3" in (kubectl.get("configmap", "roll-config", ns)
                                      or {})["data"]["aerospike.conf"]
    most_down = 0

    def rolled() -> bool:
        nonlocal most_down
        pods = kubectl.items("pod", ns, "aerocdn.dev/cachecluster=roll")
        down = sum(1 for p in pods if p["metadata"].get("deletionTimestamp")
                   or condition(p, "Ready").get("status") != "True") + (3 - len(pods))
        most_down = max(most_down, down)
        return len(pods) == 3 and all(
            p["metadata"]["annotations"]["aerocdn.dev/config-hash"] == new_hash
            and p["metadata"]["uid"] != old.get(p["metadata"]["name"])
            and condition(p, "Ready").get("status") == "True" for p in pods)
    wait_for("every pod restarted with the new config", rolled, interval=0.1)
    assert most_down <= 1, "more than one pod was down at once during the roll"
    events = kubectl.run("get", "events", "-n", ns, "--field-selector",
                         "involvedObject.name=roll", "-o", "json").stdout
    assert events.count("RollingRestart") >= 3


def test_scale_subresource_scales_down_one_node_at_a_time(kubectl: Kubectl, operator: Operator,
                                                          ns: str, kubeconfig: str) -> None:
    kubectl.apply(small_cc("scale", "us-east", size=3), namespace=ns)
    wait_for("scale Ready", lambda: is_ready(kubectl.get("cc", "scale", ns)))
    with config.new_client_from_config(kubeconfig) as api:
        sets = Recorder(api, ns, "statefulset")  # every version, not polls that can miss one
        try:
            wait_for("the watch to list the StatefulSet", lambda: sets.seen)
            failed_before = operator.failed_reconciles()
            kubectl.run("scale", "cc/scale", "-n", ns, "--replicas=1")
            wait_for("a 1-node cluster", lambda: is_ready(kubectl.get("cc", "scale", ns))
                     and (kubectl.get("statefulset", "scale", ns) or {})["spec"]["replicas"] == 1)
        finally:
            sets.stop()
    seen: list[int] = []
    for _, sts in sets.seen:
        if sts["metadata"]["name"] == "scale" and (not seen or seen[-1] != sts["spec"]["replicas"]):
            seen.append(sts["spec"]["replicas"])
    assert seen == [3, 2, 1], f"StatefulSet replicas went {seen}"
    cc = kubectl.get("cc", "scale", ns)
    assert cc is not None and cc["status"]["replicas"] == 1
    assert condition(cc, "ScalingDown")["status"] == "False"
    events = kubectl.items("events", ns)
    removals = sorted(e["message"].split(" from ")[0] for e in events
                      if e["reason"] == "ScaleDown")
    assert removals == ["removing pod scale-1", "removing pod scale-2"]
    assert operator.failed_reconciles() == failed_before, "a reconcile failed mid scale-down"


def test_region_added_and_removed(kubectl: Kubectl, operator: Operator, ns: str) -> None:
    kubectl.apply(small_cc("eu", "eu-west"), small_cc("us", "us-east"), namespace=ns)
    kubectl.apply(small_ce("site", [{"name": "eu-west", "cacheCluster": "eu"}]), namespace=ns)
    wait_for("site Ready", lambda: is_ready(kubectl.get("ce", "site", ns)))
    kubectl.apply(small_ce("site", [{"name": "eu-west", "cacheCluster": "eu"},
                                    {"name": "us-east", "cacheCluster": "us"}]), namespace=ns)
    wait_for("the us-east Deployment", lambda: kubectl.get("deployment", "site-us-east", ns))
    wait_for("site Ready with 2 regions", lambda: (ce := kubectl.get("ce", "site", ns))
             and is_ready(ce) and ce["status"]["ready"] == "2/2")
    kubectl.apply(small_ce("site", [{"name": "eu-west", "cacheCluster": "eu"}]), namespace=ns)
    for kind, name in [("deployment", "site-us-east"), ("service", "site-us-east"),
                       ("configmap", "site-us-east"), ("pdb", "site-us-east")]:
        wait_for(f"{kind}/{name} deleted", lambda k=kind, n=name: kubectl.get(k, n, ns) is None)
    assert kubectl.get("deployment", "site-eu-west", ns) is not None


def test_drift_is_repaired(kubectl: Kubectl, operator: Operator, ns: str) -> None:
    kubectl.apply(small_cc("d", "eu-west"), namespace=ns)
    kubectl.apply(small_ce("drift", [{"name": "eu-west", "cacheCluster": "d", "replicas": 2}]),
                  namespace=ns)
    wait_for("drift Ready", lambda: is_ready(kubectl.get("ce", "drift", ns)))
    kubectl.patch("deployment", "drift-eu-west", ns, {"spec": {"replicas": 5}})
    kubectl.run("delete", "service", "drift-eu-west", "-n", ns)
    kubectl.patch("configmap", "d-config", ns, {"data": {"aerospike.conf": "# edited"}})
    wait_for("replicas restored", lambda: (kubectl.get("deployment", "drift-eu-west", ns)
                                           or {})["spec"]["replicas"] == 2)
    wait_for("service recreated", lambda: kubectl.get("service", "drift-eu-west", ns))
    wait_for("aerospike.conf restored", lambda: "namespace cache" in (
        kubectl.get("configmap", "d-config", ns) or {})["data"]["aerospike.conf"])


def test_missing_cachecluster_then_recovery(kubectl: Kubectl, operator: Operator,
                                            ns: str) -> None:
    kubectl.apply(small_ce("orphan", [{"name": "eu-west", "cacheCluster": "later"}]),
                  namespace=ns)
    ce = wait_for("CacheClusterMissing", lambda: (c := kubectl.get("ce", "orphan", ns))
                  and condition(c, "Ready").get("reason") == "CacheClusterMissing" and c)
    assert "CacheCluster later, which does not exist" in condition(ce, "Ready")["message"]
    assert ce["status"]["phase"] == "Degraded"
    kubectl.apply(small_cc("later", "eu-west"), namespace=ns)
    wait_for("orphan Ready", lambda: is_ready(kubectl.get("ce", "orphan", ns)))


def test_paused_cachecluster_is_left_alone(kubectl: Kubectl, operator: Operator,
                                           ns: str) -> None:
    kubectl.apply(small_cc("p", "eu-west", size=2), namespace=ns)
    wait_for("p Ready", lambda: is_ready(kubectl.get("cc", "p", ns)))
    kubectl.patch("cc", "p", ns, {"spec": {"paused": True, "size": 3}})
    wait_for("Paused", lambda: (kubectl.get("cc", "p", ns) or {}).get("status", {})
             .get("phase") == "Paused")
    sts = kubectl.get("statefulset", "p", ns)
    assert sts is not None and sts["spec"]["replicas"] == 2
    kubectl.patch("cc", "p", ns, {"spec": {"paused": False}})
    wait_for("resumed to 3", lambda: (kubectl.get("statefulset", "p", ns) or {})
             .get("spec", {}).get("replicas") == 3)


def test_unsafe_volume_shrink_is_refused(kubectl: Kubectl, operator: Operator,
                                         ns: str) -> None:
    cc = small_cc("vol", "eu-west", size=1)
    cc["spec"]["namespaces"] = [{"name": "data", "storage": {"type": "persistent",
                                                             "size": "10Gi"}}]
    kubectl.apply(cc, namespace=ns)
    wait_for("the StatefulSet", lambda: kubectl.get("statefulset", "vol", ns))
    cc["spec"]["namespaces"][0]["storage"]["size"] = "5Gi"
    cc["spec"]["image"] = "aerospike/aerospike-server:8.1.3.0"
    kubectl.apply(cc, namespace=ns)
    got = wait_for("ChangeRefused", lambda: (c := kubectl.get("cc", "vol", ns))
                   and condition(c, "Degraded").get("reason") == "ChangeRefused" and c)
    assert "shrinking volume data-data" in condition(got, "Degraded")["message"]
    sts = kubectl.get("statefulset", "vol", ns)
    assert sts is not None
    # nothing half-applied: neither the volume nor the image changed
    assert sts["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":8.1.2.0")
    claim = sts["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"


def test_operator_killed_mid_reconcile_converges_after_restart(
        kubectl: Kubectl, operator: Operator, ns: str) -> None:
    operator.kill()
    try:
        kubectl.apply(small_cc("crash", "eu-west", size=2), namespace=ns)
        kubectl.apply(small_ce("crash", [{"name": "eu-west", "cacheCluster": "crash"}]),
                      namespace=ns)
        operator.start()
        wait_for("the first child", lambda: kubectl.items("configmap", ns,
                                                          "app.kubernetes.io/managed-by=aerocdn"),
                 interval=0.02)
        operator.kill()  # mid-reconcile: some children exist, others do not yet
    finally:
        operator.start()
    wait_for("crash Ready", lambda: is_ready(kubectl.get("cc", "crash", ns))
             and is_ready(kubectl.get("ce", "crash", ns)))


def test_delete_removes_children(kubectl: Kubectl, operator: Operator, ns: str) -> None:
    kubectl.apply(small_cc("gone", "eu-west"), namespace=ns)
    kubectl.apply(small_ce("gone", [{"name": "eu-west", "cacheCluster": "gone"}]), namespace=ns)
    wait_for("gone Ready", lambda: is_ready(kubectl.get("ce", "gone", ns))
             and is_ready(kubectl.get("cc", "gone", ns)))
    kubectl.run("delete", "ce", "gone", "-n", ns)
    kubectl.run("delete", "cc", "gone", "-n", ns)
    for kind, name in [("deployment", "gone-eu-west"), ("configmap", "gone-routing"),
                       ("statefulset", "gone"), ("service", "gone-headless")]:
        wait_for(f"{kind}/{name} garbage-collected",
                 lambda k=kind, n=name: kubectl.get(k, n, ns) is None)


def test_serviceaccount_cannot_write_specs(kubectl: Kubectl, operator: Operator,
                                           ns: str, tmp_path: Path) -> None:
    sa = Kubectl(str(serviceaccount_kubeconfig(kubectl, tmp_path / "sa")))
    assert sa.run("auth", "can-i", "patch", "cacheclusters.aerocdn.dev", "--subresource=status",
                  "-n", ns, check=False).stdout.strip() == "yes"
    assert sa.run("auth", "can-i", "patch", "cacheclusters.aerocdn.dev", "-n", ns,
                  check=False).stdout.strip() == "no"
    # Secrets: read by name only - the purge token a ContentEdge's purgeTokenSecretRef names,
    # for the ContentPurges it carries out; never listed or watched
    assert sa.run("auth", "can-i", "get", "secrets", "-n", ns,
                  check=False).stdout.strip() == "yes"
    for verb in ("list", "watch", "create", "patch", "delete"):
        assert sa.run("auth", "can-i", verb, "secrets", "-n", ns,
                      check=False).stdout.strip() == "no", verb


def test_standby_takes_over_when_the_leader_is_killed(
        kubectl: Kubectl, operator: Operator, ns: str, tmp_path: Path) -> None:
    operator.stop()  # this test runs its own two replicas
    sa = serviceaccount_kubeconfig(kubectl, tmp_path / "sa")
    a = Operator(sa, tmp_path / "a.log", "--leader-election", "--identity", "replica-a")
    b = Operator(sa, tmp_path / "b.log", "--leader-election", "--identity", "replica-b")
    try:
        a.start()
        wait_for("replica-a to lead", lambda: a.metrics().get("aerocdn_leader") == 1)
        b.start()
        kubectl.apply(small_cc("ha", "eu-west", size=1), namespace=ns)
        wait_for("ha Ready", lambda: is_ready(kubectl.get("cc", "ha", ns)))
        assert b.metrics().get("aerocdn_leader") == 0
        assert b.reconciles() == 0, "the standby reconciled while the leader was alive"
        a.kill()
        kubectl.run("scale", "cc/ha", "-n", ns, "--replicas=2")
        wait_for("replica-b to take over", lambda: b.metrics().get("aerocdn_leader") == 1)
        wait_for("the standby to carry out the scale", lambda: (
            kubectl.get("statefulset", "ha", ns) or {})["spec"]["replicas"] == 2)
        lease = kubectl.get("lease", "aerocdn-operator", "aerocdn-system")
        assert lease is not None and lease["spec"]["holderIdentity"] == "replica-b"
        b.stop()  # a clean stop releases the lease at once
        lease = kubectl.get("lease", "aerocdn-operator", "aerocdn-system")
        assert lease is not None and not lease["spec"].get("holderIdentity")
    finally:
        a.stop()
        b.stop()
        operator.start()
