"""The L2 as the request path sees it: the region's cache clusters in routing-plan order, each
behind a circuit breaker.  A failing cluster is skipped for the next; when none answers the
edge runs as L1 + origin (``degraded``)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass

from aerocdn.edge.breaker import CircuitBreaker
from aerocdn.edge.tiers import Entry, Tier, TierError


@dataclass(frozen=True)
class LockResult:
    tier: Tier | None  # None: no tier answered, no cross-pod lock (fetch anyway)
    acquired: bool


class TierSet:
    def __init__(
        self,
        tiers: Mapping[str, Tier],
        breakers: Mapping[str, CircuitBreaker],
        order: Callable[[], tuple[str, ...]],
        on_error: Callable[[str, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.tiers = dict(tiers)
        self.breakers = dict(breakers)
        self._order = order
        self._on_error = on_error
        self._clock = clock

    def usable(self) -> list[Tier]:
        now = self._clock()
        out = []
        for name in self._order():
            t = self.tiers.get(name)
            if t is not None and self.breakers[name].state(now) != "open":
                out.append(t)
        return out

    def _fail(self, tier: Tier, e: Exception) -> None:
        self.breakers[tier.name].failure(self._clock(), str(e))
        if self._on_error is not None:
            self._on_error(tier.name, str(e))

    def _ok(self, tier: Tier) -> None:
        b = self.breakers[tier.name]
        if b.failures or b.opened_at is not None or b.trial_running:
            b.success()

    def _allowed(self) -> Iterator[tuple[Tier, str]]:
        """(tier, its breaker's ticket) in order for the tiers that let a call through, asked
        one at a time right before the call: ``allow`` may start a half-open trial, which must
        then get a verdict (asking every breaker up front left a later tier's trial "running"
        with no call, so it was skipped until the next probe)."""
        for name in self._order():
            t = self.tiers.get(name)
            if t is not None and (ticket := self.breakers[name].allow(self._clock())):
                yield t, ticket

    async def get(self, key: str) -> tuple[Entry | None, Tier | None]:
        for t, ticket in self._allowed():
            try:
                entry = await t.get(key)
            except TierError as e:
                self._fail(t, e)
                continue
            except BaseException:
                self.breakers[t.name].abandon(ticket)  # cancelled: no verdict on the cluster
                raise
            self._ok(t)
            return entry, t
        return None, None

    async def put(self, key: str, entry: Entry, ttl: int, tier: Tier | None = None) -> bool:
        t, ticket = (tier, "") if tier is not None else next(self._allowed(), (None, ""))
        if t is None:
            return False
        try:
            await t.put(key, entry, ttl)
        except TierError as e:
            self._fail(t, e)
            return False
        except BaseException:
            self.breakers[t.name].abandon(ticket)
            raise
        self._ok(t)
        return True

    async def acquire_lock(self, key: str, owner: str, ttl: int) -> LockResult:
        for t, ticket in self._allowed():
            try:
                ok = await t.acquire_lock(key, owner, ttl)
            except TierError as e:
                self._fail(t, e)
                continue
            except BaseException:
                self.breakers[t.name].abandon(ticket)
                raise
            self._ok(t)
            return LockResult(t, ok)
        return LockResult(None, True)

    async def release_lock(self, tier: Tier | None, key: str, owner: str) -> None:
        if tier is None:
            return
        try:
            await tier.release_lock(key, owner)
        except TierError as e:
            self._fail(tier, e)

    async def purge(self, target: str, prefix: bool, at: float,
                    local_only: bool = False, soft: bool = False
                    ) -> dict[str, dict[str, object]]:
        """Every configured tier, whatever its breaker says: a purge must not be skipped.
        Per tier: ``status`` ok / failed: ..., and ``removed`` (objects) or ``rule`` (a shared
        purge rule was written or re-read: what it hides is not counted)."""
        return await self._purge_each(
            local_only, lambda t: t.purge(target, prefix, at, soft=soft))

    async def purge_tag(self, tag: str, at: float, local_only: bool = False,
                        soft: bool = False) -> dict[str, dict[str, object]]:
        """``purge`` for every object carrying ``tag``: each tier, whatever its breaker."""
        return await self._purge_each(local_only, lambda t: t.purge_tag(tag, at, soft=soft))

    async def _purge_each(self, local_only: bool,
                          purge: Callable[[Tier], Awaitable[int | None]]
                          ) -> dict[str, dict[str, object]]:
        out: dict[str, dict[str, object]] = {}
        for name, t in self.tiers.items():
            try:
                if local_only and t.shared:
                    await t.refresh()  # the initiating pod already wrote the shared rule
                    out[name] = {"status": "ok", "rule": "read"}
                    continue
                removed = await purge(t)
                out[name] = ({"status": "ok", "rule": "written"} if removed is None
                             else {"status": "ok", "removed": removed})
            except TierError as e:
                self._fail(t, e)
                out[name] = {"status": f"failed: {e}"}
        return out

    async def probe(self) -> None:
        """Health check of every tier; also the way an open circuit closes again."""
        now = self._clock()
        for name, t in self.tiers.items():
            b = self.breakers[name]
            if b.state(now) == "open":
                continue
            try:
                await t.ping()
            except TierError as e:
                self._fail(t, e)
                if b.state(self._clock()) != "open":
                    # a probe failure on its own opens the circuit: the cluster is down
                    b.opened_at = self._clock()
                continue
            b.success()

    def status(self) -> dict[str, dict[str, str]]:
        now = self._clock()
        return {
            name: {"circuit": self.breakers[name].state(now),
                   **({"lastError": self.breakers[name].last_error}
                      if self.breakers[name].last_error else {})}
            for name in self.tiers
        }

    def any_up(self) -> bool:
        now = self._clock()
        return any(b.state(now) == "closed" for b in self.breakers.values())

    async def close(self) -> None:
        for t in self.tiers.values():
            await t.close()
