"""What every reconcile needs: the API wrapper, the options, the queue, the clock."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aerocdn.aerospike.parse import HostPort
from aerocdn.constants import API_VERSION as API_VERSION  # re-exported
from aerocdn.constants import CC_KIND as CC_KIND
from aerocdn.constants import CE_KIND as CE_KIND
from aerocdn.constants import CP_KIND as CP_KIND
from aerocdn.controller.cache import CachedKube
from aerocdn.controller.kube import Kube
from aerocdn.controller.originhealth import Polled
from aerocdn.controller.queue import WorkQueue


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def timestamp(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Context:
    kube: Kube | CachedKube
    queue: WorkQueue
    probe: str = "aerospike"
    address_overrides: dict[str, HostPort] = field(default_factory=dict)
    # edge pod name -> host:port of its admin endpoint (out-of-cluster runs; default: the
    # pod's IP and the admin port)
    edge_admin_addresses: dict[str, str] = field(default_factory=dict)
    clock: Callable[[], dt.datetime] = utcnow
    # seconds between polls while something is in progress (scale steps, rolls, drains)
    poll_seconds: float = 3.0
    # makes the `aerospike` client object for one pod (tests pass a stand-in); None: the real
    aerospike_client_factory: Callable[[dict[str, Any]], Any] | None = None
    # (kind, namespace, name) -> the generation a permanent error was reported for: that
    # generation is not reconciled again (nothing would change until the object does)
    failed_generation: dict[tuple[str, str, str], int | None] = field(default_factory=dict)
    # ContentEdges whose DNSEndpoints were listed since the start (DNSEndpoints are not
    # watched: an optional API; listed while DNS output is on, and once after a start)
    dns_checked: set[tuple[str, str]] = field(default_factory=set)
    # ContentEdges with spec.origins: their edge pods' origin reports, asked at most every
    # origin_health_seconds (controller/originhealth.py)
    origin_health: dict[tuple[str, str], Polled] = field(default_factory=dict)
    origin_health_seconds: float = 30.0
    monotonic: Callable[[], float] = time.monotonic
