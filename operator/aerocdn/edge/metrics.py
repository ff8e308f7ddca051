"""Prometheus metrics of one edge process (own registry, so tests can run several)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class NginxStatus(Collector):
    """L1 numbers read from nginx's stub_status (refreshed by the edge's probe loop)."""

    def __init__(self) -> None:
        self.requests: int | None = None
        self.active: int | None = None
        self.edge_requests_via_nginx = 0
        self.control_requests = 0  # the edge's own stub_status reads and purges

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        if self.requests is None or self.active is None:
            return
        yield CounterMetricFamily(
            "aerocdn_nginx_requests", "Requests nginx (L1) handled, from stub_status",
            value=self.requests,
        )
        yield GaugeMetricFamily(
            "aerocdn_nginx_connections_active", "Active client connections of nginx",
            value=self.active,
        )
        yield CounterMetricFamily(
            "aerocdn_l1_served",
            "Requests nginx answered without asking the edge (L1 hits, stale, 421s): "
            "nginx requests minus requests that reached the edge and the edge's own "
            "stub_status/purge calls",
            value=max(0, self.requests - self.edge_requests_via_nginx - self.control_requests),
        )


class EdgeMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "aerocdn_edge_requests", "Requests answered by the edge, by result", ["result"],
            registry=r,
        )
        self.hits = Counter("aerocdn_cache_hits", "Cache hits by tier", ["tier"], registry=r)
        self.origin_fetches = Counter(
            "aerocdn_origin_fetches", "Requests sent to the origin, by outcome", ["outcome"],
            registry=r,
        )
        self.origin_requests = Counter(
            "aerocdn_origin_requests", "Requests sent to each origin, by outcome (ok, 5xx, "
            "error, timeout)", ["origin", "outcome"], registry=r,
        )
        self.origin_up = Gauge(
            "aerocdn_origin_up", "1 while the origin's circuit is closed, 0 while open or "
            "half-open", ["origin"], registry=r,
        )
        self.origin_failovers = Counter(
            "aerocdn_origin_failovers", "Origin requests retried on another origin after a "
            "connect error, timeout or 5xx", registry=r,
        )
        self.collapsed = Counter(
            "aerocdn_collapsed_waits",
            "Misses that waited for another fetch instead of asking the origin",
            ["scope"], registry=r,
        )
        self.latency = Histogram(
            "aerocdn_edge_request_duration_seconds", "Edge answer time by result", ["result"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.origin_latency = Histogram(
            "aerocdn_origin_duration_seconds", "Origin time to headers", buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.bytes = Counter(
            "aerocdn_edge_bytes_sent", "Body bytes the edge sent, by result", ["result"],
            registry=r,
        )
        self.tier_errors = Counter(
            "aerocdn_tier_errors", "L2 cache cluster errors and timeouts", ["cluster"], registry=r
        )
        self.tier_up = Gauge(
            "aerocdn_tier_up", "1 while the cluster's circuit is closed", ["cluster"], registry=r
        )
        self.degraded = Gauge(
            "aerocdn_degraded", "1 while no L2 cluster answers (serving L1 + origin)", registry=r
        )
        self.routing_generation = Gauge(
            "aerocdn_routing_generation", "Generation of the routing plan in use", registry=r
        )
        self.routing_reloads = Counter(
            "aerocdn_routing_reloads", "Routing plan reloads", registry=r
        )
        self.budget_used = Gauge(
            "aerocdn_budget_used_bytes", "Bytes held by a per-pod structure", ["structure"],
            registry=r)
        self.budget_limit = Gauge(
            "aerocdn_budget_limit_bytes", "Byte budget of a per-pod structure (from the "
            "memory limit)", ["structure"], registry=r)
        self.tls_reloads = Counter(
            "aerocdn_tls_reloads", "nginx reloads after a certificate changed", registry=r
        )
        self.purges = Counter(
            "aerocdn_purges", "Purges handled, by kind and role", ["kind", "role"], registry=r
        )
        self.inflight = Gauge("aerocdn_edge_inflight", "Requests in progress", registry=r)
        self.nginx = NginxStatus()
        r.register(self.nginx)
        self._children: dict[tuple[int, str], Any] = {}

    def _child(self, metric: Counter | Histogram, label: str) -> Any:
        # labels() takes a lock and builds a tuple per call: cache the children (hot path)
        key = (id(metric), label)
        c = self._children.get(key)
        if c is None:
            c = self._children[key] = metric.labels(label)
        return c

    def answered(self, result: str, seconds: float) -> None:
        self._child(self.requests, result).inc()
        self._child(self.latency, result).observe(seconds)

    def hit(self, tier: str) -> None:
        self._child(self.hits, tier).inc()

    def sent(self, tier: str, n: int) -> None:
        self._child(self.bytes, tier).inc(n)
