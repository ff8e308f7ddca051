"""Aerospike Python clients on the edge's L2 access pattern, all in one run against one asd.

    .venv/bin/python -m bench.aerospike_clients.bench_clients --asd /path/to/asd \\
        --asd-cpu 0 --load-cpu 1 --out /tmp/bench-aerospike-clients.json

With ``--asd`` it starts a private single-node ``asd`` on free loopback ports (work dir under a
temporary directory, an in-memory namespace like the one aerocdn renders), pinned with
``taskset -c <asd-cpu>``, and stops it at the end; with ``--host host:port`` it uses a running
server instead. This process pins itself to ``--load-cpu``: the clients and the load they
generate share that core, as the edge's event loop and its client threads would.

For every client that imports, it first checks that the client can do each operation the tier
needs (with the result it must give), then measures each operation with ``--concurrency``
asyncio tasks for ``--seconds``, for each value size: ops/s and p50/p99 latency, plus errors.
Timings belong here, never in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.aerospike_clients.drivers import AerospikePyDriver, Driver, LegacyDriver, SdkDriver

from aerocdn_localcluster.cluster import free_ports

RULES_KEY = "__aerocdn_purge_rules__"
OWNER = "pod-a"
HOT_KEYS = 1000  # object records the gets and puts cycle over, per value size

ASD_CONF = """\
service {{
    cluster-name aerocdn-bench
    proto-fd-max 15000
    work-directory {work}
}}
mod-lua {{
    user-path {work}/udf/lua
}}
logging {{
    console {{
        context any warning
    }}
}}
network {{
    service {{
        address 127.0.0.1
        port {service}
        access-address 127.0.0.1
    }}
    heartbeat {{
        mode mesh
        address 127.0.0.1
        port {heartbeat}
        interval 150
        timeout 10
    }}
    fabric {{
        address 127.0.0.1
        port {fabric}
    }}
    admin {{
        address 127.0.0.1
        port {admin}
    }}
}}
namespace {ns} {{
    replication-factor 2
    default-ttl 0
    nsup-period 120
    storage-engine memory {{
        data-size 1024M
        evict-used-pct 60
        stop-writes-used-pct 85
    }}
}}
"""


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, deadline_s: float) -> None:
    import aerospike

    deadline = time.monotonic() + deadline_s
    while True:
        if proc.poll() is not None:
            raise SystemExit("asd exited:\n" + log.read_text(errors="replace")[-3000:])
        try:
            c = aerospike.client({"hosts": [("127.0.0.1", port)]}).connect()
            try:
                if "cache" in c.info_random_node("namespaces"):
                    return
            finally:
                c.close()
        except Exception:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)  # polling interval of the condition above


@contextmanager
def private_asd(asd: str, cpu: int, ns: str) -> Iterator[int]:
    """A single-node asd on free loopback ports, pinned to ``cpu``; yields its service port."""
    with tempfile.TemporaryDirectory(prefix="aerocdn-bench-asd-") as tmp:
        work = Path(tmp) / "work"
        for sub in ("smd", "udf/lua"):
            (work / sub).mkdir(parents=True)
        service, fabric, heartbeat, admin = free_ports(4)
        conf = Path(tmp) / "aerospike.conf"
        conf.write_text(ASD_CONF.format(work=work, service=service, fabric=fabric,
                                        heartbeat=heartbeat, admin=admin, ns=ns))
        log = Path(tmp) / "asd.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                ["taskset", "-c", str(cpu), asd, "--config-file", str(conf), "--foreground"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                _wait_port(service, proc, log, 60)
                yield service
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
                    try:
                        proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        os.killpg(proc.pid, signal.SIGKILL)
                        proc.wait()


# --------------------------------------------------------------------------- workload


def object_bins(size: int, url: str, now: float, legacy: bool) -> dict[str, Any]:
    """The bins AerospikeTier.to_bins writes for a cached object (the body is the payload)."""
    body = os.urandom(size)
    return {
        "k": "o", "st": 200,
        "h": [["content-type", "application/octet-stream"], ["cache-control", "max-age=300"]],
        "b": bytearray(body) if legacy else body,  # the tier hands the C client a bytearray
        "u": url, "sa": now, "fu": now + 300.0, "swr": 30.0, "sie": 60.0, "vy": [],
    }


@dataclass
class Measured:
    client: str
    op: str
    size: int | None
    ops: int
    errors: int
    seconds: float
    ops_per_s: float
    p50_ms: float
    p99_ms: float
    first_error: str = ""
    latencies_ms: list[float] = field(default_factory=list, repr=False)


def percentile(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return float("nan")
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


async def measure(client: str, op: str, size: int | None, fn: Callable[[int], Awaitable[Any]],
                  *, concurrency: int, seconds: float, limit: int | None = None) -> Measured:
    """``concurrency`` tasks call ``fn(i)`` with i = 0, 1, 2, ... until ``seconds`` pass (or
    ``limit`` calls were made); each call's latency is recorded."""
    lat: list[float] = []
    errors = 0
    first_error = ""
    counter = iter(range(limit if limit is not None else 1 << 62))
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors, first_error
        for i in counter:
            if time.perf_counter() >= deadline:
                return
            t0 = time.perf_counter()
            try:
                await fn(i)
            except Exception as e:
                errors += 1
                first_error = first_error or f"{type(e).__name__}: {e}"[:200]
                continue
            lat.append((time.perf_counter() - t0) * 1000.0)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    lat.sort()
    return Measured(client, op, size, len(lat), errors, round(elapsed, 3),
                    round(len(lat) / elapsed, 1), round(percentile(lat, 0.50), 3),
                    round(percentile(lat, 0.99), 3), first_error, lat)


# --------------------------------------------------------------------------- capability checks


@dataclass
class Support:
    client: str
    ok: dict[str, bool] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


async def check_support(d: Driver, tag: str, legacy: bool) -> Support:
    """Each operation the tier needs, with the answer it must give."""
    sup = Support(d.name)
    now = time.time()
    obj, missing, lock = f"chk-{tag}-obj", f"chk-{tag}-missing", f"lock|chk-{tag}"
    rules = f"chk-{tag}-rules"

    async def check(name: str, body: Callable[[], Awaitable[str | None]]) -> None:
        try:
            problem = await body()
        except Exception as e:
            problem = f"{type(e).__name__}: {e}"[:300]
        sup.ok[name] = problem is None
        if problem:
            sup.notes[name] = problem

    bins = object_bins(1024, "/chk", now, legacy)

    async def put_ttl() -> str | None:
        await d.put_ttl(obj, bins, 300)
        ttl = await d.ttl_of(obj)
        return None if 0 < ttl <= 300 else f"ttl read back as {ttl}, wrote 300"

    async def get() -> str | None:
        rec, none = await asyncio.gather(d.get(obj), d.get(missing))
        if none is not None:
            return "a missing key did not read as None"
        if rec is None or bytes(rec["b"]) != bytes(bins["b"]) or rec["h"] != bins["h"]:
            return "the stored object did not read back equal"
        return None

    async def batch_get() -> str | None:
        got = await d.batch_get([obj, missing])
        if len(got) != 2 or got[1] is not None:
            return f"batch of [present, missing] gave {[None if g is None else 'rec' for g in got]}"
        rec = got[0]
        if rec is None or bytes(rec["b"]) != bytes(bins["b"]) or rec["h"] != bins["h"]:
            return "the stored object did not read back equal"
        return None

    async def create_only() -> str | None:
        first = await d.create_only(lock, {"o": OWNER}, 30)
        second = await d.create_only(lock, {"o": "pod-b"}, 30)
        return None if (first, second) == (True, False) else f"create, create gave {first, second}"

    async def delete_if_owner() -> str | None:
        other = await d.delete_if_owner(lock, "pod-b")
        still = (await d.batch_get([lock]))[0]
        mine = await d.delete_if_owner(lock, OWNER)
        gone = (await d.batch_get([lock]))[0]
        if other or still is None:
            return "a delete filtered on another owner removed the lock"
        if not mine or gone is not None:
            return f"the owner's filtered delete gave {mine}, record left: {gone is not None}"
        return None

    async def delete() -> str | None:
        first = await d.delete(obj)
        second = await d.delete(obj)
        gone = (await d.batch_get([obj]))[0]
        if (first, second, gone) != (True, False, None):
            return f"delete, delete, get gave {first, second, gone}"
        return None

    async def purge_rule() -> str | None:
        await d.purge_rule(rules, "ex", "/old", 100.0, 0.0)
        await d.purge_rule(rules, "ex", "/new", 200.0, 150.0)
        rec = (await d.batch_get([rules]))[0]
        got = dict(rec["ex"]) if rec else None
        return None if got == {"/new": 200.0} else f"rules map read back as {got}"

    for name, body in (("put_ttl", put_ttl), ("get", get), ("batch_get", batch_get),
                       ("create_only", create_only), ("delete_if_owner", delete_if_owner),
                       ("delete", delete), ("purge_rule", purge_rule)):
        await check(name, body)
    for k in (obj, lock, rules):
        with suppress(Exception):
            await d.delete(k)
    return sup


# --------------------------------------------------------------------------- all clients


@dataclass
class Candidate:
    driver: Driver
    tag: str
    legacy: bool
    support: Support | None = None


async def bench_all(cands: list[Candidate], *, sizes: list[int], concurrency: int,
                    seconds: float, rounds: int) -> list[Measured]:
    """Every operation for every client, the clients taking turns per operation, ``rounds``
    times over: load from elsewhere on the machine then falls on all clients alike."""
    out: list[Measured] = []
    now = time.time()

    async def run(c: Candidate, op: str, size: int | None, fn: Callable[[int], Awaitable[Any]],
                  limit: int | None = None) -> Measured | None:
        assert c.support is not None
        if not c.support.ok.get(op.split("(")[0], True):
            return None
        m = await measure(c.driver.name, op, size, fn, concurrency=concurrency,
                          seconds=seconds, limit=limit)
        out.append(m)
        print(f"  {c.driver.name:14} {op:17} {size or '':>6} {m.ops_per_s:>9.0f}/s "
              f"p50 {m.p50_ms:7.3f} ms  p99 {m.p99_ms:7.3f} ms  errors {m.errors}",
              file=sys.stderr)
        return m

    objs: dict[tuple[str, int], list[str]] = {}
    bins: dict[tuple[str, int], dict[str, Any]] = {}
    for c in cands:
        d = c.driver
        await d.purge_rule(RULES_KEY, "ex", "/purged", now, now - 3600)
        for size in sizes:
            b = object_bins(size, "/obj", now, c.legacy)
            ks = [f"{c.tag}-o{size}-{i}" for i in range(HOT_KEYS)]
            for k in ks:  # the records the gets read
                await d.put_ttl(k, b, 600)
            objs[c.tag, size], bins[c.tag, size] = ks, b

    for r in range(rounds):
        print(f"round {r + 1}/{rounds}", file=sys.stderr)
        for size in sizes:
            for op in ("get", "batch_get", "put_ttl"):
                for c in cands:
                    d, ks, b = c.driver, objs[c.tag, size], bins[c.tag, size]

                    async def get1(i: int, d: Driver = d, ks: list[str] = ks) -> None:
                        if await d.get(ks[i % HOT_KEYS]) is None:
                            raise RuntimeError("a stored object was not found")

                    async def get2(i: int, d: Driver = d, ks: list[str] = ks) -> None:
                        rec, _rules = await d.batch_get([ks[i % HOT_KEYS], RULES_KEY])
                        if rec is None:
                            raise RuntimeError("a stored object was not found")

                    async def put(i: int, d: Driver = d, ks: list[str] = ks,
                                  b: dict[str, Any] = b) -> None:
                        await d.put_ttl(ks[i % HOT_KEYS], b, 600)

                    await run(c, op, size, {"get": get1, "batch_get": get2, "put_ttl": put}[op])

        # Locks: each acquire creates a new record; the records made are then released (the
        # owner-filtered delete) and deleted (the plain delete), each once, so every release
        # and delete hits an existing record.
        made: dict[str, int] = {}
        for c in cands:
            d, prefix = c.driver, f"lock|{c.tag}-r{r}-"

            async def acquire(i: int, d: Driver = d, prefix: str = prefix) -> None:
                if not await d.create_only(f"{prefix}{i}", {"o": OWNER}, 60):
                    raise RuntimeError("create-only refused a new key")

            m = await run(c, "create_only", None, acquire)
            made[c.tag] = (m.ops + m.errors) if m else 0
        for phase in ("create_only(held)", "delete_if_owner", "delete"):
            for c in cands:
                d, prefix, n = c.driver, f"lock|{c.tag}-r{r}-", made[c.tag]
                half = n // 2
                if not n:
                    continue

                async def held(i: int, d: Driver = d, prefix: str = prefix,
                               half: int = half) -> None:  # another pod holds the lock
                    if await d.create_only(f"{prefix}{i % max(1, half)}", {"o": "pod-b"}, 60):
                        raise RuntimeError("create-only accepted a held key")

                async def release(i: int, d: Driver = d, prefix: str = prefix) -> None:
                    if not await d.delete_if_owner(f"{prefix}{i}", OWNER):
                        raise RuntimeError("owner's release found nothing to delete")

                async def delete(i: int, d: Driver = d, prefix: str = prefix,
                                 half: int = half) -> None:
                    if not await d.delete(f"{prefix}{half + i}"):
                        raise RuntimeError("delete found nothing to delete")

                if phase == "create_only(held)":
                    await run(c, phase, None, held)
                elif phase == "delete_if_owner":
                    await run(c, phase, None, release, limit=half)
                else:
                    await run(c, phase, None, delete, limit=n - half)

    for c in cands:
        for k in [k for (tag, _), ks in objs.items() if tag == c.tag for k in ks]:
            await c.driver.delete(k)
    return out


def summarize(ms: list[Measured]) -> list[dict[str, Any]]:
    """Per client, operation and size over the rounds: the median round's ops/s (and the
    range), p50/p99 of all latencies of all rounds pooled."""
    groups: dict[tuple[str, str, int | None], list[Measured]] = {}
    for m in ms:
        groups.setdefault((m.client, m.op, m.size), []).append(m)
    rows = []
    for (client, op, size), g in groups.items():
        rates = sorted(m.ops_per_s for m in g)
        lat = sorted(x for m in g for x in m.latencies_ms)
        errors = sum(m.errors for m in g)
        rows.append({
            "client": client, "op": op, "size": size, "rounds": len(g),
            "ops_per_s": rates[len(rates) // 2], "ops_per_s_min": rates[0],
            "ops_per_s_max": rates[-1], "ops": len(lat), "errors": errors,
            "p50_ms": round(percentile(lat, 0.50), 3), "p99_ms": round(percentile(lat, 0.99), 3),
            "first_error": next((m.first_error for m in g if m.first_error), ""),
        })
    return rows


def make_driver(name: str, host: str, port: int, ns: str, set_name: str, timeout_ms: int,
                threads: int) -> Driver:
    if name == "aerospike":
        return LegacyDriver(host, port, ns, set_name, timeout_ms=timeout_ms, threads=threads)
    if name == "aerospike-sdk":
        return SdkDriver(host, port, ns, set_name, timeout_ms=timeout_ms)
    if name == "aerospike-py":
        return AerospikePyDriver(host, port, ns, set_name, timeout_ms=timeout_ms)
    raise SystemExit(f"unknown client {name!r}")


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("aerospike", "aerospike-sdk", "aerospike-native", "aerospike-py", "uvloop"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


async def main_async(args: argparse.Namespace, host: str, port: int) -> dict[str, Any]:
    cands: list[Candidate] = []
    support: list[Support] = []
    for name in args.clients:
        d = make_driver(name, host, port, args.namespace, args.set, args.timeout_ms, args.threads)
        c = Candidate(d, f"{name}-{os.getpid()}", legacy=name == "aerospike")
        try:
            await d.connect()
            c.support = await check_support(d, c.tag, c.legacy)
        except Exception as e:  # a client that cannot even connect is reported, not fatal
            c.support = Support(name, {"connect": False},
                                {"connect": f"{type(e).__name__}: {e}"[:300]})
            support.append(c.support)
            continue
        support.append(c.support)
        cands.append(c)
    try:
        ms = await bench_all(cands, sizes=args.sizes, concurrency=args.concurrency,
                             seconds=args.seconds, rounds=args.rounds)
    finally:
        for c in cands:
            await c.driver.close()
    runs = [{k: v for k, v in asdict(m).items() if k != "latencies_ms"} for m in ms]
    return {"support": [asdict(s) for s in support], "summary": summarize(ms), "runs": runs}


def server_release(host: str, port: int) -> str:
    import aerospike

    c = aerospike.client({"hosts": [(host, port)]}).connect()
    try:
        return str(c.info_random_node("release")).split("\t", 1)[-1].strip()
    finally:
        c.close()


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables: what each client supports, then every measurement."""
    ops = ["get", "batch_get", "put_ttl", "create_only", "delete_if_owner", "delete", "purge_rule"]
    lines = ["| client | " + " | ".join(ops) + " |", "|---" * (len(ops) + 1) + "|"]
    for s in report["support"]:
        cells = []
        for op in ops:
            ok = s["ok"].get(op)
            cells.append("yes" if ok else ("no: " + s["notes"].get(op, "")) if ok is False
                         else "not run: " + "; ".join(s["notes"].values()))
        lines.append(f"| {s['client']} | " + " | ".join(cells) + " |")
    lines += ["", "| operation | value | client | ops/s (median round) | range over rounds "
              "| p50 ms | p99 ms | errors |", "|---|---|---|---:|---:|---:|---:|---:|"]
    order = {op: i for i, op in enumerate(["get", "batch_get", "put_ttl", "create_only",
                                           "create_only(held)", "delete_if_owner", "delete"])}
    rows = sorted(report["summary"],
                  key=lambda m: (order.get(m["op"], 99), m["size"] or 0, m["client"]))
    for m in rows:
        size = f"{m['size'] // 1024} KiB" if m["size"] else ""
        err = f"{m['errors']}" + (f" ({m['first_error']})" if m["errors"] else "")
        lines.append(f"| {m['op']} | {size} | {m['client']} | {m['ops_per_s']:.0f} | "
                     f"{m['ops_per_s_min']:.0f}-{m['ops_per_s_max']:.0f} | "
                     f"{m['p50_ms']:.2f} | {m['p99_ms']:.2f} | {err} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--asd", help="asd binary: start a private single-node server")
    g.add_argument("--host", help="host:port of a running server instead")
    p.add_argument("--asd-cpu", type=int, default=0, help="core for asd (taskset)")
    p.add_argument("--load-cpu", type=int, default=1, help="core for this process (the clients)")
    p.add_argument("--namespace", default="cache")
    p.add_argument("--set", default="bench")
    p.add_argument("--clients", nargs="+", default=["aerospike", "aerospike-sdk", "aerospike-py"])
    p.add_argument("--sizes", nargs="+", type=int, default=[1024, 65536])
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--seconds", type=float, default=3.0,
                   help="per operation, size, client and round")
    p.add_argument("--rounds", type=int, default=3,
                   help="the clients take turns per operation, this many times over")
    p.add_argument("--threads", type=int, default=16,
                   help="executor threads for the blocking client (the edge's tier_threads)")
    p.add_argument("--timeout-ms", type=int, default=1000,
                   help="read timeout; writes and batches get twice this, as in the tier")
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--markdown", help="write the results as Markdown tables here")
    args = p.parse_args(argv)

    if args.load_cpu >= 0:
        os.sched_setaffinity(0, {args.load_cpu})
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass

    def go(host: str, port: int) -> dict[str, Any]:
        report = asyncio.run(main_async(args, host, port))
        report["server"] = server_release(host, port)
        return report

    if args.asd:
        if not shutil.which("taskset"):
            raise SystemExit("taskset is needed to pin asd to its core")
        with private_asd(args.asd, args.asd_cpu, args.namespace) as port:
            report = go("127.0.0.1", port)
    else:
        host, _, port_s = args.host.rpartition(":")
        report = go(host, int(port_s))
    report.update({
        "command": " ".join([Path(sys.executable).name, "-m",
                             "bench.aerospike_clients.bench_clients",
                             *(argv if argv is not None else sys.argv[1:])]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "loadavg_at_end": os.getloadavg()},
        "pinning": {"asd_cpu": args.asd_cpu if args.asd else None, "load_cpu": args.load_cpu},
        "packages": versions(),
        "concurrency": args.concurrency, "seconds": args.seconds, "rounds": args.rounds,
        "threads": args.threads,
        "timeout_ms": args.timeout_ms,
    })
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.markdown:
        Path(args.markdown).write_text(markdown(report))
    print(text)


if __name__ == "__main__":
    main()
