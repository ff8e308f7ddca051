"""Enterprise Edition fields of a CacheCluster: the feature key, TLS and access control.

Aerospike Enterprise Edition does not start without a feature key; TLS and the ``security``
context are Enterprise-only (Community Edition stops at the first such line of
aerospike.conf, ``'<key>' is enterprise-only``). So CacheClusterSpec requires
``featureKeySecretRef`` on Enterprise and refuses all three on Community, in pydantic and, the
same, as CEL in the CRD (:data:`CEL_RULES`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from aerocdn.api.common import ApiModel, DnsSubdomain, LocalObjectReference

# A key of a Secret's data (Kubernetes' rule for ConfigMap and Secret keys).
SECRET_KEY = r"^[-._a-zA-Z0-9]+$"
# An Aerospike user name: one token of the admin protocol, no separators or spaces.
USER_NAME = r"^[A-Za-z0-9][A-Za-z0-9._@-]*$"

# Aerospike's predefined roles (the operator creates no custom roles, so only these exist).
Role = Literal[
    "read",
    "read-write",
    "read-write-udf",
    "write",
    "data-admin",
    "sys-admin",
    "user-admin",
    "udf-admin",
    "sindex-admin",
    "truncate",
]

SecretKey = Annotated[str, Field(pattern=SECRET_KEY, min_length=1, max_length=253)]

# Users the operator creates for what it runs itself, with their predefined roles: the edges of
# ContentEdges using the cluster (records of the cache namespaces) and the exporter sidecar
# (info statistics). Names of spec.accessControl.users may not take them.
EDGE_USER = "aerocdn-edge"
EDGE_ROLES = ("read-write",)
EXPORTER_USER = "aerocdn-exporter"
EXPORTER_ROLES = ("read",)
RESERVED_USERS = (EDGE_USER, EXPORTER_USER)


class FeatureKeySecretRef(ApiModel):
    """The Secret holding the Enterprise feature key file (features.conf)."""

    name: DnsSubdomain = Field(description="Secret in the CacheCluster's namespace.")
    key: SecretKey = Field(
        default="features.conf", description="Key of the Secret holding the feature key file."
    )


class Tls(ApiModel):
    """TLS for client (service) and node-to-node (fabric) connections, Enterprise only."""

    model_config = ApiModel.model_config | ConfigDict(json_schema_extra={
        "x-kubernetes-validations": [{
            "rule": "(!has(self.service) || self.service) || (has(self.fabric) && self.fabric)",
            "message": "tls needs service or fabric (or both) set to true",
            "fieldPath": ".service",
        }, {
            "rule": "!has(self.clientAuthentication) || !self.clientAuthentication || "
            "!has(self.service) || self.service",
            "message": "tls.clientAuthentication applies to the TLS service port: it needs "
            "tls.service",
            "fieldPath": ".clientAuthentication",
        }]
    })

    secret_name: DnsSubdomain = Field(
        description="A kubernetes.io/tls Secret with tls.crt, tls.key and ca.crt (the CA that "
        "signed the nodes' and clients' certificates).",
    )
    tls_name: DnsSubdomain | None = Field(
        default=None,
        description="TLS name of the nodes: the name their certificate is checked against "
        "(default: the CacheCluster's name).",
    )
    service: bool = Field(
        default=True,
        description="A TLS service port 4333 beside the plain port 3000 (edges keep using "
        "3000); the operator's own info client uses 4333.",
    )
    fabric: bool = Field(
        default=False, description="Node-to-node fabric over TLS on port 3011."
    )
    client_authentication: bool = Field(
        default=False,
        description="Clients of the TLS service port must present a certificate signed by "
        "ca.crt (the operator presents tls.crt of the same Secret).",
    )

    @model_validator(mode="after")
    def _check(self) -> Tls:
        if not self.service and not self.fabric:
            raise ValueError("tls needs service or fabric (or both) set to true")
        if self.client_authentication and not self.service:
            raise ValueError(
                "tls.clientAuthentication applies to the TLS service port: it needs tls.service"
            )
        return self


class User(ApiModel):
    """An Aerospike user the operator creates and keeps in line with its Secret."""

    name: str = Field(
        pattern=USER_NAME, min_length=1, max_length=63, description="Aerospike user name."
    )
    secret_name: DnsSubdomain = Field(
        description="Secret holding the user's password under the key `password`."
    )
    roles: list[Role] = Field(
        min_length=1,
        max_length=10,
        description="Predefined Aerospike roles granted to the user (others are revoked).",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )

    @model_validator(mode="after")
    def _check(self) -> User:
        if len(set(self.roles)) != len(self.roles):
            raise ValueError(f"roles must be unique, got {self.roles}")
        return self


class AccessControl(ApiModel):
    """Aerospike security (the `security` context), Enterprise only."""

    model_config = ApiModel.model_config | ConfigDict(json_schema_extra={
        "x-kubernetes-validations": [{
            "rule": "!has(self.users) || self.users.all(u, !(u.name in "
            + repr(list(RESERVED_USERS)) + "))",
            "message": "accessControl.users[].name: " + " and ".join(RESERVED_USERS)
            + " are the operator's own users (edgeSecretName, exporterSecretName)",
            "fieldPath": ".users",
        }]
    })

    admin_secret_ref: LocalObjectReference = Field(
        description="A kubernetes.io/basic-auth Secret (username, password): the user the "
        "operator logs in as; it is created with the roles sys-admin, user-admin and "
        "data-admin (from the default admin/admin on a new cluster).",
    )
    edge_secret_name: DnsSubdomain = Field(
        description=f"Secret holding, under the key `password`, the password of the user "
        f"{EDGE_USER!r} the operator creates with the role {EDGE_ROLES[0]}: the edge pods of "
        "every ContentEdge using this cluster mount it and log in as that user (the operator "
        "does not generate passwords).",
    )
    exporter_secret_name: DnsSubdomain | None = Field(
        default=None,
        description=f"Secret holding, under the key `password`, the password of the user "
        f"{EXPORTER_USER!r} the operator creates with the role {EXPORTER_ROLES[0]} for the "
        "exporter sidecar; required when spec.exporter.enabled.",
    )
    users: list[User] = Field(
        default_factory=list,
        max_length=64,
        description="Users the operator creates, grants and keeps the passwords of; users "
        "on the cluster that are neither listed here nor the admin are dropped.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )

    @model_validator(mode="after")
    def _check(self) -> AccessControl:
        names = [u.name for u in self.users]
        if len(set(names)) != len(names):
            raise ValueError(f"accessControl.users names must be unique, got {names}")
        for i, name in enumerate(names):
            if name in RESERVED_USERS:
                raise ValueError(
                    f"accessControl.users[{i}].name: " + " and ".join(RESERVED_USERS)
                    + " are the operator's own users (edgeSecretName, exporterSecretName)"
                )
        return self


# has(self.edition) is false only where no schema default applied (the default is community).
_ENTERPRISE = "(has(self.edition) && self.edition == 'enterprise')"
ENTERPRISE_FIELDS = {
    "featureKeySecretRef": "feature_key_secret_ref",
    "tls": "tls",
    "accessControl": "access_control",
}
EXPORTER_CREDENTIALS_MESSAGE = (
    "spec.accessControl.exporterSecretName is required when spec.exporter.enabled: with "
    "security on, the exporter must log in"
)
CEL_RULES: list[dict[str, str]] = [
    {
        "rule": f"!{_ENTERPRISE} || has(self.featureKeySecretRef)",
        "message": "spec.featureKeySecretRef is required when spec.edition is enterprise "
        "(Enterprise Edition does not start without a feature key)",
        "fieldPath": ".featureKeySecretRef",
    },
    {
        "rule": "!has(self.accessControl) || has(self.accessControl.exporterSecretName) || "
        "!has(self.exporter) || !has(self.exporter.enabled) || !self.exporter.enabled",
        "message": EXPORTER_CREDENTIALS_MESSAGE,
        "fieldPath": ".accessControl.exporterSecretName",
    },
    *(
        {
            "rule": f"{_ENTERPRISE} || !has(self.{field})",
            "message": f"spec.{field} is Enterprise-only: it needs spec.edition enterprise",
            "fieldPath": f".{field}",
        }
        for field in ENTERPRISE_FIELDS
    ),
]


def enterprise_errors(
    edition: str,
    feature_key: FeatureKeySecretRef | None,
    tls: Tls | None,
    access_control: AccessControl | None,
) -> list[str]:
    """The messages of :data:`CEL_RULES` for a spec's values (pydantic's side of the rule)."""
    if edition == "enterprise":
        if feature_key is None:
            return [CEL_RULES[0]["message"]]
        return []
    given = {
        "featureKeySecretRef": feature_key,
        "tls": tls,
        "accessControl": access_control,
    }
    return [
        f"spec.{field} is Enterprise-only: it needs spec.edition enterprise"
        for field, value in given.items()
        if value is not None
    ]
