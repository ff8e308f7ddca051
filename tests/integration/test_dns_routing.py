"""DNS that follows the routing plan per client region (issue 15, part 3) on a real
kube-apiserver with ExternalDNS's DNSEndpoint CRD installed (the release, vendored in
tests/unit/data/externaldns/): the DNSEndpoint the operator writes is admitted, its record
sets carry each client region's row of the plan the operator published, its targets are the
LoadBalancer addresses of the region Services (a status change of a Service alone brings
them in: the operator under test resyncs once an hour), and the DnsRouting condition and its
Warning Events say what keeps the records from following the plan."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.integration.operator_harness import (
    Kubectl,
    Operator,
    condition,
    is_ready,
    serviceaccount_kubeconfig,
    small_cc,
    small_ce,
    wait_for,
)

from aerocdn.render.dns import WEIGHT_SCALE
from aerocdn.routing.model import Plan

CRDS = Path(__file__).resolve().parents[1] / "unit" / "data" / "externaldns"
RELEASE = CRDS / "dnsendpoints-v0.22.0.yaml"
STRICT = CRDS / "dnsendpoints-pr6609.yaml"
CRD_NAME = "dnsendpoints.externaldns.k8s.io"
GEO = {"eu": "EU", "us": "NA", "ap": "AS"}
ADDRESSES = {"eu": {"ip": "203.0.113.10"}, "us": {"hostname": "us.lb.example.net"},
             "ap": {"ip": "2001:db8::7"}}


@pytest.fixture
def externaldns_crd(kubectl: Kubectl) -> Iterator[bool]:
    """Yields whether this test installs the CRD (then it is absent first, and removed at
    the end); a cluster that has ExternalDNS already keeps its CRD untouched."""
    ours = kubectl.run("get", "crd", CRD_NAME, check=False).returncode != 0
    try:
        yield ours
    finally:
        if ours:
            kubectl.run("delete", "crd", CRD_NAME, "--ignore-not-found", "--timeout=120s",
                        check=False)


def install_crd(kubectl: Kubectl, path: Path) -> None:
    kubectl.run("apply", "--server-side", "--force-conflicts", "-f", str(path))
    kubectl.run("wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD_NAME}")


def events(kubectl: Kubectl, ns: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in kubectl.items("events", ns)
            if e["involvedObject"]["name"] == "geo" and e["reason"] == reason]


def dns_routing(kubectl: Kubectl, ns: str) -> dict[str, Any]:
    return condition(kubectl.get("ce", "geo", ns), "DnsRouting")


def geo_ce() -> dict[str, Any]:
    # eu has too little capacity for its clients: part of them spill to us, not to ap.
    ce = small_ce("geo", [
        {"name": "eu", "replicas": 1, "capacityPerReplica": 100, "expectedDemand": 300},
        {"name": "us", "replicas": 4, "capacityPerReplica": 100, "expectedDemand": 100},
        {"name": "ap", "replicas": 2, "capacityPerReplica": 100, "expectedDemand": 50},
    ], service={"type": "LoadBalancer"})
    ce["spec"]["routing"] = {
        "slowStartSeconds": 0,
        "latenciesMs": {"eu": {"us": 80, "ap": 200}, "us": {"ap": 150}},
        "dns": {"enabled": True, "hostname": "www.geo.example", "weightKey": "aws/weight",
                "clientRegions": [
                    {"region": r, "providerSpecific": [
                        {"name": "aws/geolocation-continent-code", "value": GEO[r]}]}
                    for r in GEO] + [
                    {"region": "us", "providerSpecific": [
                        {"name": "aws/geolocation-country-code", "value": "*"}]}]}}
    return ce


def spilled_plan(kubectl: Kubectl, ns: str) -> Plan | None:
    """The published plan once the ContentEdge is Ready and eu's clients spill to us."""
    if not is_ready(kubectl.get("ce", "geo", ns)):
        return None
    cm = kubectl.get("configmap", "geo-routing", ns)
    if cm is None:
        return None
    plan = Plan.from_json(cm["data"]["routes.json"])
    eu = plan.traffic_weights.get("eu", {})
    return plan if eu.get("us", 0) > 0 and eu.get("eu", 0) > 0 else None


def address(region: str) -> str:
    return ADDRESSES[region].get("ip") or ADDRESSES[region]["hostname"]


def records_match_plan(endpoint: dict[str, Any] | None, plan: Plan) -> bool:
    """Each client region's weighted set is its row of the plan (weights in WEIGHT_SCALE),
    pointing at the LoadBalancer addresses; <hostname> sends each continent to its set."""
    if endpoint is None:
        return False
    got: dict[str, dict[str, tuple[int, str]]] = {}
    cnames = set()
    for e in endpoint["spec"]["endpoints"]:
        props = {p["name"]: p["value"] for p in e.get("providerSpecific", [])}
        if e["dnsName"] == "www.geo.example":
            cnames.add((e["recordType"], e["targets"][0], e["setIdentifier"],
                        tuple(sorted(props.items()))))
            continue
        client = e["dnsName"].removesuffix(".www.geo.example")
        edge = e["setIdentifier"].removeprefix(f"{client}-")
        got.setdefault(client, {})[edge] = (int(props["aws/weight"]), e["targets"][0])
    want = {client: {edge: (round(share * WEIGHT_SCALE), address(edge))
                     for edge, share in row.items() if round(share * WEIGHT_SCALE) > 0}
            for client, row in plan.traffic_weights.items()}
    return got == want and cnames == {
        ("CNAME", f"{r}.www.geo.example", r,
         (("aws/geolocation-continent-code", GEO[r]),)) for r in GEO} | {
        ("CNAME", "us.www.geo.example", "us/2", (("aws/geolocation-country-code", "*"),))}


def test_dns_records_follow_each_client_regions_row_of_the_plan(
        kubectl: Kubectl, operator: Operator, ns: str, externaldns_crd: bool,
        tmp_path: Path) -> None:
    # CacheClusters too: a Ready ContentEdge is not polled, so below only events reconcile it
    kubectl.apply(*(small_cc(r, r, size=1) for r in GEO), geo_ce(), namespace=ns)
    if externaldns_crd:
        # DNS output on, ExternalDNS not installed: said in the condition, with a Warning
        gap = wait_for("DnsRouting DNSEndpointAPIMissing", lambda: (
            c := dns_routing(kubectl, ns)).get("reason") == "DNSEndpointAPIMissing" and c)
        assert gap["status"] == "False" and "install ExternalDNS" in gap["message"]
        # the Event is posted right after the status is written
        assert [e["type"] for e in wait_for("the Warning", lambda: events(
            kubectl, ns, "DnsRoutingFalse"))] == ["Warning"]
        install_crd(kubectl, RELEASE)
    # LoadBalancer Services without an address yet: an empty DNSEndpoint (no *.svc name
    # ever), the condition names each Service it waits for
    waiting = wait_for("DnsRouting AwaitingAddress", lambda: (
        c := dns_routing(kubectl, ns)).get("reason") == "AwaitingAddress" and c)
    for region in GEO:
        assert f"Service geo-{region} has no address yet" in waiting["message"]
    endpoint = wait_for("the DNSEndpoint", lambda: kubectl.get("dnsendpoint", "geo", ns))
    assert endpoint["spec"].get("endpoints") in (None, [])
    assert wait_for("a Warning for AwaitingAddress", lambda: [
        e for e in events(kubectl, ns, "DnsRoutingFalse")
        if e["message"].startswith("AwaitingAddress") and e["type"] == "Warning"])
    plan = wait_for("every edge ready and eu spilling to us", lambda: spilled_plan(kubectl, ns))
    assert plan.traffic_weights["eu"] != plan.traffic_weights["us"]

    # From here the operator resyncs once an hour: after its first pass over the namespace
    # only the Services' watch events can bring their addresses in.
    operator.stop()
    work = tmp_path / "op"
    work.mkdir()
    quiet = Operator(serviceaccount_kubeconfig(kubectl, work / "kubeconfig"),
                     work / "operator.log", "--resync-seconds", "3600", "--namespace", ns
                     ).start()
    try:
        wait_for("the first reconcile of geo", lambda: sum(
            v for k, v in quiet.metrics().items()
            if k.startswith("aerocdn_reconciles_total{") and 'kind="ContentEdge"' in k
            and 'result="ok"' in k) >= 1)
        for region, ingress in ADDRESSES.items():  # what a cloud's LoadBalancer controller does
            kubectl.run("patch", "service", f"geo-{region}", "-n", ns, "--subresource=status",
                        "--type=merge", "-p",
                        json.dumps({"status": {"loadBalancer": {"ingress": [ingress]}}}))

        def settled() -> tuple[dict[str, Any], Plan] | None:
            cm = kubectl.get("configmap", "geo-routing", ns)
            endpoint = kubectl.get("dnsendpoint", "geo", ns)
            if cm is None or endpoint is None:
                return None
            published = Plan.from_json(cm["data"]["routes.json"])
            return (endpoint, published) if records_match_plan(endpoint, published) else None

        endpoint, published = wait_for("records of every client region's row", settled)
        assert published.traffic_weights["eu"] != published.traffic_weights["us"]
        ok = wait_for("DnsRouting True", lambda: (
            c := dns_routing(kubectl, ns)).get("status") == "True" and c)
        assert ok["reason"] == "FollowsPlan"
        assert wait_for("a Normal event for DnsRouting True",
                        lambda: events(kubectl, ns, "DnsRoutingTrue"))[0]["type"] == "Normal"
        types = {e["targets"][0]: e["recordType"] for e in endpoint["spec"]["endpoints"]}
        assert types["203.0.113.10"] == "A" and types["2001:db8::7"] == "AAAA"
        assert types["us.lb.example.net"] == "CNAME"
        assert not any(".svc" in t for t in types)

        # ap's load balancer goes away: its records go, the condition and a Warning say so
        kubectl.run("patch", "service", "geo-ap", "-n", ns, "--subresource=status",
                    "--type=merge", "-p",
                    json.dumps({"status": {"loadBalancer": {"ingress": None}}}))
        wait_for("ap's records removed", lambda: all(
            e["targets"] != ["2001:db8::7"]
            for e in (kubectl.get("dnsendpoint", "geo", ns) or {"spec": {"endpoints": [
                {"targets": ["2001:db8::7"]}]}})["spec"]["endpoints"]))
        lost = wait_for("DnsRouting False again", lambda: (
            c := dns_routing(kubectl, ns)).get("status") == "False" and c)
        assert lost["reason"] == "AwaitingAddress" and "geo-ap" in lost["message"]
        assert wait_for("a second Warning", lambda: len(
            [e for e in events(kubectl, ns, "DnsRoutingFalse")
             if e["message"].startswith("AwaitingAddress") and e["type"] == "Warning"]) >= 2)
    finally:
        quiet.stop()
        operator.start()

    if externaldns_crd:
        # The stricter schema proposed upstream (dnsName pattern, recordType enum, CEL) admits
        # the same records, and refuses a name no record can have.
        install_crd(kubectl, STRICT)
        obj = {"apiVersion": endpoint["apiVersion"], "kind": "DNSEndpoint",
               "metadata": {"name": "geo-strict"}, "spec": endpoint["spec"]}
        kubectl.run("apply", "-n", ns, "--dry-run=server", "-f", "-",
                    input=yaml.safe_dump(obj))
        bad = json.loads(json.dumps(obj))
        bad["spec"]["endpoints"][0]["dnsName"] = "eu.*.geo.example"
        refused = kubectl.run("apply", "-n", ns, "--dry-run=server", "-f", "-",
                              input=yaml.safe_dump(bad), check=False)
        assert refused.returncode != 0 and "dnsName" in refused.stderr
