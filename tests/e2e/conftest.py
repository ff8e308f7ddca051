"""The e2e tier: aerocdn as installed in a real cluster (the Helm chart, the image), on nodes
that really run pods.

- With KUBECONFIG set: the cluster it names, where the chart is installed (`make kind-e2e`
  creates a kind cluster, loads the image, installs the chart and runs this tier).
- Without it: the local cluster with a real node (kubelet + containerd + kube-proxy in a
  network namespace, CoreDNS; see docs/testing.md) is started for the session, the image is
  built with scripts/image.sh (cached by the hash of what goes into it) and imported into the
  node, and the chart is installed with the Helm library (helm-python-sdk, Helm v4; no helm
  binary), its operator pods pinned to the real node.

In CI (`CI` set) a cluster that cannot be started is an ERROR of every test here, never a
skip. Elsewhere, a machine that cannot run a real node (no root, missing packages) skips the
tier with that reason.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml
from tests.conftest import REPO

from aerocdn_localcluster import ClusterError, LocalCluster, nodeplan, realnode

HERE = Path(__file__).resolve().parent
NAMESPACE = os.environ.get("AEROCDN_E2E_NAMESPACE", "aerocdn-system")
RELEASE = os.environ.get("AEROCDN_E2E_RELEASE", "aerocdn")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


# The real-node cluster of this tier, stopped as soon as its last test is done, so that it
# does not run beside the integration tier's control plane for the rest of the session.
_clusters: list[LocalCluster] = []


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if nextitem is None or HERE not in Path(str(nextitem.path)).resolve().parents:
        while _clusters:
            _clusters.pop().stop()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: aerocdn installed on real nodes (local real node, or KUBECONFIG)")


@dataclass
class E2E:
    """The cluster under test."""

    kubeconfig: str
    # Local real node only: the cluster, the node's name and its network namespace.
    cluster: LocalCluster | None = None
    node: str | None = None
    # What pods need to land on a real node (nodeSelector, tolerations), as chart values and
    # as a ContentEdge/CacheCluster `placement`.
    placement: dict[str, Any] = field(default_factory=dict)
    pull_policy: str = "IfNotPresent"

    def host_run(self, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """argv run on the real node's host side (its network namespace): what a client on the
        node sees of Services and pods."""
        assert self.cluster is not None and self.node is not None
        return subprocess.run(["ip", "netns", "exec", self.cluster.netns(self.node), *argv],
                              capture_output=True, text=True, timeout=timeout, check=False)


def _cached_archive(kind: str, tag: str, script: str,
                    args: Callable[[Path], list[str]]) -> Path:
    """``~/.cache/aerocdn/images/<kind>-<tag>.tar`` (or under AEROCDN_CACHE), built by
    ``scripts/<script> args(archive)`` unless it exists; older archives of the kind go."""
    cache = Path(os.environ.get("AEROCDN_CACHE") or Path.home() / ".cache" / "aerocdn")
    archive = cache / "images" / f"{kind}-{tag}.tar"
    if not archive.is_file():
        archive.parent.mkdir(parents=True, exist_ok=True)
        for old in archive.parent.glob(f"{kind}-*.tar"):
            old.unlink()
        result = subprocess.run(["bash", str(REPO / "scripts" / script), *args(archive)],
                                cwd=REPO, capture_output=True, text=True, check=False,
                                timeout=1800)
        if result.returncode != 0:
            raise ClusterError(f"scripts/{script} failed:\n" + result.stderr[-3000:])
    return archive


def image_archive() -> Path:
    """The aerocdn image as a docker-archive, built by scripts/image.sh unless one exists for
    exactly these sources (the hash covers everything the Dockerfile copies)."""
    given = os.environ.get("AEROCDN_IMAGE_ARCHIVE")
    if given:
        return Path(given)
    h = hashlib.sha256()
    sources = [REPO / "Dockerfile", REPO / "pyproject.toml", REPO / "README.md",
               REPO / "scripts" / "image.sh", REPO / "scripts" / "nginx-module.sh"]
    for tree in ("operator", "nginx-modules"):
        sources += sorted(p for p in (REPO / tree).rglob("*")
                          if p.is_file() and "__pycache__" not in p.parts)
    for p in sources:
        h.update(str(p.relative_to(REPO)).encode() + b"\0" + p.read_bytes())
    return _cached_archive("aerocdn", h.hexdigest()[:16], "image.sh",
                           lambda archive: ["--archive", str(archive)])


def aerospike_image_archive(asd: Path) -> tuple[Path, str]:
    """An Aerospike server image made from the asd binary `asd` (scripts/aerospike-image.sh)
    as a docker-archive, and the image name pods use; cached by the hash of the binary and of
    the script."""
    h = hashlib.sha256()
    for p in (asd, REPO / "scripts" / "aerospike-image.sh"):
        h.update(p.read_bytes())
    tag = h.hexdigest()[:16]
    name = f"aerocdn-aerospike:{tag}"
    return _cached_archive("aerospike", tag, "aerospike-image.sh",
                           lambda archive: [str(asd), str(archive), name]), name


def chart_values(e2e: E2E, aerospike_probe: str = "kubernetes") -> dict[str, Any]:
    return {
        "image": {"pullPolicy": e2e.pull_policy},
        # CacheCluster pods stay on kwok nodes (no Aerospike server in CI): readiness stands
        # in; the live tier (test_aerospike_pods_live.py) runs real Aerospike pods and asks them.
        "aerospikeProbe": aerospike_probe,
        "logLevel": "INFO",
        **e2e.placement,
    }


def install_chart(e2e: E2E, aerospike_probe: str = "kubernetes") -> None:
    import helm_python as helm

    config = helm.Config(kubeconfig_path=e2e.kubeconfig, namespace=NAMESPACE)
    try:
        with helm.Chart.load(str(REPO / "charts" / "aerocdn")) as chart:
            config.install(chart, RELEASE, chart_values(e2e, aerospike_probe),
                           namespace=NAMESPACE, create_namespace=True, wait="watcher",
                           timeout=300)
    finally:
        config.close()


def real_node_placement() -> dict[str, Any]:
    """What pods need to land on a real node (nodeSelector, toleration)."""
    return {
        "nodeSelector": {nodeplan.NODE_KIND_LABEL: nodeplan.REAL},
        "tolerations": [{**nodeplan.REAL_NODE_TAINT, "operator": "Equal"}],
    }


def fail_or_skip(why: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"e2e: the real-node cluster could not be started: {why}", pytrace=False)
    pytest.skip(f"e2e needs a real node (root, scripts/bootstrap.sh) or KUBECONFIG: {why}")


@pytest.fixture(scope="session")
def e2e(request: pytest.FixtureRequest) -> Iterator[E2E]:
    given = os.environ.get("KUBECONFIG")
    if given:
        yield E2E(kubeconfig=given)
        return
    try:
        realnode.check_host()
        archive = image_archive()
    except ClusterError as e:
        fail_or_skip(str(e))
    cluster = LocalCluster(real_nodes=1, images=(archive,))
    try:
        cluster.start()
    except ClusterError as e:
        fail_or_skip(str(e))
    _clusters.append(cluster)
    node = cluster.real_nodes[0].name
    env = E2E(kubeconfig=str(cluster.kubeconfig), cluster=cluster, node=node,
              placement=real_node_placement(), pull_policy="Never")
    try:
        install_chart(env)
        yield env
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def e2e_kubeconfig(e2e: E2E) -> str:
    return e2e.kubeconfig


def dump(objs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(objs)
