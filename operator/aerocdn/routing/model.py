"""Facts, policy and plan of the region-routing planner (pure data, frozen)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CacheState(StrEnum):
    """State of a CacheCluster as the operator observes it."""

    READY = "ready"
    MIGRATING = "migrating"
    DRAINING = "draining"
    ABSENT = "absent"


class CacheFacts(_Frozen):
    """The CacheCluster a region's edges read and write."""

    name: str = Field(min_length=1)
    state: CacheState
    capacity: float | None = Field(
        default=None,
        ge=0,
        description="Capacity in any unit; only 'zero' matters: a ready cluster with capacity 0 "
        "is not routed to. None: unknown, treated as usable.",
    )
    ready_since: datetime | None = Field(
        default=None,
        description="When the cluster (last) became ready; drives the slow-start ramp. "
        "None on a ready cluster: ready for longer than any window.",
    )

    @field_validator("ready_since")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("readySince must be timezone-aware")
        return value


class RegionFacts(_Frozen):
    """What is true of one region right now."""

    name: str = Field(min_length=1)
    ready_replicas: int = Field(ge=0)
    capacity_per_replica: float = Field(ge=0, allow_inf_nan=False, description="req/s")
    expected_demand: float = Field(ge=0, allow_inf_nan=False, description="req/s")
    cache: CacheFacts | None = None

    @property
    def capacity(self) -> float:
        """Raw edge capacity in req/s (ready replicas x per-replica capacity)."""
        return self.ready_replicas * self.capacity_per_replica


class Policy(_Frozen):
    """How conservative the plan is."""

    headroom: float = Field(
        default=1.25,
        ge=1,
        allow_inf_nan=False,
        description="Usable capacity = capacity / headroom (Envoy's overprovisioning factor).",
    )
    slow_start_seconds: float = Field(default=120.0, ge=0, allow_inf_nan=False)
    hysteresis: float = Field(
        default=0.05,
        ge=0,
        lt=1,
        allow_inf_nan=False,
        description="Relative change of a region's demand or usable capacity below which the "
        "traffic weights are kept (precise rule: aerocdn.routing.planner docstring).",
    )


class Facts(_Frozen):
    """Everything the planner knows. `now` is passed in: the planner never reads a clock."""

    regions: tuple[RegionFacts, ...]
    latencies_ms: Mapping[str, Mapping[str, float]] = Field(default_factory=dict)
    now: datetime

    @field_validator("now")
    @classmethod
    def _now_aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        return value

    @model_validator(mode="after")
    def _check(self) -> Facts:
        names = [r.name for r in self.regions]
        if not names:
            raise ValueError("regions: at least one region is needed")
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise ValueError(f"regions: region {name!r} is listed twice")
            seen.add(name)
        for src, row in self.latencies_ms.items():
            if src not in seen:
                raise ValueError(f"latenciesMs.{src}: unknown region {src!r}")
            for dst, ms in row.items():
                if dst not in seen:
                    raise ValueError(f"latenciesMs.{src}.{dst}: unknown region {dst!r}")
                if not (isinstance(ms, int | float) and math.isfinite(ms) and ms >= 0):
                    raise ValueError(f"latenciesMs.{src}.{dst}: {ms!r} is not a finite number >= 0")
        return self


class CacheRoute(_Frozen):
    """One CacheCluster an edge region uses, with its share of cache requests."""

    cache_cluster: str
    weight: float


class RegionBasis(_Frozen):
    """The facts of one region the traffic weights were computed for (for hysteresis)."""

    demand: float
    usable_capacity: float


class _Wire(BaseModel):
    """routes.json as written (camelCase keys); types checked strictly (no "1" for 1), unknown
    keys ignored: a newer operator may add some."""

    model_config = ConfigDict(frozen=True, extra="ignore", strict=True, alias_generator=to_camel)


class _RoutesRoute(_Wire):
    cache_cluster: str
    weight: float = 1.0


class _RoutesRegionBasis(_Wire):
    demand: float
    usable_capacity: float


class _RoutesBasis(_Wire):
    latency_digest: str = ""
    overload_scale: float = 1.0
    regions: dict[str, _RoutesRegionBasis] | None = None


class _RoutesDoc(_Wire):
    generation: int = Field(ge=1)
    overloaded: bool = False
    traffic_weights: dict[str, dict[str, float]] | None = None
    cache_routes: dict[str, list[_RoutesRoute]] | None = None
    basis: _RoutesBasis | None = None


def _first_error(exc: ValidationError) -> str:
    """``cacheRoutes.eu.0.weight: should be a number``: where, then what."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "(top level)"
    what = {"model_type": "should be an object", "dict_type": "should be an object",
            "list_type": "should be a list", "missing": "is required"}.get(
        err["type"], err["msg"][:1].lower() + err["msg"][1:])
    more = exc.error_count() - 1
    return f"{where}: {what}" + (f" (and {more} more)" if more else "")


class Plan(_Frozen):
    """The planner's output; `to_json()` is the routes.json the edges hot-reload."""

    generation: int = Field(ge=1)
    overloaded: bool
    traffic_weights: dict[str, dict[str, float]]
    cache_routes: dict[str, tuple[CacheRoute, ...]]
    basis: dict[str, RegionBasis]
    latency_digest: str
    overload_scale: float = Field(
        default=1.0,
        ge=1,
        description="Edge loads were planned up to this multiple of usable capacity (1 unless "
        "overloaded).",
    )
    next_change_at: datetime | None = Field(
        default=None,
        description="When a slow-start ramp next changes a cache weight; re-plan then.",
    )

    def published(self) -> Plan:
        """What routes.json carries: the plan without its re-plan time (not published: a
        different time alone must not change the bytes the edges reload)."""
        return self.model_copy(update={"next_change_at": None})

    def to_json(self) -> str:
        """Deterministic routes.json: sorted keys, shortest round-trip float repr. The
        re-plan time (``next_change_at``) is the operator's, not the edges': not in it."""
        doc: dict[str, Any] = {
            "generation": self.generation,
            "overloaded": self.overloaded,
            "trafficWeights": self.traffic_weights,
            "cacheRoutes": {
                region: [{"cacheCluster": r.cache_cluster, "weight": r.weight} for r in routes]
                for region, routes in self.cache_routes.items()
            },
            "basis": {
                "latencyDigest": self.latency_digest,
                "overloadScale": self.overload_scale,
                "regions": {
                    name: {"demand": b.demand, "usableCapacity": b.usable_capacity}
                    for name, b in self.basis.items()
                },
            },
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "routes.json") -> Plan:
        """Parse routes.json: what `to_json` writes, or a part of it (the operator, the
        controllers and every edge read it with this).  Required: ``generation`` (an integer
        >= 1); absent (or null) parts are empty, a route's absent ``weight`` is 1; unknown keys
        are ignored.  Anything else raises ValueError naming ``source`` and the field."""
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{source}: not JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise ValueError(f"{source}: top level must be an object")
        try:
            wire = _RoutesDoc.model_validate(doc)
            basis = wire.basis or _RoutesBasis()
            return cls(
                generation=wire.generation,
                overloaded=wire.overloaded,
                traffic_weights=wire.traffic_weights or {},
                cache_routes={
                    region: tuple(CacheRoute(cache_cluster=r.cache_cluster, weight=r.weight)
                                  for r in routes)
                    for region, routes in (wire.cache_routes or {}).items()
                },
                basis={
                    name: RegionBasis(demand=b.demand, usable_capacity=b.usable_capacity)
                    for name, b in (basis.regions or {}).items()
                },
                latency_digest=basis.latency_digest,
                overload_scale=basis.overload_scale,
            )
        except ValidationError as exc:
            raise ValueError(f"{source}: {_first_error(exc)}") from None

    def regions_using(self, cache_cluster: str) -> list[str]:
        """Edge regions whose cache routes still send weight to ``cache_cluster`` (sorted)."""
        return sorted(region for region, routes in self.cache_routes.items()
                      if any(r.cache_cluster == cache_cluster and r.weight > 0 for r in routes))

    def summary(self) -> dict[str, Any]:
        """A small status summary (camelCase, JSON-ready) for `status.routing`.

        Per region: the percentage of its demand served locally, where the rest goes (edge
        region -> percent, largest first), its load against usable capacity, and the preferred
        CacheCluster.
        """
        load: dict[str, float] = dict.fromkeys(self.traffic_weights, 0.0)
        for client, row in self.traffic_weights.items():
            demand = self.basis[client].demand if client in self.basis else 0.0
            for edge, share in row.items():
                load[edge] = load.get(edge, 0.0) + demand * share
        regions: dict[str, Any] = {}
        for client in sorted(self.traffic_weights):
            row = self.traffic_weights[client]
            spilled = sorted(
                ((e, s) for e, s in row.items() if e != client and s > 0),
                key=lambda es: (-es[1], es[0]),
            )
            usable = self.basis[client].usable_capacity if client in self.basis else 0.0
            routes = self.cache_routes.get(client, ())
            preferred = next((r.cache_cluster for r in routes if r.weight > 0), None)
            regions[client] = {
                "servedLocallyPercent": round(100.0 * row.get(client, 0.0), 2),
                "spilledTo": {e: round(100.0 * s, 2) for e, s in spilled},
                "loadReqPerSec": round(load.get(client, 0.0), 3),
                "usableCapacityReqPerSec": round(usable, 3),
                "overloaded": load.get(client, 0.0) > usable * (1 + 1e-6)
                and load.get(client, 0.0) > 0,
                "cacheCluster": preferred,
            }
        return {
            "generation": self.generation,
            "overloaded": self.overloaded,
            "regions": regions,
        }


def moved_traffic(old: Plan, new: Plan, demand: Mapping[str, float] | None = None) -> float:
    """Traffic (req/s) that changes edge region between two plans: 1/2 sum d_i |x_new - x_old|_1.

    `demand` defaults to the demand in `new`'s basis. A client region present in only one plan
    counts as fully moved.
    """
    if demand is None:
        demand = {name: b.demand for name, b in new.basis.items()}
    total = 0.0
    for client in set(old.traffic_weights) | set(new.traffic_weights):
        d = demand.get(client, 0.0)
        if d <= 0:
            continue
        a = old.traffic_weights.get(client)
        b = new.traffic_weights.get(client)
        if a is None or b is None:
            total += d
            continue
        l1 = sum(abs(b.get(e, 0.0) - a.get(e, 0.0)) for e in set(a) | set(b))
        total += d * l1 / 2.0
    return total
