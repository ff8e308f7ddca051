"""Aerospike nodes for in-process reconcile tests: each pod answers the real replies captured
from Aerospike CE 8.1.2.0 (tests/unit/aerospike/fixtures) through a stand-in for the
``aerospike`` client object, raising the client's own exception classes for ``ERROR:`` replies.

Enterprise Edition was never captured: an Enterprise node here answers the same replies with
the edition in ``release`` changed, ``quiesce:``/``quiesce-undo:`` answer ``ok`` and the quiesce
fields of ``namespace/<ns>`` follow what was asked (pending after ``quiesce:``, effective and
``nodes_quiesced`` after ``recluster:`` on the principal) - the behaviour the Aerospike docs
describe; those replies are derived from the CE ones, not captured.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tests.unit.aerospike.aerofixtures import Fixtures
from tests.unit.controller.fakekube import FakeKube

from aerocdn.aerospike.parse import parse_kv, reply_value
from aerospike import exception as aerr


def client_error(cls: type[Exception], code: int, message: str) -> Exception:
    return cls(code, f"{message} from 10.0.0.1:3000", "src/main/aerospike/as_info.c", 360, False)


def unstable() -> Exception:
    return client_error(aerr.ClusterChangeError, 7, "unstable cluster")


def set_field(raw: str, key: str, value: str) -> str:
    new, n = re.subn(rf"(?<=[\t;]){re.escape(key)}=[^;\n]*", f"{key}={value}", raw)
    assert n == 1, f"{key} not in reply"
    return new


@dataclass
class Node:
    node_id: str
    replies: dict[str, str | Exception]
    enterprise: bool = False
    pending: bool = False
    effective: bool = False
    nodes_quiesced: int = 0
    principal: bool = False
    # get-config command -> key -> value: what set-config changed on top of the replies
    config: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class FakeAerospike:
    """Pods (by name) -> nodes; the reconcile reaches a pod at its IP (from the FakeKube)."""

    kube: FakeKube
    namespace: str
    nodes: dict[str, Node] = field(default_factory=dict)
    unreachable: set[str] = field(default_factory=set)
    asked: list[tuple[str, str]] = field(default_factory=list)
    # Enterprise security: user -> (password, roles); None: no security (Community Edition).
    # A stand-in for the admin API (Enterprise only: no server here could answer it).
    users: dict[str, tuple[str, set[str]]] | None = None
    admin: list[str] = field(default_factory=list)  # admin commands received, in order
    admin_faults: dict[str, Exception] = field(default_factory=dict)  # method -> raised
    configs: list[dict[str, Any]] = field(default_factory=list)  # every client config

    def pod_at(self, host: str) -> str:
        for pod in self.kube.kind_of("Pod", self.namespace):
            if (pod.get("status") or {}).get("podIP") == host:
                return str(pod["metadata"]["name"])
        raise AssertionError(f"no pod has IP {host}")

    def factory(self, config: dict[str, Any]) -> Any:
        self.configs.append(config)
        host = config["hosts"][0][0]
        pod = self.pod_at(host)
        if pod in self.unreachable or pod not in self.nodes:
            raise aerr.ConnectionError(  # type: ignore[attr-defined]
                -10, f"Socket write error: 111, {host}:3000", "x.c", 1, False)
        return _Client(self, pod, config.get("user"), config.get("password"))

    def login(self, user: str | None, password: str | None) -> None:
        if self.users is None:
            return
        known = self.users.get(user or "")
        if known is None or known[0] != password:
            raise aerr.InvalidCredential(65, "AEROSPIKE_INVALID_CREDENTIAL", "x.c", 1, False)

    def admin_call(self, method: str, user: str, *args: Any) -> None:
        assert self.users is not None, "admin API on a cluster without security"
        self.admin.append(" ".join([method, user, *(",".join(sorted(a)) if isinstance(a, list)
                                                    else "***" for a in args)]))
        fault = self.admin_faults.get(method)
        if fault is not None:
            raise fault
        if method == "admin_create_user":
            self.users[user] = (args[0], set(args[1]))
        elif method == "admin_set_password":
            self.users[user] = (args[0], self.users[user][1])
        elif method == "admin_grant_roles":
            self.users[user][1].update(args[0])
        elif method == "admin_revoke_roles":
            self.users[user][1].difference_update(args[0])
        elif method == "admin_drop_user":
            del self.users[user]

    def answer(self, pod: str, command: str) -> str:
        self.asked.append((pod, command))
        node = self.nodes[pod]
        if command in ("quiesce:", "quiesce-undo:"):
            if not node.enterprise:
                raise client_error(aerr.AerospikeError, 25, "enterprise only")
            node.pending = command == "quiesce:"
            if not node.pending:
                node.effective = False
            return f"{command}\tok\n"
        if command == "recluster:":
            if not node.principal:
                return "recluster:\tignored-by-non-principal\n"
            quiesced = sum(1 for n in self.nodes.values() if n.pending)
            for n in self.nodes.values():
                n.effective = n.pending
                n.nodes_quiesced = quiesced
            return "recluster:\tok\n"
        if command.startswith("get-config:"):
            values = self._config(node, command)
            return f"{command}\t" + ";".join(f"{k}={v}" for k, v in values.items()) + "\n"
        if command.startswith("set-config:"):
            params = dict(p.split("=", 1) for p in command.split(":", 1)[1].split(";"))
            context = params.pop("context")
            get = f"get-config:context={context}"
            if context == "namespace":
                get += f";id={params.pop('id')}"
            ((key, value),) = params.items()
            values = self._config(node, get)
            if f"storage-engine.{key}" in values:
                key = f"storage-engine.{key}"
            if key not in values:  # as the server: unknown and static keys alike
                raise client_error(aerr.AerospikeError, 4, "invalid set-config parameter")
            values[key] = value
            return f"{command}\tok\n"
        reply = node.replies[command]
        if isinstance(reply, Exception):
            raise reply
        if command.startswith("namespace/"):
            reply = set_field(reply, "pending_quiesce", str(node.pending).lower())
            reply = set_field(reply, "effective_is_quiesced", str(node.effective).lower())
            reply = set_field(reply, "nodes_quiesced", str(node.nodes_quiesced))
        if command == "release" and node.enterprise:
            reply = reply.replace("Community Edition", "Enterprise Edition")
        return reply

    def _config(self, node: Node, command: str) -> dict[str, str]:
        if command not in node.config:
            node.config[command] = parse_kv(reply_value(command, str(node.replies[command])))
        return node.config[command]

    # ------------------------------------------------------------------ cluster states
    def three_stable(self, fx: Fixtures, pods: tuple[str, ...], enterprise: bool = False
                     ) -> None:
        """3 nodes A1..A3 (principal A3), stable, 200k records (phase 02)."""
        self._set(fx, pods, enterprise, lambda n: {
            "statistics": fx.reply(f"02-three-statistics-A{n}.txt").raw,
            "cluster-stable:size=3;ignore-migrations=false":
                fx.reply(f"02-three-cluster-stable-size3-A{n}.txt").raw,
            "namespace/cache": fx.reply(f"03-loaded-namespace-cache-A{n}.txt").raw,
        }, principal=3)

    def two_migrating(self, fx: Fixtures, pods: tuple[str, ...], remaining: int | None = None
                      ) -> None:
        """2 nodes A1, A2 re-replicating after A3 left (phase 03b); ``remaining`` replaces
        migrate_partitions_remaining (the counts that change on every poll)."""
        def replies(n: int) -> dict[str, str | Exception]:
            stats = fx.reply(f"03b-migrating-statistics-A{n}.txt").raw
            if remaining is not None:
                stats = set_field(stats, "migrate_partitions_remaining", str(remaining))
            return {"statistics": stats,
                    "cluster-stable:size=2;ignore-migrations=false": unstable(),
                    "namespace/cache": fx.reply(f"03b-migrating-namespace-cache-A{n}.txt").raw}
        self._set(fx, pods, False, replies, principal=2)

    def two_done(self, fx: Fixtures, pods: tuple[str, ...], enterprise: bool = False) -> None:
        """2 nodes A1, A2, migrations complete (phase 03c)."""
        self._set(fx, pods, enterprise, lambda n: {
            "statistics": fx.reply(f"03c-done-statistics-A{n}.txt").raw,
            "cluster-stable:size=2;ignore-migrations=false":
                fx.reply(f"03c-done-cluster-stable-size2-A{n}.txt").raw,
            "namespace/cache": fx.reply(f"03c-done-namespace-cache-A{n}.txt").raw,
        }, principal=2)

    def one(self, fx: Fixtures, pods: tuple[str, ...]) -> None:
        """A single node A1 (phase 01)."""
        self._set(fx, pods, False, lambda n: {
            "statistics": fx.reply("01-single-statistics.txt").raw,
            "cluster-stable:size=1;ignore-migrations=false":
                fx.reply("01-single-cluster-stable-size1.txt").raw,
            "namespace/cache": fx.reply("01-single-namespace-cache.txt").raw,
        }, principal=1)

    def _set(self, fx: Fixtures, pods: tuple[str, ...], enterprise: bool, replies: Any,
             principal: int) -> None:
        old = self.nodes
        self.nodes = {}
        configs = {
            "get-config:context=service": fx.reply("02-three-get-config-service-A1.txt").raw,
            "get-config:context=network": fx.reply("02-three-get-config-network-A1.txt").raw,
            "get-config:context=namespace;id=cache":
                fx.reply("01-single-get-config-namespace-cache.txt").raw,
        }
        for i, pod in enumerate(pods, start=1):
            node_id = f"A{i}"
            prev = old.get(pod)
            self.nodes[pod] = Node(
                node_id=node_id,
                replies={"node": f"node\t{node_id}\n",
                         "release": fx.reply("05-local-release.txt").raw, **configs,
                         **replies(i)},
                config=prev.config if prev else {},
                enterprise=enterprise,
                principal=i == principal,
                pending=prev.pending if prev else False,
                effective=prev.effective if prev else False,
                nodes_quiesced=prev.nodes_quiesced if prev else 0,
            )


class _Client:
    def __init__(self, cluster: FakeAerospike, pod: str, user: str | None = None,
                 password: str | None = None) -> None:
        self.cluster, self.pod = cluster, pod
        self.user, self.password = user, password

    def connect(self) -> _Client:
        self.cluster.login(self.user, self.password)
        return self

    # the admin API, as the aerospike client names and calls it
    def admin_query_users_info(self) -> dict[str, dict[str, Any]]:
        assert self.cluster.users is not None
        self.cluster.admin.append("admin_query_users_info")
        return {u: {"roles": sorted(r), "conns_in_use": 0}
                for u, (_, r) in self.cluster.users.items()}

    def admin_create_user(self, user: str, password: str, roles: list[str]) -> None:
        self.cluster.admin_call("admin_create_user", user, password, roles)

    def admin_set_password(self, user: str, password: str) -> None:
        self.cluster.admin_call("admin_set_password", user, password)

    def admin_grant_roles(self, user: str, roles: list[str]) -> None:
        self.cluster.admin_call("admin_grant_roles", user, roles)

    def admin_revoke_roles(self, user: str, roles: list[str]) -> None:
        self.cluster.admin_call("admin_revoke_roles", user, roles)

    def admin_drop_user(self, user: str) -> None:
        self.cluster.admin_call("admin_drop_user", user)

    def info_random_node(self, command: str, policy: dict[str, Any]) -> str:
        if self.pod in self.cluster.unreachable:
            raise aerr.TimeoutError(9, "Timeout", "x.c", 1, False)
        return self.cluster.answer(self.pod, command)

    def close(self) -> None:
        pass
