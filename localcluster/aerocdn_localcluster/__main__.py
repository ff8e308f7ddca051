"""`python -m aerocdn_localcluster up|down|build`: the local control plane from a shell."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from aerocdn_localcluster import nodeplan, realnode
from aerocdn_localcluster.cluster import (
    LocalCluster,
    build_binaries,
    processes_mentioning,
    stop_groups,
)
from aerocdn_localcluster.errors import ClusterError


def _default_dir() -> Path:
    cache = os.environ.get("AEROCDN_CACHE") or str(Path.home() / ".cache" / "aerocdn")
    return Path(cache) / "run"


def _load_state(state_file: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _running_pids(state: dict[str, Any]) -> list[int]:
    """Recorded pids that are still ours (their command line names our workdir)."""
    ours = set(processes_mentioning(str(state["workdir"])))
    return [int(p["pid"]) for p in state.get("processes", []) if int(p["pid"]) in ours]


def up(directory: Path, timeout: float, real_nodes: int = 0,
       images: tuple[Path, ...] = ()) -> int:
    state_file = directory / "state.json"
    state = _load_state(state_file)
    if state is not None and _running_pids(state):
        print(f"# the local cluster is already running (state in {state_file})", file=sys.stderr)
        print(f"export KUBECONFIG={state['kubeconfig']}")
        return 0
    directory.mkdir(parents=True, exist_ok=True)
    cluster = LocalCluster(workdir=directory / "cluster", detach=True, timeout=timeout,
                           real_nodes=real_nodes, images=images)
    try:
        cluster.start()
    except ClusterError as e:
        print(f"error: the local cluster did not start: {e}", file=sys.stderr)
        return 1
    state_file.write_text(json.dumps(cluster.state(), indent=2) + "\n")
    print(
        f"# started in {cluster.started_seconds:.1f} s; stop it with "
        f"`python -m aerocdn_localcluster down --dir {directory}`",
        file=sys.stderr,
    )
    for node in cluster.real_nodes:
        print(f"# real node {node.name}: a shell in its network namespace: "
              f"ip netns exec {cluster.netns(node.name)} bash", file=sys.stderr)
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    return 0


def node_network(state: dict[str, Any]) -> tuple[nodeplan.NodeNetwork, int] | None:
    net = state.get("node_network")
    if not net:
        return None
    return nodeplan.NodeNetwork(run_id=net["run_id"], subnet=int(net["subnet"])), int(net["nodes"])


def down(directory: Path) -> int:
    state_file = directory / "state.json"
    state = _load_state(state_file)
    if state is None:
        print(f"no local cluster recorded in {state_file}: nothing to stop", file=sys.stderr)
        return 0
    pids = _running_pids(state)
    stop_groups(pids)
    # Real nodes: everything in their cgroups (shims, containers), their namespaces and links.
    nodes = node_network(state)
    if nodes is not None:
        realnode.cleanup(*nodes)
    left = processes_mentioning(str(state["workdir"]))
    if left:
        print(f"error: processes still running after SIGKILL: {left}", file=sys.stderr)
        return 1
    shutil.rmtree(state["workdir"], ignore_errors=True)
    state_file.unlink(missing_ok=True)
    print(f"stopped the local cluster ({len(pids)} processes)", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aerocdn_localcluster",
        description="A real Kubernetes control plane (etcd, kube-apiserver, "
        "kube-controller-manager, kube-scheduler, kwok nodes) and real nodes (kubelet, "
        "containerd, kube-proxy, CoreDNS; each in a network namespace of its own).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start in the background; print `export KUBECONFIG=...`")
    p_up.add_argument("--dir", type=Path, default=_default_dir(), help="state directory")
    p_up.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for ready")
    p_up.add_argument("--real-nodes", type=int, default=1,
                      help="real nodes (kubelet + containerd, needs root) beside the simulated "
                      "ones (default 1; 0: simulated nodes only)")
    p_up.add_argument("--image", type=Path, action="append", default=[],
                      help="a docker-archive to import into each real node (repeatable)")
    p_down = sub.add_parser("down", help="stop what `up` started")
    p_down.add_argument("--dir", type=Path, default=_default_dir(), help="state directory")
    sub.add_parser("build", help="build or reuse the binaries; print their directory")
    args = parser.parse_args(argv)
    if args.command == "up":
        return up(args.dir, args.timeout, args.real_nodes, tuple(args.image))
    if args.command == "down":
        return down(args.dir)
    try:
        print(build_binaries())
    except ClusterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
