"""A real Kubernetes control plane on loopback, for tests and the local demo.

    from aerocdn.localcluster import LocalCluster

    with LocalCluster() as cluster:
        ...  # KUBECONFIG=cluster.kubeconfig

`python -m aerocdn.localcluster up|down` does the same from a shell (see `--help`).
"""

from aerocdn.localcluster.cluster import (
    LocalCluster,
    build_binaries,
    find_repo,
    group_alive,
    local_cluster,
    processes_mentioning,
)
from aerocdn.localcluster.errors import ClusterError
from aerocdn.localcluster.plan import NodeSpec, default_nodes

__all__ = [
    "ClusterError",
    "LocalCluster",
    "NodeSpec",
    "build_binaries",
    "default_nodes",
    "find_repo",
    "group_alive",
    "local_cluster",
    "processes_mentioning",
]
