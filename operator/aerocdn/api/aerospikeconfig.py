"""Free-form Aerospike configuration beside CacheCluster's typed fields (AKO's aerospikeConfig).

Each section is a map of aerospike.conf keys to values, merged into the rendered
configuration: a key given here replaces the operator's default for it, and is added
otherwise. Keys the operator owns (ports, addresses, cluster name, seeds, rack-id, paths) and
keys that have a typed field (replication-factor, default-ttl, the storage size and its
thresholds) are refused, naming the typed field to use instead. The CRD carries the same rules
as CEL, so what the apiserver admits renders.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    Field,
    JsonValue,
    StrictInt,
    StrictStr,
    WithJsonSchema,
    model_validator,
)

from aerocdn.api.common import ApiModel, DnsLabel

KEY = r"^[a-z][a-z0-9-]*$"
# One token of aerospike.conf: no whitespace, braces or comment signs that would let a value
# open or close a section.
VALUE = r"^[A-Za-z0-9._:/@+,=*-]+$"
MAX_KEYS = 32
MAX_VALUE_LENGTH = 128

ConfValue = Annotated[
    StrictInt | StrictStr,
    WithJsonSchema({
        "x-kubernetes-int-or-string": True,
        "maxLength": MAX_VALUE_LENGTH,
        "pattern": VALUE,
    }),
]

# Keys the operator sets and users may not: section -> key -> why / what to use instead.
OWNED: dict[str, dict[str, str]] = {
    "service": {
        "cluster-name": "the cluster name is the CacheCluster's name",
        "node-id": "node ids are derived by Aerospike from the pod",
        "work-directory": "the work directory is the pod's volume",
        "feature-key-file": "feature keys come from a Secret",
        "user": "the server runs as the pod's user",
        "group": "the server runs as the pod's group",
        "pidfile": "the root filesystem is read-only",
    },
    "network.service": {
        "address": "the operator binds every address",
        "port": "the service port is 3000",
        "access-address": "access-address is the pod IP, set at start",
        "tls-address": "use spec.tls",
        "tls-port": "use spec.tls",
        "tls-access-address": "use spec.tls",
        "tls-name": "use spec.tls",
        "tls-authenticate-client": "use spec.tls.clientAuthentication",
    },
    "network.heartbeat": {
        "mode": "heartbeats are mesh, seeded through the headless Service",
        "address": "the operator binds every address",
        "port": "the heartbeat port is 3002",
        "mesh-seed-address-port": "seeds are the pods of the headless Service",
        "multicast-group": "heartbeats are mesh",
    },
    "network.fabric": {
        "address": "the operator binds every address",
        "port": "the fabric port is 3001",
        "tls-address": "use spec.tls",
        "tls-port": "use spec.tls",
        "tls-name": "use spec.tls",
    },
    "namespace": {
        "rack-id": "use spec.racks (rack-id is written on Enterprise Edition)",
        "replication-factor": "use spec.namespaces[].replicationFactor",
        "default-ttl": "use spec.namespaces[].defaultTTLSeconds",
    },
    "storage-engine": {
        "data-size": "use spec.namespaces[].storage.size",
        "filesize": "use spec.namespaces[].storage.size",
        "file": "the file is on the namespace's volume",
        "device": "the file is on the namespace's volume",
        "evict-used-pct": "use spec.namespaces[].evictUsedPct",
        "stop-writes-used-pct": "use spec.namespaces[].stopWritesUsedPct",
    },
}


def _cel_rules(section: str) -> list[JsonValue]:
    """CEL mirroring ``_check_section``: key syntax, value syntax, owned keys."""
    rules: list[JsonValue] = [
        {
            "rule": f"self.all(k, k.matches('{KEY}'))",
            "message": "keys are aerospike.conf names: lower case, digits and '-'",
        },
    ]
    for key, why in OWNED.get(section, {}).items():
        rules.append({"rule": f"!('{key}' in self)", "message": f"{key} is set by the "
                      f"operator: {why}"})
    return rules


def section(name: str, description: str) -> Any:
    return Field(
        default_factory=dict,
        description=description,
        json_schema_extra={
            "maxProperties": MAX_KEYS,
            "additionalProperties": {
                "x-kubernetes-int-or-string": True,
                "maxLength": MAX_VALUE_LENGTH,
                "pattern": VALUE,
            },
            "x-kubernetes-validations": _cel_rules(name),
        },
    )


def _check_section(where: str, name: str, values: dict[str, Any]) -> None:
    if len(values) > MAX_KEYS:
        raise ValueError(f"{where}: at most {MAX_KEYS} keys")
    for key, value in values.items():
        if not re.fullmatch(KEY, key):
            raise ValueError(f"{where}.{key}: keys are aerospike.conf names: lower case, "
                             "digits and '-'")
        if isinstance(value, str) and (
            not re.fullmatch(VALUE, value) or len(value) > MAX_VALUE_LENGTH
        ):
            raise ValueError(f"{where}.{key}: values are one token: letters, digits and "
                             "._:/@+,=*- (no spaces)")
        why = OWNED.get(name, {}).get(key)
        if why:
            raise ValueError(f"{where}.{key} is set by the operator: {why}")


class NetworkConfig(ApiModel):
    """network { service | heartbeat | fabric } keys (admin and TLS are the operator's)."""

    service: dict[str, ConfValue] = section("network.service", "network.service keys.")
    heartbeat: dict[str, ConfValue] = section(
        "network.heartbeat", "network.heartbeat keys (e.g. interval, timeout)."
    )
    fabric: dict[str, ConfValue] = section("network.fabric", "network.fabric keys.")


class NamespaceConfig(ApiModel):
    """Keys of one namespace named in spec.namespaces."""

    name: DnsLabel = Field(description="A namespace of spec.namespaces.")
    config: dict[str, ConfValue] = section(
        "namespace", "namespace keys (e.g. nsup-period, high-water-disk-pct)."
    )
    storage_engine: dict[str, ConfValue] = section(
        "storage-engine", "storage-engine keys (e.g. defrag-lwm-pct, compression)."
    )


LEVEL = Annotated[str, Field(pattern=r"^(critical|warning|info|debug|detail)$", max_length=8)]


class LoggingConfig(ApiModel):
    """Log levels per context (sinks other than the console would write to the read-only
    root filesystem)."""

    console: dict[str, LEVEL] = Field(
        default_factory=dict,
        description="Level per context of the console sink, e.g. {any: info, migrate: debug}.",
        json_schema_extra={
            "maxProperties": MAX_KEYS,
            "x-kubernetes-validations": [{
                "rule": f"self.all(k, k.matches('{KEY}'))",
                "message": "contexts are names: lower case, digits and '-'",
            }],
        },
    )


class AerospikeConfig(ApiModel):
    """aerospike.conf keys merged into what the operator renders."""

    service: dict[str, ConfValue] = section(
        "service", "service keys (e.g. proto-fd-max, migrate-threads)."
    )
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Log levels.")
    network: NetworkConfig = Field(default_factory=NetworkConfig, description="network keys.")
    namespaces: list[NamespaceConfig] = Field(
        default_factory=list,
        max_length=32,
        description="Per-namespace keys, by name.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )

    @model_validator(mode="after")
    def _check(self) -> AerospikeConfig:
        _check_section("service", "service", self.service)
        for ctx in self.logging.console:
            if not re.fullmatch(KEY, ctx):
                raise ValueError(f"logging.console.{ctx}: not a context name")
        for part in ("service", "heartbeat", "fabric"):
            _check_section(f"network.{part}", f"network.{part}",
                           getattr(self.network, part))
        for i, ns in enumerate(self.namespaces):
            _check_section(f"namespaces[{i}].config", "namespace", ns.config)
            _check_section(f"namespaces[{i}].storageEngine", "storage-engine",
                           ns.storage_engine)
        return self

    def merged(self, other: AerospikeConfig | None) -> AerospikeConfig:
        """This config with ``other``'s keys replacing the same keys (a rack over its cluster)."""
        if other is None:
            return self
        by_name = {ns.name: ns for ns in self.namespaces}
        for ns in other.namespaces:
            base = by_name.get(ns.name)
            by_name[ns.name] = ns if base is None else NamespaceConfig(
                name=ns.name,
                config={**base.config, **ns.config},
                storage_engine={**base.storage_engine, **ns.storage_engine},
            )
        return AerospikeConfig(
            service={**self.service, **other.service},
            logging=LoggingConfig(console={**self.logging.console, **other.logging.console}),
            network=NetworkConfig(
                service={**self.network.service, **other.network.service},
                heartbeat={**self.network.heartbeat, **other.network.heartbeat},
                fabric={**self.network.fabric, **other.network.fabric},
            ),
            namespaces=[by_name[n] for n in sorted(by_name)],
        )
