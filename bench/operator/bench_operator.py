"""Apply -> Ready for N ContentEdges (3 regions each) on the local control plane, API requests
per reconcile, idle-resync writes and the operator's RSS.

    .venv/bin/python bench/operator/bench_operator.py --edges 1 50 200 --clusters 30

Starts its own local control plane (or uses $KUBECONFIG), runs the operator as a child process
(--aerospike-probe=kubernetes: kwok pods), prints a Markdown table and stops what it started.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.integration.operator_harness import (
    Kubectl,
    Operator,
    cluster_for_bench,
    install,
    is_ready,
    wait_for,
)

REGIONS = ["eu-west", "us-east", "ap-south"]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cluster(name: str, region: str) -> dict:
    return {"apiVersion": "aerocdn.dev/v1alpha1", "kind": "CacheCluster",
            "metadata": {"name": name},
            "spec": {"region": region, "size": 1,
                     "resources": {"requests": {"cpu": "100m", "memory": "1Gi"}},
                     "namespaces": [{"name": "cache", "storage": {"size": "512Mi"}}]}}


def edge(name: str, clusters: list[str]) -> dict:
    return {"apiVersion": "aerocdn.dev/v1alpha1", "kind": "ContentEdge",
            "metadata": {"name": name},
            "spec": {"hosts": [f"{name}.example.com"], "origin": {"url": "http://origin.test"},
                     "regions": [{"name": r, "replicas": 1, "cacheCluster": c,
                                  "expectedDemand": 500}
                                 for r, c in zip(REGIONS, clusters, strict=True)],
                     "routing": {"slowStartSeconds": 0},
                     # small requests so 600 edge pods fit on the 6 simulated nodes
                     "resources": {"edge": {"requests": {"cpu": "10m", "memory": "64Mi"}},
                                   "nginx": {"requests": {"cpu": "10m", "memory": "64Mi"}}}}}


def all_ready(k: Kubectl, kind: str, ns: str, n: int) -> bool:
    items = k.items(kind, ns)
    return len(items) == n and all(is_ready(o) for o in items)


def run_case(k: Kubectl, op: Operator, edges: int, clusters: int) -> dict[str, float]:
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    k.run("create", "namespace", ns)
    ccs = [cluster(f"cc{i}", REGIONS[i % 3]) for i in range(clusters)]
    ces = [edge(f"e{i}", [f"cc{(3 * i + j) % clusters}" for j in range(3)])
           for i in range(edges)]
    m0 = op.metrics()
    assert op.proc is not None
    cpu0 = cpu_seconds(op.proc.pid)
    start = time.monotonic()
    k.apply(*ccs, namespace=ns)
    k.apply(*ces, namespace=ns)
    wait_for("CacheClusters Ready", lambda: all_ready(k, "cc", ns, clusters), timeout=900,
             interval=1)
    wait_for("ContentEdges Ready", lambda: all_ready(k, "ce", ns, edges), timeout=900,
             interval=1)
    elapsed = time.monotonic() - start
    cpu = cpu_seconds(op.proc.pid) - cpu0
    m1 = op.metrics()

    def total(m: dict[str, float], prefix: str) -> float:
        return sum(v for key, v in m.items() if key.startswith(prefix))
    requests = total(m1, "aerocdn_api_requests_total") - total(m0, "aerocdn_api_requests_total")
    reconciles = total(m1, "aerocdn_reconciles_total") - total(m0, "aerocdn_reconciles_total")
    by_cause = {k: v - m0.get(k, 0.0) for k, v in m1.items()
                if k.startswith("aerocdn_reconciles_total{") and v - m0.get(k, 0.0) > 0}
    rss = rss_mb(op.proc.pid) if op.proc else float("nan")
    # idle: once a whole resync round made no write (the last readiness changes have been
    # written), count the writes of two more rounds
    objects = edges + clusters

    def quiet_round() -> bool:
        w, r = op.writes(), op.reconciles()
        wait_for("a resync round", lambda: op.reconciles() >= r + objects, timeout=600,
                 interval=1)
        return op.writes() == w
    settle_start = time.monotonic()
    wait_for("a resync round without writes", quiet_round, timeout=900, interval=0)
    settle = time.monotonic() - settle_start
    w0, r0 = op.writes(), op.reconciles()
    q0 = total(op.metrics(), "aerocdn_api_requests_total")
    wait_for("two resync rounds", lambda: op.reconciles() >= r0 + 2 * objects,
             timeout=600, interval=1)
    idle_writes = op.writes() - w0
    idle_requests = (total(op.metrics(), "aerocdn_api_requests_total") - q0) / max(
        op.reconciles() - r0, 1)
    k.run("delete", "namespace", ns, "--timeout=600s", check=False, timeout=660)
    return {"edges": edges, "clusters": clusters, "seconds": elapsed,
            "requests_per_reconcile": requests / max(reconciles, 1), "reconciles": reconciles,
            "rss_mb": rss, "idle_writes": idle_writes, "operator_cpu": cpu,
            "idle_requests": idle_requests,
            "settle": settle, "by_cause": by_cause}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--edges", type=int, nargs="+", default=[1, 50, 200])
    p.add_argument("--clusters", type=int, default=30)
    p.add_argument("--resync-seconds", type=float, default=3.0,
                   help="the operator's resync period (3: the rows of docs/benchmarks.md "
                   "before the fourth session; the operator's default is 60)")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="aerocdn-bench-"))
    with cluster_for_bench() as kubeconfig:
        k = Kubectl(kubeconfig)
        install(k)
        op = Operator(Path(kubeconfig), work / "operator.log",
                      "--resync-seconds", f"{args.resync_seconds:g}").start()
        try:
            rows = [run_case(k, op, n, min(args.clusters, max(3, n))) for n in args.edges]
        finally:
            op.stop()
    print(f"machine: {platform.node()} {os.cpu_count()} cores; python {platform.python_version()}"
          f"; operator resync every {args.resync_seconds:g} s")
    print("| ContentEdges | CacheClusters | apply -> all Ready (s) | operator CPU (s) | "
          "reconciles | API requests / reconcile | API requests / idle reconcile | "
          "writes on 2 idle resyncs | operator RSS (MB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['edges']} | {r['clusters']} | {r['seconds']:.1f} | "
              f"{r['operator_cpu']:.1f} | {r['reconciles']:.0f} | "
              f"{r['requests_per_reconcile']:.1f} | {r['idle_requests']:.2f} | "
              f"{r['idle_writes']:.0f} | "
              f"{r['rss_mb']:.0f} |")
    for r in rows:
        print(f"\nReconciles from apply to all Ready, {r['edges']} ContentEdges, by kind, result "
              "(unchanged: skipped, nothing it reads changed) and cause:\n")
        print("| kind | result | cause | reconciles |")
        print("|---|---|---|---|")
        for key, n in sorted(r["by_cause"].items(), key=lambda kv: -kv[1]):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', key))
            print(f"| {labels.get('kind', '')} | {labels.get('result', '')} | "
                  f"{labels.get('cause', '')} | {n:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
