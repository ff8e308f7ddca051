"""The aerospike.conf that render/ writes, started by a real Aerospike server.

Runs when AEROCDN_TEST_ASD names an `asd` binary (Aerospike 7.x+; Community Edition is what
is at hand); skips with that reason otherwise. The config is used as a pod would use it, with
only what a pod provides replaced: the pod IP, the mounted directories, and ports free here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aerocdn.aerospike.client import AerospikeInfo
from aerocdn.aerospike.errors import AerospikeInfoError
from aerocdn.aerospike.parse import HostPort, parse_kv
from aerocdn.api import CacheCluster, parse_object
from aerocdn.render.cachecluster import PORTS, render_cachecluster

pytestmark = pytest.mark.aerospike
ENV = "AEROCDN_TEST_ASD"


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def pod_conf(cc: CacheCluster, workdir: Path) -> tuple[str, int]:
    """The rendered aerospike.conf as the init container leaves it, on free loopback ports."""
    (cm,) = [o for o in render_cachecluster(cc) if o["kind"] == "ConfigMap"]
    conf: str = cm["data"]["aerospike.conf"]
    ports = dict(zip(("service", "fabric", "heartbeat", "admin"), free_ports(4), strict=True))
    conf = conf.replace("__POD_IP__", "127.0.0.1").replace("address any", "address 127.0.0.1")
    for name, port in PORTS.items():
        conf = conf.replace(f"port {port}\n", f"port {ports[name]}\n")
        conf = conf.replace(f" {port}\n", f" {ports[name]}\n")  # mesh seeds
    conf = conf.replace("/opt/aerospike/work", str(workdir / "work"))
    conf = conf.replace("/opt/aerospike/data", str(workdir / "data"))
    for sub in ("work/smd", "work/udf/lua", *(f"data/{ns.name}" for ns in cc.spec.namespaces)):
        (workdir / sub).mkdir(parents=True, exist_ok=True)  # what the init container makes
    return conf, ports["service"]


@pytest.fixture
def asd() -> str:
    path = os.environ.get(ENV, "")
    if not path:
        pytest.skip(f"{ENV}=/path/to/asd is not set: no Aerospike server binary to start")
    if not shutil.which(path):
        pytest.fail(f"{ENV}={path} is not an executable")
    return path


@contextlib.contextmanager
def running_asd(asd: str, cc: CacheCluster, workdir: Path) -> Iterator[tuple[AerospikeInfo, int]]:
    """asd started on the rendered config of ``cc`` (as a pod would run it); its info client
    and service port. Fails with asd's log when the server refuses the config."""
    conf, port = pod_conf(cc, workdir)
    (workdir / "aerospike.conf").write_text(conf)
    log = (workdir / "asd.log").open("wb")
    proc = subprocess.Popen([asd, "--config-file", str(workdir / "aerospike.conf"),
                             "--foreground"], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    info = AerospikeInfo({"conf-0": HostPort("127.0.0.1", port)})
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail("asd refused the rendered config:\n"
                            + (workdir / "asd.log").read_text(errors="replace")[-3000:])
            try:
                info.info_sync("conf-0", "namespaces")
                break
            except AerospikeInfoError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield info, port
    finally:
        info.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


def cachecluster(spec: dict[str, Any]) -> CacheCluster:
    cc = parse_object({"apiVersion": "aerocdn.dev/v1alpha1", "kind": "CacheCluster",
                       "metadata": {"name": "conf", "namespace": "ns"},
                       "spec": {"region": "eu", "size": 1, **spec}})
    assert isinstance(cc, CacheCluster)
    return cc


@pytest.fixture
def server(asd: str, tmp_path: Path) -> Iterator[tuple[AerospikeInfo, Path]]:
    cc = cachecluster({"racks": [{"id": 1, "zone": "a"}], "namespaces": [
        {"name": "cache", "storage": {"size": "512Mi"}, "defaultTTLSeconds": 600,
         "evictUsedPct": 60, "stopWritesUsedPct": 85},
        {"name": "disk", "replicationFactor": 1,
         "storage": {"type": "persistent", "size": "1Gi"}}]})
    with running_asd(asd, cc, tmp_path) as (info, _):
        yield info, tmp_path


def test_rendered_config_starts_a_real_server_with_the_spec_values(
        server: tuple[AerospikeInfo, Path]) -> None:
    info, workdir = server
    assert info.info_sync("conf-0", "namespaces").split(";") == ["cache", "disk"]
    cache = parse_kv(info.info_sync("conf-0", "get-config:context=namespace;id=cache"))
    assert cache["storage-engine"] == "memory"
    assert cache["storage-engine.data-size"] == str(512 * 2**20)
    assert cache["default-ttl"] == "600" and cache["nsup-period"] == "120"
    assert cache["storage-engine.evict-used-pct"] == "60"
    assert cache["storage-engine.stop-writes-used-pct"] == "85"
    assert cache["replication-factor"] == "2"
    disk = parse_kv(info.info_sync("conf-0", "get-config:context=namespace;id=disk"))
    assert disk["storage-engine"] == "device"
    assert disk["storage-engine.file[0]"] == str(workdir / "data" / "disk" / "disk.dat")
    service = parse_kv(info.info_sync("conf-0", "get-config:context=network"))
    # clients are told the pod IP, never the bind address "any"
    assert service["service.access-address"] == "127.0.0.1"
    assert service["heartbeat.mode"] == "mesh"
