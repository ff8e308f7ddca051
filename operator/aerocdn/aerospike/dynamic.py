"""Which aerospike.conf keys change without a restart, and the info commands that change them.

A configuration change of a CacheCluster splits in two: keys Aerospike accepts at run time
(``set-config``) are applied on every node and verified with ``get-config``; every other key
needs the pods restarted (one at a time, from a stable cluster). For an in-memory cache a
restart throws the node's data away, so the dynamic path matters.

The table lists only keys whose value is an integer, a boolean or a word, so the value read
back by ``get-config`` compares exactly (sizes such as ``flush-size 1M`` come back in bytes:
they are static here). Names are those of Aerospike 8.1 (``set-config`` handlers of
``as/src/base/cfg_info.c``; replies recorded in tests/unit/aerospike/fixtures).

Pure: sections in (``render.cachecluster.conf_sections``), commands and verdicts out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DYNAMIC: dict[str, frozenset[str]] = {
    "service": frozenset({
        "batch-index-threads", "batch-max-buffers-per-queue", "batch-max-requests",
        "batch-max-unused-buffers", "enable-health-check", "enable-hist-info", "info-max-ms",
        "info-threads", "microsecond-histograms", "migrate-fill-delay",
        "migrate-max-num-incoming", "migrate-threads", "min-cluster-size", "proto-fd-idle-ms",
        "proto-fd-max", "query-max-done", "query-threads-limit", "service-threads",
        "sindex-builder-threads", "sindex-gc-period", "ticker-interval", "transaction-max-ms",
        "transaction-retry-ms",
    }),
    "network.heartbeat": frozenset({"interval", "timeout", "connect-timeout-ms"}),
    "network.fabric": frozenset({
        "channel-bulk-recv-threads", "channel-ctrl-recv-threads", "channel-meta-recv-threads",
        "channel-rw-recv-threads", "recv-rearm-threshold",
    }),
    "namespace": frozenset({
        "allow-ttl-without-nsup", "apply-ttl-reductions", "background-query-max-rps",
        "conflict-resolution-policy", "default-read-touch-ttl-pct", "default-ttl",
        "disable-write-dup-res", "evict-hist-buckets", "evict-indexes-memory-pct",
        "evict-tenths-pct", "migrate-order", "migrate-retransmit-ms", "migrate-sleep",
        "nsup-hist-period", "nsup-period", "nsup-threads", "single-query-threads",
        "stop-writes-sys-memory-pct", "tomb-raider-eligible-age", "tomb-raider-period",
        "tomb-raider-sleep", "transaction-pending-limit", "truncate-threads",
    }),
    # set with the namespace context and the plain key; get-config says storage-engine.<key>
    "storage-engine": frozenset({
        "compression", "compression-level", "defrag-lwm-pct", "defrag-queue-min",
        "defrag-sleep", "evict-used-pct", "flush-max-ms", "stop-writes-avail-pct",
        "stop-writes-used-pct",
    }),
}


@dataclass(frozen=True, order=True)
class Setting:
    """One dynamic key at its desired value, and how to set and read it on a node."""

    section: str  # a key of DYNAMIC
    key: str
    value: str
    namespace: str | None = None

    @property
    def get_command(self) -> str:
        if self.section == "service":
            return "get-config:context=service"
        if self.section.startswith("network."):
            return "get-config:context=network"
        return f"get-config:context=namespace;id={self.namespace}"

    @property
    def reply_key(self) -> str:
        """The key of this setting in the get-config reply."""
        if self.section.startswith("network."):
            return f"{self.section.split('.')[1]}.{self.key}"
        if self.section == "storage-engine":
            return f"storage-engine.{self.key}"
        return self.key

    @property
    def set_command(self) -> str:
        if self.section == "service":
            return f"set-config:context=service;{self.key}={self.value}"
        if self.section.startswith("network."):
            return f"set-config:context=network;{self.reply_key}={self.value}"
        return f"set-config:context=namespace;id={self.namespace};{self.key}={self.value}"


def conf_value(value: Any) -> str:
    """A value as aerospike.conf and get-config write it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class Split:
    """A rendered configuration split into what can change at run time and the rest."""

    dynamic: tuple[Setting, ...]
    static: dict[str, Any]  # the sections with every dynamic key removed


def split(sections: Mapping[str, Any]) -> Split:
    """Split ``conf_sections`` output; ``static`` decides whether pods must restart."""
    settings: list[Setting] = []

    def take(name: str, values: Mapping[str, Any], namespace: str | None = None
             ) -> dict[str, Any]:
        rest = {}
        for key, value in values.items():
            if key in DYNAMIC.get(name, frozenset()) and not isinstance(value, list):
                settings.append(Setting(name, key, conf_value(value), namespace))
            else:
                rest[key] = value
        return rest

    static = {
        "service": take("service", sections["service"]),
        "logging": sections["logging"],
        "network": {
            "service": dict(sections["network"]["service"]),
            "heartbeat": take("network.heartbeat", sections["network"]["heartbeat"]),
            "fabric": take("network.fabric", sections["network"]["fabric"]),
        },
        "namespaces": [
            {
                **ns,
                "config": take("namespace", ns["config"], ns["name"]),
                "storage": take("storage-engine", ns["storage"], ns["name"]),
            }
            for ns in sections["namespaces"]
        ],
    }
    return Split(tuple(sorted(settings)), static)


def drift(desired: tuple[Setting, ...], replies: Mapping[str, Mapping[str, str]]
          ) -> tuple[Setting, ...]:
    """The settings a node does not hold: ``replies`` maps each get-config command to its
    parsed reply. A key missing from a reply counts as drift (set-config will say if the
    server does not know it)."""
    return tuple(s for s in desired if replies.get(s.get_command, {}).get(s.reply_key) != s.value)
