"""What one L1 hit costs nginx, counted rather than timed: plain nginx ``proxy_cache`` vs
nginx with aerocdn's rendered config, the same 1 KiB object from the same origin.

- ``--callgrind``: user-space instructions per hit (valgrind's callgrind; a count, the same
  whatever else the machine does), with the functions whose share differs most;
- ``--strace``: system calls per hit (``strace -c``);
- ``--cpu``: user and system CPU microseconds per hit from /proc (timed: moves with load).

Each nginx runs one process (``master_process off``), pinned to CPU 0 for ``--cpu``; wrk
(pinned to CPU 1 there) makes the load after a warm-up, and the counters cover only that load.
``--subst 'A=>B'`` (repeatable) edits the rendered config first, to measure a variant.
``--h2``: both servers over TLS with the same settings (bench_edge_tls.py) and HTTP/2, the
load from h2load (``-m10``) instead of wrk.  ``--tls``: the same TLS servers, HTTP/1.1 from wrk.

Usage: .venv/bin/python bench/edge/l1_cost.py --callgrind --strace [--cpu] [--h2 | --tls]
       [--subst ...]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_edge as b
import bench_edge_tls as bt

from aerocdn.edge.config import EdgeConfig


def _g(conf: Path) -> str:
    daemon = "" if re.search(r"^\s*daemon off;", conf.read_text(), re.M) else "daemon off; "
    return daemon + "master_process off;"


H2 = False  # --h2: the servers listen with TLS and HTTP/2; the load is h2load
TLS = False  # --tls or --h2: the servers listen with TLS (--tls alone: HTTP/1.1 from wrk)


def _load(port: int, seconds: int, connections: int, cpu: str | None = None) -> int:
    """Hits made (the L1 object) by ``connections`` clients for about ``seconds``."""
    if not H2:
        return _wrk(port, seconds, connections, cpu)
    cmd = ["h2load", "-t1", f"-c{connections}", "-m10", f"-n{connections * 900}",
           "-H", "Accept-Encoding: gzip", f"https://{bt.TLS_HOST}:{port}/obj/l1"]
    if cpu is not None:
        cmd = ["taskset", "-c", cpu, *cmd]
    done, t0 = 0, time.monotonic()
    while done == 0 or time.monotonic() - t0 < seconds:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        m = re.search(r"(\d+) succeeded, (\d+) failed", out)
        c = re.search(r"status codes: (\d+) 2xx", out)
        if m is None or c is None or int(m.group(2)) or int(c.group(1)) != int(m.group(1)):
            raise SystemExit(f"h2load saw failed or non-2xx answers:\n{out}")
        if "Application protocol: h2" not in out:
            raise SystemExit(f"h2load did not speak HTTP/2:\n{out}")
        done += int(m.group(1))
    return done


def _warm(port: int) -> None:
    if TLS:
        for _ in range(20):
            bt.warm_tls(port)
    else:
        b.warm(port, "/obj/l1", n=20)


def _wrk(port: int, seconds: int, connections: int, cpu: str | None = None) -> int:
    if TLS:
        cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-H", "Accept-Encoding: gzip",
               f"https://{bt.TLS_HOST}:{port}/obj/l1"]
    else:
        cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-H", f"Host: {b.HOST}",
               "-H", "Accept-Encoding: gzip", f"http://127.0.0.1:{port}/obj/l1"]
    if cpu is not None:
        cmd = ["taskset", "-c", cpu, *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    if re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        raise SystemExit(f"wrk saw non-2xx answers:\n{out}")
    return int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]


def callgrind(conf: Path, d: Path, port: int, label: str) -> dict[str, Any]:
    out = d / f"callgrind.{label}.out"
    with open(d / f"valgrind.{label}.log", "w") as vg_log:
        p = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                              b.NGINX, "-c", str(conf), "-e", str(d / "stderr.log"),
                              "-g", _g(conf)], stdout=subprocess.DEVNULL, stderr=vg_log)
    try:
        b.wait_port(port, timeout=120)
        _warm(port)
        subprocess.run(["callgrind_control", "-z", str(p.pid)], check=True, capture_output=True)
        requests = _load(port, 6, 10)
        subprocess.run(["callgrind_control", "-d", str(p.pid)], check=True, capture_output=True)
        time.sleep(1)
    finally:
        p.terminate()
        p.wait(60)
    dump = sorted(d.glob(f"callgrind.{label}.out.*"))[-1]
    total = int(re.search(r"^(?:summary|totals):\s+(\d+)", dump.read_text(), re.M).group(1))  # type: ignore[union-attr]
    annotate = subprocess.run(["callgrind_annotate", "--threshold=100", str(dump)],
                              capture_output=True, text=True).stdout
    fns: dict[str, float] = {}
    for line in annotate.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(\S+)", line)
        if m and "PROGRAM" not in m.group(2):
            name = m.group(2).split(":", 1)[-1]
            fns[name] = fns.get(name, 0) + int(m.group(1).replace(",", "")) / requests
    return {"requests": requests, "per_hit": total / requests, "functions": fns}


def strace(conf: Path, d: Path, port: int) -> dict[str, float]:
    p = subprocess.Popen([b.NGINX, "-c", str(conf), "-e", str(d / "stderr.log"), "-g", _g(conf)])
    try:
        b.wait_port(port)
        _warm(port)
        log = d / "strace.txt"
        st = subprocess.Popen(["strace", "-c", "-f", "-p", str(p.pid), "-o", str(log)],
                              stderr=subprocess.DEVNULL)
        time.sleep(1)
        requests = _load(port, 4, 10)
        st.send_signal(2)
        st.wait(30)
    finally:
        p.terminate()
        p.wait(30)
    calls: dict[str, float] = {}
    for line in log.read_text().splitlines():
        f = line.split()
        if len(f) >= 5 and f[3].isdigit():
            calls[f[-1]] = int(f[3]) / requests
    return calls


def cpu(conf: Path, d: Path, port: int, rounds: int) -> list[tuple[float, float]]:
    p = subprocess.Popen(["taskset", "-c", "0", b.NGINX, "-c", str(conf),
                          "-e", str(d / "stderr.log"), "-g", _g(conf)])
    tck = os.sysconf("SC_CLK_TCK")

    def times() -> tuple[int, int]:
        f = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(f[11]), int(f[12])

    out = []
    try:
        b.wait_port(port)
        _warm(port)
        for _ in range(rounds):
            u0, s0 = times()
            n = _load(port, 5, 50, cpu="1")
            u1, s1 = times()
            out.append(((u1 - u0) / tck / n * 1e6, (s1 - s0) / tck / n * 1e6))
    finally:
        p.terminate()
        p.wait(30)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--callgrind", action="store_true")
    ap.add_argument("--strace", action="store_true")
    ap.add_argument("--cpu", action="store_true")
    ap.add_argument("--cpu-rounds", type=int, default=3)
    ap.add_argument("--h2", action="store_true",
                    help="TLS + HTTP/2 on both servers, load from h2load")
    ap.add_argument("--tls", action="store_true",
                    help="TLS on both servers (as --h2), HTTP/1.1 load from wrk")
    ap.add_argument("--subst", action="append", default=[],
                    help="'old=>new': edit aerocdn's rendered nginx.conf (a variant)")
    args = ap.parse_args()
    global H2, TLS
    H2 = args.h2
    TLS = args.h2 or args.tls
    procs = b.Procs()
    tmp = Path(tempfile.mkdtemp(prefix="l1cost-"))
    try:
        origin = b.free_port()
        procs.start([b.PY, "-c", f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r});"
                     f" import bench_edge; bench_edge.run_origin({origin}, 0)"], None)
        b.wait_port(origin)
        servers: dict[str, tuple[Path, Path, int]] = {}
        port = b.free_port()
        d = tmp / "plain"
        d.mkdir()
        user = "user root;" if os.geteuid() == 0 else ""
        tls: dict[str, Any] | None = None
        if TLS:
            crt, key = bt.make_cert(tmp)
            tls = {"listen": f"127.0.0.1:{b.free_port()}", "certificates": [
                {"hosts": [bt.TLS_HOST], "certFile": str(crt), "keyFile": str(key)}]}
            b.edge_pod(procs, tmp, origin, nginx=False, cpu_nginx=None, cpu_edge=None,
                       hosts=[bt.TLS_HOST, b.HOST], tls=tls)
        else:
            b.edge_pod(procs, tmp, origin, nginx=False, cpu_nginx=None, cpu_edge=None)
        e = max((p for p in tmp.iterdir() if (p / "edge.yaml").exists()),
                key=lambda p: p.stat().st_mtime)
        import yaml

        cfg = EdgeConfig.model_validate(yaml.safe_load((e / "edge.yaml").read_text()))
        cfg = cfg.model_copy(update={"nginx_control_url": f"http://{cfg.nginx.control_listen}"})
        text = b.render_nginx_conf(cfg)
        for s in args.subst:
            old, _, new = s.partition("=>")
            if old not in text:
                raise SystemExit(f"--subst: {old!r} is not in the rendered config")
            text = text.replace(old, new)
        (e / "nginx.conf").write_text(text)
        if tls is not None:
            # the same TLS settings as ours (bench_edge_tls.py)
            tls_lines = "\n    ".join(
                line.strip() for line in text.splitlines() if line.strip().startswith(
                    ("ssl_protocols", "ssl_ciphers", "ssl_prefer", "ssl_session")))
            (d / "nginx.conf").write_text(bt.PLAIN_TLS.format(
                tmp=d, origin=origin, port=port, user=user, tls=tls_lines, host=bt.TLS_HOST,
                crt=tls["certificates"][0]["certFile"], key=tls["certificates"][0]["keyFile"]))
            ours = int(tls["listen"].rpartition(":")[2])
        else:
            (d / "nginx.conf").write_text(b.PLAIN_NGINX.format(tmp=d, origin=origin, port=port,
                                                               user=user))
            ours = int(cfg.nginx.listen.rpartition(":")[2])
        servers["plain nginx proxy_cache"] = (d / "nginx.conf", d, port)
        servers["aerocdn nginx (L1)"] = (e / "nginx.conf", e, ours)
        print(f"# L1 hit cost, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
              f"load: {b.uptime()}")
        if args.subst:
            print(f"# variant: {args.subst}")
        if H2:
            print("# TLS + HTTP/2 (h2load -m10), same TLS settings on both servers")
        elif TLS:
            print("# TLS + HTTP/1.1 (wrk), same TLS settings on both servers")
        fns = {}
        for name, (conf, dd, p) in servers.items():
            if args.callgrind:
                r = callgrind(conf, dd, p, name.split()[0])
                fns[name] = r["functions"]
                print(f"{name}: {r['per_hit']:.0f} instructions per hit "
                      f"(callgrind, {r['requests']} hits)")
            if args.strace:
                calls = strace(conf, dd, p)
                top = ", ".join(f"{k} {v:.2f}" for k, v in calls.items()
                                if k != "total" and v >= 0.05)
                print(f"{name}: {calls.get('total', 0):.2f} syscalls per hit ({top})")
            if args.cpu:
                for u, s in cpu(conf, dd, p, args.cpu_rounds):
                    print(f"{name}: user {u:.2f} + system {s:.2f} = {u + s:.2f} us per hit")
        if len(fns) == 2:
            a, c = fns["aerocdn nginx (L1)"], fns["plain nginx proxy_cache"]
            print("functions, instructions per hit: aerocdn - plain (aerocdn, plain)")
            rows = sorted(((a.get(k, 0) - c.get(k, 0), k) for k in set(a) | set(c)),
                          reverse=True)
            for delta, k in rows:
                if abs(delta) >= 100 and not k.startswith(("(below", "main", "__libc_start",
                                                             "0x000000000001ab70")):
                    print(f"  {delta:+7.0f}  ({a.get(k, 0):.0f}, {c.get(k, 0):.0f})  {k[:80]}")
    finally:
        procs.stop_all()
        subprocess.run(["rm", "-rf", str(tmp)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
