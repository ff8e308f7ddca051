"""One small async interface over each Aerospike Python client candidate for the edge's L2 tier.

Each driver performs the edge's access pattern (operator/aerocdn/edge/tiers.py) with its own
client's calls:

- ``get``: one object read, as a request's L2 lookup; gets issued in the same event-loop
  iteration may be sent together (the tier coalesces them into one batch read);
- ``batch_get``: a batch read of object records plus the purge-rules record, missing keys
  reported as ``None`` (the tier's coalesced gets and its rules refresh);
- ``put_ttl``: an upsert of the tier's object bins with a per-record TTL;
- ``create_only``: the collapse lock record, written only if absent (``False`` when it exists);
- ``delete_if_owner``: the lock release, a delete filtered by an expression ``o == owner``
  (``False`` when filtered out or missing);
- ``delete``: a plain delete (``False`` when missing);
- ``purge_rule``: the purge-rules record update, a map put plus a remove-by-value-range in one
  operate call.

``aerospike`` is blocking, so its driver runs every call in a ThreadPoolExecutor exactly as the
tier does; the others are asyncio clients awaited directly.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol


class Driver(Protocol):
    name: str

    async def connect(self) -> None: ...
    async def close(self) -> None: ...
    async def get(self, key: str) -> dict[str, Any] | None: ...
    async def batch_get(self, keys: list[str]) -> list[dict[str, Any] | None]: ...
    async def put_ttl(self, key: str, bins: dict[str, Any], ttl: int) -> None: ...
    async def create_only(self, key: str, bins: dict[str, Any], ttl: int) -> bool: ...
    async def delete_if_owner(self, key: str, owner: str) -> bool: ...
    async def delete(self, key: str) -> bool: ...
    async def purge_rule(self, key: str, bin_name: str, target: str, at: float,
                         cutoff: float) -> None: ...
    async def ttl_of(self, key: str) -> int: ...


# --------------------------------------------------------------------------- aerospike (C core)


class LegacyDriver:
    """``aerospike`` (the C client's Python binding), blocking, in a thread pool like the tier."""

    name = "aerospike"

    def __init__(self, host: str, port: int, ns: str, set_name: str, *, timeout_ms: int,
                 threads: int) -> None:
        self._hosts = [(host, port)]
        self._ns, self._set = ns, set_name
        self._timeout_ms = timeout_ms
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="as-bench")
        self._client: Any = None
        self._pending: list[tuple[str, asyncio.Future[dict[str, Any] | None]]] = []
        self._flushes: set[asyncio.Task[None]] = set()

    def _key(self, key: str) -> tuple[str, str, str]:
        return (self._ns, self._set, key)

    async def _run(self, fn: Any, *args: Any, **kw: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, lambda: fn(*args, **kw))

    async def connect(self) -> None:
        import aerospike

        t = self._timeout_ms
        config = {
            "hosts": self._hosts,
            "connect_timeout": 1000,
            "policies": {  # as AerospikeTier._connect_blocking sets them
                "read": {"total_timeout": t, "max_retries": 0},
                "batch": {"total_timeout": t * 2, "max_retries": 0},
                "write": {"total_timeout": t * 2, "max_retries": 0},
                "remove": {"total_timeout": t * 2, "max_retries": 0},
                "operate": {"total_timeout": t * 2, "max_retries": 0},
            },
        }
        self._client = await self._run(lambda: aerospike.client(config).connect())

    async def close(self) -> None:
        if self._client is not None:
            await self._run(self._client.close)
        self._pool.shutdown(wait=True)

    async def get(self, key: str) -> dict[str, Any] | None:
        # As AerospikeTier.get: gets of one event-loop iteration go out as one batch read (up to
        # 128 keys), one thread-pool hop for all of them.
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[dict[str, Any] | None] = loop.create_future()
        self._pending.append((key, fut))
        if len(self._pending) == 1:
            loop.call_soon(self._start_flush)
        return await fut

    def _start_flush(self) -> None:
        batch, self._pending = self._pending, []
        for i in range(0, len(batch), 128):
            task = asyncio.ensure_future(self._flush(batch[i:i + 128]))
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    async def _flush(self, batch: list[tuple[str, asyncio.Future[dict[str, Any] | None]]]) -> None:
        import aerospike.exception as ex

        try:
            if len(batch) == 1:
                try:
                    _, _, bins = await self._run(self._client.get, self._key(batch[0][0]))
                    results: list[dict[str, Any] | None] = [bins]
                except ex.RecordNotFound:
                    results = [None]
            else:
                results = await self.batch_get([k for k, _ in batch])
        except Exception as e:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(e)
            return
        for (_, fut), bins in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(bins)

    async def batch_get(self, keys: list[str]) -> list[dict[str, Any] | None]:
        c = self._client
        ks = [self._key(k) for k in keys]
        res = await self._run(c.batch_read, ks)
        out: list[dict[str, Any] | None] = []
        for r in res.batch_records:
            if r.result == 0:
                out.append(r.record[2])
            elif r.result == 2:  # AEROSPIKE_ERR_RECORD_NOT_FOUND
                out.append(None)
            else:
                raise RuntimeError(f"batch read result {r.result}")
        return out

    async def put_ttl(self, key: str, bins: dict[str, Any], ttl: int) -> None:
        await self._run(self._client.put, self._key(key), bins, policy={"ttl": ttl})

    async def create_only(self, key: str, bins: dict[str, Any], ttl: int) -> bool:
        import aerospike.exception as ex

        import aerospike

        policy = {"exists": aerospike.POLICY_EXISTS_CREATE, "ttl": ttl}
        try:
            await self._run(self._client.put, self._key(key), bins, policy=policy)
        except ex.RecordExistsError:
            return False
        return True

    async def delete_if_owner(self, key: str, owner: str) -> bool:
        import aerospike.exception as ex
        from aerospike_helpers import expressions as exp

        policy = {"expressions": exp.Eq(exp.StrBin("o"), owner).compile()}
        try:
            await self._run(self._client.remove, self._key(key), policy=policy)
        except (ex.RecordNotFound, ex.FilteredOut):
            return False
        return True

    async def delete(self, key: str) -> bool:
        import aerospike.exception as ex

        try:
            await self._run(self._client.remove, self._key(key))
        except ex.RecordNotFound:
            return False
        return True

    async def purge_rule(self, key: str, bin_name: str, target: str, at: float,
                         cutoff: float) -> None:
        from aerospike_helpers.operations import map_operations as mo

        import aerospike

        ops = [
            mo.map_put(bin_name, target, at),
            mo.map_remove_by_value_range(bin_name, 0.0, cutoff, aerospike.MAP_RETURN_NONE),
        ]
        await self._run(self._client.operate, self._key(key), ops)

    async def ttl_of(self, key: str) -> int:
        _, meta, _ = await self._run(self._client.get, self._key(key))
        return int(meta["ttl"])


# --------------------------------------------------------------------------- aerospike-sdk (Rust)


class SdkDriver:
    """``aerospike-sdk`` (async, over ``aerospike-native``'s Rust core)."""

    name = "aerospike-sdk"

    def __init__(self, host: str, port: int, ns: str, set_name: str, *, timeout_ms: int) -> None:
        self._host, self._port = host, port
        self._ns, self._set = ns, set_name
        self._timeout_ms = timeout_ms
        self._cluster: Any = None
        self._session: Any = None
        self._ds: Any = None

    async def connect(self) -> None:
        from datetime import timedelta

        from aerospike_sdk import Behavior, ClusterDefinition, DataSet
        from aerospike_sdk.policy import Settings

        self._cluster = await ClusterDefinition(self._host, self._port).connect()
        t = self._timeout_ms
        behavior = Behavior.DEFAULT.derive_with_changes(  # the tier's timeouts, no retries
            "aerocdn-bench",
            all=Settings(max_retries=0, total_timeout=timedelta(milliseconds=t * 2)),
            reads_point=Settings(total_timeout=timedelta(milliseconds=t)))
        self._session = self._cluster.create_session(behavior)
        self._ds = DataSet.of(self._ns, self._set)

    async def close(self) -> None:
        if self._cluster is not None:
            await self._cluster.close()

    async def get(self, key: str) -> dict[str, Any] | None:
        # The fast path; same-tick gets are fused by the session itself (PSDK_COALESCE).
        from aerospike_sdk.exceptions import RecordNotFoundError

        try:
            rec = await self._session.get(self._ds.id(key))
        except RecordNotFoundError:
            return None
        return dict(rec.bins)

    async def batch_get(self, keys: list[str]) -> list[dict[str, Any] | None]:
        ks = [self._ds.id(k) for k in keys]
        stream = await self._session.query(ks).include_missing_keys().execute()
        by_index: dict[int, dict[str, Any] | None] = {}
        async for row in stream:
            if row.is_ok and row.record is not None:
                by_index[row.index] = dict(row.record.bins)
            elif row.result_code.name == "KEY_NOT_FOUND_ERROR":
                by_index[row.index] = None
            else:
                raise RuntimeError(f"batch read result {row.result_code}")
        return [by_index[i] for i in range(len(ks))]

    async def put_ttl(self, key: str, bins: dict[str, Any], ttl: int) -> None:
        await (self._session.upsert(self._ds.id(key)).put(bins)
               .expire_record_after_seconds(ttl).execute())

    async def create_only(self, key: str, bins: dict[str, Any], ttl: int) -> bool:
        from aerospike_sdk.exceptions import RecordExistsError

        try:
            stream = await (self._session.insert(self._ds.id(key)).put(bins)
                            .expire_record_after_seconds(ttl).execute())
            row = await stream.first_or_raise()
        except RecordExistsError:
            return False
        return bool(row.is_ok)

    async def delete_if_owner(self, key: str, owner: str) -> bool:
        from aerospike_sdk import Exp
        from aerospike_sdk.exceptions import FilteredOutError, RecordNotFoundError

        # An AEL string ("$.o == 'x'") needs server-compiled AEL (server 8.2+); the expression
        # builder works on 8.1.
        owned = Exp.eq(Exp.string_bin("o"), Exp.string_val(owner))
        try:
            stream = await self._session.delete(self._ds.id(key)).where(owned).execute()
            row = await stream.first_or_raise()
        except (FilteredOutError, RecordNotFoundError):
            return False
        return bool(row.is_ok)

    async def delete(self, key: str) -> bool:
        from aerospike_sdk.exceptions import RecordNotFoundError

        try:
            stream = await self._session.delete(self._ds.id(key)).execute()
            row = await stream.first_or_raise()
        except RecordNotFoundError:
            return False
        return bool(row.is_ok)

    async def purge_rule(self, key: str, bin_name: str, target: str, at: float,
                         cutoff: float) -> None:
        stream = await (self._session.upsert(self._ds.id(key))
                        .bin(bin_name).on_map_key(target).set_to(at)
                        .bin(bin_name).on_map_value_range(0.0, cutoff).remove()
                        .execute())
        await stream.first_or_raise()

    async def ttl_of(self, key: str) -> int:
        rec = await self._session.get(self._ds.id(key))
        return int(rec.ttl)


# --------------------------------------------------------------------------- aerospike-py (Rust)


class AerospikePyDriver:
    """``aerospike-py`` AsyncClient (PyO3 over the Aerospike Rust client v2)."""

    name = "aerospike-py"

    def __init__(self, host: str, port: int, ns: str, set_name: str, *, timeout_ms: int) -> None:
        self._hosts = [(host, port)]
        self._ns, self._set = ns, set_name
        self._timeout_ms = timeout_ms
        self._client: Any = None

    def _key(self, key: str) -> tuple[str, str, str]:
        return (self._ns, self._set, key)

    async def connect(self) -> None:
        import aerospike_py

        t = self._timeout_ms
        self._client = aerospike_py.AsyncClient({
            "hosts": self._hosts,
            "policies": {
                "read": {"total_timeout": t, "max_retries": 0},
                "batch": {"total_timeout": t * 2, "max_retries": 0},
                "write": {"total_timeout": t * 2, "max_retries": 0},
                "remove": {"total_timeout": t * 2, "max_retries": 0},
                "operate": {"total_timeout": t * 2, "max_retries": 0},
            },
        })
        await self._client.connect()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def get(self, key: str) -> dict[str, Any] | None:
        from aerospike_py.exception import RecordNotFound

        try:
            rec = await self._client.get(self._key(key))
        except RecordNotFound:
            return None
        return dict(rec.bins)

    async def batch_get(self, keys: list[str]) -> list[dict[str, Any] | None]:
        res = await self._client.batch_read([self._key(k) for k in keys])
        out: list[dict[str, Any] | None] = []
        for r in res.batch_records:
            if r.result == 0:
                out.append(dict(r.record[2]) if r.record is not None else None)  # (key, meta, bins)
            elif r.result == 2:
                out.append(None)
            else:
                raise RuntimeError(f"batch read result {r.result}")
        return out

    async def put_ttl(self, key: str, bins: dict[str, Any], ttl: int) -> None:
        await self._client.put(self._key(key), bins, meta={"ttl": ttl})

    async def create_only(self, key: str, bins: dict[str, Any], ttl: int) -> bool:
        import aerospike_py
        from aerospike_py.exception import RecordExistsError

        try:
            await self._client.put(self._key(key), bins, meta={"ttl": ttl},
                                   policy={"exists": aerospike_py.POLICY_EXISTS_CREATE_ONLY})
        except RecordExistsError:
            return False
        return True

    async def delete_if_owner(self, key: str, owner: str) -> bool:
        from aerospike_py import exp
        from aerospike_py.exception import FilteredOut, RecordNotFound

        policy = {"filter_expression": exp.eq(exp.string_bin("o"), exp.string_val(owner))}
        try:
            await self._client.remove(self._key(key), policy=policy)
        except (RecordNotFound, FilteredOut):
            return False
        return True

    async def delete(self, key: str) -> bool:
        from aerospike_py.exception import RecordNotFound

        try:
            await self._client.remove(self._key(key))
        except RecordNotFound:
            return False
        return True

    async def purge_rule(self, key: str, bin_name: str, target: str, at: float,
                         cutoff: float) -> None:
        import aerospike_py
        from aerospike_py import map_operations as mo

        ops = [
            mo.map_put(bin_name, target, at),
            mo.map_remove_by_value_range(bin_name, 0.0, cutoff, aerospike_py.MAP_RETURN_NONE),
        ]
        await self._client.operate(self._key(key), ops)

    async def ttl_of(self, key: str) -> int:
        rec = await self._client.get(self._key(key))
        return int(rec.meta.ttl)
