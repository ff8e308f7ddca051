"""Edge benchmark, issue 11: L1 hits over HTTPS (HTTP/1.1 with wrk, HTTP/2 with h2load)
against plain nginx with the same TLS settings in the same run, as a ratio; and the edge
process's peak memory under the flood cases of tests/edge/test_edge_hostile.py against its
configured limit.  All on 127.0.0.1; servers pinned to CPU 0, load generators to CPU 1.

Usage: .venv/bin/python bench/edge/bench_edge_tls.py [--duration 8] [--rounds 3] [--out FILE]
       [--l1-only]
Needs wrk, h2load (nghttp2-client) and openssl.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_edge as be

H2_PER_CONNECTION = 900  # per h2load run: under nginx's keepalive_requests (1000)
TLS_HOST = "localhost"  # resolves to 127.0.0.1 only here; wrk/h2load send it as SNI

PLAIN_TLS = """
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
    {tls}
    server {{
        listen 127.0.0.1:{port} ssl http2;
        server_name {host};
        ssl_certificate {crt};
        ssl_certificate_key {key};
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


def make_cert(d: Path) -> tuple[Path, Path]:
    def ossl(*a: str) -> None:
        subprocess.run(["openssl", *a], cwd=d, check=True, capture_output=True)

    ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=bench-ca", "-days", "2")
    (d / "ext").write_text(f"subjectAltName=DNS:{TLS_HOST}\n")
    ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", "tls.key", "-out", "tls.csr", "-subj", f"/CN={TLS_HOST}")
    ossl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "tls.crt", "-days", "2", "-extfile", "ext")
    return d / "tls.crt", d / "tls.key"


def wrk_tls(port: int, duration: int, connections: int, cpu: str | None) -> dict[str, Any]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "-H", "Accept-Encoding: gzip",
           f"https://{TLS_HOST}:{port}/obj/l1"]
    if cpu is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", cpu, *cmd]
    pid = be.SERVER_PID.get(port)
    cpu0 = be.cpu_seconds(pid) if pid else 0.0
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    used = (be.cpu_seconds(pid) - cpu0) if pid else 0.0
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "per_cpu_s": total / used if used > 0 else 0.0,
            "errors": int(non2xx.group(1)) if non2xx else 0, "cmd": " ".join(cmd)}


def h2load(port: int, duration: int, connections: int, cpu: str | None) -> dict[str, Any]:
    """h2load runs of a fixed count, repeated until ``duration`` has passed.  Not one -D run:
    nginx closes an HTTP/2 connection after 1000 requests (keepalive_requests) and h2load does
    not reconnect, so a timed run went idle (and counted nothing at all when its connections
    spent their 1000 requests in the warm-up)."""
    cmd = ["h2load", "-t1", f"-c{connections}", "-m10", f"-n{connections * H2_PER_CONNECTION}",
           "-H", "Accept-Encoding: gzip", f"https://{TLS_HOST}:{port}/obj/l1"]
    if cpu is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", cpu, *cmd]
    pid = be.SERVER_PID.get(port)
    cpu0 = be.cpu_seconds(pid) if pid else 0.0
    t0 = time.monotonic()
    done = failed = runs = 0
    codes = [0, 0, 0, 0]
    proto = "?"
    while runs == 0 or time.monotonic() - t0 < duration:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, "
                      r"(\d+) failed", out)
        c = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
        assert m is not None and c is not None, out
        done += int(m.group(1))
        failed += int(m.group(2))
        codes = [a + int(b) for a, b in zip(codes, c.groups(), strict=True)]
        p = re.search(r"Application protocol: (\S+)", out)
        proto = p.group(1) if p else proto
        runs += 1
    elapsed = time.monotonic() - t0
    used = (be.cpu_seconds(pid) - cpu0) if pid else 0.0
    return {"rps": done / elapsed, "per_cpu_s": done / used if used > 0 else 0.0,
            "errors": failed, "proto": proto,
            "codes": f"{codes[0]} 2xx, {codes[1]} 3xx, {codes[2]} 4xx, {codes[3]} 5xx "
                     f"({runs} runs)",
            "cmd": " ".join(cmd)}


def tls_pair(procs: be.Procs, tmp: Path, origin_port: int, cpu: str | None,
             crt: Path, key: Path) -> tuple[int, int]:
    """-> (our pod's HTTPS port, plain nginx's HTTPS port), same TLS settings."""
    ours_tls = be.free_port()
    tls = {"listen": f"127.0.0.1:{ours_tls}",
           "certificates": [{"hosts": [TLS_HOST], "certFile": str(crt), "keyFile": str(key)}]}
    _, edge_port, _ = be.edge_pod(procs, tmp, origin_port, nginx=True, cpu_nginx=cpu,
                                  cpu_edge=None, hosts=[TLS_HOST, be.HOST], tls=tls)
    # our nginx is the parent of the process we started last
    be.SERVER_PID[ours_tls] = procs.procs[-1].pid
    conf = next(p for p in tmp.rglob("nginx.conf") if f":{ours_tls} ssl" in p.read_text())
    tls_lines = "\n    ".join(line.strip() for line in conf.read_text().splitlines()
                              if line.strip().startswith(("ssl_protocols", "ssl_ciphers",
                                                          "ssl_prefer", "ssl_session")))
    port = be.free_port()
    d = tmp / f"plain-tls-{port}"
    d.mkdir()
    pconf = d / "nginx.conf"
    user = "user root;" if os.geteuid() == 0 else ""
    pconf.write_text(PLAIN_TLS.format(tmp=d, origin=origin_port, port=port, user=user,
                                      tls=tls_lines, host=TLS_HOST, crt=crt, key=key))
    be.SERVER_PID[port] = procs.start([be.NGINX, "-c", str(pconf), "-e",
                                       str(d / "stderr.log")], cpu).pid
    be.wait_port(port)
    del edge_port
    return ours_tls, port


def warm_tls(port: int) -> None:
    subprocess.run(["curl", "-sk", "-o", "/dev/null", "-H", "Accept-Encoding: gzip",
                    f"https://{TLS_HOST}:{port}/obj/l1"], check=True)


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


FLOOD_LUA = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, "/obj/flood?" .. string.rep("x", 3000) .. counter)
end
"""


async def big_misses(port: int, n: int) -> int:
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(timeout=timeout) as s:
        async def one(i: int) -> int:
            async with s.get(f"http://127.0.0.1:{port}/big/{i}",
                             headers={"Host": be.HOST}) as r:
                got = 0
                async for chunk in r.content.iter_chunked(2**16):
                    got += len(chunk)
                return got
        return sum(await asyncio.gather(*(one(i) for i in range(n))))


class _Done(Exception):
    """--l1-only: the rest of the run is skipped."""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--memory-limit", default="256Mi")
    ap.add_argument("--out")
    ap.add_argument("--l1-only", action="store_true", help="only (d), the L1-hit runs")
    args = ap.parse_args()
    for tool in ("wrk", "h2load", "openssl", "curl"):
        if not shutil.which(tool):
            print(f"{tool} is not installed", file=sys.stderr)
            return 2
    ncpu = os.cpu_count() or 1
    server_cpu, client_cpu = ("0", "1") if ncpu >= 2 else (None, None)
    lines: list[str] = []
    w = lines.append
    w(f"- load at start: `{be.uptime()}`; servers on CPU {server_cpu}, load generator on "
      f"CPU {client_cpu}; {args.rounds} alternating rounds; wrk {args.duration}s, "
      f"{args.connections} connections; h2load runs of {args.connections} connections x 10 "
      f"streams x {H2_PER_CONNECTION} requests, repeated for {args.duration}s")
    w("")
    tmp = Path(tempfile.mkdtemp(prefix="aerocdn-bench-tls-"))
    procs = be.Procs()
    results: dict[str, dict[str, Any]] = {}
    try:
        crt, key = make_cert(tmp)
        origin_port = be.free_port()
        procs.start([be.PY, str(Path(be.__file__)), "--origin", str(origin_port)], None)
        be.wait_port(origin_port)
        ours, plain = tls_pair(procs, tmp, origin_port, server_cpu, crt, key)
        for p in (ours, plain):
            for _ in range(3):
                warm_tls(p)
        rounds = range(1, args.rounds + 1)
        for r in rounds:
            for name, port in (("plain nginx", plain), ("aerocdn pod", ours)):
                results[f"h1/{name}/{r}"] = wrk_tls(port, args.duration, args.connections,
                                                    client_cpu)
                results[f"h2/{name}/{r}"] = h2load(port, args.duration, args.connections,
                                                   client_cpu)
        w("### (d) L1 hits over HTTPS, 1 KiB object, same TLS settings")
        w("")
        w("| protocol | server | round | req/s | req per nginx CPU-second | errors* | status "
          "codes (h2load) |")
        w("| --- | --- | --- | --- | --- | --- | --- |")
        for k, v in results.items():
            proto, name, rnd = k.split("/")
            shown = "HTTP/1.1 (wrk)" if proto == "h1" else f"HTTP/2 (h2load, {v['proto']})"
            w(f"| {shown} | {name} | {rnd} | {v['rps']:.0f} | {v['per_cpu_s']:.0f} | "
              f"{v['errors']} | {v.get('codes', '')} |")
        w("")
        w("\\* wrk: non-2xx answers; h2load: failed requests.")
        w("")
        for proto in ("h1", "h2"):
            med = {n: statistics.median(results[f"{proto}/{n}/{i}"]["rps"] for i in rounds)
                   for n in ("plain nginx", "aerocdn pod")}
            eff = {n: statistics.median(results[f"{proto}/{n}/{i}"]["per_cpu_s"] for i in rounds)
                   for n in ("plain nginx", "aerocdn pod")}
            w(f"- {'HTTP/1.1' if proto == 'h1' else 'HTTP/2'}: median req/s plain "
              f"{med['plain nginx']:.0f}, aerocdn {med['aerocdn pod']:.0f}, ratio "
              f"**{med['aerocdn pod'] / med['plain nginx']:.2f}**; per nginx CPU-second "
              f"ratio **{eff['aerocdn pod'] / eff['plain nginx']:.2f}**")
        w("")
        procs.stop_all()
        if args.l1_only:
            raise _Done

        # (e) memory under floods
        procs.start([be.PY, str(Path(__file__)), "--big-origin", str(origin_port)], None)
        be.wait_port(origin_port)
        ng, edge_port, _ = be.edge_pod(procs, tmp, origin_port, nginx=True, cpu_nginx=None,
                                       cpu_edge=None, memoryLimit=args.memory_limit,
                                       cachePolicy={"maxObjectSizeBytes": 10 * 2**20})
        edge_pid = be.SERVER_PID[edge_port]
        lua = tmp / "flood.lua"
        lua.write_text(FLOOD_LUA)
        subprocess.run(["wrk", "-t1", "-c50", f"-d{args.duration * 2}s", "-s", str(lua),
                        "-H", f"Host: {be.HOST}", f"http://127.0.0.1:{ng}"],
                       capture_output=True, check=True)
        after_flood = peak_rss(edge_pid)
        got = asyncio.run(big_misses(edge_port, 60))
        after_big = peak_rss(edge_pid)
        w(f"### (e) `aerocdn edge` peak RSS (VmHWM) with memoryLimit {args.memory_limit}")
        w("")
        w("| case | edge peak RSS |")
        w("| --- | --- |")
        w(f"| cache-busting flood through nginx (3 KB unique queries, 50 connections, "
          f"{args.duration * 2}s) | {after_flood / 2**20:.0f} MiB |")
        w(f"| then 60 concurrent 9 MiB misses at the edge ({got / 2**20:.0f} MiB served) | "
          f"{after_big / 2**20:.0f} MiB |")
        w("")
    except _Done:
        pass
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    w(f"- load at end: `{be.uptime()}`")
    text = "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


def run_big_origin(port: int) -> None:
    """Origin for (e): /obj/* 1 KiB (cacheable), /big/* 9 MiB (cacheable)."""
    from aiohttp import web

    big = b"b" * (9 * 2**20)

    async def handle(request: web.Request) -> web.Response:
        body = big if request.path.startswith("/big/") else be.BODY_1K
        return web.Response(body=body, headers={"Cache-Control": "max-age=3600"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--big-origin":
        run_big_origin(int(sys.argv[2]))
        sys.exit(0)
    sys.exit(main())
