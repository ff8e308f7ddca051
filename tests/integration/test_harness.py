"""The local control plane harness leaves no process behind, however it is stopped; with real
nodes it leaves no process, mount, network namespace, interface, cgroup or sysctl change
either, and real and simulated nodes never get each other's pods."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from aerocdn_localcluster import (
    LocalCluster,
    NodeSpec,
    build_binaries,
    group_alive,
    nodeplan,
    processes_mentioning,
    realnode,
)

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("KUBECONFIG")),
    reason="these tests cover the local control plane harness; KUBECONFIG names another cluster",
)


@pytest.fixture(scope="module")
def bin_dir() -> Path:
    return build_binaries()


def assert_gone(pids: list[int], workdir: Path) -> None:
    assert pids, "the cluster reported no processes"
    assert [p for p in pids if group_alive(p)] == [], "process groups still alive"
    assert processes_mentioning(str(workdir)) == [], f"processes still mention {workdir}"


def test_stop_leaves_no_process_and_no_temp_dir(bin_dir: Path) -> None:
    with LocalCluster(bin_dir=bin_dir) as cluster:
        pids, workdir = cluster.pids, cluster.workdir
        assert len(pids) == 5
        assert all(group_alive(p) for p in pids)
        config = yaml.safe_load(cluster.kubeconfig.read_text())
        assert config["clusters"][0]["cluster"]["server"].startswith("https://127.0.0.1:")
    assert_gone(pids, workdir)
    assert not workdir.exists()


def test_an_exception_inside_the_block_still_stops_everything(bin_dir: Path) -> None:
    pids: list[int] = []
    with pytest.raises(RuntimeError, match="test failed"), LocalCluster(bin_dir=bin_dir) as c:
        pids, workdir = c.pids, c.workdir
        raise RuntimeError("test failed")
    assert_gone(pids, workdir)


def test_sigterm_to_the_owning_python_process_stops_everything(
    bin_dir: Path, tmp_path: Path
) -> None:
    workdir = tmp_path / "cluster"
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from aerocdn_localcluster import LocalCluster\n"
        f"c = LocalCluster(workdir=Path({str(workdir)!r}), bin_dir=Path({str(bin_dir)!r}))\n"
        "c.start()\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout is not None
        assert owner.stdout.readline().strip() == "ready"
        # The owner's own command line names the workdir too.
        assert len(set(processes_mentioning(str(workdir))) - {owner.pid}) == 5
        owner.send_signal(signal.SIGTERM)
        assert owner.wait(timeout=60) == -signal.SIGTERM
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
    assert processes_mentioning(str(workdir)) == []


def test_cli_up_and_down(tmp_path: Path) -> None:
    """`make cluster-up` / `make cluster-down`: six simulated nodes and one real node, and
    nothing of them left afterwards."""
    realnode.check_host()
    sysctls = realnode.read_sysctls()
    run = [sys.executable, "-m", "aerocdn_localcluster"]
    up = subprocess.run(
        [*run, "up", "--dir", str(tmp_path)], capture_output=True, text=True, timeout=600
    )
    state = yaml.safe_load((tmp_path / "state.json").read_text()) if up.returncode == 0 else {}
    try:
        assert up.returncode == 0, up.stderr
        export = up.stdout.strip().splitlines()[-1]
        assert export.startswith("export KUBECONFIG=")
        kubeconfig = export.removeprefix("export KUBECONFIG=")
        # Detached: the processes outlive `up`.
        assert len(processes_mentioning(str(tmp_path))) >= 5
        api = config.new_client_from_config(config_file=kubeconfig)
        try:
            nodes = client.CoreV1Api(api).list_node().to_dict()["items"]
        finally:
            api.close()
        assert len(nodes) == 7
        assert {n["metadata"]["labels"]["topology.kubernetes.io/zone"] for n in nodes} == {
            "eu-west-a", "eu-west-b", "us-east-a",
        }  # fmt: skip
        kinds = sorted(n["metadata"]["labels"][nodeplan.NODE_KIND_LABEL] for n in nodes)
        assert kinds == ["kwok"] * 6 + ["real"]
    finally:
        down = subprocess.run(
            [*run, "down", "--dir", str(tmp_path)], capture_output=True, text=True, timeout=120
        )
    assert down.returncode == 0, down.stderr
    assert processes_mentioning(str(tmp_path)) == []
    assert not (tmp_path / "state.json").exists()
    net = state["node_network"]
    network = nodeplan.NodeNetwork(run_id=net["run_id"], subnet=net["subnet"])
    assert realnode.leftovers(network, tmp_path) == []
    assert realnode.read_sysctls() == sysctls


def pause_pod(name: str, *, real: bool, tolerate: bool = True) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "pause", "image": nodeplan.PAUSE_IMAGE,
                        "imagePullPolicy": "Never"}],
    }
    if real:
        spec["nodeSelector"] = {nodeplan.NODE_KIND_LABEL: nodeplan.REAL}
    if tolerate:
        spec["tolerations"] = [{**nodeplan.REAL_NODE_TAINT, "operator": "Equal"}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def test_a_real_node_runs_pods_and_leaves_nothing_behind(bin_dir: Path) -> None:
    """A pod on the real node really runs (containerd, runc, the CNI bridge, an address from
    the node's pod range); pods not asking for it never land there; stop() leaves no process,
    mount, namespace, interface, cgroup or sysctl change."""
    realnode.check_host()
    sysctls = realnode.read_sysctls()
    kwok_nodes = (NodeSpec(name="kwok-0", region="eu-west", zone="eu-west-a"),)
    with LocalCluster(bin_dir=bin_dir, nodes=kwok_nodes, real_nodes=1) as cluster:
        workdir, net = cluster.workdir, cluster.node_network
        assert net is not None
        kubeconfig = yaml.safe_load(cluster.kubeconfig.read_text())
        assert kubeconfig["clusters"][0]["cluster"]["server"].startswith(f"https://{net.host_ip}:")
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        core = client.CoreV1Api(api)
        try:
            real = core.read_node("real-0").to_dict()
            assert real["spec"]["taints"][0]["key"] == nodeplan.REAL_NODE_TAINT["key"]
            # the kubernetes Service's endpoint is the address pods reach (issue 16.7)
            eps = core.read_namespaced_endpoints("kubernetes", "default").to_dict()
            assert eps["subsets"][0]["addresses"][0]["ip"] == net.host_ip
            core.create_namespaced_pod("default", pause_pod("on-real", real=True))
            core.create_namespaced_pod("default", pause_pod("untolerated", real=True,
                                                            tolerate=False))
            for i in range(4):
                core.create_namespaced_pod("default", pause_pod(f"any-{i}", real=False,
                                                                tolerate=False))

            def ready(name: str) -> dict[str, Any] | None:
                pod = core.read_namespaced_pod(name, "default").to_dict()
                conds = pod["status"].get("conditions") or []
                ok = any(c["type"] == "Ready" and c["status"] == "True" for c in conds)
                return pod if ok else None

            pod = wait_until(lambda: ready("on-real"), "the pod on the real node Ready")
            assert pod["spec"]["node_name"] == "real-0"
            assert pod["status"]["pod_ip"].startswith("10.244.128.")
            statuses = pod["status"]["container_statuses"]
            assert statuses[0]["state"]["running"] and statuses[0]["container_id"]
            # the rest landed on the simulated node, and got addresses from kwok's range
            for i in range(4):
                other = wait_until(lambda n=f"any-{i}": ready(n), f"any-{i} Ready")
                assert other["spec"]["node_name"] == "kwok-0"
                assert int(other["status"]["pod_ip"].split(".")[2]) < 128
            untolerated = core.read_namespaced_pod("untolerated", "default").to_dict()
            assert untolerated["spec"].get("node_name") is None
            # the pod's processes are in the node's cgroup
            assert len(realnode.cgroup_pids(net.cgroup(0))) > 3
        finally:
            api.close()
    assert realnode.leftovers(net, workdir) == []
    assert not workdir.exists()
    assert realnode.read_sysctls() == sysctls


def wait_until(check: Any, what: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
