"""Reconciles whose inputs did not change: nearly free.

A ContentEdge's reconcile reads only what the watches keep in the store - the ContentEdge,
the CacheClusters of its namespace, its own children - plus the clock (a planned change is
returned as a requeue delay) and, when DNS output is on, its DNSEndpoints (not watched). When
a reconcile ran from exactly the same versions of everything it reads, wrote nothing and
planned nothing, running it again decides the same: the resync round and events about
objects it does not read cost a store lookup instead of a plan, a render and a diff.

Not for CacheClusters: their reconcile also reads what Aerospike says (migrations, cluster
size), which no watch brings; nor for ContentEdges with DNS output (their DNSEndpoints are
listed from the API, not watched). And never for longer than ``FULL_EVERY_SECONDS``: a full
reconcile still runs that often, so what no watch reports (a watch that silently lost an
event) is repaired as before.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aerocdn.constants import API_VERSION, CC_KIND, CE_KIND, LABEL_CONTENTEDGE
from aerocdn.controller.cache import Store

FULL_EVERY_SECONDS = 600.0

Inputs = tuple[Any, ...]


def _versions(objs: Iterable[dict[str, Any]]) -> tuple[tuple[str, str | None], ...]:
    return tuple((o["metadata"]["name"], o["metadata"].get("resourceVersion")) for o in objs)


def contentedge_inputs(store: Store, namespace: str, name: str,
                       child_kinds: Iterable[tuple[str, str]]) -> Inputs | None:
    """The versions of everything a ContentEdge's reconcile reads from the store; None when
    the store cannot tell (a kind not listed yet, the ContentEdge unknown) or the reconcile
    also reads what no watch brings: its DNSEndpoints while DNS output is on (an ExternalDNS
    installed later, a record edited by hand are seen at the next resync, as before)."""
    kinds = [(API_VERSION, CE_KIND), (API_VERSION, CC_KIND), *child_kinds]
    if not all(store.ready(k) for k in kinds):
        return None
    ce = store.get(API_VERSION, CE_KIND, namespace, name)
    if ce is None:
        return None
    if (((ce.get("spec") or {}).get("routing") or {}).get("dns") or {}).get("enabled"):
        return None
    return (ce["metadata"].get("resourceVersion"),
            _versions(store.list(API_VERSION, CC_KIND, namespace)),
            *(_versions(store.list(av, kind, namespace, {LABEL_CONTENTEDGE: name}))
              for av, kind in child_kinds))


@dataclass
class UnchangedMemo:
    """Per key, the inputs of its last reconcile that wrote nothing and planned nothing, and
    when it ran (monotonic seconds)."""

    full_every: float = FULL_EVERY_SECONDS
    _last: dict[Hashable, tuple[Inputs, float]] = field(default_factory=dict)

    def unchanged(self, key: Hashable, inputs: Inputs | None, now: float) -> bool:
        """Whether a reconcile of ``key`` from ``inputs`` would only repeat the last one."""
        last = self._last.get(key)
        return (inputs is not None and last is not None and last[0] == inputs
                and now - last[1] < self.full_every)

    def record(self, key: Hashable, inputs: Inputs | None, now: float, *, idle: bool) -> None:
        """After a reconcile that started from ``inputs``: remember them when it was idle
        (no write, no event, no requeue), forget the key otherwise."""
        if idle and inputs is not None:
            self._last[key] = (inputs, now)
        else:
            self._last.pop(key, None)

    def forget(self, key: Hashable) -> None:
        self._last.pop(key, None)
