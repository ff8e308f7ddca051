"""What gets created for a CacheCluster: pure functions from the model to Kubernetes objects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aerocdn.api.cachecluster import KIND, AerospikeNamespace, CacheClusterSpec
from aerocdn.api.common import parse_quantity
from aerocdn.api.objects import CacheCluster
from aerocdn.render.engine import (
    config_hash,
    finish,
    labels,
    owner_references,
    render_objects,
    render_text,
)
from aerocdn.render.placement import image_pull, pod_placement

PORTS = {"service": 3000, "fabric": 3001, "heartbeat": 3002, "admin": 3008}
MIB = 2**20
# A file-backed namespace leaves 10% of its volume for the filesystem.
PERSISTENT_FILL = 0.9
SEEDS_PER_RACK = 2
READINESS_GATE = "aerocdn.dev/cluster-stable"
CONFIG_HASH = "aerocdn.dev/config-hash"
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


def aerospike_conf(cc: CacheCluster, rack_id: int, seed_hosts: list[str]) -> str:
    namespaces = [
        {**ns.__dict__, "storage": ns.storage, "data_size_mib": _data_size_mib(ns)}
        for ns in cc.spec.namespaces
    ]
    return render_text(
        "aerospike.conf.j2",
        name=cc.name,
        rack_id=rack_id,
        seeds=seed_hosts,
        ports=PORTS,
        namespaces=namespaces,
        enterprise=cc.spec.edition == "enterprise",
    )


def default_resources(spec: CacheClusterSpec) -> dict[str, Any]:
    """Requests sized from the memory namespaces plus overhead for the index and buffers."""
    memory = sum(
        parse_quantity(ns.storage.size) for ns in spec.namespaces if ns.storage.type == "memory"
    )
    mib = memory // MIB + 512
    return {"requests": {"cpu": "500m", "memory": f"{mib}Mi"}, "limits": {"memory": f"{mib}Mi"}}


EXPORTER_PORT = 9145


def exporter_conf(cc: CacheCluster) -> str:
    """The exporter's ape.toml: rendered here because its image's entrypoint would write it
    under /etc, which the read-only root filesystem refuses."""
    return render_text(
        "ape.toml.j2",
        name=cc.name,
        region=cc.spec.region,
        metrics_port=EXPORTER_PORT,
        service_port=PORTS["service"],
    )


def render_cachecluster(
    cc: CacheCluster, replicas: dict[str, int] | None = None
) -> list[dict[str, Any]]:
    """All children of a CacheCluster.

    ``replicas`` overrides the StatefulSet sizes by name: the operator passes the sizes its
    scale plan allows right now (one node leaves at a time); without it, the spec's layout.
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
        conf = aerospike_conf(cc, rack.rack_id, seed_hosts)
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
                "config_hash": config_hash(conf, spec.image, resources, *exporter_parts),
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
        persistent=[ns for ns in spec.namespaces if ns.storage.type == "persistent"],
        container_security=CONTAINER_SECURITY,
    )
    return finish(objects, owner_references(KIND, name, cc.metadata.uid))
