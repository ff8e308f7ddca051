"""DNS that follows the plan per client region (issue 15, part 3)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.unit.test_api_crd_parity import Validator as CrdValidator
from tests.unit.test_render import by_kind

from aerocdn.api import ContentEdge, parse_object
from aerocdn.api.objects import InputError
from aerocdn.controller.conditions import condition_events
from aerocdn.controller.contentedge import dns_condition, external_addresses
from aerocdn.render import preview_plan
from aerocdn.render.contentedge import render_contentedge
from aerocdn.render.dns import WEIGHT_SCALE, dns_plan

REGIONS = ("eu", "us", "ap")
GEO = {"eu": "EU", "us": "NA", "ap": "AS"}


def edge(dns: dict[str, Any], **region_extra: Any) -> ContentEdge:
    # eu has little capacity for its demand: part of eu's clients spill to us, not to ap.
    regions = [
        {"name": "eu", "replicas": 1, "capacityPerReplica": 100, "expectedDemand": 300,
         "dnsTarget": "eu.lb.example.net"},
        {"name": "us", "replicas": 4, "capacityPerReplica": 100, "expectedDemand": 100,
         "dnsTarget": "192.0.2.10"},
        {"name": "ap", "replicas": 2, "capacityPerReplica": 100, "expectedDemand": 50,
         **region_extra},
    ]
    obj = parse_object({
        "apiVersion": "aerocdn.dev/v1alpha1", "kind": "ContentEdge",
        "metadata": {"name": "web", "namespace": "cdn"},
        "spec": {"hosts": ["www.example.com"], "origin": {"url": "http://o.example"},
                 "regions": regions,
                 "routing": {"latenciesMs": {"eu": {"us": 80, "ap": 200}, "us": {"ap": 150}},
                             "dns": {"enabled": True, "weightKey": "aws/weight", **dns}}}})
    assert isinstance(obj, ContentEdge)
    return obj


PER_CLIENT = {"clientRegions": [
    {"region": r, "providerSpecific": [{"name": "aws/geolocation-continent-code",
                                         "value": GEO[r]}]} for r in REGIONS
] + [{"region": "us", "providerSpecific": [{"name": "aws/geolocation-country-code",
                                             "value": "*"}]}]}


def test_each_client_region_gets_its_own_row_of_the_plan() -> None:
    ce = edge(PER_CLIENT, dnsTarget="ap.lb.example.net")
    plan = preview_plan(ce, {})
    rows = plan.traffic_weights
    # The plan really differs per client region (else this test proves nothing).
    assert rows["eu"] != rows["us"]
    (obj,) = by_kind(render_contentedge(ce, {}, plan.to_json()), "DNSEndpoint")
    endpoints = obj["spec"]["endpoints"]
    for client in REGIONS:
        name = f"{client}.www.example.com"
        records = [e for e in endpoints if e["dnsName"] == name]
        got = {e["setIdentifier"].removeprefix(f"{client}-"): int(e["providerSpecific"][0]
               ["value"]) for e in records}
        want = {edge: round(share * WEIGHT_SCALE) for edge, share in rows[client].items()
                if round(share * WEIGHT_SCALE) > 0}
        assert got == want
    cnames = [e for e in endpoints if e["dnsName"] == "www.example.com"]
    assert {(e["setIdentifier"], e["targets"][0], e["providerSpecific"][0]["value"])
            for e in cnames} == {
        ("eu", "eu.www.example.com", "EU"), ("us", "us.www.example.com", "NA"),
        ("ap", "ap.www.example.com", "AS"), ("us/2", "us.www.example.com", "*")}
    # Targets: A for an IPv4 address, CNAME for a host name; set identifiers unique per name.
    types = {e["targets"][0]: e["recordType"] for e in endpoints}
    assert types["192.0.2.10"] == "A" and types["eu.lb.example.net"] == "CNAME"
    keys = [(e["dnsName"], e["setIdentifier"]) for e in endpoints]
    assert len(keys) == len(set(keys))
    assert dns_plan(ce, plan).warnings == []


def test_no_svc_name_is_ever_a_target_and_a_region_without_address_is_reported() -> None:
    ce = edge(PER_CLIENT)  # ap has no dnsTarget and no observed address
    plan = preview_plan(ce, {})
    out = dns_plan(ce, plan)
    assert all(".svc" not in t for e in out.endpoints for t in e["targets"])
    assert any("region ap has no address" in w for w in out.warnings)
    # The LoadBalancer address the operator observed is used when given.
    seen = dns_plan(ce, plan, {"ap": "203.0.113.7"})
    assert "203.0.113.7" in {t for e in seen.endpoints for t in e["targets"]}
    assert seen.warnings == []


def test_without_client_regions_one_weighted_set_and_a_warning() -> None:
    ce = edge({}, dnsTarget="ap.lb.example.net")
    plan = preview_plan(ce, {})
    out = dns_plan(ce, plan)
    assert {e["dnsName"] for e in out.endpoints} == {"www.example.com"}
    assert sum(int(e["providerSpecific"][0]["value"]) for e in out.endpoints) == \
        pytest.approx(WEIGHT_SCALE, abs=len(REGIONS))
    assert any("clientRegions" in w for w in out.warnings)


def test_client_regions_must_be_regions_of_the_spec() -> None:
    with pytest.raises(InputError, match=r"clientRegions\[0\]\.region: 'mars'"):
        edge({"clientRegions": [{"region": "mars", "providerSpecific": [
            {"name": "aws/region", "value": "us-east-1"}]}]})


def test_the_operator_reads_loadbalancer_addresses() -> None:
    services = {
        "eu": {"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.1"}]}}},
        "us": {"status": {"loadBalancer": {"ingress": [{"hostname": "us.lb.example.net"}]}}},
        "ap": {"status": {"loadBalancer": {}}},
        "sa": None,
    }
    assert external_addresses(services) == {"eu": "203.0.113.1", "us": "us.lb.example.net"}


def test_dns_routing_condition_names_the_most_urgent_gap() -> None:
    ce = edge(PER_CLIENT)  # ap: no dnsTarget, Service type ClusterIP (the default)
    plan = preview_plan(ce, {})
    ok = dns_condition(ce, dns_plan(ce, plan, {"ap": "203.0.113.7"}))
    assert (ok.type, ok.status, ok.reason) == ("DnsRouting", True, "FollowsPlan")
    assert "3 client regions" in ok.message
    gap = dns_condition(ce, dns_plan(ce, plan))
    assert (gap.status, gap.reason) == (False, "NoTarget")
    assert "region ap has no address" in gap.message and "ClusterIP" in gap.message
    # With LoadBalancer Services the region waits for its address, and the message says
    # which Service.
    lb = _with_service(ce, "LoadBalancer")
    waiting = dns_condition(lb, dns_plan(lb, plan))
    assert (waiting.status, waiting.reason) == (False, "AwaitingAddress")
    assert "web-ap has no address yet" in waiting.message
    # No clientRegions: flattened, False even with every address known.
    flat_ce = edge({}, dnsTarget="ap.lb.example.net")
    flat = dns_condition(flat_ce, dns_plan(flat_ce, preview_plan(flat_ce, {})))
    assert (flat.status, flat.reason) == (False, "Flattened")
    # Flattened and a region without a target: the missing target is the reason, both are
    # in the message.
    both_ce = edge({})
    both = dns_condition(both_ce, dns_plan(both_ce, preview_plan(both_ce, {})))
    assert both.reason == "NoTarget" and "clientRegions" in both.message
    # ExternalDNS's CRD not installed: nothing published, whatever the plan.
    missing = dns_condition(ce, dns_plan(ce, plan, {"ap": "203.0.113.7"}), False)
    assert (missing.status, missing.reason) == (False, "DNSEndpointAPIMissing")


def _with_service(ce: ContentEdge, type_: str) -> ContentEdge:
    raw = ce.model_dump(by_alias=True, exclude_none=True)
    raw["spec"]["service"] = {"type": type_}
    obj = parse_object({"apiVersion": "aerocdn.dev/v1alpha1", "kind": "ContentEdge", **raw})
    assert isinstance(obj, ContentEdge)
    return obj


def test_dns_routing_turning_false_is_a_warning_event() -> None:
    def cond(status: str, reason: str) -> dict[str, Any]:
        return {"type": "DnsRouting", "status": status, "reason": reason, "message": "m"}

    # a new ContentEdge whose records cannot follow the plan: a Warning at once
    assert condition_events([], [cond("False", "Flattened")]) == [
        ("Warning", "DnsRoutingFalse", "Flattened: m")]
    assert condition_events([cond("True", "FollowsPlan")], [cond("False", "NoTarget")])[0][0] \
        == "Warning"
    # another gap while False: a Warning again; the same gap again: nothing
    assert condition_events([cond("False", "AwaitingAddress")],
                            [cond("False", "NoTarget")])[0][0] == "Warning"
    assert condition_events([cond("False", "NoTarget")], [cond("False", "NoTarget")]) == []
    # fixed: a Normal event
    assert condition_events([cond("False", "NoTarget")], [cond("True", "FollowsPlan")]) == [
        ("Normal", "DnsRoutingTrue", "FollowsPlan: m")]
    # other quiet conditions of a new object still say nothing
    assert condition_events([], [{"type": "Progressing", "status": "False",
                                  "reason": "Converged", "message": ""}]) == []


# ExternalDNS's DNSEndpoint CRD: the release users install, and the stricter schema proposed
# upstream (admission validation); provenance in each file's header.
EXTERNALDNS_CRDS = sorted((Path(__file__).parent / "data" / "externaldns").glob("*.yaml"))


def dnsendpoint_errors(crd_file: Path, obj: dict[str, Any]) -> list[str]:
    crd = yaml.safe_load(crd_file.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    assert obj["apiVersion"] == f"{crd['spec']['group']}/v1alpha1"
    assert obj["kind"] == crd["spec"]["names"]["kind"]
    return [f"{list(e.absolute_path)}: {e.message}"
            for e in CrdValidator(version["schema"]["openAPIV3Schema"]).iter_errors(obj)]


def rendered_dnsendpoints() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for label, ce in [("per-client", edge(PER_CLIENT, dnsTarget="2001:db8::7")),
                      ("flattened", edge({}, dnsTarget="ap.lb.example.net"))]:
        plan = preview_plan(ce, {})
        (obj,) = by_kind(render_contentedge(ce, {}, plan.to_json(), {"ap": "203.0.113.7"}),
                         "DNSEndpoint")
        out.append((label, obj))
    return out


@pytest.mark.parametrize("crd_file", EXTERNALDNS_CRDS, ids=lambda p: p.stem)
def test_rendered_dnsendpoints_are_valid_externaldns_objects(crd_file: Path) -> None:
    assert len(EXTERNALDNS_CRDS) == 2
    for label, obj in rendered_dnsendpoints():
        assert obj["spec"]["endpoints"], label
        assert dnsendpoint_errors(crd_file, obj) == [], label
        # The CEL rules of the stricter schema are about SRV, NAPTR and PTR records only
        # (evaluated by a real apiserver in tests/integration/test_dns_routing.py).
        assert {e["recordType"] for e in obj["spec"]["endpoints"]} <= {"A", "AAAA", "CNAME"}
    # The validator does refuse what the schema does not admit (else this test proves
    # nothing): targets as a string is refused by both.
    broken = copy.deepcopy(rendered_dnsendpoints()[0][1])
    broken["spec"]["endpoints"][0]["targets"] = "192.0.2.1"
    assert dnsendpoint_errors(crd_file, broken)


def test_the_stricter_schema_refuses_what_a_record_name_cannot_be() -> None:
    (strict,) = [p for p in EXTERNALDNS_CRDS if "pr6609" in p.name]
    obj = copy.deepcopy(rendered_dnsendpoints()[0][1])
    obj["spec"]["endpoints"][0]["dnsName"] = "eu.*.example.com"
    assert any("dnsName" in e for e in dnsendpoint_errors(strict, obj))


@pytest.mark.parametrize("dns, region_extra, message", [
    ({**PER_CLIENT, "hostname": "*.example.com"}, {}, r"routing.dns.hostname: .* wildcard"),
    ({**PER_CLIENT, "hostname": "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 60},
     {}, r"clientRegions\[0\]\.region: .* longer than 253"),
    ({}, {"dnsTarget": "not a name"}, r"regions\[2\]\.dnsTarget: 'not a name'"),
    ({}, {"dnsTarget": "fe80::1%eth0"}, r"regions\[2\]\.dnsTarget"),
])
def test_dns_names_that_cannot_be_records_are_refused(dns: dict[str, Any],
                                                      region_extra: dict[str, Any],
                                                      message: str) -> None:
    with pytest.raises(InputError, match=message):
        edge(dns, **region_extra)


def test_a_wildcard_host_is_fine_without_client_regions() -> None:
    ce = edge({"hostname": "*.example.com"}, dnsTarget="2001:db8::7")
    out = dns_plan(ce, preview_plan(ce, {}))
    assert {e["dnsName"] for e in out.endpoints} == {"*.example.com"}
    assert {e["recordType"] for e in out.endpoints} == {"A", "AAAA", "CNAME"}
