"""The edge's Aerospike L2 tier (``AerospikeTier``) with the real ``aerospike`` client against
the replies a real server gave (``fixtures/tier-replay.json``, recorded by ``tierwire``): the
tier's data path runs in CI, which has no Aerospike server.  The live tests
(tests/edge/test_edge_aerospike*.py) are the extra proof."""

from __future__ import annotations

import asyncio
import socket
import warnings

import pytest
from tests.unit.aerospike import tierwire

from aerocdn.edge.breaker import CircuitBreaker
from aerocdn.edge.l2 import TierSet
from aerocdn.edge.tiers import AerospikeTier, TierError

pytestmark = pytest.mark.timeout(120)


async def test_the_tier_on_a_real_servers_replies() -> None:
    recording = tierwire.Recording.load()
    with tierwire.ReplayServer(recording) as server:
        failures: list[str] = []
        try:
            await tierwire.scenario(f"127.0.0.1:{server.port}",
                                    lambda ok, what: None if ok else failures.append(what),
                                    timeout_ms=5000)
        except TierError as e:
            failures.append(f"{e}")
        assert not server.unknown, (
            "the tier sent requests the real server never answered in the recording "
            f"({recording.server}); record again (tierwire's docstring): {server.unknown}")
        assert not failures, failures
        # every message of the recording was asked for: the scenario ran the whole path
        assert set(server.state.served) >= set(recording.replies)
        if server.unknown_info:
            warnings.warn(f"this client tends with info commands the recording does not "
                          f"hold (answered as unrecognized): {sorted(set(server.unknown_info))}"
                          f"; record again to answer them as the server would", stacklevel=1)


async def test_a_request_that_was_never_recorded_fails_the_tier_not_the_test_harness() -> None:
    """The replayer refuses what it does not know, and the tier turns that into its error
    (so a changed request cannot pass unnoticed)."""
    with tierwire.ReplayServer(tierwire.Recording.load()) as server:
        t = AerospikeTier("replay", (f"127.0.0.1:{server.port}",), tierwire.NAMESPACE,
                          "another-set", timeout_ms=5000, threads=1, rules_max_age=60)
        try:
            with pytest.raises(TierError):
                await t.get("not-recorded")
        finally:
            await t.close()
        assert server.unknown and server.unknown[0].startswith("message type 3")


async def test_the_replayer_answers_info_command_by_command() -> None:
    recording = tierwire.Recording.load()
    with tierwire.ReplayServer(recording) as server:
        def ask(body: bytes) -> bytes:
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
                s.sendall(tierwire.frame_of(tierwire.INFO, body))
                frame = tierwire.read_frame(s)
                assert frame is not None
                return frame[8:]

        got = await asyncio.to_thread(ask, b"build\nnode\n")
        assert got == (f"build\t{recording.info['build']}\n"
                       f"node\t{recording.info['node']}\n").encode()
        assert await asyncio.to_thread(ask, b"user-agent-set:value=eA==\n") == \
            b"user-agent-set:value=eA==\tok\n"
        # a command never recorded: what asd 8.1 answers to one it does not know
        assert await asyncio.to_thread(ask, b"no-such-command\nbuild\n") == (
            f"no-such-command\tERROR:4:unrecognized command\nbuild\t{recording.info['build']}"
            "\n").encode()
        assert server.unknown_info == ["no-such-command"] and server.unknown == []


async def test_a_server_that_stops_answering_fails_each_call_by_its_deadline_and_opens_the_circuit(
        ) -> None:
    """A stopped or partitioned server (the sockets stay open, nothing answers): the real
    client's timeouts and the tier's own guard turn every call into a TierError, none hangs;
    the breaker opens, the edge goes on without L2; once the server answers again the probe
    closes the circuit.  (tests/edge/test_edge_aerospike_outage.py does this live, under load,
    with a real asd stopped by SIGSTOP.)"""
    with tierwire.ReplayServer(tierwire.Recording.load()) as server:
        t = AerospikeTier("replay", (f"127.0.0.1:{server.port}",), tierwire.NAMESPACE,
                          tierwire.SET, timeout_ms=2000, threads=2, rules_max_age=3600)
        now = [0.0]
        breaker = CircuitBreaker(failures_to_open=2, open_seconds=5)
        l2 = TierSet({"replay": t}, {"replay": breaker}, lambda: ("replay",),
                     clock=lambda: now[0])
        try:
            entry, tier = await l2.get("a")  # recorded: the first get of "a" is a miss
            assert (entry, tier) == (None, t)
            server.pause()
            for _ in range(2):
                # every wait has a deadline: a hang here is the test's own timeout, not a pass
                entry, tier = await asyncio.wait_for(l2.get("a"), 60)
                assert (entry, tier) == (None, None)  # a miss without L2, no exception
            assert l2.status()["replay"]["circuit"] == "open"
            assert "replay" in l2.status()["replay"]["lastError"]
            assert l2.usable() == [] and not l2.any_up()
            # open: no call reaches the cluster at all
            entry, tier = await asyncio.wait_for(l2.get("a"), 60)
            assert tier is None
            server.resume()
            now[0] += 5  # the open window is over: the probe's ping and rules read decide
            await asyncio.wait_for(l2.probe(), 60)
            assert l2.status()["replay"]["circuit"] == "closed" and l2.any_up()
            entry, tier = await asyncio.wait_for(l2.get("a"), 60)
            assert tier is t  # answered by the cluster again
        finally:
            server.resume()
            await t.close()
