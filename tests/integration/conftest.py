"""The integration tier: tests against a real kube-apiserver.

With KUBECONFIG set, the tests run against that cluster (kind, or any real cluster). Without
it, a local control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok)
is built from tests/cluster and started for the session. If it cannot be built or started the
tests ERROR: the tier is never skipped silently.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.operator_harness import (
    Kubectl,
    Operator,
    install,
    serviceaccount_kubeconfig,
)

from aerocdn_localcluster import ClusterError, LocalCluster

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


def pytest_report_header(config: pytest.Config) -> str:
    target = os.environ.get("KUBECONFIG")
    if target:
        return f"integration tier: the cluster named by KUBECONFIG={target}"
    return "integration tier: a local control plane started for the session (tests/cluster)"


def _say(config: pytest.Config, message: str) -> None:
    """Print past output capture: which cluster the tier runs against is always shown."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    if capture is None:
        reporter.write_line(message)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(message)


@pytest.fixture(scope="session")
def kubeconfig(request: pytest.FixtureRequest) -> Iterator[str]:
    """Path of a kubeconfig with cluster-admin rights on the cluster under test."""
    given = os.environ.get("KUBECONFIG")
    if given:
        _say(request.config, f"\nintegration: using the cluster named by KUBECONFIG={given}")
        yield given
        return
    _say(request.config, "\nintegration: starting a local control plane (no KUBECONFIG set)")
    cluster = LocalCluster()
    try:
        cluster.start()
    except ClusterError as e:
        pytest.fail(f"the local control plane could not be built or started: {e}", pytrace=False)
    _say(
        request.config, f"integration: local control plane ready in {cluster.started_seconds:.1f} s"
    )
    try:
        yield str(cluster.kubeconfig)
    finally:
        cluster.stop()


# The operator under test: one process for the session, as the ServiceAccount of
# manifests/base (tests that need it stopped or killed start it again).
@pytest.fixture(scope="session")
def kubectl(kubeconfig: str) -> Kubectl:
    k = Kubectl(kubeconfig)
    install(k)
    return k


@pytest.fixture(scope="session")
def operator(kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    work = tmp_path_factory.mktemp("operator")
    sa = serviceaccount_kubeconfig(kubectl, work / "kubeconfig")
    op = Operator(sa, work / "operator.log").start()
    try:
        yield op
    finally:
        op.stop()
    denied = [line for line in op.log().splitlines()
              if "forbidden" in line.lower() and "system:serviceaccount" in line]
    assert not denied, "the operator hit RBAC limits:\n" + "\n".join(denied[:20])


@pytest.fixture
def ns(kubectl: Kubectl) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    kubectl.run("create", "namespace", name)
    yield name
    # wait, so objects of one test do not write while the next one counts writes
    kubectl.run("delete", "namespace", name, "--timeout=120s", check=False)
