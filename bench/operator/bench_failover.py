"""How long a standby replica takes to lead after the leader is killed (SIGKILL), and after
the leader stops cleanly (it releases the Lease).

    KUBECONFIG=... .venv/bin/python bench/operator/bench_failover.py --runs 3

Uses $KUBECONFIG (with the CRDs and RBAC of manifests/base installed by this script) or
starts a local control plane; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.integration.operator_harness import (
    Kubectl,
    Operator,
    cluster_for_bench,
    install,
    serviceaccount_kubeconfig,
    wait_for,
)


def takeover(k: Kubectl, work: Path, kill: bool, n: int) -> float:
    sa = serviceaccount_kubeconfig(k, work / f"sa{n}")
    a = Operator(sa, work / f"a{n}.log", "--leader-election", "--identity", f"a{n}")
    b = Operator(sa, work / f"b{n}.log", "--leader-election", "--identity", f"b{n}")
    try:
        a.start()
        wait_for("a leads", lambda: a.metrics().get("aerocdn_leader") == 1, timeout=60)
        b.start()
        start = time.monotonic()
        if kill:
            a.kill()
        else:
            a.stop()
        wait_for("b leads", lambda: b.metrics().get("aerocdn_leader") == 1, timeout=60,
                 interval=0.05)
        return time.monotonic() - start
    finally:
        a.stop()
        b.stop()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="aerocdn-failover-"))
    with cluster_for_bench() as kubeconfig:
        k = Kubectl(kubeconfig)
        install(k)
        killed = [takeover(k, work, True, i) for i in range(args.runs)]
        clean = [takeover(k, work, False, 100 + i) for i in range(args.runs)]
    print("| leader stops by | runs | median takeover (s) | max (s) |")
    print("|---|---|---|---|")
    for name, xs in (("SIGKILL (lease expires: 15 s)", killed), ("clean stop (lease released)",
                                                                  clean)):
        print(f"| {name} | {len(xs)} | {statistics.median(xs):.1f} | {max(xs):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
