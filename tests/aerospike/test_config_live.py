"""spec.aerospikeConfig and the set-config path against a real asd (issue 13, items 1, 2, 5).

Runs when AEROCDN_TEST_ASD names an asd binary; the exporter test also needs
AEROCDN_TEST_EXPORTER (an aerospike-prometheus-exporter binary) and
AEROCDN_TEST_EXPORTER_GAUGES (its configs/gauge_stats_list.toml, which the image ships).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from tests.aerospike.test_rendered_conf_live import asd, cachecluster, free_ports, running_asd

from aerocdn.aerospike.dynamic import drift, split
from aerocdn.aerospike.parse import parse_kv
from aerocdn.api.aerospikeconfig import AerospikeConfig
from aerocdn.render.cachecluster import PORTS, conf_sections, exporter_conf

pytestmark = pytest.mark.aerospike
__all__ = ["asd"]  # the fixture, imported for the tests below

OVERRIDES = {
    "service": {"proto-fd-max": 2000, "migrate-threads": 2},
    "logging": {"console": {"migrate": "debug"}},
    "network": {"heartbeat": {"interval": 250, "timeout": 20}},
    "namespaces": [{"name": "cache", "config": {"nsup-period": 60},
                    "storageEngine": {"defrag-lwm-pct": 40}}],
}


def test_overrides_reach_a_real_server(asd: str, tmp_path: Path) -> None:
    cc = cachecluster({"aerospikeConfig": OVERRIDES})
    with running_asd(asd, cc, tmp_path) as (info, _):
        service = parse_kv(info.info_sync("conf-0", "get-config:context=service"))
        assert (service["proto-fd-max"], service["migrate-threads"]) == ("2000", "2")
        network = parse_kv(info.info_sync("conf-0", "get-config:context=network"))
        assert (network["heartbeat.interval"], network["heartbeat.timeout"]) == ("250", "20")
        ns = parse_kv(info.info_sync("conf-0", "get-config:context=namespace;id=cache"))
        assert ns["nsup-period"] == "60"
        assert ns["storage-engine.defrag-lwm-pct"] == "40"
        # The typed fields are still what the operator rendered.
        assert ns["replication-factor"] == "2" and ns["default-ttl"] == "86400"


def test_dynamic_settings_applied_with_set_config_leave_no_drift(asd: str, tmp_path: Path
                                                                  ) -> None:
    """A change of only dynamic keys: the node started on the old config gets the new values
    by set-config, and get-config then shows no drift."""
    old = cachecluster({})
    new = cachecluster({"aerospikeConfig": {**OVERRIDES, "logging": {}, "namespaces": [
        {"name": "cache", "config": {"nsup-period": 60}}]},
        "namespaces": [{"name": "cache", "defaultTTLSeconds": 3600, "evictUsedPct": 60}]})
    before = split(conf_sections(old, 0, ["x"], AerospikeConfig()))
    after = split(conf_sections(new, 0, ["x"], new.spec.aerospike_config or AerospikeConfig()))
    with running_asd(asd, old, tmp_path) as (info, _):
        def replies() -> dict[str, dict[str, str]]:
            return {cmd: parse_kv(info.info_sync("conf-0", cmd))
                    for cmd in {s.get_command for s in after.dynamic}}

        assert drift(before.dynamic, replies()) == ()
        todo = drift(after.dynamic, replies())
        assert {s.reply_key for s in todo} >= {
            "proto-fd-max", "migrate-threads", "heartbeat.interval", "heartbeat.timeout",
            "nsup-period", "default-ttl", "storage-engine.evict-used-pct"}
        for setting in todo:
            assert info.info_sync("conf-0", setting.set_command) == "ok", setting.set_command
        assert drift(after.dynamic, replies()) == ()


@pytest.fixture
def exporter() -> tuple[str, str]:
    binary = os.environ.get("AEROCDN_TEST_EXPORTER", "")
    gauges = os.environ.get("AEROCDN_TEST_EXPORTER_GAUGES", "")
    if not binary or not gauges:
        pytest.skip("AEROCDN_TEST_EXPORTER (aerospike-prometheus-exporter binary) and "
                    "AEROCDN_TEST_EXPORTER_GAUGES (its gauge_stats_list.toml) are not set")
    if not shutil.which(binary) or not Path(gauges).is_file():
        pytest.fail(f"AEROCDN_TEST_EXPORTER={binary} / AEROCDN_TEST_EXPORTER_GAUGES={gauges} "
                    "do not name an executable and a file")
    return binary, gauges


def test_exporter_scrapes_a_real_server_with_the_rendered_config(
    asd: str, exporter: tuple[str, str], tmp_path: Path
) -> None:
    binary, gauges = exporter
    cc = cachecluster({"exporter": {"enabled": True}})
    (metrics_port,) = free_ports(1)
    with running_asd(asd, cc, tmp_path) as (_, port):
        ape = exporter_conf(cc).replace('bind = ":9145"', f'bind = "127.0.0.1:{metrics_port}"')
        ape = ape.replace(f"db_port = {PORTS['service']}", f"db_port = {port}")
        (tmp_path / "ape.toml").write_text(ape)
        log = (tmp_path / "exporter.log").open("wb")
        proc = subprocess.Popen(  # the command the rendered sidecar runs, plus the gauge list
            [binary, "--config", str(tmp_path / "ape.toml"), "--gauge-list", gauges],
            stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            text = ""
            while "aerospike_namespace_" not in text:
                assert proc.poll() is None, (tmp_path / "exporter.log").read_text()[-2000:]
                assert time.monotonic() < deadline, text[-2000:]
                try:
                    with urllib.request.urlopen(
                            f"http://127.0.0.1:{metrics_port}/metrics", timeout=20) as r:
                        text = r.read().decode()
                except OSError:
                    time.sleep(0.5)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()
    up = re.search(r'^aerospike_node_up\{(.*)\} 1$', text, re.M)
    assert up is not None, "aerospike_node_up is not 1"
    assert 'cluster="conf"' in up.group(1) and 'region="eu"' in up.group(1)
    recorded = os.environ.get("AEROCDN_RECORD_EXPORTER_NAMES")
    if recorded:  # how tests/unit/data/exporter-metric-names.txt was made
        names = sorted({line.split("{")[0].split(" ")[0] for line in text.splitlines()
                        if line.startswith("aerospike_")})
        Path(recorded).write_text("".join(f"{n}\n" for n in names))
