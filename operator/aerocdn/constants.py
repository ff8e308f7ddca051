"""Names shared by the API, render, the controller and the Aerospike logic: one place each."""

from __future__ import annotations

GROUP = "aerocdn.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CC_KIND = "CacheCluster"
CE_KIND = "ContentEdge"
CP_KIND = "ContentPurge"

# Server-side apply field manager, and the managed-by label value of every child.
FIELD_MANAGER = "aerocdn"
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED = {MANAGED_BY: FIELD_MANAGER}

# Labels that name a child's parent (the watches map child events back to it).
LABEL_CACHECLUSTER = f"{GROUP}/cachecluster"
LABEL_CONTENTEDGE = f"{GROUP}/contentedge"
LABEL_REGION = f"{GROUP}/region"

# Pod readiness gate: True only while the Aerospike cluster is stable with migrations done,
# so the PodDisruptionBudget holds node drains meanwhile.
READINESS_GATE = f"{GROUP}/cluster-stable"
# Pod template annotation: a hash of the rendered configuration (a change rolls the pods).
CONFIG_HASH = f"{GROUP}/config-hash"
