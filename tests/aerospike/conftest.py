"""Live Aerospike tests: they run only when AEROCDN_TEST_AEROSPIKE=host:port[,host:port...]
names the service ports of a running cluster (one address per node, or one seed whose peers
are discovered with ``peers-clear-std``), and skip with that reason otherwise."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from aerocdn.aerospike.client import AerospikeInfo
from aerocdn.aerospike.errors import AerospikeInfoError
from aerocdn.aerospike.parse import HostPort, parse_host_port, parse_statistics

ENV = "AEROCDN_TEST_AEROSPIKE"


@pytest.fixture(scope="session")
def seed_addresses() -> list[HostPort]:
    value = os.environ.get(ENV, "").strip()
    if not value:
        pytest.skip(f"{ENV}=host:port[,host:port...] is not set: no live Aerospike to test against")
    return [parse_host_port(item, 3000) for item in value.split(",") if item.strip()]


@pytest.fixture(scope="session")
def endpoints(seed_addresses: list[HostPort]) -> dict[str, HostPort]:
    """Pod-like names -> addresses: the given ones, plus peers the first one reports."""
    found = {f"node-{i}": a for i, a in enumerate(seed_addresses)}
    probe = AerospikeInfo({"seed": seed_addresses[0]})
    peers = None
    last: Exception | None = None
    try:
        # A node that just started refuses info until it is initialized, and its peer list
        # grows while the cluster forms: wait until it lists cluster_size - 1 peers.
        for _ in range(120):
            try:
                size = parse_statistics(probe.info_sync("seed", "statistics")).cluster_size
                peers = probe.peers_sync("seed")
                if len(peers.peers) + 1 == size:
                    break
            except AerospikeInfoError as err:
                last = err
            time.sleep(0.5)  # polling interval of the condition above
    finally:
        probe.close()
    if peers is None:
        pytest.fail(f"{ENV}: {seed_addresses[0]} never answered: {last}")
    known = set(found.values())
    for peer in peers.peers:
        for address in peer.endpoints[:1]:
            if address not in known:
                found[f"node-{len(found)}"] = address
                known.add(address)
    return found


@pytest.fixture
def info(endpoints: dict[str, HostPort]) -> Iterator[AerospikeInfo]:
    client = AerospikeInfo(endpoints, timeout_ms=2000)
    yield client
    client.close()
