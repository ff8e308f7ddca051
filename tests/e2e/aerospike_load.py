"""A client of a live Aerospike cluster for the live tier: it writes records and remembers
which ones Aerospike acknowledged, and reads them back. Run as a separate process, on a real
node's side of the network (`ip netns exec <node netns> python aerospike_load.py ...`), where
pod IPs are routed; the test process itself (the host namespace) does not reach them.

    aerospike_load.py write --hosts IP:PORT[,...] --acked FILE [--stop FILE] [--count N]
                            [--first K] [--size BYTES] [--rate PER_SECOND]
    aerospike_load.py check --hosts IP:PORT[,...] --keys FILE [--keys FILE ...]
    aerospike_load.py info --hosts IP:PORT[,...] --command INFO_COMMAND
    aerospike_load.py migrations --hosts IP:PORT[,...] --stop FILE [--interval SECONDS]

`write` puts keys K, K+1, ... (integers, set `t` of namespace `cache`), each with a bin of
--size bytes, until --count keys were tried or the --stop file exists; every key whose put
returned OK is appended to --acked (one per line, flushed as it goes). A put that fails or
times out is not retried beyond the client's own retries and not recorded: its outcome is
unknown. Prints a JSON summary: keys tried, acknowledged, failed (by error).

`check` reads every key listed in the files (batch reads) and prints a JSON summary: how many
were listed, found, and the first missing ones.

`info` sends an info command to every node of the cluster and prints {node id: reply}.

`migrations` asks every node for `statistics` every --interval seconds until the --stop file
exists, printing one JSON line per round: {"t": unix time, "remaining": {node id:
migrate_partitions_remaining}} (or "error").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from typing import Any

NAMESPACE = "cache"
SET = "t"
BATCH = 500


def connect(hosts: str) -> Any:
    import aerospike

    seeds = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":")
        seeds.append((host, int(port)))
    config = {
        "hosts": seeds,
        "policies": {
            "write": {"total_timeout": 3000, "socket_timeout": 1000, "max_retries": 2,
                      "sleep_between_retries": 200},
            "batch": {"total_timeout": 10000, "socket_timeout": 3000, "max_retries": 3,
                      "sleep_between_retries": 500},
        },
        "timeout": 10000,
    }
    return aerospike.client(config).connect()


def write(args: argparse.Namespace) -> dict[str, Any]:
    client = connect(args.hosts)
    errors: Counter[str] = Counter()
    tried = acked = 0
    pad = b"x" * args.size
    interval = 1.0 / args.rate if args.rate > 0 else 0.0
    started = time.monotonic()
    key = args.first
    with open(args.acked, "a", buffering=1) as out:
        try:
            while args.count <= 0 or tried < args.count:
                if args.stop and tried % 20 == 0 and os.path.exists(args.stop):
                    break
                tried += 1
                try:
                    client.put((NAMESPACE, SET, key), {"i": key, "pad": pad})
                except Exception as exc:  # the outcome of this put is unknown
                    errors[type(exc).__name__] += 1
                else:
                    acked += 1
                    out.write(f"{key}\n")
                key += 1
                if interval:
                    delay = started + tried * interval - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
        finally:
            client.close()
    return {"tried": tried, "acked": acked, "failed": dict(errors),
            "seconds": round(time.monotonic() - started, 1)}


def check(args: argparse.Namespace) -> dict[str, Any]:
    keys: list[int] = []
    for path in args.keys:
        with open(path) as f:
            keys += [int(line) for line in f if line.strip()]
    client = connect(args.hosts)
    missing: list[int] = []
    try:
        for start in range(0, len(keys), BATCH):
            chunk = keys[start:start + BATCH]
            got = client.batch_read([(NAMESPACE, SET, k) for k in chunk], [])
            for k, rec in zip(chunk, got.batch_records, strict=True):
                if rec.result != 0 or rec.record is None:
                    missing.append(k)
    finally:
        client.close()
    return {"listed": len(keys), "distinct": len(set(keys)), "found": len(keys) - len(missing),
            "missing": len(missing), "first_missing": missing[:20]}


def info(args: argparse.Namespace) -> dict[str, Any]:
    client = connect(args.hosts)
    try:
        replies = client.info_all(args.command)
    finally:
        client.close()
    return {node: (None if err else str(value).strip()) for node, (err, value) in replies.items()}


def migrations(args: argparse.Namespace) -> dict[str, Any]:
    client = connect(args.hosts)
    rounds = 0
    try:
        while not os.path.exists(args.stop):
            line: dict[str, Any] = {"t": time.time()}
            try:
                replies = client.info_all("statistics")
                line["remaining"] = {
                    node: int(dict(kv.split("=", 1) for kv in str(value).strip().split(";")
                                   if "=" in kv).get("migrate_partitions_remaining", -1))
                    for node, (err, value) in replies.items() if not err}
            except Exception as exc:
                line["error"] = f"{type(exc).__name__}: {exc}"
            print(json.dumps(line), flush=True)
            rounds += 1
            time.sleep(args.interval)
    finally:
        client.close()
    return {"rounds": rounds}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("--hosts", required=True)
    w.add_argument("--acked", required=True)
    w.add_argument("--stop", default="")
    w.add_argument("--count", type=int, default=0)
    w.add_argument("--first", type=int, default=0)
    w.add_argument("--size", type=int, default=100)
    w.add_argument("--rate", type=float, default=0.0)
    c = sub.add_parser("check")
    c.add_argument("--hosts", required=True)
    c.add_argument("--keys", action="append", required=True)
    i = sub.add_parser("info")
    i.add_argument("--hosts", required=True)
    i.add_argument("--command", required=True)
    m = sub.add_parser("migrations")
    m.add_argument("--hosts", required=True)
    m.add_argument("--stop", required=True)
    m.add_argument("--interval", type=float, default=1.0)
    args = p.parse_args(argv)
    result = {"write": write, "check": check, "info": info,
              "migrations": migrations}[args.cmd](args)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
