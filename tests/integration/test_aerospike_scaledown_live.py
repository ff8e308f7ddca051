"""A scale-down decided by what a real Aerospike cluster answers (--aerospike-probe=aerospike),
on the local control plane. Three asd processes stand in for the three pods' containers
(reached through --aerospike-address); when the operator removes a pod, the test stops that
pod's asd as the kubelet would. Runs when AEROCDN_TEST_ASD names an asd binary."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.aerospike.test_rendered_conf_live import free_ports
from tests.integration.operator_harness import (
    Kubectl,
    Operator,
    condition,
    is_ready,
    serviceaccount_kubeconfig,
    wait_for,
)

from aerocdn.api import CacheCluster, parse_object
from aerocdn.render.cachecluster import PORTS, render_cachecluster

ENV = "AEROCDN_TEST_ASD"
# Skipped before any fixture is set up: the session's operator must not start for nothing
# (it would then also reconcile what other modules' own operators manage).
pytestmark = [pytest.mark.aerospike, pytest.mark.skipif(
    not os.environ.get(ENV), reason=f"{ENV}=/path/to/asd is not set: no Aerospike server "
    "binary to start")]
RECORDS = 20000


def cluster_spec(name: str) -> dict:
    return {"apiVersion": "aerocdn.dev/v1alpha1", "kind": "CacheCluster",
            "metadata": {"name": name},
            "spec": {"region": "eu-west", "size": 3, "namespaces": [
                {"name": "cache", "replicationFactor": 2, "storage": {"size": "512Mi"}}]}}


class Node:
    def __init__(self, asd: str, conf: str, workdir: Path):
        workdir.mkdir(parents=True)
        for sub in ("work/smd", "work/udf/lua"):
            (workdir / sub).mkdir(parents=True)
        conf = conf.replace("/opt/aerospike/work", str(workdir / "work"))
        (workdir / "aerospike.conf").write_text(conf)
        self.log = (workdir / "asd.log").open("wb")
        self.proc = subprocess.Popen([asd, "--config-file", str(workdir / "aerospike.conf"),
                                      "--foreground"], stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


@pytest.fixture
def asd_nodes(tmp_path: Path) -> Iterator[list[tuple[Node, int]]]:
    asd = os.environ.get(ENV, "")
    if not asd:
        pytest.skip(f"{ENV}=/path/to/asd is not set: no Aerospike server binary to start")
    assert shutil.which(asd), f"{ENV}={asd} is not an executable"
    cc = parse_object({**cluster_spec("live"), "metadata": {"name": "live", "namespace": "x"}})
    assert isinstance(cc, CacheCluster)
    (cm,) = [o for o in render_cachecluster(cc) if o["kind"] == "ConfigMap"]
    template: str = cm["data"]["aerospike.conf"]
    ports = [free_ports(4) for _ in range(3)]
    nodes = []
    try:
        for i, (service, fabric, heartbeat, admin) in enumerate(ports):
            conf = template.replace("__POD_IP__", "127.0.0.1")
            conf = conf.replace("address any", "address 127.0.0.1")
            conf = re.sub(r"        mesh-seed-address-port .*\n", "", conf)
            seeds = "".join(f"        mesh-seed-address-port 127.0.0.1 {p[2]}\n"
                            for j, p in enumerate(ports) if j != i)
            conf = conf.replace(f"port {PORTS['heartbeat']}\n",
                                f"port {heartbeat}\n{seeds}")
            for name, port in (("service", service), ("fabric", fabric), ("admin", admin)):
                conf = conf.replace(f"port {PORTS[name]}\n", f"port {port}\n")
            nodes.append((Node(asd, conf, tmp_path / f"node{i}"), service))
        yield nodes
    finally:
        for node, _ in nodes:
            node.stop()


def load(port: int) -> None:
    import aerospike

    client = aerospike.client({"hosts": [("127.0.0.1", port)]}).connect()
    try:
        for i in range(RECORDS):
            client.put(("cache", "t", i), {"v": i})
    finally:
        client.close()


def count(port: int) -> int:
    import aerospike

    client = aerospike.client({"hosts": [("127.0.0.1", port)]}).connect()
    try:
        return sum(client.exists(("cache", "t", i))[1] is not None for i in range(RECORDS))
    finally:
        client.close()


def test_scale_down_waits_for_aerospike_migrations_and_loses_nothing(
        kubectl: Kubectl, operator: Operator, asd_nodes: list[tuple[Node, int]],
        tmp_path: Path) -> None:
    operator.stop()  # the session's operator judges by pod readiness; this one asks Aerospike
    ns = f"live-{uuid.uuid4().hex[:6]}"
    kubectl.run("create", "namespace", ns)
    sa = serviceaccount_kubeconfig(kubectl, tmp_path / "sa")
    addresses = [f"--aerospike-address=live-{i}=127.0.0.1:{port}"
                 for i, (_, port) in enumerate(asd_nodes)]
    op = Operator(sa, tmp_path / "operator.log", "--aerospike-probe=aerospike", *addresses)
    try:
        wait_for("a 3-node Aerospike cluster", lambda: _size(asd_nodes[0][1]) == 3)
        load(asd_nodes[0][1])
        op.start()
        kubectl.apply(cluster_spec("live"), namespace=ns)
        cc = wait_for("live Ready from Aerospike's answers",
                      lambda: (c := kubectl.get("cc", "live", ns)) and is_ready(c) and c)
        assert cc["status"]["probe"] == "aerospike" and cc["status"]["clusterKey"]
        assert "cluster stable" in condition(cc, "Ready")["message"]

        kubectl.run("scale", "cc/live", "-n", ns, "--replicas=2")
        wait_for("live-2 removed", lambda: (kubectl.get("statefulset", "live", ns)
                                            or {})["spec"]["replicas"] == 2)
        # the kubelet stops the container of the removed pod
        asd_nodes[2][0].stop()
        reasons: set[str] = set()
        gates: set[str] = set()

        def settled() -> bool:
            c = kubectl.get("cc", "live", ns) or {}
            reasons.add(condition(c, "ScalingDown").get("reason", ""))
            for pod in kubectl.items("pod", ns, "aerocdn.dev/cachecluster=live"):
                gates.add(condition(pod, "aerocdn.dev/cluster-stable").get("status", ""))
            return is_ready(c) and c["status"]["replicas"] == 2
        wait_for("a stable 2-node cluster", settled, timeout=300, interval=0.2)
        assert "False" in gates, "the readiness gate never closed while data migrated"
        assert count(asd_nodes[0][1]) == RECORDS
        log = op.log()
        assert "Traceback" not in log
    finally:
        op.stop()
        kubectl.run("delete", "namespace", ns, "--wait=false", check=False)
        operator.start()


def _size(port: int) -> int:
    from aerocdn.aerospike.client import AerospikeInfo
    from aerocdn.aerospike.errors import AerospikeInfoError
    from aerocdn.aerospike.parse import HostPort, parse_statistics

    info = AerospikeInfo({"n": HostPort("127.0.0.1", port)})
    try:
        return parse_statistics(info.info_sync("n", "statistics")).cluster_size
    except AerospikeInfoError:
        time.sleep(0.2)
        return 0
    finally:
        info.close()
