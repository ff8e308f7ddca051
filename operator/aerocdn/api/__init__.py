"""The aerocdn APIs (group aerocdn.dev, version v1alpha1) as pydantic models."""

from aerocdn.api.cachecluster import CacheClusterSpec, CacheClusterStatus
from aerocdn.api.common import API_VERSION, GROUP, VERSION
from aerocdn.api.contentedge import ContentEdgeSpec, ContentEdgeStatus
from aerocdn.api.objects import (
    CacheCluster,
    ContentEdge,
    InputError,
    ObjectMeta,
    parse_object,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "CacheCluster",
    "CacheClusterSpec",
    "CacheClusterStatus",
    "ContentEdge",
    "ContentEdgeSpec",
    "ContentEdgeStatus",
    "InputError",
    "ObjectMeta",
    "parse_object",
]
