"""Command-line options of `aerocdn run`."""

from __future__ import annotations

import argparse
import os
import socket


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--namespace", action="append", default=[],
                   help="watch only this namespace (repeatable; default: all namespaces)")
    p.add_argument("--aerospike-probe", choices=["aerospike", "kubernetes"], default="aerospike",
                   help="how cluster stability is judged: ask Aerospike (default), or let pod "
                        "readiness stand in (clusters without Aerospike pods; shown in status)")
    p.add_argument("--aerospike-address", action="append", default=[], metavar="POD=HOST:PORT",
                   help="reach an Aerospike pod at another address (out-of-cluster runs)")
    p.add_argument("--edge-admin-address", action="append", default=[],
                   metavar="POD=HOST:PORT",
                   help="reach an edge pod's admin port (ContentPurge) at another address "
                        "(out-of-cluster runs)")
    p.add_argument("--origin-health-seconds", type=float, default=30.0,
                   help="how often the edge pods of a ContentEdge with spec.origins are asked "
                        "for their origins' health (status.origins)")
    p.add_argument("--resync-seconds", type=float, default=60.0,
                   help="periodic reconcile of every object")
    p.add_argument("--metrics-port", type=int, default=8080,
                   help="port for /metrics and /healthz (0 disables)")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--leader-election", action="store_true",
                   help="with several replicas: only the holder of a Lease reconciles")
    p.add_argument("--leader-election-namespace",
                   default=os.environ.get("POD_NAMESPACE", "aerocdn-system"),
                   help="namespace of the Lease (default: $POD_NAMESPACE or aerocdn-system)")
    p.add_argument("--leader-election-id", default="aerocdn-operator",
                   help="name of the Lease")
    p.add_argument("--identity", default=os.environ.get("POD_NAME") or socket.gethostname(),
                   help="this replica's name in the Lease (default: $POD_NAME or hostname)")
