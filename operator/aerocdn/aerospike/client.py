"""The imperative shell: ask Aerospike nodes info questions through the official client.

Each pod is asked through its own ``aerospike`` client connected to that pod's address only
(``force_single_node``: no peer discovery), so the operator always knows which pod answered,
and an unreachable pod is a fact about that pod, not a failed cluster connection. Addresses
come from the pods (pod IP, service port) and can be overridden per pod for out-of-cluster
runs, where pod IPs cannot be reached (see :func:`parse_address_overrides`).

Info commands this module sends:

==================================================  ==========================================
``node``                                            node id of the pod
``release``                                         Community vs Enterprise, server build
``edition``, ``build``                              the same, on servers without ``release``
``statistics``                                      cluster_key/size/principal/integrity,
                                                    migrate_allowed, migrate_partitions_remaining
``cluster-stable:size=N;ignore-migrations=false``   the server's own stability verdict
``namespaces``                                      namespaces to ask about (when not given)
``namespace/<ns>``                                  migrations per namespace, quiesce fields,
                                                    objects, capacity
``peers-clear-std``                                 peers, to discover the nodes of a cluster
``quiesce:``, ``quiesce-undo:``, ``recluster:``     the scale-down steps (Enterprise for the
                                                    first two; CE answers ERROR:25)
==================================================  ==========================================

On Enterprise clusters with ``spec.tls`` / ``spec.accessControl`` the client is given a
:class:`ClientSecurity` (built by :func:`aerocdn.aerospike.security.client_security`): it logs
in with the admin credentials and connects with TLS to port 4333 checking the nodes' TLS name
against ca.crt; endpoints must then be resolved with ``port=security.port``.

The client raises on ``ERROR:`` replies (``ClusterChangeError`` for 7, ``InvalidRequest`` for
4, ``NamespaceNotFound`` for 20, ``AerospikeError`` for 25): those are turned back into
:class:`InfoErrorReply` with the code; connection failures and timeouts become
:class:`NodeUnreachable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aerocdn.aerospike.errors import (
    CODE_PARAMETER,
    AerospikeInfoError,
    InfoErrorReply,
    NodeUnreachable,
    ReplyParseError,
)
from aerocdn.aerospike.parse import (
    ClusterStableAnswer,
    Edition,
    HostPort,
    NamespaceStats,
    Peers,
    ReclusterResult,
    cluster_stable_command,
    from_cluster_stable_error,
    parse_build,
    parse_cluster_stable,
    parse_edition,
    parse_host_port,
    parse_kv,
    parse_namespace,
    parse_namespaces,
    parse_node,
    parse_ok,
    parse_peers,
    parse_recluster,
    parse_release,
    parse_statistics,
    reply_value,
)
from aerocdn.aerospike.stability import ClusterObservation, NodeObservation, PodFailure

DEFAULT_PORT = 3000
TLS_PORT = 4333
DEFAULT_TIMEOUT_MS = 1500


@dataclass(frozen=True)
class ClientTls:
    """TLS of the info client: the CA to check nodes against and the nodes' TLS name; a
    client certificate when the nodes authenticate clients (spec.tls.clientAuthentication)."""

    ca_file: str
    name: str
    port: int = TLS_PORT
    cert_file: str | None = None
    key_file: str | None = None


@dataclass(frozen=True)
class ClientSecurity:
    """How the info client logs in (Enterprise access control) and whether it uses TLS.

    Built from a CacheCluster and its Secrets by :func:`aerocdn.aerospike.security.
    client_security`. With TLS, endpoints must use :attr:`port` (resolve_endpoints(port=)).
    """

    user: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: ClientTls | None = None

    @property
    def port(self) -> int:
        return self.tls.port if self.tls is not None else DEFAULT_PORT

    def client_config(self) -> dict[str, Any]:
        """The keys of the ``aerospike`` client config these settings add."""
        config: dict[str, Any] = {}
        if self.user is not None:
            config["user"] = self.user
            config["password"] = self.password or ""
        if self.tls is not None:
            tls: dict[str, Any] = {"enable": True, "cafile": self.tls.ca_file}
            if self.tls.cert_file and self.tls.key_file:
                tls["certfile"] = self.tls.cert_file
                tls["keyfile"] = self.tls.key_file
            config["tls"] = tls
        return config

    def host(self, address: HostPort) -> tuple[str, int] | tuple[str, int, str]:
        """A ``hosts`` entry: with TLS the TLS name is the third item."""
        if self.tls is not None:
            return (address.host, address.port, self.tls.name)
        return (address.host, address.port)


PLAIN = ClientSecurity()

# Error codes of a refused login (InvalidUser, InvalidPassword, InvalidCredential,
# NotAuthenticated): the credentials, not the node, are wrong.
LOGIN_REFUSED = frozenset({60, 62, 65, 80})


def code_and_message(exc: BaseException) -> tuple[int | None, str]:
    """The code and message of an exception of the ``aerospike`` client: it sets .code/.msg
    and also passes (code, msg, file, line, in_doubt) as args."""
    args = exc.args
    code = getattr(exc, "code", None)
    if code is None and args and isinstance(args[0], int):
        code = args[0]
    msg = getattr(exc, "msg", None)
    if not msg:
        msg = args[1] if len(args) > 1 and isinstance(args[1], str) else str(exc)
    return code, str(msg)


def login_refused(exc: BaseException) -> bool:
    """Whether an exception of the ``aerospike`` client is a refused login."""
    return code_and_message(exc)[0] in LOGIN_REFUSED

ClientFactory = Callable[[dict[str, Any]], Any]


def _default_factory(config: dict[str, Any]) -> Any:
    import aerospike

    return aerospike.client(config)


def parse_address_overrides(text: str) -> dict[str, HostPort]:
    """``pod=host:port,pod2=host:port`` (the value of ``--aerospike-address`` /
    ``AEROCDN_AEROSPIKE_ADDRESSES``) as a mapping; a bad item is a ValueError naming it."""
    overrides: dict[str, HostPort] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        pod, eq, address = item.partition("=")
        if not eq or not pod.strip() or not address.strip():
            raise ValueError(f"aerospike address override {item!r}: expected pod=host:port")
        try:
            overrides[pod.strip()] = parse_host_port(address, DEFAULT_PORT)
        except ReplyParseError as err:
            raise ValueError(f"aerospike address override {item!r}: {err.problem}") from None
    return overrides


def resolve_endpoints(
    pods: Mapping[str, str | HostPort],
    overrides: Mapping[str, HostPort] | None = None,
    port: int = DEFAULT_PORT,
) -> dict[str, HostPort]:
    """Pod name -> address to ask: the pod's own (IP or ``host:port``), unless overridden."""
    resolved: dict[str, HostPort] = {}
    for pod, address in pods.items():
        if overrides and pod in overrides:
            resolved[pod] = overrides[pod]
        elif isinstance(address, HostPort):
            resolved[pod] = address
        else:
            resolved[pod] = parse_host_port(address, port)
    return resolved


def _error_from_exception(
    exc: Exception, command: str, pod: str, address: HostPort
) -> AerospikeInfoError:
    """Map an exception of the ``aerospike`` client to our typed errors."""
    code, msg = code_and_message(exc)
    name = type(exc).__name__
    # Server ERROR replies come back as ServerError subclasses (codes 4, 7, 20, ...) or, for
    # codes the client has no class for (25), as the base AerospikeError with a positive code;
    # their message ends with " from <host>:<port>". Client-side failures have codes <= 0
    # (ConnectionError -10, ...) and timeouts are code 9 (TimeoutError).
    is_client_side = name in {"TimeoutError", "ClientError"} or any(
        base.__name__ == "ClientError" for base in type(exc).__mro__
    )
    if isinstance(code, int) and code > 0 and code != 9 and not is_client_side:
        message = msg.rsplit(" from ", 1)[0].strip() if " from " in msg else msg
        return InfoErrorReply(command, code, message, node=pod)
    return NodeUnreachable(pod, str(address), f"{name}: {msg}")


class AerospikeInfo:
    """Info questions to the Aerospike pods of one cluster.

    ``endpoints`` maps pod name -> address (see :func:`resolve_endpoints`). Blocking methods
    end in ``_sync``; :meth:`observe` runs them in threads. Call :meth:`close` when done.
    """

    def __init__(
        self,
        endpoints: Mapping[str, HostPort],
        *,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        namespaces: Sequence[str] | None = None,
        client_factory: ClientFactory = _default_factory,
        security: ClientSecurity = PLAIN,
        fallback: ClientSecurity | None = None,
    ) -> None:
        self.endpoints = dict(endpoints)
        self.security = security
        # Credentials to log in with when ``security``'s are refused: the default admin of a
        # new Enterprise cluster with security on (aerospike/users.py creates the real one).
        self.fallback = fallback
        self.login_user: dict[str, str | None] = {}  # pod -> the user its client logged in as
        self.timeout_ms = timeout_ms
        self.namespaces = tuple(namespaces) if namespaces is not None else None
        self._factory = client_factory
        self._clients: dict[HostPort, Any] = {}
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- connections

    def _config(self, address: HostPort, security: ClientSecurity | None = None
                ) -> dict[str, Any]:
        security = security or self.security
        return {
            "hosts": [security.host(address)],
            "force_single_node": True,
            "connect_timeout": self.timeout_ms,
            "fail_if_not_connected": True,
            "validate_keys": True,  # a misspelt key is a ParamError, not silently ignored
            "policies": {"info": {"timeout": self.timeout_ms}},
            **security.client_config(),
        }

    def _client(self, pod: str) -> tuple[Any, HostPort]:
        try:
            address = self.endpoints[pod]
        except KeyError:
            raise NodeUnreachable(pod, "?", "no address known for this pod") from None
        with self._lock:
            client = self._clients.get(address)
        if client is not None:
            return client, address
        security = self.security
        try:
            try:
                client = self._factory(self._config(address)).connect()
            except Exception as exc:
                if self.fallback is None or not login_refused(exc):
                    raise
                security = self.fallback
                client = self._factory(self._config(address, security)).connect()
        except Exception as exc:  # the client raises its own exception types
            if type(exc).__name__ == "ParamError":
                raise  # our configuration is wrong: a bug, not an unreachable node
            raise NodeUnreachable(pod, str(address), f"{type(exc).__name__}: {exc}") from exc
        self.login_user[pod] = security.user
        with self._lock:
            existing = self._clients.setdefault(address, client)
        if existing is not client:  # another thread connected first: keep one client
            with contextlib.suppress(Exception):
                client.close()
        return existing, address

    def _drop(self, address: HostPort) -> None:
        with self._lock:
            client = self._clients.pop(address, None)
        if client is not None:
            # closing a broken client must not hide the first error
            with contextlib.suppress(Exception):
                client.close()

    def close(self) -> None:
        with self._lock:
            clients = list(self._clients.items())
            self._clients.clear()
        for _, client in clients:
            with contextlib.suppress(Exception):
                client.close()

    def admin_client_sync(self, pod: str) -> tuple[Any, str | None]:
        """The connected ``aerospike`` client of ``pod`` (for its admin API) and the user it
        logged in as."""
        client, _ = self._client(pod)
        return client, self.login_user.get(pod)

    # ----------------------------------------------------------------- one command

    def info_sync(self, pod: str, command: str) -> str:
        """Ask ``pod`` one info command; the value without the command echo.

        Raises :class:`InfoErrorReply` for ``ERROR:`` replies and :class:`NodeUnreachable`.
        """
        client, address = self._client(pod)
        try:
            raw = client.info_random_node(command, {"timeout": self.timeout_ms})
        except Exception as exc:
            error = _error_from_exception(exc, command, pod, address)
            if isinstance(error, NodeUnreachable):
                self._drop(address)
            raise error from exc
        if not isinstance(raw, str):
            raise ReplyParseError(command, f"client returned {type(raw).__name__}, not str")
        return reply_value(command, raw, node=pod)

    def get_config_sync(self, pod: str, command: str) -> dict[str, str]:
        """A get-config reply as key -> value (``get-config:context=...``)."""
        return parse_kv(self.info_sync(pod, command))

    def set_config_sync(self, pod: str, command: str) -> None:
        """Send a ``set-config:`` command; raises unless the node answers ok."""
        parse_ok(command, self.info_sync(pod, command))

    # ----------------------------------------------------------------- questions

    def node_id_sync(self, pod: str) -> str:
        return parse_node(self.info_sync(pod, "node"))

    def edition_sync(self, pod: str) -> Edition:
        return self.release_sync(pod)[0]

    def release_sync(self, pod: str) -> tuple[Edition, str]:
        """Edition and build, from ``release``; from ``edition`` and ``build`` on servers that
        do not know ``release`` (ERROR:4)."""
        try:
            release = parse_release(self.info_sync(pod, "release"))
        except InfoErrorReply as err:
            if err.code != CODE_PARAMETER:
                raise
            edition = parse_edition(self.info_sync(pod, "edition"))
            return edition, parse_build(self.info_sync(pod, "build"))
        return release.edition, release.version

    def peers_sync(self, pod: str) -> Peers:
        return parse_peers(self.info_sync(pod, "peers-clear-std"))

    def cluster_stable_sync(self, pod: str, size: int) -> ClusterStableAnswer:
        command = cluster_stable_command(size)
        try:
            return parse_cluster_stable(command, self.info_sync(pod, command))
        except InfoErrorReply as err:
            return from_cluster_stable_error(command, err)

    def namespace_sync(self, pod: str, namespace: str) -> NamespaceStats:
        command = f"namespace/{namespace}"
        return parse_namespace(namespace, self.info_sync(pod, command))

    def quiesce_sync(self, pod: str) -> None:
        """``quiesce:``; on Community Edition raises InfoErrorReply with code 25."""
        parse_ok("quiesce:", self.info_sync(pod, "quiesce:"))

    def quiesce_undo_sync(self, pod: str) -> None:
        parse_ok("quiesce-undo:", self.info_sync(pod, "quiesce-undo:"))

    def recluster_sync(self, pod: str) -> ReclusterResult:
        return parse_recluster(self.info_sync(pod, "recluster:"))

    def observe_node_sync(self, pod: str, expected_size: int) -> NodeObservation:
        """Every question the stability verdict needs, asked of one pod."""
        address = self.endpoints.get(pod)
        node_id = self.node_id_sync(pod)
        edition, build = self.release_sync(pod)
        statistics = parse_statistics(self.info_sync(pod, "statistics"))
        stable = self.cluster_stable_sync(pod, expected_size)
        names = self.namespaces
        if names is None:
            names = parse_namespaces(self.info_sync(pod, "namespaces"))
        namespaces = {ns: self.namespace_sync(pod, ns) for ns in names}
        return NodeObservation(
            pod=pod,
            node_id=node_id,
            statistics=statistics,
            cluster_stable=stable,
            namespaces=namespaces,
            edition=edition,
            build=build,
            address=str(address) if address else "",
        )

    async def observe(self, expected_size: int | None = None) -> ClusterObservation:
        """Ask every pod concurrently, each in a worker thread (the client is blocking)."""
        expected = len(self.endpoints) if expected_size is None else expected_size
        pods = sorted(self.endpoints)
        results = await asyncio.gather(
            *(asyncio.to_thread(_observe_one, self, pod, expected) for pod in pods)
        )
        nodes = tuple(r for r in results if isinstance(r, NodeObservation))
        failures = tuple(r for r in results if isinstance(r, PodFailure))
        return ClusterObservation(expected, nodes, failures)


def _observe_one(info: AerospikeInfo, pod: str, expected: int) -> NodeObservation | PodFailure:
    try:
        return info.observe_node_sync(pod, expected)
    except NodeUnreachable as err:
        return PodFailure(pod, f"cannot be reached at {err.address}: {err.reason}")
    except AerospikeInfoError as err:
        return PodFailure(pod, str(err))
