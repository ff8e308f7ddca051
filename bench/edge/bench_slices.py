"""Large objects in slices (issue 14.2): a 100 MiB object, 20 concurrent clients downloading
it whole, again and again, from a cold cache - through

(1) an aerocdn edge pod: nginx with the rendered config (``cachePolicy.slices``, 1 MiB) +
    ``aerocdn edge`` (memory tier), and
(2) plain nginx ``slice 1m`` + ``proxy_cache`` (``$slice_range`` in the key) on the same origin,

one after the other in the same run.  Reported per setup: downloads completed, bytes delivered
per second, and what the origin sent - requests, bytes, and bytes / object size (aim: ~1x:
every slice fetched once, however many clients ask at once).

Usage: .venv/bin/python bench/edge/bench_slices.py [--duration 10] [--clients 20]
       [--size-mib 100] [--out FILE]
Everything on 127.0.0.1; wrk is the load generator (pinned to CPU 1, servers to CPU 0 when
there are two cores).  Prints a Markdown report.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "operator"))

from bench.edge.bench_edge import (  # noqa: E402
    NGINX,
    Procs,
    cpu_seconds,
    edge_pod,
    free_port,
    uptime,
    wait_port,
)
from tests.edge.edgeharness import HOST  # noqa: E402

PY = sys.executable
MIB = 2**20


# ----------------------------------------------------------------------------- origin process


def run_origin(port: int, size: int) -> None:
    """/<anything> -> ``size`` bytes (ETag, max-age=3600), single byte ranges honoured;
    /__count -> requests and body bytes sent per path."""
    from collections import Counter

    from aiohttp import web

    unit = os.urandom(MIB + 4093)  # no multiple of the slice size: slices differ
    requests: Counter[str] = Counter()
    sent: Counter[str] = Counter()

    def chunk(first: int, last: int) -> bytes:
        out = bytearray()
        x = first
        while x <= last:
            off = x % len(unit)
            take = min(len(unit) - off, last - x + 1)
            out += unit[off:off + take]
            x += take
        return bytes(out)

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.path == "/__count":
            return web.json_response({"requests": dict(requests), "bytes": dict(sent)})
        requests[request.path] += 1
        first, last, status = 0, size - 1, 200
        headers = {"Cache-Control": "max-age=3600", "ETag": '"bench-1"',
                   "Content-Type": "application/octet-stream"}
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", request.headers.get("Range", ""))
        if m and int(m.group(1)) < size:
            first = int(m.group(1))
            last = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            status = 206
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = last - first + 1
        await resp.prepare(request)
        x = first
        while x <= last:
            y = min(last, x + 256 * 1024 - 1)
            await resp.write(chunk(x, y))
            sent[request.path] += y - x + 1
            x = y + 1
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


PLAIN_SLICE_NGINX = """
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
    proxy_cache_path {tmp}/plain-cache levels=1:2 keys_zone=plain:64m max_size=2048m;
    upstream origin {{ server 127.0.0.1:{origin}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            slice 1m;
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header Range $slice_range;
            proxy_cache plain;
            proxy_cache_key $uri$is_args$args$slice_range;
            proxy_cache_lock on;
            proxy_cache_valid 200 206 1h;
        }}
    }}
}}
"""


def plain_slice_nginx(procs: Procs, tmp: Path, origin_port: int, cpu: str | None) -> int:
    port = free_port()
    d = tmp / f"plain-{port}"
    d.mkdir()
    conf = d / "nginx.conf"
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(PLAIN_SLICE_NGINX.format(tmp=d, origin=origin_port, port=port, user=user))
    procs.start([NGINX, "-c", str(conf), "-e", str(d / "stderr.log")], cpu)
    wait_port(port)
    return port


def wrk(port: int, path: str, duration: int, clients: int, cpu: str | None) -> dict[str, Any]:
    cmd = ["wrk", "-t1", f"-c{clients}", f"-d{duration}s", "--timeout", f"{duration + 30}s",
           "-H", f"Host: {HOST}", f"http://127.0.0.1:{port}{path}"]
    if cpu is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", cpu, *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    done = re.search(r"(\d+) requests in ([\d.]+)(\w+), ([\d.]+)(\w+) read", out)
    assert done is not None, out
    unit = {"B": 1, "KB": 2**10, "MB": 2**20, "GB": 2**30, "TB": 2**40}
    secs = float(done.group(2)) * {"s": 1.0, "m": 60.0, "ms": 0.001}.get(done.group(3), 1.0)
    read = float(done.group(4)) * unit.get(done.group(5), 1)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"downloads": int(done.group(1)), "seconds": secs, "bytes": read,
            "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "errors": errors.group(1) if errors else "", "cmd": " ".join(cmd)}


def origin_counts(port: int) -> dict[str, dict[str, int]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/__count", timeout=10) as r:
        data: dict[str, dict[str, int]] = json.loads(r.read())
        return data


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10, help="seconds of load per setup")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--size-mib", type=int, default=100)
    ap.add_argument("--out", help="also write the Markdown report to this file")
    ap.add_argument("--origin", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    size = args.size_mib * MIB
    if args.origin:
        run_origin(args.origin, size)
        return 0
    if not shutil.which("wrk"):
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    server_cpu, client_cpu = ("0", "1") if (os.cpu_count() or 1) >= 2 else (None, None)
    procs = Procs()
    tmp = Path(tempfile.mkdtemp(prefix="aerocdn-bench-slices-"))
    lines: list[str] = []
    w = lines.append
    try:
        origin_port = free_port()
        procs.start([PY, __file__, "--origin", str(origin_port), "--size-mib",
                     str(args.size_mib)])
        wait_port(origin_port)
        # the memory tier holds the object (its budget is 15% of the memory limit)
        ng, _, _ = edge_pod(
            procs, tmp, origin_port, nginx=True, cpu_nginx=server_cpu, cpu_edge=server_cpu,
            memoryLimit=f"{max(4, args.size_mib * 8 // 1024 + 1)}Gi",
            memoryTierSize=f"{args.size_mib * 2}Mi",
            cachePolicy={"slices": {"enabled": True}, "l1CacheSize": "2Gi"})
        plain = plain_slice_nginx(procs, tmp, origin_port, server_cpu)
        w(f"- machine: {platform.node()}, {os.cpu_count()} CPUs, Linux {platform.release()}, "
          f"Python {platform.python_version()}; load before: `{uptime()}`")
        w(f"- object: {args.size_mib} MiB, 1 MiB slices; {args.clients} clients (wrk "
          f"connections) each downloading it whole, again and again, for {args.duration} s "
          "from a cold cache; servers on CPU "
          f"{server_cpu or 'any'}, wrk on CPU {client_cpu or 'any'}")
        w("")
        w("| setup | downloads | MiB/s delivered | origin requests | origin bytes / object "
          "| server CPU-s | errors |")
        w("| --- | --- | --- | --- | --- | --- | --- |")
        cmds = []
        servers = procs.procs[1:]  # not the origin
        for name, port, path in (
                ("aerocdn (nginx slice + edge, memory tier)", ng, "/a/big.bin"),
                ("plain nginx slice + proxy_cache", plain, "/b/big.bin")):
            cpu0 = sum(cpu_seconds(p.pid) for p in servers if p.poll() is None)
            r = wrk(port, path, args.duration, args.clients, client_cpu)
            cpu_used = sum(cpu_seconds(p.pid) for p in servers if p.poll() is None) - cpu0
            counts = origin_counts(origin_port)
            reqs = counts["requests"].get(path, 0)
            sent = counts["bytes"].get(path, 0)
            err = r["errors"] or (f"{r['non2xx']} non-2xx" if r["non2xx"] else "")
            w(f"| {name} | {r['downloads']} | {r['bytes'] / MIB / r['seconds']:.0f} | {reqs} | "
              f"{sent / size:.2f} | {cpu_used:.1f} | {err or '-'} |")
            cmds.append(r["cmd"])
        w("")
        w("Server CPU-s: user + system CPU of the server processes (both nginx with their "
          "workers, aerocdn edge; not the origin) during the setup's run.")
        w(f"- load at end: `{uptime()}`")
        w("")
        w("Commands (wrk):")
        w("")
        for c in cmds:
            w(f"- `{c}`")
    finally:
        procs.stop_all()
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
    text = "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
