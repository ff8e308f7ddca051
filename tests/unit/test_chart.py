"""The Helm chart, rendered and linted by the real Helm library (helm-python-sdk), and the
kustomize base it must stay equivalent to."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from tests.conftest import CRDS, REPO

from aerocdn.api.contentedge import DEFAULT_IMAGE
from aerocdn.cli import parser

CHART = REPO / "charts" / "aerocdn"
K8S_VERSION = "1.34.0"
RELEASE, NAMESPACE = "aerocdn", "aerocdn-system"
# Kinds that are not in the Kubernetes OpenAPI schemas (validated field by field below).
NOT_BUILTIN = {"ServiceMonitor"}

NON_DEFAULT: dict[str, Any] = {
    "image": {"repository": "registry.example/cdn/aerocdn", "tag": "0.2.0-rc.1",
              "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "regcred"}],
    "replicas": 3,
    "watchNamespaces": ["cdn-eu", "cdn-us"],
    "logLevel": "DEBUG",
    "aerospikeProbe": "kubernetes",
    "resyncSeconds": 30,
    "metrics": {"port": 9100, "service": {"type": "ClusterIP", "port": 9100},
                "serviceMonitor": {"enabled": True, "interval": "15s",
                                   "labels": {"release": "prom"}}},
    "resources": {"requests": {"cpu": "250m", "memory": "256Mi"},
                  "limits": {"cpu": 1, "memory": "512Mi"}},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops",
                     "effect": "NoSchedule"}],
    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "podAffinityTerm": {
            "topologyKey": "kubernetes.io/hostname",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "operator"}}}}]}},
    "priorityClassName": "system-cluster-critical",
    "podAnnotations": {"example.com/team": "cdn"},
    "serviceAccount": {"annotations": {"example.com/role": "aerocdn"}},
}


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    keys = [loader.construct_object(k) for k, _ in node.value]
    dupes = sorted({str(k) for k in keys if keys.count(k) > 1})
    if dupes:
        raise yaml.constructor.ConstructorError(None, None, f"duplicate keys {dupes}",
                                                node.start_mark)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                 _construct_mapping)


def load_all(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.load_all(text, Loader=_UniqueKeyLoader) if d]


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def render(chart: helm.Chart, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects: list[dict[str, Any]] = []
    for path, text in sorted(manifests.items()):
        if path.endswith(".yaml"):
            objects += load_all(text)
    return objects


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind
                and (name is None or o["metadata"]["name"] == name)]
    return found


def operator_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    c: dict[str, Any] = container
    return c


def run_options(container: dict[str, Any]) -> Any:
    """The container's command line, parsed by the real `aerocdn` argument parser."""
    argv = [*container.get("command", []), *container.get("args", [])]
    assert argv[:2] == ["aerocdn", "run"], argv
    return parser().parse_args(argv[1:])


def kinds_and_names(objects: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(o["kind"], o["metadata"]["name"]) for o in objects}


# --- rendering with defaults ------------------------------------------------------------------

def test_defaults_render_the_operator_install(chart: helm.Chart) -> None:
    objects = render(chart)
    assert kinds_and_names(objects) == {
        ("ServiceAccount", "aerocdn"), ("ClusterRole", "aerocdn-operator"),
        ("ClusterRole", "aerocdn-purger"),
        ("ClusterRoleBinding", "aerocdn-operator"), ("Deployment", "aerocdn-operator"),
        ("Service", "aerocdn-operator-metrics"), ("Role", "aerocdn-leader-election"),
        ("RoleBinding", "aerocdn-leader-election")}
    for obj in objects:
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["kind"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"


def test_default_image_is_the_one_edges_default_to(chart: helm.Chart) -> None:
    container = operator_container(render(chart))
    assert container["image"] == DEFAULT_IMAGE == "aerocdn:0.1.0"
    assert container["imagePullPolicy"] == "IfNotPresent"


def test_two_replicas_with_leader_election_by_default(chart: helm.Chart) -> None:
    objects = render(chart)
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}}
    container = operator_container(objects)
    options = run_options(container)
    assert options.leader_election is True
    # the Lease lives in the release namespace and names the pod holding it
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    assert env == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    assert options.namespace == []  # every namespace
    assert (options.log_level, options.aerospike_probe) == ("INFO", "aerospike")


def test_one_replica_without_leader_election_recreates(chart: helm.Chart) -> None:
    objects = render(chart, {"replicas": 1, "leaderElection": {"enabled": False}})
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert run_options(operator_container(objects)).leader_election is False


def test_several_replicas_without_leader_election_are_refused(chart: helm.Chart) -> None:
    values = {"replicas": 2, "leaderElection": {"enabled": False}}
    with pytest.raises(helm.HelmValuesError) as refused:
        render(chart, values)
    assert "at '/leaderElection/enabled': value must be true" in str(refused.value)


def test_probes_hit_healthz_and_readyz_on_the_metrics_port(chart: helm.Chart) -> None:
    for values in (None, NON_DEFAULT):
        objects = render(chart, values)
        container = operator_container(objects)
        port = run_options(container).metrics_port
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"metrics": port}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        service = one(objects, "Service")
        assert service["spec"]["ports"][0]["targetPort"] == "metrics"
        pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()


def test_the_purger_role_may_purge_but_not_edit_contentedges(chart: helm.Chart) -> None:
    rules = one(render(chart), "ClusterRole", "aerocdn-purger")["rules"]

    def allowed(resource: str, verb: str) -> bool:
        return any("aerocdn.dev" in r["apiGroups"] and resource in r["resources"]
                   and verb in r["verbs"] for r in rules)

    assert allowed("contentpurges", "create") and allowed("contentpurges", "get")
    assert allowed("contentedges", "get")
    for verb in ("create", "update", "patch", "delete"):
        assert not allowed("contentedges", verb), verb
    assert not allowed("contentpurges/status", "patch")  # only the operator reports
    assert all(r["apiGroups"] == ["aerocdn.dev"] for r in rules)


def test_pod_is_locked_down(chart: helm.Chart) -> None:
    for values in (None, NON_DEFAULT):
        objects = render(chart, values)
        pod = one(objects, "Deployment")["spec"]["template"]["spec"]
        assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 10001,
                                          "runAsGroup": 10001,
                                          "seccompProfile": {"type": "RuntimeDefault"}}
        assert operator_container(objects)["securityContext"] == {
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "privileged": False, "capabilities": {"drop": ["ALL"]}}
        assert pod["serviceAccountName"] == one(objects, "ServiceAccount")["metadata"]["name"]
        (subject,) = one(objects, "ClusterRoleBinding")["subjects"]
        assert subject == {"kind": "ServiceAccount", "name": "aerocdn", "namespace": NAMESPACE}


def test_secrets_are_read_never_written(chart: helm.Chart) -> None:
    """Enterprise CacheClusters name Secrets the operator reads (TLS, credentials), and
    ContentEdges their purge token: the operator's role may get, list and watch them (the
    watch keeps only the ones CacheClusters name), nothing else; the purger role none."""
    objects = render(chart)
    roles = [o for o in objects if o["kind"] == "ClusterRole"]
    purger = one(objects, "ClusterRole", "aerocdn-purger")
    assert not [r for r in purger["rules"] if "secrets" in r["resources"]]
    (operator_role,) = [r for r in roles if r is not purger]
    rules = operator_role["rules"]
    secret_rules = [r for r in rules if "secrets" in r["resources"]]
    assert secret_rules == [{"apiGroups": [""], "resources": ["secrets"],
                             "verbs": ["get", "list", "watch"]}]


# --- rendering with non-default values --------------------------------------------------------

def test_non_default_values_reach_the_operator(chart: helm.Chart) -> None:
    objects = render(chart, NON_DEFAULT)
    deployment = one(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = operator_container(objects)
    options = run_options(container)
    assert container["image"] == "registry.example/cdn/aerocdn:0.2.0-rc.1"
    assert container["imagePullPolicy"] == "Always"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert options.namespace == ["cdn-eu", "cdn-us"]
    assert options.log_level == "DEBUG"
    assert options.aerospike_probe == "kubernetes"
    assert options.resync_seconds == 30
    assert options.metrics_port == 9100
    assert options.leader_election is True
    assert one(objects, "Deployment")["spec"]["replicas"] == 3
    assert container["resources"] == NON_DEFAULT["resources"]
    for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName"):
        assert pod[key] == NON_DEFAULT[key], key
    assert deployment["spec"]["template"]["metadata"]["annotations"] == {
        "example.com/team": "cdn"}
    assert one(objects, "ServiceAccount")["metadata"]["annotations"] == {
        "example.com/role": "aerocdn"}


def test_service_monitor_is_optional_and_scrapes_the_metrics_service(
        chart: helm.Chart) -> None:
    assert "ServiceMonitor" not in {o["kind"] for o in render(chart)}
    objects = render(chart, NON_DEFAULT)
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= \
        service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint == {"port": "metrics", "path": "/metrics", "interval": "15s",
                        "scrapeTimeout": "10s"}
    assert {p["name"] for p in service["spec"]["ports"]} == {"metrics"}


def test_service_monitor_without_the_service_fails_with_a_reason(chart: helm.Chart) -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape("needs metrics.service.enabled")):
        render(chart, {"metrics": {"service": {"enabled": False},
                                   "serviceMonitor": {"enabled": True}}})


@pytest.mark.parametrize("values", [None, NON_DEFAULT, {"rbac": {"create": False},
                                                          "serviceAccount": {"create": False,
                                                                             "name": "mine"}}],
                         ids=["defaults", "non-default", "bring-your-own-sa"])
def test_every_rendered_object_validates_against_kubernetes_schemas(
        chart: helm.Chart, values: dict[str, Any] | None) -> None:
    objects = render(chart, values)
    assert objects
    for obj in objects:
        if obj["kind"] in NOT_BUILTIN:
            continue
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_chart_crds_are_the_generated_crds(chart: helm.Chart) -> None:
    top = sorted(p.name for p in CRDS.glob("aerocdn.dev_*.yaml"))
    assert top, "no generated CRDs in crds/"
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == top
    for name in top:
        assert (CHART / "crds" / name).read_bytes() == (CRDS / name).read_bytes(), (
            f"charts/aerocdn/crds/{name} differs from crds/{name}: "
            f"cp crds/aerocdn.dev_*.yaml charts/aerocdn/crds/")
    assert sorted(c["filename"] for c in chart.crds) == sorted(f"aerocdn/crds/{n}" for n in top)


# --- lint and values schema -------------------------------------------------------------------

@pytest.mark.parametrize("values", [None, NON_DEFAULT], ids=["defaults", "non-default"])
def test_lint_is_clean(values: dict[str, Any] | None) -> None:
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE,
                       kube_version=f"v{K8S_VERSION}")
    assert report["errors"] == []
    # severity 1 is informational (e.g. "icon is recommended"); 2 warning, 3 error
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize(("values", "message"), [
    ({"replicas": "two"}, "at '/replicas': got string, want integer"),
    ({"replicas": -1}, "at '/replicas'"),
    ({"logLevel": "verbose"}, "at '/logLevel': value must be one of 'DEBUG', 'INFO'"),
    ({"aerospikeProbe": "guess"}, "at '/aerospikeProbe': value must be one of 'aerospike'"),
    ({"watchNamespaces": ["Team_A"]}, "at '/watchNamespaces/0': 'Team_A' does not match"),
    ({"watchNamespaces": "cdn"}, "at '/watchNamespaces': got string, want array"),
    ({"image": {"repository": "aerocdn", "pullPolicy": "Sometimes"}},
     "at '/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'"),
    ({"metrics": {"port": 0}}, "at '/metrics/port'"),
    ({"replica": 2}, "additional properties 'replica' not allowed"),
    ({"resources": {"requests": {"memory": "lots"}}}, "at '/resources/requests/memory'"),
    ({"metrics": {"serviceMonitor": {"enabled": True, "interval": "often"}}},
     "at '/metrics/serviceMonitor/interval'"),
], ids=lambda v: str(v)[:40])
def test_bad_values_are_refused_with_a_readable_message(
        chart: helm.Chart, values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmValuesError) as refused:
        render(chart, values)  # what `helm install`/`helm template` do with these values
    text = str(refused.value)
    assert message in text
    assert "aerocdn" in text  # the chart is named
    with pytest.raises(helm.HelmValuesError, match=re.escape(message)):
        chart.validate_schema(chart.merge_values(values))


def test_default_values_satisfy_the_schema(chart: helm.Chart) -> None:
    chart.validate_schema(chart.merge_values(None))
    chart.validate_schema(chart.merge_values(NON_DEFAULT))


# --- the kustomize base equals the chart's defaults -------------------------------------------

@pytest.fixture(scope="module")
def kustomize() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not on PATH: cannot run `kubectl kustomize manifests/`")
    out = subprocess.run([kubectl, "kustomize", str(REPO / "manifests")], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, f"kubectl kustomize manifests/ failed: {out.stderr}"
    return load_all(out.stdout)


def test_kustomize_renders_crds_namespace_rbac_and_operator(
        kustomize: list[dict[str, Any]]) -> None:
    assert {"CustomResourceDefinition", "Namespace", "ServiceAccount", "ClusterRole",
            "ClusterRoleBinding", "Deployment"} <= {o["kind"] for o in kustomize}
    for obj in kustomize:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_kustomize_base_equals_chart_defaults(chart: helm.Chart,
                                              kustomize: list[dict[str, Any]]) -> None:
    objects = render(chart)
    base = [o for o in kustomize if o["kind"] not in ("CustomResourceDefinition", "Namespace")]
    # The chart installs into the release namespace (helm install -n aerocdn-system
    # --create-namespace) and its CRDs come from crds/; it also exposes the metrics port.
    chart_only = kinds_and_names(objects) - kinds_and_names(base)
    assert chart_only <= {("Service", "aerocdn-operator-metrics")}
    assert kinds_and_names(base) <= kinds_and_names(objects)
    namespaces = {o["metadata"].get("namespace") for o in base} - {None}
    assert namespaces == {NAMESPACE} == {o["metadata"]["name"] for o in kustomize
                                         if o["kind"] == "Namespace"}
    for role in ("aerocdn-operator", "aerocdn-purger"):
        assert one(base, "ClusterRole", role)["rules"] == one(objects, "ClusterRole", role)["rules"]
    assert one(base, "Role")["rules"] == one(objects, "Role")["rules"]
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        assert one(base, kind)["roleRef"] == one(objects, kind)["roleRef"]
        assert one(base, kind)["subjects"] == one(objects, kind)["subjects"]
    crds = {o["metadata"]["name"]: o for o in kustomize if o["kind"] == "CustomResourceDefinition"}
    assert crds == {d["metadata"]["name"]: d for c in chart.crds for d in load_all(c["data"])}

    base_deploy, chart_deploy = one(base, "Deployment"), one(objects, "Deployment")
    assert base_deploy["spec"]["replicas"] == chart_deploy["spec"]["replicas"]
    assert base_deploy["spec"]["strategy"] == chart_deploy["spec"]["strategy"]
    base_pod = base_deploy["spec"]["template"]["spec"]
    chart_pod = chart_deploy["spec"]["template"]["spec"]
    assert base_pod["serviceAccountName"] == chart_pod["serviceAccountName"]
    assert base_pod["securityContext"] == chart_pod["securityContext"]
    (base_c,), chart_c = base_pod["containers"], operator_container(objects)
    assert vars(run_options(base_c)) == vars(run_options(chart_c))
    for key in ("image", "ports", "livenessProbe", "readinessProbe", "resources",
                "volumeMounts"):
        assert base_c[key] == chart_c[key], key
    assert base_pod["volumes"] == chart_pod["volumes"]
    assert {k: v for k, v in chart_c["securityContext"].items() if k != "privileged"} == \
        base_c["securityContext"]

