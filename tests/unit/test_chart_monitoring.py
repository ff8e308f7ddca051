"""The chart's monitoring: PodMonitors for edge and Aerospike pods and a Grafana dashboard
whose every query names a metric that really exists (issue 13, item 5)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
from prometheus_client import REGISTRY
from tests.unit.test_chart import CHART, NAMESPACE, render
from tests.unit.test_render import cachecluster, contentedge

import aerocdn.controller.metrics  # noqa: F401  (registers the operator's metrics)
from aerocdn.edge.metrics import EdgeMetrics
from aerocdn.render.cachecluster import render_cachecluster
from aerocdn.render.contentedge import render_contentedge

# Metric names a real aerospike-prometheus-exporter served for a CE 8.1.2.0 node (recorded:
# see the header of the file).
EXPORTER_NAMES = Path(__file__).parent / "data" / "exporter-metric-names.txt"


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def monitors(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == "PodMonitor"}


def test_pod_monitors_off_by_default_and_select_what_the_operator_creates(
    chart: helm.Chart,
) -> None:
    assert monitors(render(chart)) == {}
    found = monitors(render(chart, {"metrics": {"podMonitors": {
        "enabled": True, "labels": {"release": "prom"}}}}))
    assert set(found) == {"aerocdn-edges", "aerocdn-aerospike"}
    # Each selects the pods the operator renders, on a port those pods declare.
    cc = render_cachecluster(cachecluster({"exporter": {"enabled": True}}))
    ce = render_contentedge(contentedge())
    pods = {
        "aerocdn-aerospike": [o for o in cc if o["kind"] == "StatefulSet"],
        "aerocdn-edges": [o for o in ce if o["kind"] == "Deployment"],
    }
    for name, monitor in found.items():
        assert monitor["metadata"]["namespace"] == NAMESPACE
        assert monitor["metadata"]["labels"]["release"] == "prom"
        assert monitor["spec"]["namespaceSelector"] == {"any": True}
        selector = monitor["spec"]["selector"]["matchLabels"]
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        assert pods[name]
        for workload in pods[name]:
            template = workload["spec"]["template"]
            assert selector.items() <= template["metadata"]["labels"].items()
            ports = {p["name"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
            assert endpoint["port"] in ports


def test_pod_monitors_follow_watched_namespaces(chart: helm.Chart) -> None:
    found = monitors(render(chart, {"watchNamespaces": ["cdn-eu"],
                                    "metrics": {"podMonitors": {"enabled": True}}}))
    for monitor in found.values():
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["cdn-eu"]}


def dashboard(chart: helm.Chart) -> dict[str, Any]:
    objects = render(chart, {"grafana": {"dashboards": {"enabled": True}}})
    (cm,) = [o for o in objects if o["kind"] == "ConfigMap"]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    board: dict[str, Any] = json.loads(cm["data"]["aerocdn.json"])
    return board


def known_metrics() -> set[str]:
    families = [*EdgeMetrics().registry.collect(), *REGISTRY.collect()]
    names = {f.name for f in families}
    samples = set()
    for n in names:  # counters expose <name>_total, histograms <name>_bucket/_sum/_count
        samples |= {n, f"{n}_total", f"{n}_bucket", f"{n}_sum", f"{n}_count"}
    recorded = [line.strip() for line in EXPORTER_NAMES.read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    return samples | set(recorded)


def test_dashboard_queries_only_metrics_that_exist(chart: helm.Chart) -> None:
    board = dashboard(chart)
    known = known_metrics()
    queried = set()
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            queried |= set(re.findall(r"\b((?:aerocdn|aerospike)_[a-z0-9_]+)\b", target["expr"]))
    assert queried, "the dashboard queries nothing"
    assert queried - known == set()
    assert {p["title"] for p in board["panels"] if p["type"] == "row"} == {
        "Edges", "Aerospike (exporter sidecars)", "Operator"}
