"""DNS that follows the plan per client region (issue 15, part 3)."""

from __future__ import annotations

from typing import Any

import pytest
from tests.unit.test_render import by_kind

from aerocdn.api import ContentEdge, parse_object
from aerocdn.api.objects import InputError
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
        ("ap", "ap.www.example.com", "AS"), ("us-2", "us.www.example.com", "*")}
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
