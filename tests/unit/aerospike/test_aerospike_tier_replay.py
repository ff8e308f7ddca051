"""The edge's Aerospike L2 tier (``AerospikeTier``) with the real ``aerospike`` client against
the replies a real server gave (``fixtures/tier-replay.json``, recorded by ``tierwire``): the
tier's data path runs in CI, which has no Aerospike server.  The live tests
(tests/edge/test_edge_aerospike*.py) are the extra proof."""

from __future__ import annotations

import asyncio
import socket

import pytest
from tests.unit.aerospike import tierwire

from aerocdn.edge.tiers import AerospikeTier, TierError

pytestmark = pytest.mark.timeout(120)


async def test_the_tier_on_a_real_servers_replies() -> None:
    recording = tierwire.Recording.load()
    with tierwire.ReplayServer(recording) as server:
        failures: list[str] = []
        try:
            await tierwire.scenario(f"127.0.0.1:{server.port}",
                                    lambda ok, what: None if ok else failures.append(what))
        except TierError as e:
            failures.append(f"{e}")
        assert not server.unknown, (
            "the tier sent requests the real server never answered in the recording "
            f"({recording.server}); record again (tierwire's docstring): {server.unknown}")
        assert not failures, failures
        # every message of the recording was asked for: the scenario ran the whole path
        assert set(server.state.served) >= set(recording.replies)


async def test_a_request_that_was_never_recorded_fails_the_tier_not_the_test_harness() -> None:
    """The replayer refuses what it does not know, and the tier turns that into its error
    (so a changed request cannot pass unnoticed)."""
    with tierwire.ReplayServer(tierwire.Recording.load()) as server:
        t = AerospikeTier("replay", (f"127.0.0.1:{server.port}",), tierwire.NAMESPACE,
                          "another-set", timeout_ms=1000, threads=1, rules_max_age=60)
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
        assert server.unknown == []
