"""Parsers on the real replies of Aerospike CE 8.1.2.0 (fixtures/)."""

from __future__ import annotations

import ast

import pytest
from tests.unit.aerospike.aerofixtures import Fixtures

from aerocdn.aerospike.errors import InfoErrorReply, ReplyParseError, UnknownObjectReply
from aerocdn.aerospike.parse import (
    Edition,
    HostPort,
    ReclusterResult,
    cluster_stable_command,
    edition_from_error,
    parse_build,
    parse_cluster_stable,
    parse_edition,
    parse_namespace,
    parse_namespaces,
    parse_node,
    parse_pairs,
    parse_peers,
    parse_recluster,
    parse_release,
    parse_statistics,
    parse_version,
    reply_value,
)


def test_statistics_single_node(fx: Fixtures) -> None:
    st = fx.statistics("01-single-statistics.txt")
    assert st.cluster_key == "FC43C7EED9FB"
    assert st.cluster_size == 1
    assert st.cluster_principal == "A1"
    assert st.cluster_integrity is True
    assert st.migrate_allowed is True
    assert st.migrate_partitions_remaining == 0


def test_statistics_during_migration(fx: Fixtures) -> None:
    a1 = fx.statistics("03b-migrating-statistics-A1.txt")
    a2 = fx.statistics("03b-migrating-statistics-A2.txt")
    assert (a1.cluster_size, a1.cluster_key, a1.cluster_principal) == (2, "EF855FFBC831", "A2")
    assert a1.migrate_partitions_remaining == 2674
    assert a2.cluster_key == a1.cluster_key
    assert a2.migrate_partitions_remaining > 0


def test_statistics_missing_field_names_it() -> None:
    with pytest.raises(ReplyParseError, match="'cluster_key' is missing"):
        parse_statistics("cluster_size=3;cluster_principal=A3")


def test_statistics_bad_boolean_names_field() -> None:
    text = (
        "cluster_key=AB;cluster_size=1;cluster_principal=A1;cluster_integrity=maybe;"
        "migrate_allowed=true;migrate_partitions_remaining=0"
    )
    with pytest.raises(ReplyParseError, match="cluster_integrity"):
        parse_statistics(text)


def test_namespace_migrating_counts(fx: Fixtures) -> None:
    ns = fx.namespace("03b-migrating-namespace-cache-A1.txt")
    assert ns.migrate_tx_partitions_remaining == 1349
    assert ns.migrate_rx_partitions_remaining == 1325
    assert ns.ns_cluster_size == 2
    assert ns.master_objects == 99915
    assert ns.pending_quiesce is False
    assert ns.effective_is_quiesced is False
    assert ns.nodes_quiesced == 0


def test_namespace_capacity_fields(fx: Fixtures) -> None:
    ns = fx.namespace("01-single-namespace-cache.txt")
    assert ns.data_total_bytes == 1073741824
    assert ns.data_used_bytes == 0
    assert ns.stop_writes is False
    assert ns.stop_writes_used_pct == 70
    assert ns.stop_writes_avail_pct == 5
    assert ns.replication_factor == 2
    assert ns.effective_replication_factor == 1  # one node: RF effectively 1


def test_namespace_after_scale_down_keeps_every_record(fx: Fixtures) -> None:
    a1 = fx.namespace("03c-done-namespace-cache-A1.txt")
    a2 = fx.namespace("03c-done-namespace-cache-A2.txt")
    assert a1.master_objects + a2.master_objects == 200000
    assert a1.migrations_remaining == a2.migrations_remaining == 0


def test_namespace_objects_can_exceed_master_plus_prole(fx: Fixtures) -> None:
    ns = fx.namespace("03d-joining-migrating-namespace-cache-A1.txt")
    assert ns.objects == ns.master_objects + ns.prole_objects + ns.non_replica_objects


def test_unknown_namespace_is_typed_error(fx: Fixtures) -> None:
    reply = fx.reply("04-error-namespace-unknown.txt")
    assert reply.command == "namespace/nosuchns"
    with pytest.raises(UnknownObjectReply, match="nosuchns"):
        parse_namespace("nosuchns", reply.value)


def test_namespaces_list(fx: Fixtures) -> None:
    assert parse_namespaces(fx.reply("01-single-namespaces.txt").value) == ("cache",)


def test_cluster_stable_ok_is_the_key(fx: Fixtures) -> None:
    answer = fx.cluster_stable("02-three-cluster-stable-size3-A2.txt")
    assert answer.ok
    assert answer.key == "3AFD20E7EDB3"
    assert answer.command == cluster_stable_command(3)


@pytest.mark.parametrize(
    ("name", "code", "message"),
    [
        ("03b-migrating-cluster-stable-size2-A1.txt", 7, "unstable cluster"),
        ("03b-stopping-cluster-stable-size2-A1.txt", 7, "cluster not specified size"),
        ("04-error-cluster-stable-size5.txt", 7, "cluster not specified size"),
        ("04-error-cluster-stable-bad-size.txt", 4, "bad size"),
        ("04-error-cluster-stable-bad-ignore-migrations.txt", 4, "bad ignore migrations"),
        ("04-error-cluster-stable-unknown-namespace.txt", 20, "namespace not found on node"),
    ],
)
def test_cluster_stable_errors_keep_code(fx: Fixtures, name: str, code: int, message: str) -> None:
    answer = fx.cluster_stable(name)
    assert not answer.ok
    assert answer.key is None
    assert (answer.error_code, answer.error_message) == (code, message)
    assert answer.describe() == f"ERROR:{code}:{message}"


def test_cluster_stable_from_info_all_without_echo(fx: Fixtures) -> None:
    # info_all() returns {node: (err, value)} with the "command\t" echo removed.
    result = ast.literal_eval(fx.text("02-three-info-all-cluster-stable-size3.txt").splitlines()[1])
    keys = {
        node: parse_cluster_stable(cluster_stable_command(3), value).key
        for node, (err, value) in result.items()
        if err is None
    }
    assert keys == {"A1": "3AFD20E7EDB3", "A2": "3AFD20E7EDB3", "A3": "3AFD20E7EDB3"}


def test_cluster_stable_garbage_is_parse_error() -> None:
    with pytest.raises(ReplyParseError, match="cluster key"):
        parse_cluster_stable("cluster-stable", "cluster-stable\tnot a key\n")


@pytest.mark.parametrize(
    ("name", "code", "message"),
    [
        ("04-error-unknown-command.txt", 4, "unrecognized command"),
        ("04-error-unknown-command-with-params.txt", 4, "unrecognized command"),
        ("04-error-quiesce-CE.txt", 25, "enterprise only"),
        ("04-error-quiesce-undo-CE.txt", 25, "enterprise only"),
        ("04-error-roster-CE.txt", 25, "enterprise only"),
        ("03a-quiesce-A3-CE.txt", 25, "enterprise only"),
    ],
)
def test_error_replies_raise_typed_error(fx: Fixtures, name: str, code: int, message: str) -> None:
    reply = fx.reply(name)
    with pytest.raises(InfoErrorReply) as info:
        reply_value(reply.command, reply.raw, node="A1")
    assert info.value.code == code
    assert info.value.message == message
    assert info.value.command == reply.command
    assert "A1" in str(info.value)


def test_edition_detection(fx: Fixtures) -> None:
    assert parse_edition(fx.reply("01-single-edition.txt").value) is Edition.COMMUNITY
    assert parse_edition("Aerospike Enterprise Edition") is Edition.ENTERPRISE
    assert parse_edition("something else") is Edition.UNKNOWN
    assert not Edition.COMMUNITY.supports_quiesce


def test_enterprise_only_error_means_community(fx: Fixtures) -> None:
    reply = fx.reply("03a-quiesce-A3-CE.txt")
    with pytest.raises(InfoErrorReply) as info:
        reply_value(reply.command, reply.raw)
    assert edition_from_error(info.value) is Edition.COMMUNITY
    unstable = fx.reply("03b-migrating-cluster-stable-size2-A1.txt")
    with pytest.raises(InfoErrorReply) as other:
        reply_value(unstable.command, unstable.raw)
    assert edition_from_error(other.value) is None


def test_version_and_build(fx: Fixtures) -> None:
    version = parse_version(fx.reply("01-single-version.txt").value)
    assert version.edition is Edition.COMMUNITY
    assert version.build == "8.1.2.0"
    assert parse_build(fx.reply("01-single-build.txt").value) == "8.1.2.0"
    with pytest.raises(ReplyParseError):
        parse_version("8.1.2.0")


def test_release(fx: Fixtures) -> None:
    release = parse_release(fx.reply("05-local-release.txt").value)
    assert release.edition is Edition.COMMUNITY
    assert release.version == "8.1.1.2"
    assert release.sha.startswith("05b91c64")
    with pytest.raises(ReplyParseError, match="'edition' is missing"):
        parse_release("version=8.1.2.0")


def test_node_id(fx: Fixtures) -> None:
    assert parse_node(fx.reply("01-single-node.txt").value) == "A1"


def test_peers(fx: Fixtures) -> None:
    alone = parse_peers(fx.reply("01-single-peers-clear-std.txt").value)
    assert (alone.generation, alone.default_port, alone.peers) == (0, 3000, ())
    three = parse_peers(fx.reply("02-three-peers-clear-std-A1.txt").value)
    assert three.generation == 4
    assert [(p.node_id, p.endpoints) for p in three.peers] == [
        ("A2", (HostPort("127.0.0.1", 3200),)),
        ("A3", (HostPort("127.0.0.1", 3300),)),
    ]


def test_peers_default_port_and_ipv6() -> None:
    peers = parse_peers("7,3000,[[BB9,tls1,[10.0.0.5,[::1]:3100]]]")
    assert peers.peers[0].tls_name == "tls1"
    assert peers.peers[0].endpoints == (HostPort("10.0.0.5", 3000), HostPort("::1", 3100))
    with pytest.raises(ReplyParseError):
        parse_peers("7,3000,[[BB9,,[10.0.0.5]]")


def test_recluster(fx: Fixtures) -> None:
    assert parse_recluster(fx.reply("03a-recluster-A3-principal.txt").value) is ReclusterResult.OK
    for name in ("03a-recluster-A1-nonprincipal.txt", "02-three-recluster-A2-nonprincipal.txt"):
        assert parse_recluster(fx.reply(name).value) is ReclusterResult.IGNORED_BY_NON_PRINCIPAL


def test_repeated_keys_are_kept(fx: Fixtures) -> None:
    pairs = parse_pairs(fx.reply("02-three-get-config-network-A1.txt").value)
    seeds = [v for k, v in pairs if k == "heartbeat.mesh-seed-address-port"]
    assert seeds == ["127.0.0.1:3202", "127.0.0.1:3302"]


def test_empty_reply_value(fx: Fixtures) -> None:
    assert fx.reply("01-single-health-stats.txt").value == ""
