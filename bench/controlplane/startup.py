"""Warm start-to-ready time and memory of the local control plane.

    .venv/bin/python bench/controlplane/startup.py --runs 5

Builds (or reuses) the binaries first, so every run is warm. "Ready" is what
`LocalCluster.start()` waits for: /readyz, every simulated node Ready and the default
ServiceAccount present. RSS is the sum over every process of the control plane, read from
/proc when ready and again after `--settle` seconds idle.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from aerocdn_localcluster import LocalCluster, build_binaries


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def group_rss(pgids: list[int]) -> dict[int, int]:
    """RSS (KiB) of every live process whose process group is one of `pgids`."""
    out: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            if os.getpgid(pid) in pgids:
                out[pid] = rss_kib(pid)
        except (ProcessLookupError, FileNotFoundError, PermissionError):
            continue
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--settle", type=float, default=10.0)
    args = parser.parse_args()
    bin_dir = build_binaries()
    starts: list[float] = []
    ready_rss: list[float] = []
    settled_rss: list[float] = []
    for run in range(1, args.runs + 1):
        with LocalCluster(bin_dir=bin_dir, log=lambda _: None) as cluster:
            assert cluster.started_seconds is not None
            starts.append(cluster.started_seconds)
            names = dict(
                zip(cluster.pids, ("etcd", "apiserver", "kcm", "scheduler", "kwok"), strict=True)
            )
            at_ready = group_rss(cluster.pids)
            time.sleep(args.settle)  # a benchmark: measure memory after an idle period
            settled = group_rss(cluster.pids)
            ready_rss.append(sum(at_ready.values()) / 1024)
            settled_rss.append(sum(settled.values()) / 1024)
            detail = ", ".join(f"{names.get(p, p)} {kib / 1024:.0f}" for p, kib in settled.items())
            steps = " ".join(f"{k} {v:.1f}" for k, v in cluster.milestones.items())
            print(
                f"run {run}: ready in {starts[-1]:.2f} s (at: {steps}); "
                f"RSS at ready {ready_rss[-1]:.0f} MiB, "
                f"after {args.settle:.0f} s {settled_rss[-1]:.0f} MiB ({detail})",
                flush=True,
            )
    print(
        f"start-to-ready over {args.runs} runs: median {statistics.median(starts):.2f} s, "
        f"min {min(starts):.2f} s, max {max(starts):.2f} s; "
        f"RSS median at ready {statistics.median(ready_rss):.0f} MiB, "
        f"settled {statistics.median(settled_rss):.0f} MiB; load average {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
