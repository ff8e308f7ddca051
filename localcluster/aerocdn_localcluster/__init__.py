"""A real Kubernetes control plane on loopback, for tests and the local demo.

    from aerocdn_localcluster import LocalCluster

    with LocalCluster() as cluster:
        ...  # KUBECONFIG=cluster.kubeconfig

`python -m aerocdn_localcluster up|down` does the same from a shell (see `--help`).
"""

from aerocdn_localcluster.cluster import (
    LocalCluster,
    build_binaries,
    find_repo,
    group_alive,
    local_cluster,
    processes_mentioning,
)
from aerocdn_localcluster.errors import ClusterError
from aerocdn_localcluster.plan import NodeSpec, default_nodes

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
