"""Leader election on a coordination.k8s.io Lease: with several operator replicas, only the
holder reconciles; the others watch and wait. A holder that dies is replaced once its lease
expires; one that stops cleanly releases the lease so a standby takes over at once (rolling
updates of the operator do not freeze, unlike kopf peers of equal priority)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aerocdn.controller.kube import Kube, KubeError

log = logging.getLogger(__name__)

MICRO = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass(frozen=True)
class LeaseView:
    holder: str
    renewed: dt.datetime | None
    duration: float


def parse_lease(obj: dict[str, Any]) -> LeaseView:
    spec = obj.get("spec") or {}
    renew = spec.get("renewTime")
    renewed = None
    if renew:
        renewed = dt.datetime.fromisoformat(renew.replace("Z", "+00:00"))
    return LeaseView(spec.get("holderIdentity") or "", renewed,
                     float(spec.get("leaseDurationSeconds") or 15))


def may_acquire(lease: LeaseView, me: str, now: dt.datetime) -> bool:
    """Pure: whether ``me`` may hold the lease now (it is ours, free, or expired)."""
    if lease.holder in ("", me):
        return True
    if lease.renewed is None:
        return True
    return (now - lease.renewed).total_seconds() > lease.duration


class LeaderElector:
    def __init__(self, kube: Kube, namespace: str, name: str, identity: str,
                 on_start: Callable[[], Awaitable[None]],
                 on_stop: Callable[[], Awaitable[None]],
                 duration: float = 15.0, renew_every: float = 4.0):
        self.kube, self.namespace, self.name, self.identity = kube, namespace, name, identity
        self.on_start, self.on_stop = on_start, on_stop
        self.duration, self.renew_every = duration, renew_every
        self.leading = False
        self._path = (f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}")

    def _body(self, now: dt.datetime, transitions: int, acquired: str | None,
              rv: str | None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if rv:
            meta["resourceVersion"] = rv
        stamp = now.strftime(MICRO)
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
                "spec": {"holderIdentity": self.identity, "leaseDurationSeconds":
                         int(self.duration), "acquireTime": acquired or stamp,
                         "renewTime": stamp, "leaseTransitions": transitions}}

    async def _try(self) -> bool:
        now = dt.datetime.now(dt.UTC)
        try:
            current = await self.kube.request("GET", self._path, kind="Lease", count=False)
        except KubeError as exc:
            if exc.status != 404:
                raise
            collection = self._path.rsplit("/", 1)[0]
            try:
                await self.kube.request("POST", collection, kind="Lease", count=False,
                                        body=self._body(now, 0, None, None))
                return True
            except KubeError as exc2:
                if exc2.status == 409:
                    return False
                raise
        view = parse_lease(current)
        if not may_acquire(view, self.identity, now):
            return False
        spec = current.get("spec") or {}
        ours = view.holder == self.identity
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if ours else 1)
        body = self._body(now, transitions, spec.get("acquireTime") if ours else None,
                          current["metadata"]["resourceVersion"])
        try:
            await self.kube.request("PUT", self._path, kind="Lease", count=False, body=body)
        except KubeError as exc:
            if exc.status == 409:  # someone else renewed or took it first
                return False
            raise
        return True

    async def run(self) -> None:
        try:
            while True:
                try:
                    held = await self._try()
                except Exception as exc:  # the API may be briefly unreachable
                    log.warning("leader election: %s", exc)
                    held = False
                if held and not self.leading:
                    self.leading = True
                    log.info("leader election: %s now leads (lease %s/%s)", self.identity,
                             self.namespace, self.name)
                    await self.on_start()
                elif not held and self.leading:
                    self.leading = False
                    log.warning("leader election: %s lost the lease; standing by",
                                self.identity)
                    await self.on_stop()
                await asyncio.sleep(self.renew_every if held else self.renew_every / 2)
        finally:
            if self.leading:
                await self.release()

    async def release(self) -> None:
        """Give the lease up so a standby takes over without waiting for it to expire."""
        self.leading = False
        try:
            current = await self.kube.request("GET", self._path, kind="Lease", count=False)
            if parse_lease(current).holder != self.identity:
                return
            current["spec"]["holderIdentity"] = ""
            current["spec"]["renewTime"] = None
            await self.kube.request("PUT", self._path, kind="Lease", count=False, body=current)
            log.info("leader election: %s released the lease", self.identity)
        except Exception as exc:
            log.warning("leader election: could not release the lease: %s", exc)
