"""The Aerospike tier slow, partitioned or down under load: every request is still answered.

Runs only with ``AEROCDN_TEST_ASD=/path/to/asd``: the test starts its own single-node asd on
free loopback ports, stops it mid-load (SIGSTOP: slow / partitioned, the sockets stay open
and nothing answers; SIGKILL: down, connections refused) and brings it back.  Assertions count
outcomes: no client request is lost (every one gets 200 with the right body, from L2 or, while
the cluster does not answer, from the origin), the circuit opens, and closes again once asd is
back.  Loops are bounded and every wait has a generous deadline; no timing is asserted.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from bench.aerospike_clients.bench_clients import ASD_CONF, free_ports
from tests.edge.edgeharness import HOST, Origin, Pod, PodFactory, edge_config

from aerocdn.edge.policy import tier_of

ASD = os.environ.get("AEROCDN_TEST_ASD", "")
pytestmark = [
    pytest.mark.aerospike,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not ASD, reason="needs an asd binary the test starts itself: set "
                                       "AEROCDN_TEST_ASD=/path/to/asd"),
]

OBJECTS = 20
WORKERS = 8


class Asd:
    """A private single-node asd; ``kill``/``stop``/``cont``/``start`` for the outage."""

    def __init__(self, binary: str, tmp: Path):
        self.binary = binary
        work = tmp / "work"
        for sub in ("smd", "udf/lua"):
            (work / sub).mkdir(parents=True)
        self.port, fabric, heartbeat, admin = free_ports(4)
        self.conf = tmp / "aerospike.conf"
        self.conf.write_text(ASD_CONF.format(work=work, service=self.port, fabric=fabric,
                                             heartbeat=heartbeat, admin=admin, ns="cache"))
        self.log = tmp / "asd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def seed(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [self.binary, "--config-file", str(self.conf), "--foreground"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_ready(60)

    def wait_ready(self, deadline_s: float) -> None:
        import aerospike

        deadline = time.monotonic() + deadline_s
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError("asd exited:\n" + self.log.read_text(errors="replace")[-3000:])
            try:
                c = aerospike.client({"hosts": [("127.0.0.1", self.port)]}).connect()
                try:
                    if "cache" in c.info_random_node("namespaces"):
                        return
                finally:
                    c.close()
            except Exception:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.2)  # polling interval of the condition above

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        assert self.proc is not None
        self.signal(signal.SIGKILL)
        self.proc.wait(30)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGCONT)
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)


@pytest.fixture
def asd() -> Iterator[Asd]:
    with tempfile.TemporaryDirectory(prefix="aerocdn-test-asd-") as tmp:
        a = Asd(ASD, Path(tmp))
        a.start()
        try:
            yield a
        finally:
            a.close()


class Load:
    """WORKERS clients requesting the OBJECTS urls in turn until stopped; outcomes counted
    per phase (``phase`` is set by the test)."""

    def __init__(self, client: aiohttp.ClientSession, pod: Pod):
        self.client = client
        self.pod = pod
        self.phase = "before"
        self.outcomes: Counter[tuple[str, str]] = Counter()  # (phase, "l2"/"origin"/"lost")
        self.total = 0
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker(w)) for w in range(WORKERS)]

    async def _worker(self, w: int) -> None:
        i = w
        for _ in range(200_000):  # bounded; stopped long before
            if self._stop.is_set():
                return
            phase = self.phase
            path = f"/o{i % OBJECTS}"
            i += 1
            try:
                async with self.client.get(self.pod.edge_url + path, headers={"Host": HOST},
                                           timeout=aiohttp.ClientTimeout(total=30)) as r:
                    body = await r.read()
                    ok = r.status == 200 and body == path.encode() * 64
                    tier = tier_of(r.headers)
            except (aiohttp.ClientError, TimeoutError):
                ok, tier = False, ""
            served = ("l2" if tier.startswith("l2") else "origin") if ok else "lost"
            self.outcomes[(phase, served)] += 1
            self.total += 1

    async def requests(self, n: int, deadline_s: float = 60) -> None:
        """Wait until ``n`` more requests were answered (or lost)."""
        goal = self.total + n
        deadline = time.monotonic() + deadline_s
        while self.total < goal:
            assert time.monotonic() < deadline, f"load stalled at {self.total}/{goal}"
            assert not any(t.done() for t in self._tasks), "a load worker ended"
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.wait_for(asyncio.gather(*self._tasks), 120)


async def circuit(pod: Pod, want: str, load: Load, deadline_s: float = 60) -> None:
    deadline = time.monotonic() + deadline_s
    while pod.edge.l2.status()["cc-eu"]["circuit"] != want:
        assert time.monotonic() < deadline, (
            f"circuit never became {want}: {pod.edge.l2.status()} after {load.outcomes}")
        await asyncio.sleep(0.02)


async def _pod(pods: PodFactory, origin: Origin, tmp_path: Path, asd: Asd) -> Pod:
    for i in range(OBJECTS):
        origin.set(f"/o{i}", body=f"/o{i}".encode() * 64)
    d = tmp_path / "pod"
    d.mkdir()
    cfg = edge_config(origin.url, d, cacheClusters={
        "cc-eu": {"seeds": [asd.seed], "namespace": "cache", "set": "t" + uuid.uuid4().hex[:8]}},
        tierTimeoutMs=100, circuitFailures=5, circuitOpenSeconds=1.0)
    return await pods(nginx=False, cfg=cfg)


def _report(name: str, load: Load, pod: Pod) -> None:
    # counted, not asserted on timings: shown with -s, and in the failure message
    hits = {s.labels.get("tier", ""): s.value for m in pod.edge.m.hits.collect() for s in m.samples
            if s.name.endswith("_total")}
    print(f"\n{name}: {dict(sorted(load.outcomes.items()))}; hits by tier {hits}; "
          f"tier errors {pod.edge.m.tier_errors.labels('cc-eu')._value.get():.0f}")


@pytest.mark.parametrize("outage", ["slow (SIGSTOP)", "down (SIGKILL, restarted)"])
async def test_a_stopped_asd_mid_load_loses_no_request_and_the_circuit_closes_again(
        pods: PodFactory, origin: Origin, client: aiohttp.ClientSession, tmp_path: Path,
        asd: Asd, outage: str) -> None:
    pod = await _pod(pods, origin, tmp_path, asd)
    load = Load(client, pod)
    load.start()
    try:
        await load.requests(OBJECTS * 5)  # every object stored, then L2 hits
        load.phase = "healthy"
        await load.requests(200)
        assert load.outcomes[("healthy", "l2")] > 0

        load.phase = "outage"
        if outage.startswith("slow"):
            asd.signal(signal.SIGSTOP)
        else:
            asd.kill()
        await circuit(pod, "open", load)
        await load.requests(200)  # served while the circuit is open: L1/origin

        load.phase = "recovering"
        if outage.startswith("slow"):
            asd.signal(signal.SIGCONT)
        else:
            await asyncio.get_running_loop().run_in_executor(None, asd.start)
        await circuit(pod, "closed", load)
        load.phase = "recovered"
        deadline = time.monotonic() + 60
        while load.outcomes[("recovered", "l2")] == 0:  # L2 answers again
            assert time.monotonic() < deadline, f"no L2 hit after recovery: {load.outcomes}"
            await load.requests(50)
    finally:
        await load.stop()
    _report(outage, load, pod)
    try:  # stop here, bounded, so a hang names the task it waits on
        await asyncio.wait_for(pod.edge.stop(), 60)
    except TimeoutError:
        stuck = [t.get_stack() for t in asyncio.all_tasks()
                 if t is not asyncio.current_task()]
        raise AssertionError(f"edge did not stop: {stuck}") from None
    lost = {k: v for k, v in load.outcomes.items() if k[1] == "lost"}
    assert lost == {}, f"requests lost: {lost} of {dict(load.outcomes)}"
    # the outage was served (from the pod's own memory tier or the origin), none lost
    assert load.outcomes[("outage", "l2")] + load.outcomes[("outage", "origin")] >= 200
