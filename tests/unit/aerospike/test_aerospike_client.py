"""AerospikeInfo over a stand-in for the `aerospike` client that replays the real replies.

The stand-in returns what ``info_single_node``/``info_random_node`` returned in the captures
(``<command>\\t<value>\\n``) and raises the client's own exception classes, with the arguments
the fixture headers recorded, for ``ERROR:`` replies. Live behaviour is covered by
tests/aerospike/ (needs AEROCDN_TEST_AEROSPIKE).
"""

from __future__ import annotations

from typing import Any

import pytest
from tests.unit.aerospike.aerofixtures import Fixtures

import aerospike
from aerocdn.aerospike.client import AerospikeInfo, parse_address_overrides, resolve_endpoints
from aerocdn.aerospike.errors import InfoErrorReply, NodeUnreachable, UnknownObjectReply
from aerocdn.aerospike.parse import Edition, HostPort, edition_from_error
from aerocdn.aerospike.stability import Stability, assess_stability
from aerospike import exception as aerr


def client_error(cls: type[Exception], code: int, message: str, port: int) -> Exception:
    return cls(code, f"{message} from 127.0.0.1:{port}", "src/main/aerospike/as_info.c", 360, False)


class FakeNode:
    def __init__(self, replies: dict[str, str | Exception]) -> None:
        self.replies = replies
        self.asked: list[str] = []
        self.closed = False

    def connect(self) -> FakeNode:
        return self

    def info_random_node(self, command: str, policy: dict[str, Any]) -> str:
        self.asked.append(command)
        reply = self.replies[command]
        if isinstance(reply, Exception):
            raise reply
        return reply

    def close(self) -> None:
        self.closed = True


class FakeFactory:
    def __init__(self, nodes: dict[tuple[str, int], FakeNode | Exception]) -> None:
        self.nodes = nodes
        self.configs: list[dict[str, Any]] = []

    def __call__(self, config: dict[str, Any]) -> FakeNode:
        self.configs.append(config)
        node = self.nodes[config["hosts"][0]]
        if isinstance(node, Exception):
            raise node
        return node


def node_replies(fx: Fixtures, node: str, stable: str | Exception) -> dict[str, str | Exception]:
    n = node[-1]
    return {
        "node": fx.reply("01-single-node.txt").raw.replace("A1", node),
        # A1 answers `release`; A2 plays a server without it (ERROR:4) -> `edition` + `build`.
        "release": fx.reply("05-local-release.txt").raw
        if node == "A1"
        else client_error(aerr.InvalidRequest, 4, "unrecognized command", 3200),
        "edition": fx.reply("01-single-edition.txt").raw,
        "build": fx.reply("01-single-build.txt").raw,
        "statistics": fx.reply(f"03b-migrating-statistics-A{n}.txt").raw,
        "cluster-stable:size=2;ignore-migrations=false": stable,
        "namespaces": fx.reply("01-single-namespaces.txt").raw,
        "namespace/cache": fx.reply(f"03b-migrating-namespace-cache-A{n}.txt").raw,
    }


def test_address_overrides() -> None:
    overrides = parse_address_overrides("cc-0=127.0.0.1:3100, cc-1=localhost")
    assert overrides == {"cc-0": HostPort("127.0.0.1", 3100), "cc-1": HostPort("localhost", 3000)}
    endpoints = resolve_endpoints({"cc-0": "10.244.0.5", "cc-2": "10.244.0.7"}, overrides)
    assert endpoints == {"cc-0": HostPort("127.0.0.1", 3100), "cc-2": HostPort("10.244.0.7", 3000)}
    with pytest.raises(ValueError, match="cc-0"):
        parse_address_overrides("cc-0")
    with pytest.raises(ValueError, match="not a number"):
        parse_address_overrides("cc-0=host:port")


def test_client_config_is_single_node_with_short_timeout() -> None:
    fake = FakeNode({"node": "node\tA1\n"})
    factory = FakeFactory({("127.0.0.1", 3100): fake})
    info = AerospikeInfo(
        {"cc-0": HostPort("127.0.0.1", 3100)}, timeout_ms=700, client_factory=factory
    )
    assert info.node_id_sync("cc-0") == "A1"
    assert info.node_id_sync("cc-0") == "A1"
    assert len(factory.configs) == 1  # the connection is reused
    config = factory.configs[0]
    assert config["force_single_node"] is True
    assert config["policies"]["info"]["timeout"] == 700
    # The real client accepts this configuration (validate_keys: a bad key is a ParamError);
    # it then tries to connect, to a loopback port where nothing listens.
    with pytest.raises(aerr.ConnectionError):  # type: ignore[attr-defined]  # missing in stubs
        aerospike.client({**config, "hosts": [("127.0.0.1", 1)]}).connect()
    info.close()
    assert fake.closed


async def test_observe_migrating_cluster(fx: Fixtures) -> None:
    unstable = client_error(aerr.ClusterChangeError, 7, "unstable cluster", 3100)
    factory = FakeFactory(
        {
            ("127.0.0.1", 3100): FakeNode(node_replies(fx, "A1", unstable)),
            ("127.0.0.1", 3200): FakeNode(node_replies(fx, "A2", unstable)),
        }
    )
    info = AerospikeInfo(
        resolve_endpoints(
            {"cc-0": "10.0.0.1", "cc-1": "10.0.0.2"},
            parse_address_overrides("cc-0=127.0.0.1:3100,cc-1=127.0.0.1:3200"),
        ),
        client_factory=factory,
    )
    observation = await info.observe(expected_size=2)
    assert [n.pod for n in observation.nodes] == ["cc-0", "cc-1"]
    assert observation.edition is Edition.COMMUNITY
    a1 = observation.nodes[0]
    assert (a1.node_id, a1.build, a1.address) == ("A1", "8.1.1.2", "127.0.0.1:3100")
    assert observation.nodes[1].build == "8.1.2.0"  # from `build`, after `release` was refused
    assert a1.cluster_stable.error_code == 7
    assert a1.cluster_stable.error_message == "unstable cluster"
    assert a1.namespaces["cache"].migrate_tx_partitions_remaining == 1349
    stability = assess_stability(observation)
    assert isinstance(stability, Stability)
    assert not stability.stable
    assert "pod cc-0 (node A1): 2674 partitions still migrating" in stability.reasons


async def test_observe_with_one_pod_unreachable(fx: Fixtures) -> None:
    refused = aerr.ConnectionError(  # type: ignore[attr-defined]  # missing in the stubs
        -10, "Socket write error: 111, 127.0.0.1:3200", "x.c", 1, False
    )
    factory = FakeFactory(
        {
            ("127.0.0.1", 3100): FakeNode(
                node_replies(fx, "A1", fx.reply("03c-done-cluster-stable-size2-A1.txt").raw)
            ),
            ("127.0.0.1", 3200): refused,
        }
    )
    info = AerospikeInfo(
        {"cc-0": HostPort("127.0.0.1", 3100), "cc-1": HostPort("127.0.0.1", 3200)},
        client_factory=factory,
    )
    observation = await info.observe(expected_size=2)
    assert [n.pod for n in observation.nodes] == ["cc-0"]
    assert len(observation.failures) == 1
    failure = observation.failures[0]
    assert failure.pod == "cc-1"
    assert "127.0.0.1:3200" in failure.reason and "ConnectionError" in failure.reason


async def test_observe_nobody_reachable_is_unreachable() -> None:
    timeout = aerr.TimeoutError(9, "Timeout", "x.c", 1, False)
    factory = FakeFactory({("10.0.0.1", 3000): timeout})
    info = AerospikeInfo({"cc-0": HostPort("10.0.0.1", 3000)}, client_factory=factory)
    observation = await info.observe()
    stability = assess_stability(observation)
    assert not isinstance(stability, Stability)
    assert "cc-0" in stability.reason


def test_quiesce_on_community_is_typed_enterprise_only_error(fx: Fixtures) -> None:
    refused = client_error(aerr.AerospikeError, 25, "enterprise only", 3300)
    factory = FakeFactory({("127.0.0.1", 3300): FakeNode({"quiesce:": refused})})
    info = AerospikeInfo({"cc-2": HostPort("127.0.0.1", 3300)}, client_factory=factory)
    with pytest.raises(InfoErrorReply) as err:
        info.quiesce_sync("cc-2")
    assert (err.value.code, err.value.message) == (25, "enterprise only")
    assert edition_from_error(err.value) is Edition.COMMUNITY


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (client_error(aerr.InvalidRequest, 4, "unrecognized command", 3100), 4),
        (client_error(aerr.NamespaceNotFound, 20, "namespace not found on node", 3100), 20),
        (client_error(aerr.ClusterChangeError, 7, "cluster not specified size", 3100), 7),
    ],
)
def test_client_exceptions_become_info_errors(exc: Exception, code: int) -> None:
    factory = FakeFactory({("127.0.0.1", 3100): FakeNode({"cmd": exc})})
    info = AerospikeInfo({"cc-0": HostPort("127.0.0.1", 3100)}, client_factory=factory)
    with pytest.raises(InfoErrorReply) as err:
        info.info_sync("cc-0", "cmd")
    assert err.value.code == code
    assert " from " not in err.value.message


def test_timeout_during_command_is_unreachable_and_reconnects() -> None:
    first = FakeNode({"node": aerr.TimeoutError(9, "Timeout", "x.c", 1, False)})
    second = FakeNode({"node": "node\tA1\n"})
    nodes: list[FakeNode] = [first, second]
    configs: list[dict[str, Any]] = []

    def factory(config: dict[str, Any]) -> FakeNode:
        configs.append(config)
        return nodes.pop(0)

    info = AerospikeInfo({"cc-0": HostPort("127.0.0.1", 3100)}, client_factory=factory)
    with pytest.raises(NodeUnreachable, match="cc-0"):
        info.node_id_sync("cc-0")
    assert first.closed
    assert info.node_id_sync("cc-0") == "A1"
    assert len(configs) == 2


def test_unknown_namespace_reply(fx: Fixtures) -> None:
    reply = fx.reply("04-error-namespace-unknown.txt")
    factory = FakeFactory({("127.0.0.1", 3100): FakeNode({reply.command: reply.raw})})
    info = AerospikeInfo({"cc-0": HostPort("127.0.0.1", 3100)}, client_factory=factory)
    with pytest.raises(UnknownObjectReply, match="nosuchns"):
        info.namespace_sync("cc-0", "nosuchns")


def test_unknown_pod_is_unreachable() -> None:
    info = AerospikeInfo({}, client_factory=FakeFactory({}))
    with pytest.raises(NodeUnreachable, match="no address"):
        info.info_sync("cc-9", "node")
