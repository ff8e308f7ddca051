"""Installing aerocdn on a real API server: the Helm chart's objects and the kustomize base are
accepted by the apiserver, and the operator runs as the chart's ServiceAccount (token auth, so
the chart's ClusterRole is what it is allowed) with no RBAC denial, while the Argo CD health
check reads the objects it reports on."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from tests.integration.operator_harness import (
    REPO,
    Kubectl,
    Operator,
    condition,
    is_ready,
    wait_for,
)
from tests.integration.test_operator import small_cc, small_ce
from tests.unit.test_argocd_health import Health, health

CHART = REPO / "charts" / "aerocdn"
EXAMPLES = REPO / "manifests" / "examples"
# A release of its own, so its cluster-scoped names do not meet manifests/base's.
RELEASE, RELEASE_NS = "install-test", "aerocdn-install-test"
CRD_NAMES = ("crd/cacheclusters.aerocdn.dev", "crd/contentedges.aerocdn.dev")


def render(values: dict[str, Any] | None = None, *, name: str = RELEASE,
           namespace: str = RELEASE_NS) -> list[dict[str, Any]]:
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values, name=name, namespace=namespace, is_install=True)
    return [d for path, text in sorted(manifests.items()) if path.endswith(".yaml")
            for d in yaml.safe_load_all(text) if d]


@pytest.fixture(scope="module")
def kubectl(kubeconfig: str) -> Iterator[Kubectl]:
    """Cluster-admin kubectl, with the chart's CRDs really applied and Established."""
    k = Kubectl(kubeconfig)
    k.run("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    k.run("wait", "--for=condition=Established", "--timeout=60s", *CRD_NAMES)
    k.run("create", "namespace", RELEASE_NS, check=False)
    yield k
    k.run("delete", "clusterrolebinding,clusterrole", f"{RELEASE}-aerocdn-operator",
          "--ignore-not-found", check=False)
    k.run("delete", "namespace", RELEASE_NS, "--ignore-not-found", "--wait=false", check=False)


def server_dry_run(kubectl: Kubectl, objects: list[dict[str, Any]]) -> str:
    out = kubectl.run("apply", "--dry-run=server", "-f", "-",
                      input=yaml.safe_dump_all(objects))
    return out.stdout


@pytest.mark.parametrize("values", [
    None,
    {"replicas": 2, "watchNamespaces": ["cdn-eu", "cdn-us"], "logLevel": "DEBUG",
     "aerospikeProbe": "kubernetes", "metrics": {"port": 9100},
     "nodeSelector": {"kubernetes.io/os": "linux"},
     "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}]},
], ids=["defaults", "non-default"])
def test_apiserver_accepts_the_charts_objects(kubectl: Kubectl,
                                             values: dict[str, Any] | None) -> None:
    objects = render(values)
    lines = server_dry_run(kubectl, objects).splitlines()
    assert all(line.endswith("(server dry run)") for line in lines), lines
    accepted = {(line.split("/")[0].split(".")[0], line.split("/")[1].split()[0])
                for line in lines}
    assert accepted == {(o["kind"].lower(), o["metadata"]["name"]) for o in objects}


def test_apiserver_accepts_the_kustomize_install(kubectl: Kubectl) -> None:
    # the namespace exists for real first: a dry run cannot create what the rest goes into
    kubectl.run("apply", "-f", str(REPO / "manifests" / "base" / "namespace.yaml"))
    out = kubectl.run("apply", "--dry-run=server", "-k", str(REPO / "manifests")).stdout
    for line in ("namespace/aerocdn-system", "customresourcedefinition.apiextensions.k8s.io/"
                 "cacheclusters.aerocdn.dev", "serviceaccount/aerocdn",
                 "clusterrole.rbac.authorization.k8s.io/aerocdn-operator",
                 "clusterrolebinding.rbac.authorization.k8s.io/aerocdn-operator",
                 "deployment.apps/aerocdn-operator"):
        assert line in out, f"{line} missing from:\n{out}"


def token_kubeconfig(kubectl: Kubectl, namespace: str, serviceaccount: str, path: Path) -> Path:
    """A kubeconfig that authenticates as the given ServiceAccount with a bound token."""
    token = kubectl.run("create", "token", serviceaccount, "-n", namespace,
                        "--duration=2h").stdout.strip()
    admin = yaml.safe_load(Path(kubectl.kubeconfig).read_text())
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "c", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa"}}],
    }))
    return path


@pytest.fixture(scope="module")
def watched(kubectl: Kubectl) -> Iterator[str]:
    name = f"install-{uuid.uuid4().hex[:8]}"
    kubectl.run("create", "namespace", name)
    yield name
    kubectl.run("delete", "namespace", name, "--timeout=120s", check=False)


@pytest.fixture(scope="module")
def chart_operator(kubectl: Kubectl, watched: str,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    """The chart's ServiceAccount and RBAC really applied; the operator run with the command
    line the chart renders (watching one namespace), authenticated as that ServiceAccount."""
    objects = render({"watchNamespaces": [watched], "aerospikeProbe": "kubernetes"})
    rbac = [o for o in objects if o["kind"] in ("ServiceAccount", "ClusterRole",
                                                "ClusterRoleBinding", "Role", "RoleBinding")]
    assert len(rbac) == 6  # ... and the aerocdn-purger ClusterRole (bound by teams)
    kubectl.apply(*rbac)
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "command" not in container  # the image's entrypoint (tini) runs the args
    assert container["args"][:2] == ["aerocdn", "run"]
    # the harness picks a free loopback port for /metrics and /healthz
    args = [a for a in container["args"][2:] if not a.startswith("--metrics-port")]
    assert "--leader-election" in args
    # what POD_NAMESPACE (from the downward API) tells the pod: the Lease is in the release's
    args.append(f"--leader-election-namespace={RELEASE_NS}")
    sa = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    work = tmp_path_factory.mktemp("chart-operator")
    op = Operator(token_kubeconfig(kubectl, RELEASE_NS, sa, work / "kubeconfig"),
                  work / "operator.log", *args)
    op.start()
    try:
        yield op
    finally:
        op.stop()
    denied = [line for line in op.log().splitlines()
              if "forbidden" in line.lower() and "system:serviceaccount" in line]
    assert not denied, "the chart's ServiceAccount hit RBAC limits:\n" + "\n".join(denied[:20])


def ready(kubectl: Kubectl, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    """The object once it is Ready at its current generation, else None."""
    obj = kubectl.get(kind, name, namespace)
    return obj if is_ready(obj) else None


def test_operator_as_the_charts_serviceaccount_makes_examples_healthy(
        kubectl: Kubectl, chart_operator: Operator, watched: str) -> None:
    kubectl.run("apply", "-n", watched, "-f", str(EXAMPLES))
    for kind, name in [("cc", "eu-west"), ("cc", "us-east"), ("cc", "ap-south"), ("ce", "web")]:
        obj = wait_for(f"{kind}/{name} Ready", partial(ready, kubectl, kind, name, watched))
        assert health(obj).status == "Healthy", (kind, name, health(obj))
    assert kubectl.items("deployment", watched, "aerocdn.dev/contentedge=web")


def test_argocd_health_follows_live_objects(kubectl: Kubectl, chart_operator: Operator,
                                            watched: str) -> None:
    kubectl.apply(small_ce("orphan", [{"name": "eu-west", "cacheCluster": "later"}]),
                  namespace=watched)
    orphan = wait_for("orphan Degraded", lambda: (c := kubectl.get("ce", "orphan", watched))
                      and condition(c, "Degraded").get("status") == "True" and c)
    verdict = health(orphan)
    assert verdict.status == "Degraded"
    assert "CacheCluster later, which does not exist" in verdict.message
    kubectl.apply(small_cc("later", "eu-west"), namespace=watched)
    healed = wait_for("orphan Ready", lambda: (c := kubectl.get("ce", "orphan", watched))
                      and is_ready(c) and c)
    assert health(healed).status == "Healthy"
    # From a settled cluster (else its own Progressing=True, e.g. "waiting for pods", is
    # what Argo CD reports, whatever the generation says), checked again once the operator
    # is stopped: a reconcile between the wait and the stop may have written another status
    # (seen once in CI: Progressing "waiting for pods" after the wait had seen it settled).
    def settled() -> dict[str, Any] | None:
        c = kubectl.get("cc", "later", watched)
        return c if c and is_ready(c) and condition(c, "Progressing").get("status") != "True" \
            else None

    for _ in range(5):
        wait_for("later Ready", settled)
        chart_operator.stop()
        if settled():
            break
        chart_operator.start()
    else:
        raise AssertionError("later's status never stayed settled until the operator stopped")

    # A spec change the operator has not seen yet: Argo CD must not call the old status healthy.
    try:
        kubectl.patch("cc", "later", watched, {"spec": {"size": 3}})
        stale = kubectl.get("cc", "later", watched)
        assert stale is not None
        generation = stale["metadata"]["generation"]
        assert health(stale) == Health(
            "Progressing", f"Waiting for the aerocdn operator to observe generation "
                           f"{generation} (status is of generation {generation - 1})")
    finally:
        chart_operator.start()
    # A growing cluster stays Ready while it is Progressing: Argo CD says Healthy once it
    # has settled at the new generation.
    current = wait_for("later Healthy at its new generation",
                       lambda: (c := kubectl.get("cc", "later", watched)) and is_ready(c)
                       and health(c).status == "Healthy" and c)
    assert current["status"]["observedGeneration"] == current["metadata"]["generation"]
