"""What gets created for a CacheCluster: pure functions from the model to Kubernetes objects."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aerocdn.aerospike.dynamic import Setting, split
from aerocdn.api.aerospikeconfig import AerospikeConfig
from aerocdn.api.cachecluster import KIND, AerospikeNamespace, CacheClusterSpec
from aerocdn.api.common import parse_quantity
from aerocdn.api.enterprise import EXPORTER_USER, Tls
from aerocdn.api.objects import CacheCluster
from aerocdn.render.engine import (
    config_hash,
    finish,
    labels,
    owner_references,
    render_objects,
    render_text,
)
from aerocdn.render.networkpolicy import cachecluster_network_policy
from aerocdn.render.placement import image_pull, pod_placement

PORTS = {"service": 3000, "fabric": 3001, "heartbeat": 3002, "admin": 3008}
# Enterprise TLS ports (spec.tls), beside the plain ones: edges keep using 3000.
TLS_PORTS = {"tls-service": 4333, "tls-fabric": 3011}
FEATURE_KEY_DIR = "/etc/aerocdn/feature-key"
FEATURE_KEY_FILE = f"{FEATURE_KEY_DIR}/features.conf"
TLS_DIR = "/etc/aerocdn/tls"
MIB = 2**20
# A file-backed namespace leaves 10% of its volume for the filesystem.
PERSISTENT_FILL = 0.9
SEEDS_PER_RACK = 2
CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


@dataclass(frozen=True)
class RackLayout:
    """One StatefulSet of the cluster: a rack (or the whole cluster when no racks are set)."""

    rack_id: int  # 0 = no racks
    zone: str | None
    sts_name: str
    replicas: int


def headless_name(name: str) -> str:
    return f"{name}-headless"


def pod_selector(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "aerospike", "app.kubernetes.io/instance": name}


def rack_layout(name: str, spec: CacheClusterSpec) -> list[RackLayout]:
    """Spread spec.size over the racks evenly; the first racks take the remainder."""
    if not spec.racks:
        return [RackLayout(0, None, name, spec.size)]
    racks = sorted(spec.racks, key=lambda r: r.id)
    base, extra = divmod(spec.size, len(racks))
    return [
        RackLayout(r.id, r.zone, f"{name}-r{r.id}", base + (1 if i < extra else 0))
        for i, r in enumerate(racks)
    ]


def seeds(name: str, namespace: str, layout: list[RackLayout]) -> list[str]:
    """Mesh seeds: the first pods of each rack, independent of size so scaling rolls nothing."""
    host = f"{headless_name(name)}.{namespace}.svc"
    return [f"{r.sts_name}-{i}.{host}" for r in layout for i in range(SEEDS_PER_RACK)]


def _data_size_mib(ns: AerospikeNamespace) -> int:
    size = parse_quantity(ns.storage.size)
    if ns.storage.type == "persistent":
        size = int(size * PERSISTENT_FILL)
    return size // MIB


def conf_sections(
    cc: CacheCluster, rack_id: int, seed_hosts: list[str], user: AerospikeConfig
) -> dict[str, Any]:
    """The sections of aerospike.conf as maps of key -> value, the operator's keys first and
    spec.aerospikeConfig merged over them (its validation refuses the keys we own)."""
    spec = cc.spec
    user_ns = {ns.name: ns for ns in user.namespaces}
    namespaces = []
    for ns in spec.namespaces:
        extra = user_ns.get(ns.name)
        config: dict[str, Any] = {
            "replication-factor": ns.replication_factor,
            "default-ttl": ns.default_ttl_seconds,
            "# Expiry runs even with default-ttl 0: edges write records with a TTL, which "
            "Aerospike": None,
            "# refuses while nsup-period is 0.": None,
            "nsup-period": 120,
        }
        if rack_id and spec.edition == "enterprise":
            config["rack-id"] = rack_id  # Community Edition refuses rack-id
        if ns.storage.type == "memory":
            engine = "memory"
            storage: dict[str, Any] = {"data-size": f"{_data_size_mib(ns)}M"}
        else:
            engine = "device"
            storage = {
                "file": f"/opt/aerospike/data/{ns.name}/{ns.name}.dat",
                "filesize": f"{_data_size_mib(ns)}M",
            }
        storage["evict-used-pct"] = ns.evict_used_pct
        storage["stop-writes-used-pct"] = ns.stop_writes_used_pct
        if extra is not None:
            config.update(extra.config)
            storage.update(extra.storage_engine)
        namespaces.append({"name": ns.name, "config": config, "engine": engine,
                           "storage": storage})
    service: dict[str, Any] = {
        "cluster-name": cc.name,
        "proto-fd-max": 15000,
        "work-directory": "/opt/aerospike/work",
    }
    if spec.feature_key_secret_ref is not None:
        service["feature-key-file"] = FEATURE_KEY_FILE
    tls = spec.tls
    tls_service: dict[str, Any] = {}
    tls_fabric: dict[str, Any] = {}
    if tls is not None and tls.service:
        tls_service = {
            "tls-address": "any",
            "tls-port": TLS_PORTS["tls-service"],
            "tls-access-address": "__POD_IP__",
            "tls-name": tls_name(cc.name, tls),
            # Without the key Aerospike demands client certificates: say which it is.
            "tls-authenticate-client": "any" if tls.client_authentication else "false",
        }
    if tls is not None and tls.fabric:
        tls_fabric = {
            "tls-address": "any",
            "tls-port": TLS_PORTS["tls-fabric"],
            "tls-name": tls_name(cc.name, tls),
        }
    sections: dict[str, Any] = {
        "service": {**service, **user.service},
        "logging": {"console": {"any": "info", **user.logging.console}},
        "network": {
            "service": {
                "address": "any",
                "port": PORTS["service"],
                "access-address": "__POD_IP__",
                **tls_service,
                **user.network.service,
            },
            "heartbeat": {
                "mode": "mesh",
                "address": "any",
                "port": PORTS["heartbeat"],
                "mesh-seed-address-port": [f"{h} {PORTS['heartbeat']}" for h in seed_hosts],
                "interval": 150,
                "timeout": 10,
                **user.network.heartbeat,
            },
            "fabric": {
                "address": "any",
                "port": PORTS["fabric"],
                **tls_fabric,
                **user.network.fabric,
            },
        },
        "namespaces": namespaces,
    }
    if tls is not None:
        sections["tls"] = {
            tls_name(cc.name, tls): {
                "cert-file": f"{TLS_DIR}/tls.crt",
                "key-file": f"{TLS_DIR}/tls.key",
                "ca-file": f"{TLS_DIR}/ca.crt",
            }
        }
    if spec.access_control is not None:
        # An empty security context turns security on (users are managed over the admin
        # protocol: aerospike/users.py).
        sections["security"] = {}
    return sections


def tls_ports(spec: CacheClusterSpec) -> dict[str, int]:
    """Container/Service port name -> port of the TLS listeners spec.tls turns on."""
    tls = spec.tls
    if tls is None:
        return {}
    return {
        name: port
        for name, port in TLS_PORTS.items()
        if (tls.service if name == "tls-service" else tls.fabric)
    }


def tls_name(cluster: str, tls: Tls) -> str:
    """The nodes' TLS name: spec.tls.tlsName, else the CacheCluster's name."""
    return tls.tls_name or cluster


def conf_lines(values: dict[str, Any]) -> list[str]:
    """A section's map as aerospike.conf lines; a list value repeats its key, None writes
    the key alone (comments: user keys cannot start with '#')."""
    return [
        key if v is None else f"{key} {v}"
        for key, value in values.items()
        for v in (value if isinstance(value, list) else [value])
    ]


def rack_sections(cc: CacheCluster, rack_id: int, seed_hosts: list[str]) -> dict[str, Any]:
    """The configuration sections of one rack: spec.aerospikeConfig and the rack's own keys
    merged over the operator's."""
    user = cc.spec.aerospike_config or AerospikeConfig()
    rack = next((r for r in cc.spec.racks if r.id == rack_id), None)
    if rack is not None:
        user = user.merged(rack.aerospike_config)
    return conf_sections(cc, rack_id, seed_hosts, user)


def dynamic_settings(cc: CacheCluster) -> dict[str, tuple[Setting, ...]]:
    """Per StatefulSet (rack), the settings the operator keeps on running nodes with
    set-config: a change of only these does not restart pods."""
    layout = rack_layout(cc.name, cc.spec)
    seed_hosts = seeds(cc.name, cc.namespace, layout)
    return {r.sts_name: split(rack_sections(cc, r.rack_id, seed_hosts)).dynamic
            for r in layout}


def aerospike_conf(cc: CacheCluster, rack_id: int, seed_hosts: list[str]) -> str:
    sections = rack_sections(cc, rack_id, seed_hosts)
    return render_text(
        "aerospike.conf.j2",
        name=cc.name,
        rack_id=rack_id,
        ports=PORTS,
        service=conf_lines(sections["service"]),
        logging=sections["logging"],
        network={k: conf_lines(v) for k, v in sections["network"].items()},
        tls={k: conf_lines(v) for k, v in sections.get("tls", {}).items()},
        security=conf_lines(sections["security"]) if "security" in sections else None,
        namespaces=[
            {**ns, "config": conf_lines(ns["config"]), "storage": conf_lines(ns["storage"])}
            for ns in sections["namespaces"]
        ],
    )


def default_resources(spec: CacheClusterSpec) -> dict[str, Any]:
    """Requests sized from the memory namespaces plus overhead for the index and buffers."""
    memory = sum(
        parse_quantity(ns.storage.size) for ns in spec.namespaces if ns.storage.type == "memory"
    )
    mib = memory // MIB + 512
    return {"requests": {"cpu": "500m", "memory": f"{mib}Mi"}, "limits": {"memory": f"{mib}Mi"}}


EXPORTER_PORT = 9145
EXPORTER_LOGIN_DIR = "/etc/aerocdn/exporter-login"


def exporter_login(spec: CacheClusterSpec) -> str | None:
    """The Secret with the exporter's password, when access control is on."""
    access = spec.access_control
    return access.exporter_secret_name if access is not None else None


def exporter_conf(cc: CacheCluster) -> str:
    """The exporter's ape.toml: rendered here because its image's entrypoint would write it
    under /etc, which the read-only root filesystem refuses."""
    return render_text(
        "ape.toml.j2",
        name=cc.name,
        region=cc.spec.region,
        metrics_port=EXPORTER_PORT,
        service_port=PORTS["service"],
        login={"user": EXPORTER_USER, "password_file": f"{EXPORTER_LOGIN_DIR}/password"}
        if exporter_login(cc.spec) else None,
    )


def render_cachecluster(
    cc: CacheCluster, replicas: dict[str, int] | None = None, *, set_config: bool = True
) -> list[dict[str, Any]]:
    """All children of a CacheCluster.

    ``replicas`` overrides the StatefulSet sizes by name: the operator passes the sizes its
    scale plan allows right now (one node leaves at a time); without it, the spec's layout.
    ``set_config``: the operator applies dynamic keys to running nodes (it asks Aerospike),
    so the pods' config hash covers only the static rest and a change of dynamic keys
    restarts nothing; without it (no Aerospike to ask) every change rolls pods.
    """
    spec = cc.spec
    name, namespace = cc.name, cc.namespace
    layout = rack_layout(name, spec)
    seed_hosts = seeds(name, namespace, layout)
    base_labels = {**labels("aerospike", name, "cache"), "aerocdn.dev/cachecluster": name}
    resources = (
        spec.resources.model_dump(exclude_defaults=True)
        if spec.resources is not None
        else default_resources(spec)
    )
    ape = exporter_conf(cc) if spec.exporter.enabled else None
    # Only when enabled, so clusters without the exporter keep their hash.
    exporter_parts = [spec.exporter.image, ape] if ape is not None else []
    racks = []
    for rack in layout:
        sections = rack_sections(cc, rack.rack_id, seed_hosts)
        conf = aerospike_conf(cc, rack.rack_id, seed_hosts)
        hashed: Any = (json.dumps(split(sections).static, sort_keys=True) if set_config
                       else conf)
        rack_labels = dict(base_labels)
        if rack.rack_id:
            rack_labels["aerocdn.dev/rack"] = str(rack.rack_id)
        placement = pod_placement(
            spec.placement,
            spec.region,
            pod_selector(name),
            one_per_node=True,
            node_selector={"topology.kubernetes.io/zone": rack.zone} if rack.zone else None,
        )
        racks.append(
            {
                "sts_name": rack.sts_name,
                "config_name": f"{rack.sts_name}-config",
                "replicas": (replicas or {}).get(rack.sts_name, rack.replicas),
                "zone": rack.zone,
                "labels": rack_labels,
                "selector": {**pod_selector(name), **(
                    {"aerocdn.dev/rack": str(rack.rack_id)} if rack.rack_id else {}
                )},
                "placement": placement,
                "conf": conf,
                "config_hash": config_hash(hashed, spec.image, resources, *exporter_parts),
            }
        )
    objects = render_objects(
        "cachecluster.yaml.j2",
        name=name,
        namespace=namespace,
        headless=headless_name(name),
        labels=base_labels,
        selector=pod_selector(name),
        ports=PORTS,
        max_unavailable=spec.max_unavailable,
        racks=racks,
        image=spec.image,
        resources=resources,
        pull=image_pull(spec),
        exporter=spec.exporter,
        exporter_conf=ape,
        exporter_login=exporter_login(spec),
        exporter_login_dir=EXPORTER_LOGIN_DIR,
        persistent=[ns for ns in spec.namespaces if ns.storage.type == "persistent"],
        tls_ports=tls_ports(spec),
        feature_key=spec.feature_key_secret_ref,
        feature_key_dir=FEATURE_KEY_DIR,
        tls=spec.tls,
        tls_dir=TLS_DIR,
        container_security=CONTAINER_SECURITY,
    )
    if spec.network_policy.enabled:
        tls = tls_ports(spec)
        objects.append(cachecluster_network_policy(
            name=name, namespace=namespace, selector=pod_selector(name),
            obj_labels={**base_labels, "app.kubernetes.io/component": "network"},
            operator_namespace=spec.network_policy.operator_namespace,
            client_ports=[PORTS["service"]] + ([tls["tls-service"]] if "tls-service" in tls
                                               else []),
            peer_ports=[PORTS[p] for p in ("fabric", "heartbeat", "admin")]
            + ([tls["tls-fabric"]] if "tls-fabric" in tls else []),
            metrics_port=EXPORTER_PORT if spec.exporter.enabled else None,
            metrics_namespaces=spec.network_policy.metrics_namespaces))
    return finish(objects, owner_references(KIND, name, cc.metadata.uid))
