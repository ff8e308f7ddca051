"""Pure parsers for Aerospike info replies.

Every parser takes the reply *value* (what follows ``<command>\\t``) or the raw reply; use
:func:`reply_value` first to strip the command echo that ``info_single_node`` keeps and
``info_all`` removes, and to turn ``ERROR:<code>:<message>`` into :class:`InfoErrorReply`.

Formats (as captured from Aerospike CE 8.1.2.0, see the fixtures):

* ``statistics``, ``namespace/<ns>``: ``key=value`` pairs separated by ``;``
* ``sets/<ns>/<set>``: ``key=value`` pairs separated by ``:``, ending with ``;``
* ``cluster-stable:...``: the cluster key (hex) or ``ERROR:7:...``
* ``services``: ``host:port`` separated by ``;`` (empty when alone)
* ``peers-clear-std``: ``<generation>,<default port>,[[<node>,<tls name>,[<host[:port]>,...]],...]``
* ``edition``: ``Aerospike Community Edition`` / ``Aerospike Enterprise Edition``
* ``version``: ``Aerospike Community Edition build 8.1.2.0``; ``build``: ``8.1.2.0``
* ``release``: ``edition=Aerospike Community Edition;version=8.1.2.0;os=...;arch=...;sha=...``
* ``recluster:``: ``ok`` on the principal, ``ignored-by-non-principal`` elsewhere
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass

from aerocdn.aerospike.errors import (
    CODE_ENTERPRISE_ONLY,
    InfoErrorReply,
    ReplyParseError,
    UnknownObjectReply,
)

_ERROR_RE = re.compile(r"^ERROR:(-?\d*):?(.*)$", re.DOTALL)


# --------------------------------------------------------------------------- generic


def reply_value(command: str, raw: str, node: str | None = None) -> str:
    """Strip the ``<command>\\t`` echo and the trailing newline; raise on ``ERROR:`` replies.

    Accepts both the raw form (``info_single_node``: ``"statistics\\tcluster_size=3;...\\n"``)
    and the stripped form (``info_all``: ``"cluster_size=3;...\\n"``).
    """
    value = raw
    prefix = f"{command}\t"
    if value.startswith(prefix):
        value = value[len(prefix) :]
    value = value.rstrip("\n")
    error = parse_error(command, value, node)
    if error is not None:
        raise error
    return value


def parse_error(command: str, value: str, node: str | None = None) -> InfoErrorReply | None:
    """``ERROR:<code>:<message>`` as an :class:`InfoErrorReply`, anything else as None."""
    match = _ERROR_RE.match(value.strip())
    if match is None:
        return None
    code_text, message = match.groups()
    return InfoErrorReply(command, int(code_text) if code_text else None, message.strip(), node)


def parse_pairs(value: str, sep: str = ";") -> tuple[tuple[str, str], ...]:
    """``k=v<sep>k=v`` as ordered pairs; keeps repeated keys (``get-config:context=network``
    repeats ``heartbeat.mesh-seed-address-port``). Items without ``=`` are skipped."""
    pairs: list[tuple[str, str]] = []
    for item in value.strip().split(sep):
        if not item:
            continue
        key, eq, val = item.partition("=")
        if eq:
            pairs.append((key, val))
    return tuple(pairs)


def parse_kv(value: str, sep: str = ";") -> dict[str, str]:
    """``k=v<sep>k=v`` as a dict (a repeated key keeps its last value)."""
    return dict(parse_pairs(value, sep))


class _Fields:
    """Typed access to a parsed reply; errors name the command and the field."""

    def __init__(self, command: str, fields: Mapping[str, str]) -> None:
        self.command = command
        self.fields = fields

    def _get(self, key: str) -> str:
        try:
            return self.fields[key]
        except KeyError:
            raise ReplyParseError(self.command, f"field {key!r} is missing") from None

    def text(self, key: str) -> str:
        return self._get(key)

    def integer(self, key: str, default: int | None = None) -> int:
        if default is not None and key not in self.fields:
            return default
        raw = self._get(key)
        try:
            return int(raw)
        except ValueError:
            raise ReplyParseError(
                self.command, f"field {key!r} is {raw!r}, not an integer"
            ) from None

    def flag(self, key: str, default: bool | None = None) -> bool:
        if default is not None and key not in self.fields:
            return default
        raw = self._get(key)
        if raw == "true":
            return True
        if raw == "false":
            return False
        raise ReplyParseError(self.command, f"field {key!r} is {raw!r}, not true/false")


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True, slots=True)
class NodeStatistics:
    """What the scale decisions need from ``statistics`` on one node."""

    cluster_key: str
    cluster_size: int
    cluster_generation: int
    cluster_principal: str
    cluster_integrity: bool
    cluster_is_member: bool
    migrate_allowed: bool
    migrate_partitions_remaining: int
    objects: int
    uptime: int


def parse_statistics(value: str) -> NodeStatistics:
    f = _Fields("statistics", parse_kv(value))
    return NodeStatistics(
        cluster_key=f.text("cluster_key"),
        cluster_size=f.integer("cluster_size"),
        cluster_generation=f.integer("cluster_generation", default=0),
        cluster_principal=f.text("cluster_principal"),
        cluster_integrity=f.flag("cluster_integrity"),
        cluster_is_member=f.flag("cluster_is_member", default=True),
        migrate_allowed=f.flag("migrate_allowed"),
        migrate_partitions_remaining=f.integer("migrate_partitions_remaining"),
        objects=f.integer("objects", default=0),
        uptime=f.integer("uptime", default=0),
    )


# --------------------------------------------------------------------------- namespace


@dataclass(frozen=True, slots=True)
class NamespaceStats:
    """What the scale and capacity decisions need from ``namespace/<ns>`` on one node."""

    name: str
    ns_cluster_size: int
    replication_factor: int
    effective_replication_factor: int
    objects: int
    master_objects: int
    prole_objects: int
    non_replica_objects: int
    migrate_tx_partitions_remaining: int
    migrate_rx_partitions_remaining: int
    pending_quiesce: bool
    effective_is_quiesced: bool
    nodes_quiesced: int
    dead_partitions: int
    unavailable_partitions: int
    stop_writes: bool
    clock_skew_stop_writes: bool
    hwm_breached: bool
    evicted_objects: int
    data_used_bytes: int
    data_total_bytes: int
    data_used_pct: int
    data_avail_pct: int
    index_used_bytes: int
    stop_writes_used_pct: int
    stop_writes_avail_pct: int
    evict_used_pct: int

    @property
    def migrations_remaining(self) -> int:
        return self.migrate_tx_partitions_remaining + self.migrate_rx_partitions_remaining


def parse_namespace(namespace: str, value: str) -> NamespaceStats:
    """Parse ``namespace/<namespace>``; ``type=unknown`` raises :class:`UnknownObjectReply`."""
    command = f"namespace/{namespace}"
    if value.strip() == "type=unknown":
        raise UnknownObjectReply(command)
    f = _Fields(command, parse_kv(value))
    return NamespaceStats(
        name=namespace,
        ns_cluster_size=f.integer("ns_cluster_size"),
        replication_factor=f.integer("replication-factor", default=0),
        effective_replication_factor=f.integer("effective_replication_factor", default=0),
        objects=f.integer("objects"),
        master_objects=f.integer("master_objects"),
        prole_objects=f.integer("prole_objects"),
        non_replica_objects=f.integer("non_replica_objects", default=0),
        migrate_tx_partitions_remaining=f.integer("migrate_tx_partitions_remaining"),
        migrate_rx_partitions_remaining=f.integer("migrate_rx_partitions_remaining"),
        # Present on CE too (always false/0 there, quiesce is refused).
        pending_quiesce=f.flag("pending_quiesce", default=False),
        effective_is_quiesced=f.flag("effective_is_quiesced", default=False),
        nodes_quiesced=f.integer("nodes_quiesced", default=0),
        dead_partitions=f.integer("dead_partitions", default=0),
        unavailable_partitions=f.integer("unavailable_partitions", default=0),
        stop_writes=f.flag("stop_writes"),
        clock_skew_stop_writes=f.flag("clock_skew_stop_writes", default=False),
        hwm_breached=f.flag("hwm_breached", default=False),
        evicted_objects=f.integer("evicted_objects", default=0),
        data_used_bytes=f.integer("data_used_bytes", default=0),
        data_total_bytes=f.integer("data_total_bytes", default=0),
        data_used_pct=f.integer("data_used_pct", default=0),
        data_avail_pct=f.integer("data_avail_pct", default=0),
        index_used_bytes=f.integer("index_used_bytes", default=0),
        stop_writes_used_pct=f.integer("storage-engine.stop-writes-used-pct", default=0),
        stop_writes_avail_pct=f.integer("storage-engine.stop-writes-avail-pct", default=0),
        evict_used_pct=f.integer("storage-engine.evict-used-pct", default=0),
    )


def parse_namespaces(value: str) -> tuple[str, ...]:
    """``namespaces``: names separated by ``;``."""
    return tuple(name for name in value.strip().split(";") if name)


# --------------------------------------------------------------------------- cluster-stable


def cluster_stable_command(size: int, namespace: str | None = None) -> str:
    """The command aerocdn asks: stable at ``size`` nodes *and* no migrations."""
    command = f"cluster-stable:size={size};ignore-migrations=false"
    if namespace is not None:
        command += f";namespace={namespace}"
    return command


@dataclass(frozen=True, slots=True)
class ClusterStableAnswer:
    """The answer to ``cluster-stable:...``: a cluster key (ok) or an error with its code."""

    command: str
    key: str | None = None
    error_code: int | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        return self.key is not None

    def describe(self) -> str:
        if self.key is not None:
            return f"cluster key {self.key}"
        code = "" if self.error_code is None else self.error_code
        return f"ERROR:{code}:{self.error_message}"


_CLUSTER_KEY_RE = re.compile(r"^[0-9A-Fa-f]+$")


def parse_cluster_stable(command: str, raw: str) -> ClusterStableAnswer:
    """Parse a ``cluster-stable`` reply, raw or stripped; errors become part of the answer."""
    try:
        value = reply_value(command, raw)
    except InfoErrorReply as err:
        return from_cluster_stable_error(command, err)
    value = value.strip()
    if not _CLUSTER_KEY_RE.match(value):
        raise ReplyParseError(command, f"expected a hex cluster key or ERROR, got {value!r}")
    return ClusterStableAnswer(command=command, key=value)


def from_cluster_stable_error(command: str, err: InfoErrorReply) -> ClusterStableAnswer:
    return ClusterStableAnswer(command=command, error_code=err.code, error_message=err.message)


# --------------------------------------------------------------------------- edition, version


class Edition(enum.Enum):
    COMMUNITY = "community"
    ENTERPRISE = "enterprise"
    UNKNOWN = "unknown"

    @property
    def supports_quiesce(self) -> bool:
        return self is Edition.ENTERPRISE


def parse_edition(value: str) -> Edition:
    """``edition``: ``Aerospike Community Edition`` -> COMMUNITY. Enterprise and Federal
    (an Enterprise build) -> ENTERPRISE; anything else -> UNKNOWN."""
    text = value.strip().lower()
    if "community" in text:
        return Edition.COMMUNITY
    if "enterprise" in text or "federal" in text:
        return Edition.ENTERPRISE
    return Edition.UNKNOWN


def edition_from_error(err: InfoErrorReply) -> Edition | None:
    """``ERROR:25:enterprise only`` proves Community Edition; other errors prove nothing."""
    return Edition.COMMUNITY if err.code == CODE_ENTERPRISE_ONLY else None


@dataclass(frozen=True, slots=True)
class Version:
    edition: Edition
    build: str


_VERSION_RE = re.compile(r"^(?P<name>.*?)\s+build\s+(?P<build>\S+)$")


def parse_version(value: str) -> Version:
    """``version``: ``Aerospike Community Edition build 8.1.2.0``."""
    match = _VERSION_RE.match(value.strip())
    if match is None:
        raise ReplyParseError("version", f"expected '<edition> build <x.y.z.w>', got {value!r}")
    return Version(edition=parse_edition(match["name"]), build=parse_build(match["build"]))


def parse_build(value: str) -> str:
    """``build``: ``8.1.2.0``."""
    build = value.strip()
    if not re.fullmatch(r"\d+(\.\d+)*(-\S+)?", build):
        raise ReplyParseError("build", f"expected a version number, got {build!r}")
    return build


@dataclass(frozen=True, slots=True)
class Release:
    """``release``: ``edition=Aerospike Community Edition;version=8.1.2.0;os=...;arch=...;sha=...``
    (8.x logs ``edition`` and ``version`` as deprecated in favour of it)."""

    edition: Edition
    version: str
    os: str
    arch: str
    sha: str


def parse_release(value: str) -> Release:
    f = _Fields("release", parse_kv(value))
    return Release(
        edition=parse_edition(f.text("edition")),
        version=parse_build(f.text("version")),
        os=f.fields.get("os", ""),
        arch=f.fields.get("arch", ""),
        sha=f.fields.get("sha", ""),
    )


def parse_node(value: str) -> str:
    """``node``: the node id, e.g. ``A1`` or ``BB9020011AC4202``."""
    node = value.strip()
    if not node or any(ch.isspace() for ch in node):
        raise ReplyParseError("node", f"expected a node id, got {value!r}")
    return node


# --------------------------------------------------------------------------- services, peers


@dataclass(frozen=True, slots=True, order=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_host_port(text: str, default_port: int | None = None) -> HostPort:
    """``host:port``, ``[v6]:port``, or ``host`` when a default port is given."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    if not host:
        raise ReplyParseError("host:port", f"no host in {text!r}")
    if port_text:
        if not port_text.isdigit():
            raise ReplyParseError("host:port", f"port of {text!r} is not a number")
        return HostPort(host, int(port_text))
    if default_port is None:
        raise ReplyParseError("host:port", f"{text!r} has no port")
    return HostPort(host, default_port)


@dataclass(frozen=True, slots=True)
class Peer:
    node_id: str
    tls_name: str
    endpoints: tuple[HostPort, ...]


@dataclass(frozen=True, slots=True)
class Peers:
    generation: int
    default_port: int
    peers: tuple[Peer, ...]


def _split_top(text: str) -> list[str]:
    """Split ``a,[b,c],d`` on commas outside brackets."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ReplyParseError("peers", f"unbalanced ']' in {text!r}")
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if depth != 0:
        raise ReplyParseError("peers", f"unbalanced '[' in {text!r}")
    parts.append("".join(current))
    return parts


def _unbracket(text: str, command: str) -> str:
    text = text.strip()
    if not (text.startswith("[") and text.endswith("]")):
        raise ReplyParseError(command, f"expected a [list], got {text!r}")
    return text[1:-1]


def parse_peers(value: str, command: str = "peers-clear-std") -> Peers:
    """``peers-clear-std``: ``4,3000,[[A2,,[127.0.0.1:3200]],[A3,,[127.0.0.1:3300]]]``."""
    top = _split_top(value.strip())
    if len(top) != 3:
        raise ReplyParseError(command, f"expected '<gen>,<port>,[...]', got {value!r}")
    try:
        generation, default_port = int(top[0]), int(top[1])
    except ValueError:
        raise ReplyParseError(command, f"generation/port are not numbers in {value!r}") from None
    peers: list[Peer] = []
    body = _unbracket(top[2], command)
    for item in _split_top(body) if body else []:
        fields = _split_top(_unbracket(item, command))
        if len(fields) != 3:
            raise ReplyParseError(command, f"expected [node,tls,[addrs]], got {item!r}")
        addrs = _unbracket(fields[2], command)
        endpoints = tuple(
            parse_host_port(a, default_port) for a in (_split_top(addrs) if addrs else [])
        )
        peers.append(Peer(node_id=fields[0], tls_name=fields[1], endpoints=endpoints))
    return Peers(generation=generation, default_port=default_port, peers=tuple(peers))


# --------------------------------------------------------------------------- admin commands


class ReclusterResult(enum.Enum):
    OK = "ok"
    IGNORED_BY_NON_PRINCIPAL = "ignored-by-non-principal"


def parse_recluster(value: str) -> ReclusterResult:
    """``recluster:``: ``ok`` on the principal, ``ignored-by-non-principal`` elsewhere."""
    try:
        return ReclusterResult(value.strip())
    except ValueError:
        raise ReplyParseError("recluster:", f"unexpected reply {value!r}") from None


def parse_ok(command: str, value: str) -> None:
    """Commands such as ``quiesce:`` answer ``ok`` (errors were raised by reply_value)."""
    if value.strip().lower() != "ok":
        raise ReplyParseError(command, f"expected 'ok', got {value!r}")
