"""What every reconcile needs: the API wrapper, the options, the queue, the clock."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from aerocdn.aerospike.parse import HostPort
from aerocdn.controller.kube import Kube
from aerocdn.controller.queue import WorkQueue

API_VERSION = "aerocdn.dev/v1alpha1"
CC_KIND = "CacheCluster"
CE_KIND = "ContentEdge"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def timestamp(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Context:
    kube: Kube
    queue: WorkQueue
    probe: str = "aerospike"
    address_overrides: dict[str, HostPort] = field(default_factory=dict)
    clock: Callable[[], dt.datetime] = utcnow
    # seconds between polls while something is in progress (scale steps, rolls, drains)
    poll_seconds: float = 3.0
