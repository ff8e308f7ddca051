"""Prometheus metrics of the operator (served on /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "aerocdn_reconciles_total",
    "Reconciles by kind, result (ok, error, or unchanged: skipped because nothing it reads "
    "changed since an idle run, controller/unchanged.py) and cause (start, resync, object, "
    "child, relist, secret, cachecluster, requeue, retry)", ["kind", "result", "cause"])
RECONCILE_SECONDS = Histogram("aerocdn_reconcile_duration_seconds", "Reconcile duration",
                              ["kind"])
API_REQUESTS = Counter("aerocdn_api_requests_total", "Kubernetes API requests", ["verb", "kind"])
API_WRITES = Counter("aerocdn_api_writes_total", "Kubernetes API writes", ["verb", "kind"])
QUEUE_DEPTH = Gauge("aerocdn_queue_depth", "Objects waiting to be reconciled")
SCALE_STEPS = Counter("aerocdn_scale_steps_total", "Aerospike scale steps taken", ["action"])
LEADER = Gauge("aerocdn_leader", "1 while this replica holds the leader lease (or runs alone)")
MIGRATING_PARTITIONS = Gauge(
    "aerocdn_aerospike_migrating_partitions",
    "Partitions Aerospike still has to migrate (summed over nodes), at the last reconcile",
    ["namespace", "cachecluster"])
