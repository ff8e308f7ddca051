"""Config changes split into set-config (no restart) and the rest (issue 13, item 2), checked
against real get-config replies of CE 8.1.2.0."""

from __future__ import annotations

from pathlib import Path

from tests.unit.test_render import cachecluster

from aerocdn.aerospike.dynamic import Setting, drift, split
from aerocdn.aerospike.parse import parse_kv, reply_value
from aerocdn.api.aerospikeconfig import AerospikeConfig
from aerocdn.render.cachecluster import conf_sections

FIXTURES = Path(__file__).parent / "fixtures"


def sections(spec: dict[str, object]) -> dict[str, object]:
    cc = cachecluster(spec)
    return conf_sections(cc, 0, ["eu-0.eu-headless.cdn.svc"],
                         cc.spec.aerospike_config or AerospikeConfig())


def test_typed_ttl_and_thresholds_are_dynamic_size_and_replication_are_static() -> None:
    base = split(sections({}))
    ttl = split(sections({"namespaces": [{"name": "cache", "defaultTTLSeconds": 60,
                                          "evictUsedPct": 50, "stopWritesUsedPct": 80}]}))
    assert ttl.static == base.static
    assert set(ttl.dynamic) - set(base.dynamic) == {
        Setting("namespace", "default-ttl", "60", "cache"),
        Setting("storage-engine", "evict-used-pct", "50", "cache"),
        Setting("storage-engine", "stop-writes-used-pct", "80", "cache"),
    }
    for spec in ({"namespaces": [{"name": "cache", "storage": {"size": "2Gi"}}]},
                 {"namespaces": [{"name": "cache", "replicationFactor": 3}]}):
        assert split(sections(spec)).static != base.static


def test_aerospike_config_keys_follow_the_table() -> None:
    base = split(sections({}))
    changed = split(sections({"aerospikeConfig": {
        "service": {"proto-fd-max": 20000},
        "network": {"heartbeat": {"interval": 250}},
    }}))
    assert changed.static == base.static
    assert {s.set_command for s in set(changed.dynamic) - set(base.dynamic)} == {
        "set-config:context=service;proto-fd-max=20000",
        "set-config:context=network;heartbeat.interval=250",
    }
    # A key outside the table (or a size) restarts pods.
    assert split(sections({"aerospikeConfig": {"service": {"auto-pin": "cpu"}}})).static \
        != base.static


def replies(*names: str) -> dict[str, dict[str, str]]:
    out = {}
    for name in names:
        text = (FIXTURES / name).read_text().splitlines()
        command, raw = next(line for line in text if not line.startswith("#")).split("\t", 1)
        out[command] = parse_kv(reply_value(command, f"{command}\t{raw}"))
    return out


def test_drift_against_a_freshly_started_node() -> None:
    """The recorded node runs stock settings (nsup-period 0, proto-fd-max 1024, storage
    thresholds 0/70): the rendered config's dynamic keys all differ, and the commands to
    fix them address the keys get-config reports."""
    desired = split(sections({})).dynamic
    seen = replies("01-single-get-config-namespace-cache.txt",
                   "02-three-get-config-network-A1.txt")
    seen.update(replies("02-three-get-config-service-A1.txt"))
    off = {s.reply_key for s in drift(desired, seen)}
    assert {"nsup-period", "default-ttl", "storage-engine.evict-used-pct",
            "storage-engine.stop-writes-used-pct", "proto-fd-max"} <= off
    # heartbeat interval/timeout of the recorded cluster are 150/10, as rendered.
    assert "heartbeat.interval" not in off and "heartbeat.timeout" not in off
    # Once the node holds the values, nothing drifts.
    held = {cmd: dict(kv) for cmd, kv in seen.items()}
    for s in desired:
        held.setdefault(s.get_command, {})[s.reply_key] = s.value
    assert drift(desired, held) == ()
