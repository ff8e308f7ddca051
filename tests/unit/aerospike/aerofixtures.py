"""Load the real Aerospike info replies in ./fixtures (copied from shared/fixtures/aerospike-info,
captured from Aerospike CE 8.1.2.0; see fixtures/README.md)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from aerocdn.aerospike.parse import (
    ClusterStableAnswer,
    Edition,
    NamespaceStats,
    NodeStatistics,
    parse_cluster_stable,
    parse_namespace,
    parse_statistics,
    reply_value,
)
from aerocdn.aerospike.stability import NodeObservation

FIXTURES = Path(__file__).parent / "fixtures"


@dataclass(frozen=True)
class Reply:
    command: str
    raw: str  # "<command>\t<value>\n" as the server sent it

    @property
    def value(self) -> str:
        return reply_value(self.command, self.raw)


@dataclass(frozen=True)
class TimelineRow:
    phase: str
    t: float
    node: str
    cluster_stable: str
    cluster_size: int
    migrate_partitions_remaining: int
    migrate_tx_partitions_remaining: int
    migrate_rx_partitions_remaining: int
    master_objects: int
    prole_objects: int
    pending_quiesce: bool
    effective_is_quiesced: bool
    nodes_quiesced: int


class Fixtures:
    def text(self, name: str) -> str:
        return (FIXTURES / name).read_text()

    def reply(self, name: str) -> Reply:
        """The reply in ``name``: the header (line 1, which may wrap onto following lines) is
        skipped up to the first line starting with ``<command>\\t``."""
        text = (FIXTURES / name).read_text()
        header = text.splitlines()[0]
        assert header.startswith("# command: "), f"{name}: no command header"
        command = header[len("# command: ") :].split(" | ")[0]
        start = text.index("\n") + 1
        marker = f"{command}\t"
        at = text.find("\n" + marker, start - 1)
        assert at >= 0, f"{name}: no line starting with {marker!r}"
        return Reply(command=command, raw=text[at + 1 :])

    def statistics(self, name: str) -> NodeStatistics:
        return parse_statistics(self.reply(name).value)

    def namespace(self, name: str, ns: str = "cache") -> NamespaceStats:
        return parse_namespace(ns, self.reply(name).value)

    def cluster_stable(self, name: str) -> ClusterStableAnswer:
        reply = self.reply(name)
        return parse_cluster_stable(reply.command, reply.raw)

    def node(
        self,
        node_id: str,
        *,
        statistics: str,
        cluster_stable: str | ClusterStableAnswer,
        namespace: str | None = None,
        pod: str | None = None,
    ) -> NodeObservation:
        answer = (
            cluster_stable
            if isinstance(cluster_stable, ClusterStableAnswer)
            else self.cluster_stable(cluster_stable)
        )
        return NodeObservation(
            pod=pod or node_id,
            node_id=node_id,
            statistics=self.statistics(statistics),
            cluster_stable=answer,
            namespaces={"cache": self.namespace(namespace)} if namespace else {},
            edition=Edition.COMMUNITY,
            build="8.1.2.0",
        )

    def timeline(self) -> list[TimelineRow]:
        lines = (FIXTURES / "03-scaledown-timeline.tsv").read_text().splitlines()
        assert lines[0].startswith("#")
        rows = []
        for rec in csv.DictReader(lines[1:], delimiter="\t"):
            rows.append(
                TimelineRow(
                    phase=rec["phase"],
                    t=float(rec["t"]),
                    node=rec["node"],
                    cluster_stable=rec["cluster-stable(size=expected)"],
                    cluster_size=int(rec["cluster_size"]),
                    migrate_partitions_remaining=int(rec["migrate_partitions_remaining"]),
                    migrate_tx_partitions_remaining=int(rec["migrate_tx_partitions_remaining"]),
                    migrate_rx_partitions_remaining=int(rec["migrate_rx_partitions_remaining"]),
                    master_objects=int(rec["master_objects"]),
                    prole_objects=int(rec["prole_objects"]),
                    pending_quiesce=rec["pending_quiesce"] == "true",
                    effective_is_quiesced=rec["effective_is_quiesced"] == "true",
                    nodes_quiesced=int(rec["nodes_quiesced"]),
                )
            )
        return rows
