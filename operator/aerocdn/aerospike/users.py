"""Aerospike users from spec.accessControl: a pure plan, and the small shell that applies it.

The plan compares the users a CacheCluster wants (the operator's admin from its basic-auth
Secret, and ``spec.accessControl.users`` with passwords from their Secrets) with what the
admin API reports (``admin_query_users_info``: user -> roles) and returns the actions that
make them equal: create, set-password, grant, revoke, drop.

Aerospike never reports passwords, so whether one changed is judged from a digest of the
password last applied (HMAC-SHA256 keyed with the CacheCluster's uid, so the stored value
says nothing about the password): the caller keeps :attr:`UserPlan.digests` (e.g. in an
annotation) and passes them back next time. A user without a stored digest gets its password
set (idempotent).

A new Enterprise cluster with security on has one user, ``admin`` with password ``admin``.
The operator logs in with its Secret's credentials and, when the server refuses them, with
that default (:func:`login_candidates`): the plan then creates the operator's admin (or sets
the password of ``admin``). The user the operator is logged in as is never dropped, so the
default ``admin`` goes on the next reconcile, logged in as the operator's own admin.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aerocdn.aerospike.client import code_and_message
from aerocdn.aerospike.security import secret_text
from aerocdn.api.enterprise import (
    EDGE_ROLES,
    EDGE_USER,
    EXPORTER_ROLES,
    EXPORTER_USER,
    AccessControl,
)

DEFAULT_ADMIN = ("admin", "admin")
# The operator's admin: users and roles (user-admin), quiesce/recluster/set-config
# (sys-admin), truncation and indexes (data-admin).
ADMIN_ROLES = frozenset({"data-admin", "sys-admin", "user-admin"})

ActionKind = Literal["create", "set-password", "grant", "revoke", "drop"]
ORDER: dict[str, int] = {"create": 0, "set-password": 1, "grant": 2, "revoke": 3, "drop": 4}


@dataclass(frozen=True)
class DesiredUser:
    name: str
    password: str = field(repr=False)
    roles: frozenset[str]


@dataclass(frozen=True)
class UserAction:
    kind: ActionKind
    user: str
    roles: tuple[str, ...] = ()
    password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        roles = f" {','.join(self.roles)}" if self.roles else ""
        return f"{self.kind} {self.user}{roles}"


@dataclass(frozen=True)
class UserPlan:
    actions: tuple[UserAction, ...]
    # user -> digest of the password applied, once every action succeeded
    digests: dict[str, str]

    @property
    def empty(self) -> bool:
        return not self.actions


def password_digest(salt: str, user: str, password: str) -> str:
    return hmac.new(salt.encode(), f"{user}\0{password}".encode(), hashlib.sha256).hexdigest()


def desired_users(
    access: AccessControl,
    admin_secret: Mapping[str, str] | None,
    user_secrets: Mapping[str, Mapping[str, str] | None],
) -> list[DesiredUser]:
    """The users ``access`` wants, passwords read from the Secrets' ``data`` (base64, as the
    API returns it): the admin Secret's username/password, the edges' user (edgeSecretName),
    the exporter's (exporterSecretName, when set), each user's Secret key ``password``.
    Raises :class:`~aerocdn.aerospike.security.SecretProblem` naming a missing Secret or key,
    ValueError when a user has the admin's name."""
    admin_name = access.admin_secret_ref.name
    admin = DesiredUser(
        secret_text(admin_name, admin_secret, "username"),
        secret_text(admin_name, admin_secret, "password"),
        ADMIN_ROLES,
    )
    users = [admin]
    own = [(EDGE_USER, access.edge_secret_name, EDGE_ROLES, "edgeSecretName"),
           (EXPORTER_USER, access.exporter_secret_name, EXPORTER_ROLES, "exporterSecretName")]
    for name, secret, roles, field_name in own:
        if secret is None:
            continue
        if name == admin.name:
            raise ValueError(
                f"spec.accessControl.adminSecretRef: Secret {admin_name} names the user "
                f"{name!r}, which the operator creates for spec.accessControl.{field_name}; "
                "give the admin another name"
            )
        password = secret_text(secret, user_secrets.get(secret), "password")
        users.append(DesiredUser(name, password, frozenset(roles)))
    for i, user in enumerate(access.users):
        if user.name == admin.name:
            raise ValueError(
                f"spec.accessControl.users[{i}].name: {user.name!r} is the operator's admin "
                f"(Secret {admin_name}); give the user another name"
            )
        password = secret_text(user.secret_name, user_secrets.get(user.secret_name), "password")
        users.append(DesiredUser(user.name, password, frozenset(user.roles)))
    return users


def current_users(reply: Mapping[str, Any]) -> dict[str, frozenset[str]]:
    """``admin_query_users_info()`` (user -> {"roles": [...], ...}) as user -> roles; also
    accepts the older shape user -> [roles]."""
    users: dict[str, frozenset[str]] = {}
    for name, info in reply.items():
        roles = info.get("roles", []) if isinstance(info, Mapping) else info
        users[str(name)] = frozenset(str(r) for r in roles or ())
    return users


def plan_users(
    desired: Iterable[DesiredUser],
    current: Mapping[str, frozenset[str]],
    applied: Mapping[str, str],
    salt: str,
    login_user: str,
) -> UserPlan:
    """Actions that make the server's users ``current`` what ``desired`` says.

    ``applied``: user -> digest of the password set last time (:attr:`UserPlan.digests`);
    ``salt``: the CacheCluster's uid; ``login_user``: the user the operator is logged in as
    (never dropped, so the plan cannot lock the operator out).
    """
    actions: list[UserAction] = []
    digests: dict[str, str] = {}
    wanted = {u.name: u for u in desired}
    for name, user in wanted.items():
        digest = password_digest(salt, name, user.password)
        digests[name] = digest
        have = current.get(name)
        if have is None:
            actions.append(UserAction("create", name, tuple(sorted(user.roles)), user.password))
            continue
        if applied.get(name) != digest:
            actions.append(UserAction("set-password", name, password=user.password))
        if user.roles - have:
            actions.append(UserAction("grant", name, tuple(sorted(user.roles - have))))
        if have - user.roles:
            actions.append(UserAction("revoke", name, tuple(sorted(have - user.roles))))
    for name in sorted(current):
        if name not in wanted and name != login_user:
            actions.append(UserAction("drop", name))
    actions.sort(key=lambda a: ORDER[a.kind])  # stable: the admin's actions come first
    return UserPlan(tuple(actions), digests)


def login_candidates(admin: DesiredUser) -> list[tuple[str, str]]:
    """Credentials to try, in order: the Secret's, then (a new cluster) the default admin."""
    return [(admin.name, admin.password)] + (
        [DEFAULT_ADMIN] if (admin.name, admin.password) != DEFAULT_ADMIN else []
    )


class UserCommandError(Exception):
    """An admin command of a plan failed: which one, and the client's error."""

    def __init__(self, action: UserAction, done: tuple[UserAction, ...], error: BaseException):
        self.action, self.done, self.error = action, done, error
        code, msg = code_and_message(error)
        super().__init__(f"{action}: {type(error).__name__}"
                         + (f" (code {code})" if code is not None else "") + f": {msg}")


def apply_user_plan(client: Any, plan: UserPlan) -> None:
    """Run ``plan`` through an ``aerospike`` client logged in as the admin (blocking); stops
    at the first failing command with :class:`UserCommandError`."""
    for i, action in enumerate(plan.actions):
        try:
            _run(client, action)
        except Exception as exc:  # the client raises its own exception types
            raise UserCommandError(action, plan.actions[:i], exc) from exc


def _run(client: Any, action: UserAction) -> None:
    if action.kind == "create":
        client.admin_create_user(action.user, action.password, list(action.roles))
    elif action.kind == "set-password":
        client.admin_set_password(action.user, action.password)
    elif action.kind == "grant":
        client.admin_grant_roles(action.user, list(action.roles))
    elif action.kind == "revoke":
        client.admin_revoke_roles(action.user, list(action.roles))
    else:
        client.admin_drop_user(action.user)
