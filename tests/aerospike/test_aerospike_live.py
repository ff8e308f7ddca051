"""AerospikeInfo against a live Aerospike (AEROCDN_TEST_AEROSPIKE). Read-only except for
``quiesce:``, which is sent only to a Community Edition node (where it is refused)."""

from __future__ import annotations

import asyncio

import pytest

from aerocdn.aerospike.client import AerospikeInfo
from aerocdn.aerospike.errors import InfoErrorReply, UnknownObjectReply
from aerocdn.aerospike.parse import (
    Edition,
    HostPort,
    cluster_stable_command,
    parse_statistics,
    parse_version,
)
from aerocdn.aerospike.stability import Stability, assess_stability, readiness_gate_value

pytestmark = pytest.mark.aerospike


async def wait_stable(info: AerospikeInfo, expected: int, attempts: int = 120) -> Stability:
    """Observe until the verdict is stable (a freshly started cluster may still migrate)."""
    last: object = None
    for _ in range(attempts):
        last = assess_stability(await info.observe(expected))
        if isinstance(last, Stability) and last.stable:
            return last
        await asyncio.sleep(0.5)  # polling interval of the condition, not a timing assertion
    pytest.fail(f"cluster never became stable: {last}")


async def test_observe_live_cluster_is_stable_and_consistent(
    info: AerospikeInfo, endpoints: dict[str, HostPort]
) -> None:
    stability = await wait_stable(info, len(endpoints))
    observation = stability.observation
    assert sorted(n.pod for n in observation.nodes) == sorted(endpoints)
    assert len({n.node_id for n in observation.nodes}) == len(endpoints)
    for node in observation.nodes:
        assert node.statistics.cluster_size == len(endpoints)
        assert node.cluster_stable.key == stability.cluster_key
        assert node.namespaces, f"{node.label} reports no namespace"
        # The parsed statistics agree with a fresh, independent ask.
        again = parse_statistics(info.info_sync(node.pod, "statistics"))
        assert again.cluster_key == stability.cluster_key
    assert stability.principal in {n.node_id for n in observation.nodes}
    assert readiness_gate_value(stability)


async def test_wrong_size_is_not_stable(
    info: AerospikeInfo, endpoints: dict[str, HostPort]
) -> None:
    await wait_stable(info, len(endpoints))
    stability = assess_stability(await info.observe(len(endpoints) + 2))
    assert isinstance(stability, Stability)
    assert not stability.stable
    assert any("ERROR:7:cluster not specified size" in r for r in stability.reasons)


async def test_unreachable_pod_is_named(
    info: AerospikeInfo, endpoints: dict[str, HostPort]
) -> None:
    await wait_stable(info, len(endpoints))
    with_ghost = AerospikeInfo({**endpoints, "ghost": HostPort("127.0.0.1", 1)}, timeout_ms=500)
    try:
        observation = await with_ghost.observe(len(endpoints) + 1)
    finally:
        with_ghost.close()
    assert [f.pod for f in observation.failures] == ["ghost"]
    stability = assess_stability(observation)
    assert isinstance(stability, Stability) and not stability.stable
    assert any(r.startswith("pod ghost: cannot be reached") for r in stability.reasons)


def test_error_replies_are_typed(info: AerospikeInfo, endpoints: dict[str, HostPort]) -> None:
    pod = sorted(endpoints)[0]
    with pytest.raises(InfoErrorReply) as bad_size:
        info.info_sync(pod, "cluster-stable:size=abc;ignore-migrations=false")
    assert bad_size.value.code == 4
    with pytest.raises(InfoErrorReply) as wrong_size:
        info.info_sync(pod, cluster_stable_command(len(endpoints) + 5))
    assert (wrong_size.value.code, wrong_size.value.message) == (7, "cluster not specified size")
    with pytest.raises(InfoErrorReply) as unknown:
        info.info_sync(pod, "no-such-command")
    assert unknown.value.code == 4
    with pytest.raises(UnknownObjectReply):
        info.namespace_sync(pod, "aerocdn-no-such-namespace")


def test_edition_and_quiesce_on_community(
    info: AerospikeInfo, endpoints: dict[str, HostPort]
) -> None:
    pod = sorted(endpoints)[0]
    edition = info.edition_sync(pod)
    version = parse_version(info.info_sync(pod, "version"))
    assert version.edition is edition
    if edition is not Edition.COMMUNITY:
        pytest.skip(f"{edition.value} edition: quiesce: would really quiesce the node")
    with pytest.raises(InfoErrorReply) as refused:
        info.quiesce_sync(pod)
    assert refused.value.enterprise_only
