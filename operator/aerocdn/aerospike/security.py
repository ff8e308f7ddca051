"""From a CacheCluster and its Secrets to the operator's own client settings (pure).

The controller reads the Secrets (``spec.accessControl.adminSecretRef``, ``spec.tls.secretName``)
and passes their decoded ``data``; this module checks them and says what the info client
(:class:`aerocdn.aerospike.client.AerospikeInfo`) must use. The TLS files are written by the
controller where :func:`tls_files` says (the ``aerospike`` client reads them from disk).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from pathlib import Path

from aerocdn.aerospike.client import TLS_PORT, ClientSecurity, ClientTls
from aerocdn.api.cachecluster import CacheClusterSpec

TLS_KEYS = ("ca.crt", "tls.crt", "tls.key")


class SecretProblem(ValueError):
    """A Secret the spec names is missing a key or holds no usable value (the message names
    the Secret and key; the controller reports it as a condition)."""


def secret_text(secret: str, data: Mapping[str, str] | None, key: str) -> str:
    """``data[key]`` of a Secret as read from the API (base64), decoded as UTF-8."""
    if data is None:
        raise SecretProblem(f"Secret {secret} does not exist")
    raw = data.get(key)
    if not raw:
        raise SecretProblem(f"Secret {secret} has no key {key}")
    try:
        text = base64.b64decode(raw, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise SecretProblem(f"Secret {secret} key {key} is not base64 of UTF-8 text") from None
    if not text:
        raise SecretProblem(f"Secret {secret} key {key} is empty")
    return text


def tls_files(secret: str, data: Mapping[str, str] | None) -> dict[str, str]:
    """The files of a kubernetes.io/tls Secret the client needs (ca.crt, tls.crt, tls.key)."""
    return {key: secret_text(secret, data, key) for key in TLS_KEYS}


def client_security(
    cluster: str,
    spec: CacheClusterSpec,
    admin_secret: Mapping[str, str] | None = None,
    tls_dir: str | Path | None = None,
) -> ClientSecurity:
    """What the operator's info client uses for ``spec``: the admin credentials when access
    control is on, TLS (port 4333, the nodes' TLS name, ca.crt; tls.crt/tls.key as the client
    certificate when the nodes authenticate clients) when ``spec.tls.service`` is set.

    ``admin_secret`` is the ``data`` of the adminSecretRef Secret; ``tls_dir`` the directory
    the controller wrote :func:`tls_files` into.
    """
    user = password = None
    access = spec.access_control
    if access is not None:
        name = access.admin_secret_ref.name
        user = secret_text(name, admin_secret, "username")
        password = secret_text(name, admin_secret, "password")
    tls = None
    if spec.tls is not None and spec.tls.service:
        if tls_dir is None:
            raise SecretProblem(f"Secret {spec.tls.secret_name}: its files were not written")
        directory = Path(tls_dir)
        client_cert = spec.tls.client_authentication
        tls = ClientTls(
            ca_file=str(directory / "ca.crt"),
            name=spec.tls.tls_name or cluster,
            port=TLS_PORT,
            cert_file=str(directory / "tls.crt") if client_cert else None,
            key_file=str(directory / "tls.key") if client_cert else None,
        )
    return ClientSecurity(user=user, password=password, tls=tls)


def referenced_secrets(spec: CacheClusterSpec) -> dict[str, tuple[str, ...]]:
    """Secret name -> keys the operator itself reads for ``spec`` (the admin, the TLS files
    for its client, the users' passwords); the feature key is only mounted into the pods."""
    wanted: dict[str, tuple[str, ...]] = {}
    if spec.tls is not None and spec.tls.service:
        wanted[spec.tls.secret_name] = TLS_KEYS
    access = spec.access_control
    if access is not None:
        wanted[access.admin_secret_ref.name] = ("username", "password")
        for secret in (access.edge_secret_name, access.exporter_secret_name,
                       *(u.secret_name for u in access.users)):
            if secret is not None:
                wanted.setdefault(secret, ("password",))
    return wanted
