"""A level-triggered work queue: each key is reconciled by one worker at a time; events that
arrive meanwhile coalesce into one more run; a key runs at most once per ``min_interval``
(events sooner than that wait for it: the operator's own writes coming back as watch events
cannot make a tight loop); failures retry with capped exponential backoff. Each run knows why
it was asked for (``cause``: the first reason given since the last run), for the metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable

from aerocdn.controller import metrics

log = logging.getLogger(__name__)

Reconcile = Callable[[Hashable], Awaitable[float | None]]
MAX_BACKOFF = 60.0


class WorkQueue:
    def __init__(self, reconcile: Reconcile, workers: int = 4, min_interval: float = 1.0):
        self._reconcile = reconcile
        self._workers = workers
        self.min_interval = min_interval
        self._started: dict[Hashable, float] = {}
        self._queue: asyncio.Queue[Hashable] = asyncio.Queue()
        self._queued: set[Hashable] = set()
        self._running: set[Hashable] = set()
        self._dirty: set[Hashable] = set()
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self._failures: dict[Hashable, int] = {}
        # why each waiting key was asked for (the first reason since its last run), and why
        # each running key runs
        self._causes: dict[Hashable, str] = {}
        self._running_cause: dict[Hashable, str] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.idle = asyncio.Event()
        self.idle.set()

    def add(self, key: Hashable, delay: float = 0.0, cause: str = "other") -> None:
        """Ask for a reconcile of ``key`` (now, or after ``delay`` seconds; never sooner than
        ``min_interval`` after its last run started), for the reason ``cause``."""
        last = self._started.get(key)
        if last is not None and self.min_interval > 0:
            wait = last + self.min_interval - asyncio.get_running_loop().time()
            delay = max(delay, wait)
        if delay > 0:
            loop = asyncio.get_running_loop()
            old = self._timers.get(key)
            when = loop.time() + delay
            if old is not None and old.when() <= when:
                return
            if old is not None:
                old.cancel()
            self._timers[key] = loop.call_at(when, self._fire, key, cause)
            return
        self._causes.setdefault(key, cause)
        if key in self._running:
            self._dirty.add(key)
            return
        if key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)
            self.idle.clear()
            metrics.QUEUE_DEPTH.set(len(self._queued))

    def _fire(self, key: Hashable, cause: str) -> None:
        self._timers.pop(key, None)
        self.add(key, cause=cause)

    def forget(self, key: Hashable) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._failures.pop(key, None)
        self._started.pop(key, None)
        self._causes.pop(key, None)

    def cause(self, key: Hashable) -> str:
        """Why the running reconcile of ``key`` was asked for."""
        return self._running_cause.get(key, "other")

    def failures(self, key: Hashable) -> int:
        """Consecutive failed runs of ``key`` so far."""
        return self._failures.get(key, 0)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker(), name=f"reconcile-{i}")
                       for i in range(self._workers)]

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            # a run now makes a later one a timer asked for needless: what that one would
            # see, this one sees (and it asks again for what is still due)
            timer = self._timers.pop(key, None)
            if timer is not None:
                timer.cancel()
            self._running.add(key)
            self._running_cause[key] = self._causes.pop(key, "other")
            self._started[key] = asyncio.get_running_loop().time()
            metrics.QUEUE_DEPTH.set(len(self._queued))
            requeue: float | None = None
            try:
                requeue = await self._reconcile(key)
                self._failures.pop(key, None)
            except asyncio.CancelledError:
                raise
            except Exception:
                n = self._failures.get(key, 0) + 1
                self._failures[key] = n
                requeue = min(MAX_BACKOFF, 0.5 * 2**n)
                log.exception("reconcile of %s failed (attempt %d); retrying in %.1fs",
                              key, n, requeue)
            finally:
                self._running.discard(key)
                self._running_cause.pop(key, None)
            if key in self._dirty:
                self._dirty.discard(key)
                self.add(key, cause=self._causes.get(key, "other"))
            elif requeue is not None:
                self.add(key, requeue,
                         cause="retry" if self._failures.get(key) else "requeue")
            if not self._queued and not self._running:
                self.idle.set()
