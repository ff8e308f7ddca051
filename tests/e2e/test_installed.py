"""aerocdn as a platform team gets it: the chart installed in a cluster, the operator in a pod
of the aerocdn image, edges running that image, health as Argo CD would judge it.

Environment: KUBECONFIG (required), AEROCDN_E2E_NAMESPACE (where the chart is installed,
default aerocdn-system), AEROCDN_E2E_RELEASE (default aerocdn), AEROCDN_TEST_WAIT (seconds)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from functools import partial

import pytest
from tests.integration.operator_harness import Kubectl, condition, is_ready, wait_for
from tests.integration.test_install import ready
from tests.integration.test_operator import small_cc, small_ce
from tests.unit.test_argocd_health import health

NAMESPACE = os.environ.get("AEROCDN_E2E_NAMESPACE", "aerocdn-system")
RELEASE = os.environ.get("AEROCDN_E2E_RELEASE", "aerocdn")
OPERATOR = f"{RELEASE}-operator" if "aerocdn" in RELEASE else f"{RELEASE}-aerocdn-operator"
WAIT = float(os.environ.get("AEROCDN_TEST_WAIT", "300"))


@pytest.fixture(scope="module")
def kubectl(e2e_kubeconfig: str) -> Kubectl:
    return Kubectl(e2e_kubeconfig)


@pytest.fixture
def ns(kubectl: Kubectl) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    kubectl.run("create", "namespace", name)
    yield name
    kubectl.run("delete", "namespace", name, "--timeout=300s", check=False)


def operator_log(kubectl: Kubectl) -> str:
    return kubectl.run("logs", "-n", NAMESPACE, f"deployment/{OPERATOR}", "--all-containers",
                       "--tail=-1", check=False).stdout


def test_operator_pod_runs_locked_down_and_ready(kubectl: Kubectl) -> None:
    kubectl.run("rollout", "status", "-n", NAMESPACE, f"deployment/{OPERATOR}",
                f"--timeout={int(WAIT)}s")
    deployment = kubectl.get("deployment", OPERATOR, NAMESPACE)
    assert deployment is not None
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    pods = kubectl.items("pod", NAMESPACE, "app.kubernetes.io/component=operator")
    assert pods and all(condition(p, "Ready").get("status") == "True" for p in pods)


def test_cachecluster_and_contentedge_become_healthy(kubectl: Kubectl, ns: str) -> None:
    kubectl.apply(small_cc("cache", "local", size=1), namespace=ns)
    kubectl.apply(small_ce("site", [{"name": "local", "cacheCluster": "cache",
                                     "replicas": 1}]), namespace=ns)
    for kind, name in [("cc", "cache"), ("ce", "site")]:
        obj = wait_for(f"{kind}/{name} Ready", partial(ready, kubectl, kind, name, ns),
                       timeout=WAIT, interval=1)
        assert health(obj).status == "Healthy", health(obj)
    # the edge pods run the image the operator runs: nginx and `aerocdn edge` both ready
    pods = kubectl.items("pod", ns, "aerocdn.dev/contentedge=site")
    assert pods
    for pod in pods:
        statuses = {c["name"]: c["ready"] for c in pod["status"]["containerStatuses"]}
        assert statuses == {"nginx": True, "edge": True}


def test_missing_cachecluster_is_degraded_then_recovers(kubectl: Kubectl, ns: str) -> None:
    kubectl.apply(small_ce("orphan", [{"name": "local", "cacheCluster": "later",
                                       "replicas": 1}]), namespace=ns)
    orphan = wait_for("orphan Degraded", lambda: (c := kubectl.get("ce", "orphan", ns))
                      and condition(c, "Degraded").get("status") == "True" and c,
                      timeout=WAIT, interval=1)
    assert health(orphan).status == "Degraded"
    kubectl.apply(small_cc("later", "local", size=1), namespace=ns)
    healed = wait_for("orphan Ready", lambda: (c := kubectl.get("ce", "orphan", ns))
                      and is_ready(c) and c, timeout=WAIT, interval=1)
    assert health(healed).status == "Healthy"


def test_operator_was_never_denied_by_rbac(kubectl: Kubectl) -> None:
    log = operator_log(kubectl)
    assert log, f"no log from deployment/{OPERATOR} in {NAMESPACE}"
    # an RBAC denial names the ServiceAccount ("User \"system:serviceaccount:...\" cannot");
    # a 403 for writing into a namespace being deleted is not one
    denied = [line for line in log.splitlines()
              if "forbidden" in line.lower() and "system:serviceaccount" in line]
    assert not denied, "the operator hit RBAC limits:\n" + "\n".join(denied[:20])
