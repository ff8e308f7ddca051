"""L2 tiers behind one small interface: a bounded in-memory LRU and Aerospike.

Interface (all async, all bounded in time; failures raise ``TierError``):
``get``, ``put``, ``delete``, ``purge`` (one url or a prefix), ``purge_tag`` (every object
with a tag), ``acquire_lock`` /
``release_lock`` (cross-pod collapsing), ``ping``, ``refresh`` (re-read shared purge state),
``close``.

Prefix purge on Aerospike: records are addressed by a digest of the key, so a prefix cannot be
found by key, and a secondary-index query or a scan per purge would touch the whole set.  Instead
a purge writes a *rule* (url or prefix -> time) into one record per ContentEdge
(``__aerocdn_purge_rules__`` in the ContentEdge's set); every edge keeps the rules in memory
(refreshed every ``purgeRulesRefreshSeconds`` and at once when a purge reaches it) and treats an
object stored before a matching rule as absent.  Rules are pruned once older than
``l2MaxTTLSeconds``, the longest an object can live, so the record stays small.  An exact purge
also deletes the base record right away.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from aerocdn.edge.policy import PurgeRules, StoredObject, VaryMarker, soft_expired

T = TypeVar("T")


@dataclass(frozen=True)
class PassMarker:
    """"Hit for pass": the last fetch of this key was not storable; don't wait on a lock."""

    url: str
    stored_at: float


Entry = StoredObject | VaryMarker | PassMarker


class TierError(Exception):
    """A tier did not answer (down, timeout, saturated); the caller falls back."""


class Tier(Protocol):
    name: str
    shared: bool  # shared by all pods of the region (Aerospike) or this pod's own (memory)

    async def get(self, key: str) -> Entry | None: ...
    async def put(self, key: str, entry: Entry, ttl: int) -> None: ...
    async def delete(self, key: str) -> None: ...
    async def purge(self, target: str, prefix: bool, at: float,
                    soft: bool = False) -> int | None:
        """Objects removed - or with ``soft`` marked expired - (None: recorded as a rule,
        count unknown)."""
        ...

    async def purge_tag(self, tag: str, at: float, soft: bool = False) -> int | None:
        """Every object carrying ``tag``: removed (count) or hidden by a rule (None)."""
        ...

    async def acquire_lock(self, key: str, owner: str, ttl: int) -> bool: ...
    async def release_lock(self, key: str, owner: str) -> None: ...
    async def ping(self) -> None: ...
    async def refresh(self) -> None: ...
    async def close(self) -> None: ...


def entry_size(e: Entry) -> int:
    if isinstance(e, StoredObject):
        return (len(e.body) + sum(len(k) + len(v) + 64 for k, v in (*e.headers, *e.selected))
                + sum(len(t) + 56 for t in e.tags) + len(e.url) + 256)
    return len(e.url) + 256


class MemoryTier:
    """Bounded LRU (bytes).  As a pod's own tier locks always succeed: in-pod collapsing
    already makes one origin fetch per key.  ``shared=True`` makes it a region tier for
    edges in one process (tests): locks are real, with owners and TTLs."""

    def __init__(self, max_bytes: int, name: str = "memory",
                 clock: Callable[[], float] = time.time, shared: bool = False):
        self.name = name
        self.shared = shared
        self.max_bytes = max_bytes
        self.bytes = 0
        self._clock = clock
        self._data: OrderedDict[str, tuple[Entry, float, int]] = OrderedDict()
        self._locks: dict[str, tuple[str, float]] = {}

    def __len__(self) -> int:
        return len(self._data)

    async def get(self, key: str) -> Entry | None:
        item = self._data.get(key)
        if item is None:
            return None
        entry, expires, _ = item
        if self._clock() >= expires:
            self._drop(key)
            return None
        self._data.move_to_end(key)
        return entry

    async def put(self, key: str, entry: Entry, ttl: int) -> None:
        # the key is held too (as long as the url); measured per-entry overhead of the dict
        # slot, the tuple and the dataclass is ~600 bytes (tests/unit/edge)
        size = entry_size(entry) + len(key) + 400
        if size > self.max_bytes:
            return
        self._drop(key)
        self._data[key] = (entry, self._clock() + ttl, size)
        self.bytes += size
        while self.bytes > self.max_bytes and self._data:
            self._drop(next(iter(self._data)))

    def _drop(self, key: str) -> None:
        item = self._data.pop(key, None)
        if item is not None:
            self.bytes -= item[2]

    async def delete(self, key: str) -> None:
        self._drop(key)

    async def purge(self, target: str, prefix: bool, at: float,
                    soft: bool = False) -> int | None:
        doomed = [
            k
            for k, (e, _, _) in self._data.items()
            if (e.url.startswith(target) if prefix else e.url == target)
        ]
        if soft:
            return self._expire(doomed, at)
        removed = sum(1 for k in doomed if isinstance(self._data[k][0], StoredObject))
        for k in doomed:
            self._drop(k)
        return removed

    async def purge_tag(self, tag: str, at: float, soft: bool = False) -> int | None:
        doomed = [k for k, (e, _, _) in self._data.items()
                  if isinstance(e, StoredObject) and tag in e.tags]
        if soft:
            return self._expire(doomed, at)
        for k in doomed:
            self._drop(k)
        return len(doomed)

    def _expire(self, keys: list[str], at: float) -> int:
        """Soft purge: each object expired at ``at``, kept (for stale serving) until its
        record would have gone anyway."""
        n = 0
        for k in keys:
            e, expires, size = self._data[k]
            if isinstance(e, StoredObject) and e.stored_at <= at:
                self._data[k] = (soft_expired(e, at), expires, size)
                n += 1
        return n

    async def acquire_lock(self, key: str, owner: str, ttl: int) -> bool:
        if not self.shared:
            return True
        now = self._clock()
        held = self._locks.get(key)
        if held is not None and held[1] > now and held[0] != owner:
            return False
        self._locks[key] = (owner, now + ttl)
        return True

    async def release_lock(self, key: str, owner: str) -> None:
        held = self._locks.get(key)
        if held is not None and held[0] == owner:
            del self._locks[key]

    async def ping(self) -> None:
        return None

    async def refresh(self) -> None:
        return None

    async def close(self) -> None:
        self._data.clear()
        self.bytes = 0


# --------------------------------------------------------------------------- Aerospike

_RULES_KEY = "__aerocdn_purge_rules__"


def to_bins(e: Entry) -> dict[str, Any]:
    if isinstance(e, StoredObject):
        return {
            "k": "o",
            "st": e.status,
            "h": [[k, v] for k, v in e.headers],
            "b": bytearray(e.body),
            "u": e.url,
            "sa": e.stored_at,
            "fu": e.fresh_until,
            "swr": e.stale_while_revalidate,
            "sie": e.stale_if_error,
            "vy": list(e.vary),
            "sel": [[k, v] for k, v in e.selected],
            "fl": (1 if e.no_stale else 0) | (2 if e.revalidate else 0),
            **({"tot": e.slice_total} if e.slice_total >= 0 else {}),
            **({"tg": list(e.tags)} if e.tags else {}),
            **({"ia": e.initial_age} if e.initial_age else {}),
        }
    if isinstance(e, VaryMarker):
        return {"k": "v", "u": e.url, "vy": list(e.vary), "sa": e.stored_at, "fu": e.expires_at}
    return {"k": "p", "u": e.url, "sa": e.stored_at}


def from_bins(b: dict[str, Any]) -> Entry | None:
    # on every L2 hit: list comprehensions (cheaper than generators), no re-reads
    kind = b.get("k")
    if kind == "o":
        fl = int(b.get("fl") or 0)
        sel = b.get("sel")
        tg = b.get("tg")
        return StoredObject(
            status=int(b["st"]),
            headers=tuple([(str(k), str(v)) for k, v in b["h"]]),
            body=bytes(b["b"]),  # the client's bytes: no copy (bytes(bytes) is itself)
            url=str(b["u"]),
            stored_at=float(b["sa"]),
            fresh_until=float(b["fu"]),
            stale_while_revalidate=float(b["swr"]),
            stale_if_error=float(b["sie"]),
            vary=tuple(b.get("vy") or ()),
            selected=tuple([(str(k), str(v)) for k, v in sel]) if sel else (),
            no_stale=bool(fl & 1),
            revalidate=bool(fl & 2),
            slice_total=int(b.get("tot", -1)),
            tags=tuple([str(t) for t in tg]) if tg else (),
            initial_age=float(b.get("ia") or 0.0),  # records written before: none
        )
    if kind == "v":
        return VaryMarker(
            url=str(b["u"]), vary=tuple(b["vy"]), stored_at=float(b["sa"]),
            expires_at=float(b["fu"]),
        )
    if kind == "p":
        return PassMarker(url=str(b["u"]), stored_at=float(b["sa"]))
    return None


class DaemonPool(Executor):
    """A fixed pool of daemon threads.  Unlike ThreadPoolExecutor (whose threads are joined at
    interpreter exit) a thread stuck in a blocking client call cannot keep the process alive:
    every call the tier makes is bounded by its own deadline, never by a join."""

    def __init__(self, threads: int, name: str):
        self._q: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue())
        self._shutdown = False
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
                         for i in range(threads)]
        for t in self._threads:
            t.start()

    def _work(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            fut, fn = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as e:
                fut.set_exception(e)

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        if self._shutdown:
            raise RuntimeError("pool shut down")
        fut: Future[T] = Future()
        self._q.put((fut, lambda: fn(*args, **kwargs)))
        return fut

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shutdown = True
        if cancel_futures:
            while True:
                try:
                    item = self._q.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        for _ in self._threads:
            self._q.put(None)
        if wait:
            for t in self._threads:
                t.join()


class AerospikeTier:
    """One CacheCluster through the official (blocking) ``aerospike`` client, run in a bounded
    thread pool.  Every call is bounded by the client's total_timeout and an asyncio guard;
    when all threads are busy the call fails at once instead of queueing."""

    def __init__(
        self,
        name: str,
        seeds: tuple[str, ...],
        namespace: str,
        set_name: str,
        *,
        timeout_ms: int,
        threads: int,
        rules_max_age: float,
        clock: Callable[[], float] = time.time,
        user: str | None = None,
        password_file: str | None = None,
    ):
        self.name = name
        self.shared = True
        self._seeds = seeds
        self._user = user
        self._password_file = password_file
        self._ns = namespace
        self._set = set_name
        self._timeout_ms = timeout_ms
        self._pool = DaemonPool(threads, f"as-{name}")
        self._slots = asyncio.Semaphore(threads * 4)
        self._client: Any = None
        self._connecting: asyncio.Future[Any] | None = None
        self._closed = False
        self._connect_failed_at = float("-inf")
        self._connect_error = ""
        self.connect_backoff = 1.0
        self._rules_max_age = rules_max_age
        self._clock = clock
        self.rules = PurgeRules()
        self._pending: list[tuple[str, asyncio.Future[dict[str, Any] | None]]] = []
        self._flushes: set[asyncio.Task[None]] = set()

    # -- plumbing
    def _key(self, key: str) -> tuple[str, str, str]:
        return (self._ns, self._set, key)

    async def _call(self, fn: Callable[[], T], budget_ms: int | None = None,
                    late: Callable[[Any], None] | None = None) -> T:
        """``fn`` on a client thread, bounded in time.  ``late`` gets a result that arrives
        after the caller gave up (a connected client to close, not to leak)."""
        if self._closed:
            raise TierError(f"cache cluster {self.name}: closed")
        if self._slots.locked():
            raise TierError(f"cache cluster {self.name}: all client threads busy")
        budget = (budget_ms or self._timeout_ms) / 1000.0
        async with self._slots:
            cfut = self._pool.submit(fn)
            fut = asyncio.wrap_future(cfut)
            try:
                return await asyncio.wait_for(fut, budget * 2 + 0.05)
            except TimeoutError:
                self._on_late(cfut, late)
                raise TierError(
                    f"cache cluster {self.name}: no answer within {budget * 2:.2f}s"
                ) from None
            except asyncio.CancelledError:
                self._on_late(cfut, late)
                raise

    @staticmethod
    def _on_late(cfut: Future[Any], late: Callable[[Any], None] | None) -> None:
        if late is None:
            return

        def done(f: Future[Any]) -> None:
            if not f.cancelled() and f.exception() is None:
                late(f.result())

        cfut.add_done_callback(done)

    def _connect_blocking(self) -> Any:
        import aerospike

        hosts = []
        for s in self._seeds:
            host, _, port = s.rpartition(":")
            hosts.append((host, int(port)))
        config = {
            "hosts": hosts,
            "connect_timeout": 1000,
            "policies": {
                "read": {"total_timeout": self._timeout_ms, "max_retries": 0},
                "batch": {"total_timeout": self._timeout_ms * 2, "max_retries": 0},
                "write": {"total_timeout": self._timeout_ms * 2, "max_retries": 0},
                "remove": {"total_timeout": self._timeout_ms * 2, "max_retries": 0},
                "operate": {"total_timeout": self._timeout_ms * 2, "max_retries": 0},
            },
            **self.login(),
        }
        return aerospike.client(config).connect()

    def login(self) -> dict[str, str]:
        """The client config's user and password (Enterprise access control): the password
        is read from its file at every connect, so a rotated Secret is used on the next one.
        A missing or unreadable file fails the connect, naming the file."""
        if self._user is None or self._password_file is None:
            return {}
        try:
            password = Path(self._password_file).read_text()
        except OSError as e:
            raise TierError(f"cache cluster {self.name}: password file "
                            f"{self._password_file}: {e.strerror or e}") from None
        return {"user": self._user, "password": password}

    async def _client_or_connect(self) -> Any:
        """The connected client.  While a connect is under way a caller waits for it, up to
        the tier's deadline (it does not skip L2: the connect is usually a few ms away); after
        a failed connect callers fail at once until ``connect_backoff`` has passed."""
        if self._client is not None:
            return self._client
        if self._closed:
            raise TierError(f"cache cluster {self.name}: closed")
        task = self._connecting
        if task is None or task.done():
            if self._clock() - self._connect_failed_at < self.connect_backoff:
                raise TierError(f"cache cluster {self.name}: {self._connect_error}")
            task = self._connecting = asyncio.ensure_future(self._connect())
        deadline = max(self._timeout_ms * 2 / 1000.0 + 0.05, 0.1)
        try:
            # shield: a caller that gives up (deadline, cancelled request) leaves the connect
            # running for the others; the connect itself is bounded (see _connect)
            return await asyncio.wait_for(asyncio.shield(task), deadline)
        except TimeoutError:
            raise TierError(f"cache cluster {self.name}: connecting to "
                            f"{', '.join(self._seeds)}: no connection within "
                            f"{deadline:.2f}s") from None

    async def _connect(self) -> Any:
        try:
            try:
                client = await self._call(self._connect_blocking, budget_ms=2000,
                                          late=_close_quietly)
            except Exception as e:
                self._connect_failed_at = self._clock()
                msg = str(e) if isinstance(e, TierError) else f"{type(e).__name__}: {e}"
                self._connect_error = f"cannot connect to {', '.join(self._seeds)}: {msg}"
                raise TierError(f"cache cluster {self.name}: {self._connect_error}") from None
            if self._closed:
                _close_quietly(client)
                raise TierError(f"cache cluster {self.name}: closed")
            self._client = client
            return client
        finally:
            self._connecting = None

    async def _op(self, fn: Callable[[Any], T], budget_ms: int | None = None) -> T:
        import aerospike.exception as ex

        client = await self._client_or_connect()

        def run() -> T:
            return fn(client)

        try:
            return await self._call(run, budget_ms)
        except TierError:
            raise
        except (ex.RecordNotFound, ex.RecordExistsError, ex.RecordTooBig, ex.FilteredOut):
            raise
        except ex.AerospikeError as e:
            raise TierError(f"cache cluster {self.name}: {type(e).__name__}: {e}") from None

    # -- interface
    async def get(self, key: str) -> Entry | None:
        # Gets that arrive in the same event-loop iteration go to Aerospike as one batch read:
        # one thread-pool hop for many requests (the hop and the client's per-call work, not
        # Aerospike, are the cost per get).  Holding later gets back until the batch in flight
        # answered made larger batches but was not faster (docs/benchmarks-edge.md).
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[dict[str, Any] | None] = loop.create_future()
        self._pending.append((key, fut))
        if len(self._pending) == 1:
            loop.call_soon(self._start_flush)
        bins = await fut
        if bins is None:
            return None
        entry = from_bins(bins)
        if entry is None:
            return None
        tags = entry.tags if isinstance(entry, StoredObject) else ()
        if self.rules.purged(entry.url, entry.stored_at, tags):
            return None
        if isinstance(entry, StoredObject):
            at = self.rules.expired_at(entry.url, entry.stored_at, tags)
            if at is not None:
                return soft_expired(entry, at)
        return entry

    def _start_flush(self) -> None:
        batch, self._pending = self._pending, []
        for i in range(0, len(batch), self.max_batch):
            task = asyncio.ensure_future(self._flush(batch[i:i + self.max_batch]))
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    max_batch = 128

    async def _flush(self, batch: list[tuple[str, asyncio.Future[dict[str, Any] | None]]]) -> None:
        # every waiter gets an answer, whatever happens here (cancellation included)
        try:
            await self._flush_batch(batch)
        except BaseException as e:
            err = e if isinstance(e, TierError) else TierError(
                f"cache cluster {self.name}: {type(e).__name__}: {e}")
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(err)
            if not isinstance(e, Exception):
                raise

    async def _flush_batch(
            self, batch: list[tuple[str, asyncio.Future[dict[str, Any] | None]]]) -> None:
        import aerospike.exception as ex

        # a hot object requested by many clients in one tick is read once, not once per client
        distinct = list(dict.fromkeys(k for k, _ in batch))
        keys = [self._key(k) for k in distinct]
        try:
            if len(keys) == 1:
                try:
                    _, _, bins = await self._op(lambda c: c.get(keys[0]))
                    results: list[tuple[int, Any]] = [(0, bins)]
                except ex.RecordNotFound:
                    results = [(2, None)]
            else:
                records = await self._op(lambda c: c.batch_read(keys), self._timeout_ms * 2)
                results = [(r.result, r.record[2] if r.record else None)
                           for r in records.batch_records]
        except Exception as e:
            err = e if isinstance(e, TierError) else TierError(
                f"cache cluster {self.name}: {type(e).__name__}: {e}")
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(err)
            return
        by_key = dict(zip(distinct, results, strict=True))
        for k, fut in batch:
            code, bins = by_key[k]
            if fut.done():
                continue
            if code == 0:
                fut.set_result(bins)
            elif code == 2:  # AEROSPIKE_ERR_RECORD_NOT_FOUND
                fut.set_result(None)
            else:
                fut.set_exception(TierError(f"cache cluster {self.name}: batch read code {code}"))

    async def put(self, key: str, entry: Entry, ttl: int) -> None:
        import aerospike.exception as ex

        import aerospike

        bins = to_bins(entry)
        # Replace, not the client's default update: an update merges bins, so a bin the new
        # entry has not (tags, the origin's Age, a slice length; a marker's missing body)
        # stayed from the record it overwrote - a 404 stored over an object in slices was
        # read back as that object's slice metadata.
        policy = {"ttl": max(1, ttl), "exists": aerospike.POLICY_EXISTS_CREATE_OR_REPLACE}
        try:
            await self._op(lambda c: c.put(self._key(key), bins, policy=policy))
        except ex.RecordTooBig:
            # over the namespace's max-record-size: served, not stored - not a cluster fault
            return

    async def delete(self, key: str) -> None:
        import aerospike.exception as ex

        with contextlib.suppress(ex.RecordNotFound):
            await self._op(lambda c: c.remove(self._key(key)))

    async def purge(self, target: str, prefix: bool, at: float,
                    soft: bool = False) -> int | None:
        from aerospike_helpers.operations import map_operations as mo

        import aerospike

        bin_name = ("s" if soft else "") + ("px" if prefix else "ex")
        cutoff = at - self._rules_max_age
        ops = [
            mo.map_put(bin_name, target, at),
            mo.map_remove_by_value_range(bin_name, 0.0, cutoff, aerospike.MAP_RETURN_NONE),
        ]
        await self._op(lambda c: c.operate(self._key(_RULES_KEY), ops))
        rules = self.rules
        if prefix:
            (rules.soft_prefixes if soft else rules.prefixes)[target] = at
        else:
            (rules.soft_exact if soft else rules.exact)[target] = at
        await self.refresh()
        return None

    async def purge_tag(self, tag: str, at: float, soft: bool = False) -> int | None:
        """A tag rule in the same record (bin ``tg``, soft: ``stg``), read with the others."""
        from aerospike_helpers.operations import map_operations as mo

        import aerospike

        bin_name = "stg" if soft else "tg"
        ops = [
            mo.map_put(bin_name, tag, at),
            mo.map_remove_by_value_range(bin_name, 0.0, at - self._rules_max_age,
                                         aerospike.MAP_RETURN_NONE),
        ]
        await self._op(lambda c: c.operate(self._key(_RULES_KEY), ops))
        (self.rules.soft_tags if soft else self.rules.tags)[tag] = at
        await self.refresh()
        return None

    async def refresh(self) -> None:
        import aerospike.exception as ex

        try:
            _, _, bins = await self._op(lambda c: c.get(self._key(_RULES_KEY)))
        except ex.RecordNotFound:
            self.rules = PurgeRules()
            return
        def rule_map(bin_name: str) -> dict[str, float]:
            return {str(k): float(v) for k, v in (bins.get(bin_name) or {}).items()}

        rules = PurgeRules(rule_map("ex"), rule_map("px"), rule_map("tg"),
                           rule_map("sex"), rule_map("spx"), rule_map("stg"))
        self.rules = rules.prune(self._clock() - self._rules_max_age)

    async def acquire_lock(self, key: str, owner: str, ttl: int) -> bool:
        import aerospike.exception as ex

        import aerospike

        policy = {"exists": aerospike.POLICY_EXISTS_CREATE, "ttl": ttl}
        try:
            await self._op(lambda c: c.put(self._key("lock|" + key), {"o": owner}, policy=policy))
        except ex.RecordExistsError:
            return False
        return True

    async def release_lock(self, key: str, owner: str) -> None:
        import aerospike.exception as ex
        from aerospike_helpers import expressions as exp

        # Only our own lock: after a TTL expiry another pod may hold it.
        policy = {"expressions": exp.Eq(exp.StrBin("o"), owner).compile()}
        with contextlib.suppress(ex.RecordNotFound, ex.FilteredOut):
            await self._op(lambda c: c.remove(self._key("lock|" + key), policy=policy))

    async def ping(self) -> None:
        client = await self._client_or_connect()
        ok = await self._call(lambda: bool(client.is_connected()))
        if not ok:
            if self._client is client:
                self._client = None
                self._pool.submit(_close_quietly, client)
            raise TierError(f"cache cluster {self.name}: not connected")
        await self.refresh()

    async def close(self) -> None:
        """Bounded: a client that does not close within the deadline is left to its daemon
        threads (the pool's threads never keep the process from exiting)."""
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        for _, fut in self._pending:
            if not fut.done():
                fut.set_exception(TierError(f"cache cluster {self.name}: closed"))
        self._pending = []
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.wrap_future(
                    self._pool.submit(_close_quietly, client)), 5.0)
        self._pool.shutdown(wait=False, cancel_futures=True)


def _close_quietly(client: Any) -> None:
    with contextlib.suppress(Exception):
        client.close()
