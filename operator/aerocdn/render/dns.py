"""DNS records that follow the routing plan: ExternalDNS DNSEndpoint objects. Pure.

With ``routing.dns.clientRegions`` each client region keeps its own row of the plan: a
weighted record set ``<client>.<hostname>`` (one record per edge region, weight = that
client's share), and ``<hostname>`` answers a CNAME to it for the clients the provider
recognises as that region (geolocation or latency routing: AWS Route 53's
``aws/geolocation-*`` and ``aws/region`` through ExternalDNS). Providers that cannot select
by client (most others: weighted records at best) get one weighted set from each region's
global share, and a warning says the plan is flattened.

Targets must be reachable from outside the cluster: ``regions[].dnsTarget`` or the address
of the region's LoadBalancer Service (observed, passed in); a ``*.svc`` name never is.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aerocdn.api.objects import ContentEdge
from aerocdn.render.engine import labels
from aerocdn.routing.model import Plan

WEIGHT_SCALE = 100


def region_weights(plan: Plan) -> dict[str, float]:
    """Share of all demand each edge region serves under a routing plan (sums to 1)."""
    demand = {n: b.demand for n, b in plan.basis.items()}
    load: dict[str, float] = {}
    for client, row in plan.traffic_weights.items():
        for edge, share in row.items():
            load[edge] = load.get(edge, 0.0) + demand.get(client, 0.0) * share
    total = sum(load.values())
    return {e: (v / total if total else 0.0) for e, v in sorted(load.items())}


def _record_type(target: str) -> str:
    try:
        address = ipaddress.ip_address(target)
    except ValueError:
        return "CNAME"
    return "A" if address.version == 4 else "AAAA"


class DnsGap(enum.Enum):
    """Why the records do not carry the plan as it is (the DnsRouting condition's reason),
    most urgent first."""

    NO_TARGET = "NoTarget"  # a region has no public address and no dnsTarget
    AWAITING_ADDRESS = "AwaitingAddress"  # its LoadBalancer Service has no address yet
    CLIENT_UNSERVED = "ClientRegionUnserved"  # a client region got no records at all
    FLATTENED = "Flattened"  # no clientRegions: one global weighted set


@dataclass(frozen=True)
class DnsProblem:
    gap: DnsGap
    message: str


@dataclass
class DnsPlan:
    """The endpoints to publish and what a user should know about them."""

    endpoints: list[dict[str, Any]] = field(default_factory=list)
    problems: list[DnsProblem] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        return [p.message for p in self.problems]

    def gap(self) -> DnsGap | None:
        """The most urgent problem, or None when the records follow the plan as it is."""
        order = list(DnsGap)
        return min((p.gap for p in self.problems), key=order.index, default=None)


def _weighted(name: str, set_prefix: str, shares: Mapping[str, float],
              targets: Mapping[str, str], ttl: int, weight_key: str) -> list[dict[str, Any]]:
    out = []
    for edge, share in sorted(shares.items()):
        weight = round(share * WEIGHT_SCALE)
        if edge not in targets or weight <= 0:
            continue
        target = targets[edge]
        out.append({
            "dnsName": name,
            "recordType": _record_type(target),
            "targets": [target],
            "recordTTL": ttl,
            "setIdentifier": f"{set_prefix}{edge}",
            "providerSpecific": [{"name": weight_key, "value": str(weight)}],
        })
    return out


def dns_plan(
    ce: ContentEdge, plan: Plan, addresses: Mapping[str, str] | None = None
) -> DnsPlan:
    """Endpoints for ``plan`` (the routes.json model); ``addresses`` are the observed
    external addresses of each region's Service (LoadBalancer ingress), by region."""
    from aerocdn.render.contentedge import region_name  # (it imports this module)

    dns = ce.spec.routing.dns
    hostname = dns.hostname or ce.spec.hosts[0]
    out = DnsPlan()
    targets: dict[str, str] = {}
    for region in ce.spec.regions:
        target = region.dns_target or (addresses or {}).get(region.name)
        if target:
            targets[region.name] = target
        elif ce.spec.service.type == "LoadBalancer":
            out.problems.append(DnsProblem(DnsGap.AWAITING_ADDRESS, (
                f"region {region.name}: its LoadBalancer Service "
                f"{region_name(ce.name, region.name)} has no address yet "
                "(status.loadBalancer.ingress): the region gets no record until it has one "
                "(or set regions[].dnsTarget)")))
        else:
            out.problems.append(DnsProblem(DnsGap.NO_TARGET, (
                f"region {region.name} has no address clients outside the cluster can "
                f"reach (spec.service.type is {ce.spec.service.type}): set "
                "spec.service.type LoadBalancer or regions[].dnsTarget; it gets no record")))
    rows = plan.traffic_weights
    if dns.client_regions:
        clients = sorted({m.region for m in dns.client_regions})
        served: set[str] = set()
        for client in clients:
            # Before a plan exists a client region is served by its own edges.
            row = rows.get(client) or {client: 1.0}
            records = _weighted(f"{client}.{hostname}", f"{client}-", row, targets, dns.ttl,
                                dns.weight_key)
            if records:
                served.add(client)
                out.endpoints += records
            else:
                out.problems.append(DnsProblem(DnsGap.CLIENT_UNSERVED, (
                    f"client region {client} has no edge region with an address and a "
                    "share of its traffic: its clients get no record")))
        seen: dict[str, int] = {}
        for match in dns.client_regions:
            if match.region not in served:
                continue
            n = seen[match.region] = seen.get(match.region, 0) + 1
            out.endpoints.append({
                "dnsName": hostname,
                "recordType": "CNAME",
                "targets": [f"{match.region}.{hostname}"],
                "recordTTL": dns.ttl,
                # '/' is in no region name: "us/2" never collides with a region "us-2"
                "setIdentifier": match.region if n == 1 else f"{match.region}/{n}",
                "providerSpecific": [
                    {"name": p.name, "value": p.value} for p in match.provider_specific
                ],
            })
        return out
    shares = region_weights(plan)
    if not any(shares.values()):  # no demand declared: spread by region
        shares = {r.name: 1.0 / len(ce.spec.regions) for r in ce.spec.regions}
    out.endpoints = _weighted(hostname, "", shares, targets, dns.ttl, dns.weight_key)
    out.problems.append(DnsProblem(DnsGap.FLATTENED, (
        "one weighted record set serves every client (each region's global share), not "
        "each client region's row of the plan: set routing.dns.clientRegions where the DNS "
        "provider can select clients by location (docs/dns.md)")))
    return out


def dns_endpoint(ce: ContentEdge, dns: DnsPlan) -> dict[str, Any]:
    return {
        "apiVersion": "externaldns.k8s.io/v1alpha1",
        "kind": "DNSEndpoint",
        "metadata": {
            "name": ce.name,
            "namespace": ce.namespace,
            "labels": {**labels("aerocdn-edge", ce.name, "dns"),
                       "aerocdn.dev/contentedge": ce.name},
        },
        "spec": {"endpoints": dns.endpoints},
    }
