"""The local control plane harness leaves no process behind, however it is stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config

from aerocdn.localcluster import LocalCluster, build_binaries, group_alive, processes_mentioning

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
        "from aerocdn.localcluster import LocalCluster\n"
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
    run = [sys.executable, "-m", "aerocdn.localcluster"]
    up = subprocess.run(
        [*run, "up", "--dir", str(tmp_path)], capture_output=True, text=True, timeout=600
    )
    try:
        assert up.returncode == 0, up.stderr
        export = up.stdout.strip().splitlines()[-1]
        assert export.startswith("export KUBECONFIG=")
        kubeconfig = export.removeprefix("export KUBECONFIG=")
        # Detached: the processes outlive `up`.
        assert len(processes_mentioning(str(tmp_path))) == 5
        api = config.new_client_from_config(config_file=kubeconfig)
        try:
            nodes = client.CoreV1Api(api).list_node().to_dict()["items"]
        finally:
            api.close()
        assert len(nodes) == 6
        assert {n["metadata"]["labels"]["topology.kubernetes.io/zone"] for n in nodes} == {
            "eu-west-a", "eu-west-b", "us-east-a",
        }  # fmt: skip
    finally:
        down = subprocess.run(
            [*run, "down", "--dir", str(tmp_path)], capture_output=True, text=True, timeout=120
        )
    assert down.returncode == 0, down.stderr
    assert processes_mentioning(str(tmp_path)) == []
    assert not (tmp_path / "state.json").exists()
