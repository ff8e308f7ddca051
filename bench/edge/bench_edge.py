"""Edge benchmark: one run, all on 127.0.0.1, wrk as the load generator.

(a) L1 hits: nginx with our rendered nginx.conf (+ ``aerocdn edge`` behind it) vs plain nginx
    ``proxy_cache`` on the same origin — requests/s, p50, p99, ratio.
(b) L2 hits: ``aerocdn edge`` alone (nginx bypassed), pinned to one core with taskset —
    in-memory tier, and the Aerospike tier when ``AEROCDN_TEST_AEROSPIKE`` is set.  With
    ``--l2-only``, ``--l2-urls 1,1000`` runs each size as one hot URL and as N distinct
    pre-warmed URLs that wrk cycles over (a Lua script), so same-tick gets hit distinct keys.
(c) With ``AEROCDN_TEST_AEROSPIKE``: origin fetches per unique object when 4 edge pods share one
    Aerospike tier vs 4 independent plain nginx caches (concurrent first requests).

Usage: .venv/bin/python bench/edge/bench_edge.py [--duration 10] [--connections 50]
       [--rounds 5] [--l1-only | --l2-only] [--old-code DIR] [--code LABEL=DIR ...]
Prints a Markdown report (``--out FILE`` also writes it to a file).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "operator"))

from tests.edge.edgeharness import (  # noqa: E402
    HOST,
    NGINX,
    edge_config,
    free_port,
    write_config_file,
)

from aerocdn.edge.policy import tier_of  # noqa: E402
from aerocdn.render.nginx import render_nginx_conf  # noqa: E402

PY = sys.executable
SERVER_PID: dict[int, int] = {}  # port -> pid of the process serving it (CPU accounting)
BODY_1K = b"x" * 1024


# ----------------------------------------------------------------------------- origin process


def run_origin(port: int, delay_ms: int) -> None:
    """Origin: /obj/<anything> -> 1 KiB, max-age=3600; counts fetches per path (/__count)."""
    from collections import Counter

    from aiohttp import web

    hits: Counter[str] = Counter()

    async def handle(request: web.Request) -> web.Response:
        if request.path == "/__count":
            return web.json_response(dict(hits))
        hits[request.path] += 1
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        body = BODY_1K
        if request.path.startswith("/sz/"):  # /sz/<bytes>/...: an object of that size
            body = b"x" * int(request.path.split("/")[2])
        return web.Response(body=body, headers={"Cache-Control": "max-age=3600",
                                                   "Content-Type": "text/plain"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def run_bare(port: int) -> None:
    """Peer for (b): a bare aiohttp + uvloop server answering 1 KiB from memory."""
    import uvloop
    from aiohttp import web

    async def handle(request: web.BaseRequest) -> web.Response:
        return web.Response(body=BODY_1K, headers={"Content-Type": "text/plain"})

    async def serve() -> None:
        runner = web.ServerRunner(web.Server(handle))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    uvloop.run(serve())


# ----------------------------------------------------------------------------- helpers


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


class Procs:
    """The servers a bench run started; their stderr goes to a temp dir that
    stop_all() removes unless one of them died on its own (then it says where)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.log_dir: Path | None = None

    def start(self, cmd: list[str], cpu: str | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        if cpu is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", cpu, *cmd]
        # stderr kept (in the temp dir) so a server that dies under load says why
        if self.log_dir is None:
            self.log_dir = Path(tempfile.mkdtemp(prefix="aerocdn-bench-edge-logs-"))
        log = self.log_dir / f"{len(self.procs)}-{Path(cmd[-1]).name[:40]}.log"
        with log.open("wb") as err:
            p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err,
                                 env={**os.environ, **env} if env else None)
        self.procs.append(p)
        return p

    def stop_all(self) -> None:
        died = []
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            elif p.returncode != 0:
                died.append(f"{p.args!r} exited {p.returncode}")
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()
        if self.log_dir is not None:
            if died:
                print(f"# servers that died on their own: {died}; "
                      f"their stderr is in {self.log_dir}", file=sys.stderr)
            else:
                shutil.rmtree(self.log_dir, ignore_errors=True)
            self.log_dir = None


PLAIN_NGINX = """
worker_processes 1;
pid {tmp}/plain.pid;
daemon off;
error_log {tmp}/plain-error.log warn;
{user}
events {{ worker_connections 4096; }}
http {{
    client_body_temp_path {tmp}/pc; proxy_temp_path {tmp}/pp; fastcgi_temp_path {tmp}/pf;
    uwsgi_temp_path {tmp}/pu; scgi_temp_path {tmp}/ps;
    access_log {tmp}/plain-access.log combined buffer=64k flush=1s;
    proxy_cache_path {tmp}/plain-cache levels=1:2 keys_zone=plain:64m max_size=1024m;
    upstream origin {{ server 127.0.0.1:{origin}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_cache plain;
            proxy_cache_lock on;
            proxy_cache_valid 200 10m;
        }}
    }}
}}
"""


def plain_nginx(procs: Procs, tmp: Path, origin_port: int, cpu: str | None) -> int:
    port = free_port()
    d = tmp / f"plain-{port}"
    d.mkdir()
    conf = d / "nginx.conf"
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(PLAIN_NGINX.format(tmp=d, origin=origin_port, port=port, user=user))
    SERVER_PID[port] = procs.start([NGINX, "-c", str(conf), "-e", str(d / "stderr.log")],
                                   cpu).pid
    wait_port(port)
    return port


def edge_pod(procs: Procs, tmp: Path, origin_port: int, *, nginx: bool, cpu_nginx: str | None,
             cpu_edge: str | None, code: str | None = None,
             **overrides: Any) -> tuple[int, int, int]:
    """-> (nginx port or 0, edge port, admin port)."""
    edge_port = free_port()
    d = Path(tempfile.mkdtemp(dir=tmp))
    cfg = edge_config(f"http://127.0.0.1:{origin_port}", d, listen=f"127.0.0.1:{edge_port}",
                      nginx={"workerProcesses": "1"}, **overrides)
    if nginx:
        cfg = cfg.model_copy(update={"nginx_control_url": f"http://{cfg.nginx.control_listen}"})
    SERVER_PID[edge_port] = procs.start([PY, "-m", "aerocdn.edge.app", "--config",
                 str(write_config_file(cfg, d / "edge.yaml")), "--log-level", "WARNING"],
                cpu_edge, env={"PYTHONPATH": code} if code else None).pid
    wait_port(edge_port)
    ng_port = 0
    if nginx:
        conf = d / "nginx.conf"
        conf.write_text(render_nginx_conf(cfg))
        ng_port = int(cfg.nginx.listen.rpartition(":")[2])
        SERVER_PID[ng_port] = procs.start(
            [NGINX, "-c", str(conf), "-e", str(d / "stderr.log"), "-g", "daemon off;"],
            cpu_nginx).pid
        wait_port(ng_port)
    return ng_port, edge_port, int(cfg.admin_listen.rpartition(":")[2])


_LAT = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)


def cpu_seconds(pid: int) -> float:
    """user + system CPU of a process (all threads) and its direct children (nginx workers)."""
    pids = [pid]
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            pids += [int(c) for c in (task / "children").read_text().split()]
    total = 0
    for p in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def wrk(port: int, path: str, duration: int, connections: int, cpu: str | None,
        urls: int = 1) -> dict[str, Any]:
    """``urls`` > 1: ``path`` is a prefix, l2_cycle.lua requests ``path``0 .. ``path``N-1."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency",
           *(["-s", str(CYCLE_LUA.relative_to(REPO))] if urls > 1 else []),
           "-H", f"Host: {HOST}", "-H", "Accept-Encoding: gzip", f"http://127.0.0.1:{port}{path}",
           *(["--", str(urls)] if urls > 1 else [])]
    if cpu is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", cpu, *cmd]
    load_before = uptime()
    pid = SERVER_PID.get(port)
    cpu0 = cpu_seconds(pid) if pid else 0.0
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO).stdout
    cpu_used = (cpu_seconds(pid) - cpu0) if pid else 0.0
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = {}
    for pct, val, unit in _LAT.findall(out):
        lat[pct] = float(val) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50_ms": lat.get("50"), "p99_ms": lat.get("99"), "requests": total,
            "per_cpu_s": total / cpu_used if cpu_used > 0 else 0.0,
            "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(1) if errors else "", "cmd": " ".join(cmd),
            "load": load_before}


def warm(port: int, path: str, n: int = 3) -> list[str]:
    import urllib.request

    seen = []
    for _ in range(n):
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     headers={"Host": HOST, "Accept-Encoding": "gzip"})
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()
            seen.append(r.headers.get("X-Cache") or tier_of(r.headers))
    return seen


def many_paths(size: int, urls: int) -> list[str]:
    """The distinct objects of the multi-URL L2 workload (the paths l2_cycle.lua requests)."""
    return [f"/sz/{size}/m{i}" for i in range(urls)]


CYCLE_LUA = Path(__file__).with_name("l2_cycle.lua")


async def warm_many(port: int, paths: list[str], rounds: int = 2) -> dict[str, int]:
    """Each path requested ``rounds`` times (concurrently, 25 at a time): the first stores it
    in L2; -> count of the tiers (X-Aerocdn-Born) seen in the last round."""
    from collections import Counter

    import aiohttp

    seen: Counter[str] = Counter()
    async with aiohttp.ClientSession() as s:
        async def one(path: str, last: bool) -> None:
            for attempt in range(3):  # a pooled keep-alive connection the server just closed
                try:
                    async with s.get(f"http://127.0.0.1:{port}{path}",
                                     headers={"Host": HOST, "Accept-Encoding": "gzip"}) as r:
                        await r.read()
                        if r.status != 200:
                            raise RuntimeError(f"warming {path}: HTTP {r.status}")
                        if last:
                            seen[tier_of(r.headers)] += 1
                        return
                except aiohttp.ClientOSError:
                    if attempt == 2:
                        raise

        for n in range(rounds):
            for start in range(0, len(paths), 25):
                await asyncio.gather(*(one(p, n == rounds - 1)
                                       for p in paths[start:start + 25]))
    return dict(seen)


async def first_requests(ports: list[int], objects: int) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as s:
        async def one(port: int, i: int) -> None:
            async with s.get(f"http://127.0.0.1:{port}/obj/c{i}",
                             headers={"Host": HOST}) as r:
                await r.read()
                assert r.status == 200, r.status

        for start in range(0, objects, 25):
            await asyncio.gather(*(one(p, i) for i in range(start, min(objects, start + 25))
                                   for p in ports))


def l2_counts(admin_port: int) -> tuple[float, float]:
    """(L2 hits, L2 tier errors) so far, from the edge's /metrics."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    hits = errors = 0.0
    for line in text.splitlines():
        if line.startswith('aerocdn_cache_hits_total{tier="l2"}'):
            hits += float(line.rsplit(" ", 1)[1])
        elif line.startswith("aerocdn_tier_errors_total{"):
            errors += float(line.rsplit(" ", 1)[1])
    return hits, errors


def origin_counts(port: int) -> dict[str, int]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/__count", timeout=10) as r:
        data: dict[str, int] = json.loads(r.read())
        return data


# ----------------------------------------------------------------------------- (b) only


def run_l2(args: argparse.Namespace, procs: Procs, tmp: Path, origin_port: int, seed: str,
           ns: str, server_cpu: str | None, client_cpu: str | None, results: dict[str, Any],
           w: Callable[[str], None], rounds: range) -> None:
    """L2 hits per object size and URL count: memory tier vs Aerospike tier (this code, and
    --old-code), every edge alone on ``server_cpu``, rounds alternating over all of them.
    One URL: every request the same hot object; N URLs: wrk cycles over N distinct objects,
    all stored in L2 beforehand (the batch of one event-loop tick then holds distinct keys)."""
    sizes = [int(x) for x in args.sizes.split(",")]
    url_counts = [int(x) for x in args.l2_urls.split(",")]
    # every edge gets the same memory limit, large enough that the memory tier holds every
    # object of the largest workload (its budget is a share of the limit)
    mem = {"memoryLimit": args.memory_limit}
    edges: list[tuple[str, dict[str, Any], str | None]] = [("memory tier", mem, None)]
    if seed:
        cc = {**mem, "cacheClusters": {"cc": {"seeds": [seed], "namespace": ns,
                                              "set": f"bench{os.getpid()}"}}}
        edges.append(("aerospike tier (this branch)", cc, None))
        if args.old_code:
            edges.append(("aerospike tier (old code)", cc, args.old_code))
        for variant in args.code:
            label_, _, tree = variant.partition("=")
            if not tree:
                raise SystemExit(f"--code {variant!r}: expected LABEL=DIR")
            edges.append((f"aerospike tier ({label_})", cc, tree))

    def label(size: int, urls: int) -> str:
        return f"{size // 1024} KiB, {urls} URL{'s' if urls > 1 else ''}"

    targets: list[tuple[str, int, int, str, int]] = []
    for name, extra, code in edges:
        _, port, admin = edge_pod(procs, tmp, origin_port, nginx=False, cpu_nginx=None,
                              cpu_edge=server_cpu, code=code, **extra)
        for size in sizes:
            for urls in url_counts:
                if urls == 1:
                    path = f"/sz/{size}/l2"
                    warm(port, path)  # first fetch stores it; later ones are L2 hits
                    seen: Any = warm(port, path, 1)
                else:
                    path = f"/sz/{size}/m"  # l2_cycle.lua appends 0 .. urls-1
                    seen = asyncio.run(warm_many(port, many_paths(size, urls)))
                targets.append((f"{name}, {label(size, urls)}", port, admin, path, urls))
                results[f"tier/{name}/{size}/{urls}"] = seen
    w(f"### (b) L2 hits, `aerocdn edge` alone (no nginx), edge on CPU {server_cpu}, "
      f"wrk on CPU {client_cpu or 'any (unpinned)'}")
    w("")
    w("Answers' tier (`X-Aerocdn-Born`) after warming (the last warm-up pass over every URL):")
    w("")
    for k, v in results.items():
        if k.startswith("tier/"):
            _, name, size_s, urls_s = k.split("/")
            w(f"- {name}, {label(int(size_s), int(urls_s))}: {v}")
    w("")
    w("`L2 hits` = the edge's L2-hit count over the run / wrk's requests (the rest went to "
      "the origin, e.g. after tier errors opened the circuit).")
    w("")
    w("| server | round | req/s | req per edge CPU-second | p50 ms | p99 ms | non-2xx "
      "| L2 hits | tier errors | load before |")
    w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for round_ in rounds:
        for name, port, admin, path, urls in targets:
            hits0, errors0 = l2_counts(admin)
            r = wrk(port, path, args.duration, args.connections, client_cpu, urls)
            hits1, errors1 = l2_counts(admin)
            r["l2_share"] = (hits1 - hits0) / max(1, r["requests"])
            r["tier_errors"] = errors1 - errors0
            results[f"b/{name}/{round_}"] = r
            w(f"| {name} | {round_} | {r['rps']:.0f} | {r['per_cpu_s']:.0f} | {r['p50_ms']} "
              f"| {r['p99_ms']} | {r['non2xx']} | {r['l2_share']:.1%} | {r['tier_errors']:.0f} "
              f"| {r['load'].split('load average:')[-1].strip()} |")
    w("")
    w("| server | median req/s | median req per edge CPU-s | median p50 ms | median p99 ms "
      "| req/s vs memory tier | per CPU-s vs memory tier |")
    w("| --- | --- | --- | --- | --- | --- | --- |")
    for size in sizes:
        for urls in url_counts:
            def med(k: str, field: str) -> float:
                return statistics.median(results[f"b/{k}/{i}"][field] for i in rounds)

            mem = f"memory tier, {label(size, urls)}"
            base, base_cpu = med(mem, "rps"), med(mem, "per_cpu_s")
            for name, _, _ in edges:
                k = f"{name}, {label(size, urls)}"
                rps, cpu = med(k, "rps"), med(k, "per_cpu_s")
                w(f"| {k} | {rps:.0f} | {cpu:.0f} | {med(k, 'p50_ms'):.2f} "
                  f"| {med(k, 'p99_ms'):.2f} | {rps / base:.2f} | {cpu / base_cpu:.2f} |")
    w("")


def finish(args: argparse.Namespace, lines: list[str], results: dict[str, Any],
           procs: Procs, tmp: Path) -> int:
    lines.append(f"- load at end: `{uptime()}`")
    lines.append("")
    lines.append("Commands (wrk):")
    lines.append("")
    seen = set()
    for k, r in results.items():
        if isinstance(r, dict) and "cmd" in r and r["cmd"] not in seen:
            seen.add(r["cmd"])
            lines.append(f"- {k.rsplit('/', 1)[0]}: `{r['cmd']}`")
    text = "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


# ----------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--objects", type=int, default=200, help="unique objects for (c)")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds for (a) and (b)")
    ap.add_argument("--out", help="also write the Markdown report to this file")
    ap.add_argument("--l2-only", action="store_true", help="only (b), the L2-hit run")
    ap.add_argument("--l1-only", action="store_true", help="only (a), the L1-hit run")
    ap.add_argument("--sizes", default="1024", help="object sizes for (b), e.g. 1024,65536")
    ap.add_argument("--l2-urls", default="1",
                    help="with --l2-only: distinct URLs per workload, e.g. 1,1000 (1: one hot "
                         "URL; N: wrk cycles over N pre-warmed objects)")
    ap.add_argument("--memory-limit", default="2Gi",
                    help="with --l2-only: every edge's memoryLimit (the memory tier's budget "
                         "is a share of it; it must hold N objects)")
    ap.add_argument("--edge-cpu", default="0", help="core for the edge in (b) ('' = unpinned)")
    ap.add_argument("--load-cpu", default="1", help="core for wrk ('' = unpinned)")
    ap.add_argument("--asd", help="asd binary: start a private asd for the Aerospike tier")
    ap.add_argument("--asd-cpu", default="", help="core for --asd (taskset)")
    ap.add_argument("--old-code", help="another checkout's operator/ dir: (b) also runs its "
                                       "edge on the Aerospike tier, in the same run")
    ap.add_argument("--code", action="append", default=[], metavar="LABEL=DIR",
                    help="with --l2-only: one more Aerospike-tier edge running the operator/ "
                         "dir DIR (a variant under test), reported as 'aerospike tier "
                         "(LABEL)'; repeatable")
    ap.add_argument("--origin", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--delay-ms", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--bare", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.origin:
        run_origin(args.origin, args.delay_ms)
        return 0
    if args.bare:
        run_bare(args.bare)
        return 0
    if not shutil.which("wrk"):
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    if args.asd:
        from bench.aerospike_clients.bench_clients import private_asd

        with private_asd(args.asd, int(args.asd_cpu or 0), "cache") as asd_port:
            os.environ["AEROCDN_TEST_AEROSPIKE"] = f"127.0.0.1:{asd_port}"
            return run(args)
    return run(args)


def run(args: argparse.Namespace) -> int:
    seed = os.environ.get("AEROCDN_TEST_AEROSPIKE", "")
    ns = os.environ.get("AEROCDN_TEST_AEROSPIKE_NS", "cache")
    ncpu = os.cpu_count() or 1
    server_cpu, client_cpu = ("0", "1") if ncpu >= 2 else (None, None)
    if args.l2_only:
        server_cpu, client_cpu = (args.edge_cpu or None), (args.load_cpu or None)
    lines: list[str] = []
    w = lines.append
    cpu_model = ""
    with contextlib.suppress(OSError):
        m = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
        cpu_model = m.group(1) if m else ""
    w(f"- machine: {platform.node()}, {ncpu} CPUs ({cpu_model}), Linux {platform.release()}, "
      f"Python {platform.python_version()}")
    w(f"- nginx: {subprocess.run([NGINX, '-v'], capture_output=True, text=True).stderr.strip()}"
      f"; wrk: -t1 -c{args.connections} -d{args.duration}s, pinned to CPU {client_cpu}; "
      f"servers pinned to CPU {server_cpu}; {args.rounds} alternating rounds")
    if args.asd:
        w(f"- asd: {args.asd} (private, single node, namespace in memory), pinned to CPU "
          f"{args.asd_cpu or 'none'}")
    w(f"- load at start: `{uptime()}`")
    w("")
    results: dict[str, Any] = {}
    tmp = Path(tempfile.mkdtemp(prefix="aerocdn-bench-"))
    procs = Procs()
    try:
        origin_port = free_port()
        procs.start([PY, __file__, "--origin", str(origin_port)], None)
        wait_port(origin_port)
        rounds = range(1, args.rounds + 1)
        if args.l2_only:
            run_l2(args, procs, tmp, origin_port, seed, ns, server_cpu, client_cpu, results, w,
                   rounds)
            return finish(args, lines, results, procs, tmp)

        # (a) L1 hits
        ours, _, _ = edge_pod(procs, tmp, origin_port, nginx=True, cpu_nginx=server_cpu,
                              cpu_edge=None)
        plain = plain_nginx(procs, tmp, origin_port, server_cpu)
        warm(ours, "/obj/l1")
        warm(plain, "/obj/l1")
        rounds = range(1, args.rounds + 1)
        for round_ in rounds:  # alternate, so a change in machine load hits both
            for name, port in (("plain nginx proxy_cache", plain),
                               ("aerocdn pod (nginx L1)", ours)):
                warm(port, "/obj/l1", 1)
                results[f"a/{name}/{round_}"] = wrk(port, "/obj/l1", args.duration,
                                                    args.connections, client_cpu)
        w("### (a) L1 hits, 1 KiB object")
        w("")
        w("| server | round | req/s | req per server CPU-second | p50 ms | p99 ms | non-2xx "
          "| load before |")
        w("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for k, r in results.items():
            if k.startswith("a/"):
                _, name, rnd = k.split("/")
                w(f"| {name} | {rnd} | {r['rps']:.0f} | {r['per_cpu_s']:.0f} | {r['p50_ms']} | "
                  f"{r['p99_ms']} | {r['non2xx']} | "
                  f"{r['load'].split('load average:')[-1].strip()} |")
        med = {n: statistics.median(results[f"a/{n}/{i}"]["rps"] for i in rounds)
               for n in ("plain nginx proxy_cache", "aerocdn pod (nginx L1)")}
        ratios = [results[f"a/aerocdn pod (nginx L1)/{i}"]["rps"]
                  / results[f"a/plain nginx proxy_cache/{i}"]["rps"] for i in rounds]
        ratio = med["aerocdn pod (nginx L1)"] / med["plain nginx proxy_cache"]
        results["a/ratio"] = ratio
        eff = {n: statistics.median(results[f"a/{n}/{i}"]["per_cpu_s"] for i in rounds)
               for n in ("plain nginx proxy_cache", "aerocdn pod (nginx L1)")}
        eff_ratio = eff["aerocdn pod (nginx L1)"] / eff["plain nginx proxy_cache"]
        w("")
        w(f"Median req/s: plain {med['plain nginx proxy_cache']:.0f}, aerocdn "
          f"{med['aerocdn pod (nginx L1)']:.0f}; ratio of medians **{ratio:.2f}** "
          f"(per round: {', '.join(f'{x:.2f}' for x in ratios)})")
        w("")
        w(f"Requests per nginx CPU-second (less sensitive to other load on the machine): plain "
          f"{eff['plain nginx proxy_cache']:.0f}, aerocdn {eff['aerocdn pod (nginx L1)']:.0f}; "
          f"ratio **{eff_ratio:.2f}**")
        w("")
        procs.stop_all()
        if args.l1_only:
            return finish(args, lines, results, procs, tmp)
        procs.start([PY, __file__, "--origin", str(origin_port)], None)
        wait_port(origin_port)

        # (b) L2 hits, edge alone on one core
        tiers: list[tuple[str, dict[str, Any]]] = [("memory", {})]
        if seed:
            tiers.append(("aerospike", {"cacheClusters": {"cc": {
                "seeds": [seed], "namespace": ns, "set": f"bench{os.getpid()}"}}}))
        w("### (b) L2 hits, `aerocdn edge` alone (no nginx), 1 KiB object, edge on one core")
        w("")
        targets: list[tuple[str, int, str]] = []
        for tier, extra in tiers:
            _, edge_port, _ = edge_pod(procs, tmp, origin_port, nginx=False, cpu_nginx=None,
                                       cpu_edge=server_cpu, **extra)
            warm(edge_port, "/obj/l2")
            targets.append((f"aerocdn edge, {tier} tier", edge_port, "/obj/l2"))
        bare_port = free_port()
        SERVER_PID[bare_port] = procs.start([PY, __file__, "--bare", str(bare_port)],
                                            server_cpu).pid
        wait_port(bare_port)
        targets.append(("peer: bare aiohttp + uvloop, 1 KiB from memory, no cache logic",
                        bare_port, "/x"))
        for round_ in rounds:
            for name, port, path in targets:
                results[f"b/{name}/{round_}"] = wrk(port, path, args.duration,
                                                    args.connections, client_cpu)
        w("| server | round | req/s | req per server CPU-second | p50 ms | p99 ms | non-2xx "
          "| load before |")
        w("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for k, r in results.items():
            if k.startswith("b/"):
                _, name, rnd = k.split("/")
                w(f"| {name} | {rnd} | {r['rps']:.0f} | {r['per_cpu_s']:.0f} | {r['p50_ms']} | "
                  f"{r['p99_ms']} | {r['non2xx']} | "
                  f"{r['load'].split('load average:')[-1].strip()} |")
        w("")
        for name, _, _ in targets:
            rps = statistics.median(results[f"b/{name}/{i}"]["rps"] for i in rounds)
            p99 = statistics.median(results[f"b/{name}/{i}"]["p99_ms"] for i in rounds)
            eff_b = statistics.median(results[f"b/{name}/{i}"]["per_cpu_s"] for i in rounds)
            w(f"- median {name}: {rps:.0f} req/s, {eff_b:.0f} req per server CPU-second, "
              f"p99 {p99:.1f} ms")
        w("")
        procs.stop_all()

        # (c) origin fetches per unique object, 4 pods
        if seed:
            procs.start([PY, __file__, "--origin", str(origin_port), "--delay-ms", "50"], None)
            wait_port(origin_port)
            shared = {"cacheClusters": {"cc": {"seeds": [seed], "namespace": ns,
                                               "set": f"fanin{os.getpid()}"}}}
            ours_ports = [edge_pod(procs, tmp, origin_port, nginx=True, cpu_nginx=None,
                                   cpu_edge=None, **shared)[0] for _ in range(4)]
            plain_ports = [plain_nginx(procs, tmp, origin_port, None) for _ in range(4)]
            before = origin_counts(origin_port)
            asyncio.run(first_requests(ours_ports, args.objects))
            mid = origin_counts(origin_port)
            asyncio.run(first_requests(plain_ports, args.objects))
            after = origin_counts(origin_port)
            ours_f = sum(mid.values()) - sum(before.values())
            plain_f = sum(after.values()) - sum(mid.values())
            results["c"] = {"aerocdn": ours_f / args.objects, "plain": plain_f / args.objects}
            w(f"### (c) origin fetches per unique object, 4 pods, {args.objects} objects, "
              "each requested at all 4 pods at once (origin answers after 50 ms)")
            w("")
            w("| setup | origin fetches / object |")
            w("| --- | --- |")
            w(f"| 4 aerocdn pods sharing one Aerospike tier | {results['c']['aerocdn']:.2f} |")
            w(f"| 4 independent plain nginx caches | {results['c']['plain']:.2f} |")
            w("")
            procs.stop_all()
        else:
            w("### (c) skipped: set AEROCDN_TEST_AEROSPIKE=host:port for the shared-tier run")
            w("")
        w(f"- load at end: `{uptime()}`")
        w("")
        w("Commands (wrk):")
        w("")
        seen_cmds = set()
        for k, r in results.items():
            if isinstance(r, dict) and "cmd" in r and r["cmd"] not in seen_cmds:
                seen_cmds.add(r["cmd"])
                w(f"- {k.rsplit('/', 1)[0]}: `{r['cmd']}`")
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    text = "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
