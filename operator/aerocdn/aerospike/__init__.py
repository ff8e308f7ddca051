"""Aerospike info-protocol parsers, stability verdict, scale decisions and client wrapper.

Pure: :mod:`.parse`, :mod:`.stability`, :mod:`.scale`. I/O: :mod:`.client` only.
"""

from aerocdn.aerospike.client import (
    AerospikeInfo,
    parse_address_overrides,
    resolve_endpoints,
)
from aerocdn.aerospike.errors import (
    AerospikeInfoError,
    InfoErrorReply,
    NodeUnreachable,
    ReplyParseError,
    UnknownObjectReply,
)
from aerocdn.aerospike.parse import Edition, HostPort, edition_from_error, parse_edition
from aerocdn.aerospike.scale import (
    Done,
    Hold,
    PodRollState,
    Quiesce,
    RackPods,
    Recluster,
    RemoveOne,
    RestartPod,
    RollState,
    ScaleState,
    UndoQuiesce,
    WaitMigrations,
    WaitQuiesced,
    next_roll_step,
    next_scale_step,
)
from aerocdn.aerospike.stability import (
    READINESS_GATE,
    ClusterObservation,
    NodeObservation,
    PodFailure,
    Stability,
    Unreachable,
    assess_stability,
    readiness_gate_condition,
    readiness_gate_value,
)

__all__ = [
    "READINESS_GATE",
    "AerospikeInfo",
    "AerospikeInfoError",
    "ClusterObservation",
    "Done",
    "Edition",
    "Hold",
    "HostPort",
    "InfoErrorReply",
    "NodeObservation",
    "NodeUnreachable",
    "PodFailure",
    "PodRollState",
    "Quiesce",
    "RackPods",
    "Recluster",
    "RemoveOne",
    "ReplyParseError",
    "RestartPod",
    "RollState",
    "ScaleState",
    "Stability",
    "UndoQuiesce",
    "UnknownObjectReply",
    "Unreachable",
    "WaitMigrations",
    "WaitQuiesced",
    "assess_stability",
    "edition_from_error",
    "next_roll_step",
    "next_scale_step",
    "parse_address_overrides",
    "parse_edition",
    "readiness_gate_condition",
    "readiness_gate_value",
    "resolve_endpoints",
]
