"""CacheCluster: one Aerospike cluster in one region (the shared in-memory cache tier)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from aerocdn.api.aerospikeconfig import AerospikeConfig
from aerocdn.api.common import (
    ApiModel,
    Condition,
    DnsLabel,
    ImagePull,
    NetworkPolicySpec,
    Placement,
    Quantity,
    ResourceRequirements,
    StatusModel,
    find_condition,
    parse_quantity,
)
from aerocdn.api.enterprise import CEL_RULES as ENTERPRISE_CEL_RULES
from aerocdn.api.enterprise import (
    EXPORTER_CREDENTIALS_MESSAGE,
    AccessControl,
    FeatureKeySecretRef,
    Tls,
    enterprise_errors,
)

KIND = "CacheCluster"
PLURAL = "cacheclusters"
DEFAULT_IMAGE = "aerospike/aerospike-server:8.1.2.0"
DEFAULT_EXPORTER_IMAGE = "aerospike/aerospike-prometheus-exporter:1.21.0"
MIN_MEMORY_DATA_SIZE = 512 * 2**20  # Aerospike refuses storage-engine memory below 512M


class Storage(ApiModel):
    """Where a namespace keeps its records."""

    model_config = ApiModel.model_config | ConfigDict(json_schema_extra={
        "x-kubernetes-validations": [{
            "rule": "!has(self.type) || self.type != 'memory' || !has(self.size) || "
            "quantity(self.size).compareTo(quantity('512Mi')) >= 0",
            "message": "a memory namespace needs size of at least 512Mi (the least Aerospike "
            "accepts for storage-engine memory)",
            "fieldPath": ".size",
        }, {
            "rule": "!has(self.storageClassName) || self.storageClassName == '' || "
            "(has(self.type) && self.type == 'persistent')",
            "message": "storageClassName applies only to persistent storage",
            "fieldPath": ".storageClassName",
        }]
    })

    type: Literal["memory", "persistent"] = Field(
        default="memory",
        description="memory: records live in RAM only (lost when a pod restarts, re-replicated "
        "from its peers). persistent: records live in a file on a PersistentVolume.",
    )
    size: Quantity = Field(
        default="1Gi",
        description="Data size of the namespace on each node (memory: at least 512Mi; "
        "persistent: the size of the volume).",
    )
    storage_class_name: str | None = Field(
        default=None,
        description="StorageClass of the volume for persistent storage (default: the "
        "cluster's default StorageClass).",
    )

    @model_validator(mode="after")
    def _check_size(self) -> Storage:
        if self.type == "memory" and parse_quantity(self.size) < MIN_MEMORY_DATA_SIZE:
            raise ValueError(
                f"size {self.size} is below 512Mi, the least Aerospike accepts for "
                "storage-engine memory"
            )
        if self.type == "memory" and self.storage_class_name:
            raise ValueError("storageClassName applies only to persistent storage")
        return self


class AerospikeNamespace(ApiModel):
    """An Aerospike namespace (a keyspace with its own replication and storage)."""

    model_config = ApiModel.model_config | ConfigDict(json_schema_extra={
        "x-kubernetes-validations": [{
            "rule": "!has(self.evictUsedPct) || !has(self.stopWritesUsedPct) || "
            "self.evictUsedPct == 0 || self.evictUsedPct < self.stopWritesUsedPct",
            "message": "evictUsedPct must be below stopWritesUsedPct",
            "fieldPath": ".evictUsedPct",
        }]
    })

    name: DnsLabel = Field(description="Namespace name, used by edges as the Aerospike namespace.")
    replication_factor: int = Field(
        default=2, ge=1, le=8, description="Copies of each record kept in the cluster."
    )
    storage: Storage = Field(default_factory=Storage, description="Where records are stored.")
    default_ttl_seconds: int = Field(
        default=86400,
        ge=0,
        description="Time to live of records written without one (0 = never expire).",
    )
    evict_used_pct: int = Field(
        default=70, ge=0, le=100, description="Evict records when storage use passes this percent."
    )
    stop_writes_used_pct: int = Field(
        default=90,
        ge=1,
        le=100,
        description="Refuse writes when storage use passes this percent.",
    )

    @model_validator(mode="after")
    def _check_thresholds(self) -> AerospikeNamespace:
        if self.evict_used_pct and self.evict_used_pct >= self.stop_writes_used_pct:
            raise ValueError(
                f"evictUsedPct ({self.evict_used_pct}) must be below stopWritesUsedPct "
                f"({self.stop_writes_used_pct}), or eviction can never run before writes stop"
            )
        return self


class Rack(ApiModel):
    """A rack: the pods of the cluster placed in one topology zone."""

    id: int = Field(ge=1, le=1000000, description="Aerospike rack-id.")
    zone: str = Field(
        min_length=1, description="Value of topology.kubernetes.io/zone for this rack's pods."
    )
    aerospike_config: AerospikeConfig | None = Field(
        default=None,
        description="aerospike.conf keys for this rack's pods, merged over "
        "spec.aerospikeConfig key by key.",
    )


class Exporter(ApiModel):
    """The Aerospike Prometheus exporter sidecar."""

    enabled: bool = Field(default=False, description="Run the exporter sidecar on port 9145.")
    image: str = Field(default=DEFAULT_EXPORTER_IMAGE, description="Exporter image.")


def _default_namespaces() -> list[AerospikeNamespace]:
    return [AerospikeNamespace(name="cache")]


class CacheClusterSpec(ImagePull):
    """Desired state of a CacheCluster."""

    region: DnsLabel = Field(description="Region this cluster serves; immutable.")
    size: int = Field(default=3, ge=1, le=256, description="Number of Aerospike nodes.")
    image: str = Field(default=DEFAULT_IMAGE, description="Aerospike server image (7.x or later).")
    edition: Literal["community", "enterprise"] = Field(
        default="community",
        description="Edition of the image. Enterprise only: Aerospike is told each node's rack "
        "(rack-id) so replicas go to other racks, and leaving nodes are quiesced first. On "
        "Community Edition racks still spread pods over zones, but Aerospike is not rack-aware "
        "(it refuses rack-id).",
    )
    namespaces: list[AerospikeNamespace] = Field(
        default_factory=_default_namespaces,
        min_length=1,
        max_length=32,
        description="Aerospike namespaces; names are unique.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    racks: list[Rack] = Field(
        default_factory=list,
        max_length=32,
        description="Racks mapped to topology zones; nodes are spread over them evenly "
        "(one StatefulSet per rack). Empty: a single rack.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"]},
    )
    resources: ResourceRequirements | None = Field(
        default=None,
        description="Resources of the Aerospike container (default: requests sized from the "
        "namespaces' data size).",
    )
    placement: Placement = Field(default_factory=Placement, description="Pod placement.")
    max_unavailable: int = Field(
        default=1,
        ge=1,
        description="Pods that may be down at once during voluntary disruptions (the "
        "PodDisruptionBudget). Rolls restart one pod at a time whatever this says: a "
        "restarted in-memory node comes back empty, and two at once could hold both copies "
        "of a partition.",
    )
    exporter: Exporter = Field(default_factory=Exporter, description="Metrics exporter.")
    aerospike_config: AerospikeConfig | None = Field(
        default=None,
        description="aerospike.conf keys beside the typed fields (service, logging, network, "
        "namespaces), merged into the rendered configuration; keys the operator owns or "
        "that have a typed field are refused.",
    )
    paused: bool = Field(
        default=False, description="When true the operator leaves this cluster's children alone."
    )
    feature_key_secret_ref: FeatureKeySecretRef | None = Field(
        default=None,
        description="Enterprise only, and required there: the Secret holding the feature key "
        "file, mounted read-only and named by feature-key-file in aerospike.conf.",
    )
    tls: Tls | None = Field(
        default=None,
        description="Enterprise only: TLS for the service (port 4333) and fabric (port 3011).",
    )
    access_control: AccessControl | None = Field(
        default=None,
        description="Enterprise only: Aerospike security (users and roles from Secrets).",
    )
    network_policy: NetworkPolicySpec = Field(
        default_factory=NetworkPolicySpec,
        description="A NetworkPolicy isolating the Aerospike pods: the service port from the "
        "operator (edges get in through their ContentEdge's own policy), fabric and "
        "heartbeat only between this cluster's pods, the exporter port from "
        "metricsNamespaces.",
    )

    @model_validator(mode="after")
    def _check(self) -> CacheClusterSpec:
        errors = enterprise_errors(
            self.edition, self.feature_key_secret_ref, self.tls, self.access_control
        )
        if errors:
            raise ValueError("; ".join(errors))
        if (self.access_control is not None and self.exporter.enabled
                and self.access_control.exporter_secret_name is None):
            raise ValueError(EXPORTER_CREDENTIALS_MESSAGE)
        names = [ns.name for ns in self.namespaces]
        if len(set(names)) != len(names):
            raise ValueError(f"namespace names must be unique, got {names}")
        ids = [r.id for r in self.racks]
        if len(set(ids)) != len(ids):
            raise ValueError(f"rack ids must be unique, got {ids}")
        declared = set(names)
        configs = [("aerospikeConfig", self.aerospike_config)] + [
            (f"racks[{i}].aerospikeConfig", r.aerospike_config) for i, r in enumerate(self.racks)
        ]
        for where, config in configs:
            for j, ns in enumerate(config.namespaces if config else []):
                if ns.name not in declared:
                    raise ValueError(
                        f"{where}.namespaces[{j}].name: {ns.name!r} is not a namespace of "
                        f"spec.namespaces ({', '.join(sorted(declared))})"
                    )
        if self.racks and self.size < len(self.racks):
            raise ValueError(
                f"size ({self.size}) must be at least the number of racks ({len(self.racks)})"
            )
        return self


# Cross-field rules the apiserver enforces at admission (CEL), mirroring the validators above.
# spec.namespaces may be absent (pydantic's default is one namespace named cache).
_NAMESPACE_DECLARED = (
    "(has(self.namespaces) ? self.namespaces.exists(m, m.name == n.name) : n.name == 'cache')"
)
CEL_RULES: list[dict[str, str]] = [
    {
        "rule": "!has(self.racks) || self.size >= size(self.racks)",
        "message": "spec.size must be at least the number of racks",
        "fieldPath": ".size",
    },
    {
        "rule": "!has(self.aerospikeConfig) || !has(self.aerospikeConfig.namespaces) || "
        f"self.aerospikeConfig.namespaces.all(n, {_NAMESPACE_DECLARED})",
        "message": "aerospikeConfig.namespaces[].name must be a namespace of spec.namespaces",
        "fieldPath": ".aerospikeConfig.namespaces",
    },
    {
        "rule": "!has(self.racks) || self.racks.all(r, !has(r.aerospikeConfig) || "
        f"!has(r.aerospikeConfig.namespaces) || r.aerospikeConfig.namespaces.all(n, "
        f"{_NAMESPACE_DECLARED}))",
        "message": "racks[].aerospikeConfig.namespaces[].name must be a namespace of "
        "spec.namespaces",
        "fieldPath": ".racks",
    },
    *ENTERPRISE_CEL_RULES,
]
FIELD_CEL_RULES: dict[str, list[dict[str, str]]] = {
    "region": [{"rule": "self == oldSelf", "message": "spec.region is immutable"}],
}


class RackStatus(StatusModel):
    name: str = Field(description="StatefulSet of the rack.")
    zone: str = ""
    desired: int = 0
    current: int = 0
    ready: int = 0


class CacheClusterStatus(StatusModel):
    observed_generation: int | None = None
    phase: str | None = None
    replicas: int | None = Field(default=None, description="Current Aerospike pods.")
    ready_replicas: int | None = None
    selector: str | None = Field(default=None, description="Label selector of the pods (scale).")
    racks: list[RackStatus] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)
    probe: str | None = Field(
        default=None,
        description="How stability is judged: aerospike (asked of Aerospike) or kubernetes "
        "(pod readiness stands in; no Aerospike is asked).",
    )
    capacity_bytes: int | None = None
    cluster_key: str | None = None
    user_password_digests: dict[str, str] | None = Field(
        default=None,
        description="Enterprise access control: per Aerospike user, an HMAC (keyed with the "
        "CacheCluster's uid) of the password the operator last set, so a changed Secret is "
        "found without storing the password; users whose digest matches are not touched.",
    )

    def condition(self, type_: str) -> Condition | None:
        return find_condition(self.conditions, type_)

    def is_true(self, type_: str) -> bool:
        cond = self.condition(type_)
        return cond is not None and cond.true

    migrating_partitions: int | None = Field(
        default=None,
        description="Partitions Aerospike still had to migrate at the last status write (a "
        "count alone never triggers a write; live value: the operator's metric "
        "aerocdn_aerospike_migrating_partitions).",
    )
