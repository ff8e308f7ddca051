"""The edge's Aerospike tier on recorded real replies: a wire-level recorder and a replayer.

CI has no Aerospike server (it is in no registry), yet the tier's data path - gets, batch
reads with a missing key, puts with a TTL, deletes, the create-only lock and its filtered
release, the purge-rule map operations - runs in production.  So it runs in CI against the
bytes a real server sent:

- ``record``: the scenario below against a real ``asd`` through a TCP proxy that keeps every
  request frame and the reply frames that followed it on the same connection (the protocol
  is one request at a time per connection).  Run by hand with an asd binary::

      .venv/bin/python -m tests.unit.aerospike.tierwire record --asd /path/to/asd

  It starts a private single-node asd on free loopback ports (bench/aerospike_clients) and
  writes ``fixtures/tier-replay.json``.

- ``ReplayServer``: answers each message (a data request) with the reply frames recorded for
  the same request (the same bytes, the client's timeout field aside; matched by SHA-256, so
  the 9 MiB put is not kept); a request seen several times gets its replies in the recorded
  order, the last one again after that.  A message that was never recorded is refused (the
  connection is closed, the test fails and names it): a change to what the tier sends needs
  a new recording against a real server.  Info requests (the client's cluster tending) are
  answered command by command from the values the server gave (``user-agent-set`` whatever
  client version it names); a command it was never asked gets what asd 8.1 answers to a
  command it does not know (listed in ``unknown_info``: a newer client may tend with more
  commands, and the data path is what this checks).

The real ``aerospike`` client (C core) does the talking and the parsing on both sides.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib.metadata
import json
import socket
import socketserver
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).parent / "fixtures" / "tier-replay.json"
NAMESPACE, SET = "cache", "replay"
T0 = 1_790_000_000.0  # every time in the scenario is fixed: the requests must not vary

INFO = 1  # the proto type of info requests (3: a message, the data path)
_TRANSACTION_TTL = slice(8 + 14, 8 + 18)  # as_msg.transaction_ttl: the client's timeout


def read_frame(sock: socket.socket) -> bytes | None:
    """One proto frame (8-byte header: version, type, 48-bit length; then the body)."""
    head = _read_exactly(sock, 8)
    if head is None:
        return None
    size = int.from_bytes(head[2:8], "big")
    body = _read_exactly(sock, size)
    if body is None:
        return None
    return head + body


def _read_exactly(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def request_key(frame: bytes) -> str:
    """What identifies a message: the SHA-256 of its bytes, less the timeout the client puts
    in it."""
    if len(frame) >= _TRANSACTION_TTL.stop:
        frame = frame[:_TRANSACTION_TTL.start] + b"\0\0\0\0" + frame[_TRANSACTION_TTL.stop:]
    return hashlib.sha256(frame).hexdigest()


def info_commands(frame: bytes) -> list[str]:
    return [c for c in frame[8:].decode("utf-8", "replace").split("\n") if c]


def info_name(command: str) -> str:
    """The key of an info command's recorded value: the command itself, except for the
    client's user agent, which names the client's version."""
    return "user-agent-set" if command.startswith("user-agent-set:") else command


# asd 8.1's answer to an info command it does not know (``no-such-command\tERROR:4:...``)
UNRECOGNIZED = "ERROR:4:unrecognized command"


def frame_of(proto_type: int, body: bytes) -> bytes:
    return bytes([2, proto_type]) + len(body).to_bytes(6, "big") + body


class _LoopbackServer(socketserver.ThreadingTCPServer):
    """The replayer's and the recorder's: a free loopback port, a thread a connection, none
    of them waited for on close."""

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, handler: type[socketserver.BaseRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.port: int = self.server_address[1]


# --------------------------------------------------------------------------- replay


@dataclass
class Recording:
    """message key -> the reply frames recorded for it, in order; info command -> value."""

    replies: dict[str, list[list[str]]]
    info: dict[str, str]
    server: str = ""

    @classmethod
    def load(cls, path: Path = FIXTURE) -> Recording:
        raw = json.loads(path.read_text())
        replies: dict[str, list[list[str]]] = {}
        for exchange in raw["messages"]:
            replies.setdefault(exchange["sha256"], []).append(exchange["replies"])
        return cls(replies, raw["info"], raw.get("server", ""))


@dataclass
class _State:
    recording: Recording
    served: dict[str, int] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)
    unknown_info: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reply(self, frame: bytes) -> bytes | None:
        if frame[1] == INFO:
            lines = []
            for command in info_commands(frame):
                value = self.recording.info.get(info_name(command))
                if value is None:
                    with self.lock:
                        self.unknown_info.append(command)
                    value = UNRECOGNIZED
                lines.append(f"{command}\t{value}\n")
            return frame_of(INFO, "".join(lines).encode())
        key = request_key(frame)
        with self.lock:
            options = self.recording.replies.get(key)
            if options is None:
                self.unknown.append(f"message type {frame[1]}, {len(frame)} bytes, starting "
                                    f"{frame[8:72].hex()}")
                return None
            i = self.served.get(key, 0)
            self.served[key] = i + 1
        return b"".join(bytes.fromhex(f) for f in options[min(i, len(options) - 1)])


class ReplayServer:
    """A loopback server that answers with the recorded replies (one thread a connection).
    ``pause()``: requests are read and not answered (a stopped or partitioned server: the
    sockets stay open) until ``resume()``."""

    def __init__(self, recording: Recording) -> None:
        state = self.state = _State(recording)
        answering = self._answering = threading.Event()
        answering.set()
        self._closing = threading.Event()
        closing = self._closing

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                sock: socket.socket = self.request
                while True:
                    frame = read_frame(sock)
                    if frame is None:
                        return
                    while not answering.wait(0.1):
                        if closing.is_set():
                            return
                    answer = state.reply(frame)
                    if answer is None:
                        return  # never recorded: the client sees the connection close
                    try:
                        sock.sendall(answer)
                    except OSError:
                        return  # the client gave up on this connection meanwhile

        self._server = _LoopbackServer(Handler)
        self.port = self._server.port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> ReplayServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def pause(self) -> None:
        self._answering.clear()

    def resume(self) -> None:
        self._answering.set()

    @property
    def unknown(self) -> list[str]:
        """Messages that were never recorded, for the test's message."""
        return list(self.state.unknown)

    @property
    def unknown_info(self) -> list[str]:
        """Info commands that were never recorded (answered as unrecognized)."""
        return list(self.state.unknown_info)


# --------------------------------------------------------------------------- the scenario


def scenario_objects() -> dict[str, Any]:
    from aerocdn.edge.policy import StoredObject, VaryMarker

    def obj(url: str, body: bytes, **kw: Any) -> StoredObject:
        return StoredObject(200, (("Content-Type", "text/plain"), ("ETag", '"1"')), body, url,
                            T0, T0 + 60, 5.0, 50.0, ("accept-language",), **kw)

    return {
        "a": obj("h/a", b"\x00body a\xff"),
        "b": obj("h/b", b"b" * 2048, selected=(("accept-language", "de"),),
                 tags=("release-1",), initial_age=7.0, revalidate=True, slice_total=3 << 20),
        "b2": obj("h/b", b"not found"),
        "v": VaryMarker("h/v", ("accept-language",), T0, T0 + 60),
        "big": obj("h/big", b"x" * (9 * 2**20)),
    }


async def scenario(seed: str, check: Callable[[bool, str], None], timeout_ms: int = 1000
                   ) -> None:
    """The tier's calls, each outcome checked.  Recording and replay run the same code, so
    they send the same requests (the timeout aside: a replay on a loaded machine may wait
    longer)."""
    from aerocdn.edge.tiers import AerospikeTier

    o = scenario_objects()

    def tier() -> AerospikeTier:
        return AerospikeTier("replay", (seed,), NAMESPACE, SET, timeout_ms=timeout_ms, threads=2,
                             rules_max_age=3600, clock=lambda: T0 + 100)

    t = tier()
    try:
        check(await t.get("a") is None, "a get of a key never written is a miss")
        await t.put("a", o["a"], 60)
        await t.put("b", o["b"], 60)
        await t.put("v", o["v"], 60)
        check(await t.get("a") == o["a"], "a single get reads the object back")
        got = await asyncio.gather(t.get("a"), t.get("b"), t.get("none"), t.get("v"),
                                   t.get("a"))
        check(got == [o["a"], o["b"], None, o["v"], o["a"]],
              f"one batch read: objects, a marker, a miss, a repeated key: {got}")
        await t.put("big", o["big"], 60)  # over the namespace's record size: not stored
        check(await t.get("big") is None, "an object over max-record-size is not stored")
        # a new version without the old one's optional bins (tags, origin Age, slice
        # length): replaced whole, nothing of the old version left in the record
        await t.put("b", o["b2"], 60)
        check(await t.get("b") == o["b2"], "an object stored again is the new version only")
        await t.delete("b")
        await t.delete("b")  # not there any more: no error
        check(await t.get("b") is None, "a deleted object is gone")

        check(await t.acquire_lock("k", "pod-a", 30), "the first lock is taken")
        check(not await t.acquire_lock("k", "pod-b", 30), "a held lock is refused")
        await t.release_lock("k", "pod-b")  # not its lock: filtered out, no error
        check(not await t.acquire_lock("k", "pod-c", 30), "another pod's release left it")
        await t.release_lock("k", "pod-a")
        check(await t.acquire_lock("k", "pod-b", 30), "released by its owner, free again")
        await t.release_lock("k", "pod-b")

        await t.purge("h/a", prefix=False, at=T0 + 10)
        await t.purge("h/", prefix=True, at=T0 + 5, soft=True)
        await t.purge_tag("release-1", at=T0 + 20)
        check(await t.get("a") is None, "a purged object is not answered")
        check(t.rules.tags == {"release-1": T0 + 20}, f"the tag rule: {t.rules.tags}")
        await t.ping()
    finally:
        await t.close()

    other = tier()  # another pod: reads the rules the first one wrote
    try:
        await other.refresh()
        r = other.rules
        check((r.exact, r.soft_prefixes, r.tags) == ({"h/a": T0 + 10}, {"h/": T0 + 5},
                                                     {"release-1": T0 + 20}),
              f"another pod reads every rule: {r}")
    finally:
        await other.close()


# --------------------------------------------------------------------------- record


class _Recorder:
    """A TCP proxy to the real server that keeps (request, replies) per connection."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.logs: list[list[tuple[str, bytes]]] = []
        lock = threading.Lock()
        recorder = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                client: socket.socket = self.request
                server = socket.create_connection(recorder.upstream)
                log: list[tuple[str, bytes]] = []
                with lock:
                    recorder.logs.append(log)

                def pump(src: socket.socket, dst: socket.socket, tag: str) -> None:
                    try:
                        while (frame := read_frame(src)) is not None:
                            with lock:
                                log.append((tag, frame))  # before it is sent on
                            dst.sendall(frame)
                    except OSError:
                        pass
                    finally:
                        for s in (src, dst):
                            with contextlib.suppress(OSError):
                                s.shutdown(socket.SHUT_RDWR)

                back = threading.Thread(target=pump, args=(server, client, "s"), daemon=True)
                back.start()
                pump(client, server, "c")
                back.join(5)
                server.close()

        self._server = _LoopbackServer(Handler)
        self.port = self._server.port
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def exchanges(self) -> Iterator[tuple[bytes, list[bytes]]]:
        """(request frame, the reply frames after it) of every connection."""
        for log in self.logs:
            request: bytes | None = None
            replies: list[bytes] = []
            for tag, frame in [*log, ("c", b"")]:
                if tag == "c":
                    if request is not None:
                        yield request, replies
                    request, replies = frame, []
                else:
                    replies.append(frame)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def record(asd: str, out: Path, source: str = "") -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    from bench.aerospike_clients.bench_clients import private_asd

    import aerospike

    with private_asd(asd, 0, NAMESPACE) as port:
        c = aerospike.client({"hosts": [("127.0.0.1", port)]}).connect()
        build = c.info_random_node("build").split("\t")[-1].strip()
        c.close()
        rec = _Recorder(("127.0.0.1", port))
        failures: list[str] = []
        asyncio.run(scenario(f"127.0.0.1:{rec.port}",
                             lambda ok, what: None if ok else failures.append(what)))
        rec.close()
        if failures:
            raise SystemExit("the real server did not behave as the scenario expects:\n"
                             + "\n".join(failures))
        info: dict[str, str] = {}
        messages = []
        for request, replies in rec.exchanges():
            if not replies:
                continue  # the connection closed before an answer
            if request[1] == INFO:
                for reply in replies:
                    for line in reply[8:].decode().split("\n"):
                        if "\t" in line:
                            command, _, value = line.partition("\t")
                            info[info_name(command)] = value
                continue
            messages.append({"sha256": request_key(request), "bytes": len(request),
                             "head": request[8:72].hex(), "replies": [r.hex() for r in replies]})
        out.write_text(json.dumps({
            "server": f"Aerospike Community Edition{' built from ' + source if source else ''}"
                      f" (build string {build}), single node, namespace {NAMESPACE} in memory "
                      "(bench/aerospike_clients/bench_clients.py)",
            "client": f"aerospike {importlib.metadata.version('aerospike')}",
            "how": "python -m tests.unit.aerospike.tierwire record --asd <asd>",
            "info": info,
            "messages": messages,
        }, indent=1) + "\n")
        print(f"{len(messages)} messages and {len(info)} info values recorded from {build} "
              f"into {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("--asd", required=True, help="an asd binary (Aerospike server)")
    r.add_argument("--out", type=Path, default=FIXTURE)
    r.add_argument("--source", default="", help="what the asd was built from, for the record")
    args = ap.parse_args()
    record(args.asd, args.out, args.source)


if __name__ == "__main__":
    main()
