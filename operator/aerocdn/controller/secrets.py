"""The Secrets a CacheCluster names (Enterprise TLS and access control): which they are, what
the operator keeps of them, reading them, and the client settings built from them.

Secrets are watched (handlers.py) but the store keeps only those a CacheCluster of the same
namespace names, and of those only ``type`` and ``data`` (:func:`secret_shape`): no other
Secret of the cluster sits in the operator's memory, and no annotation (``kubectl apply``
leaves the whole Secret in one). A Secret the store does not hold yet (named by a CacheCluster
that just changed, or absent) is read from the API once; when it is absent the CacheCluster's
reconcile stops with a permanent error naming it, and the Secret's creation (a watch event)
starts it again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aerocdn.aerospike.client import ClientSecurity
from aerocdn.aerospike.security import (
    TLS_KEYS,
    SecretProblem,
    client_security,
    referenced_secrets,
    secret_text,
    tls_files,
)
from aerocdn.api import InputError
from aerocdn.api.objects import CacheCluster
from aerocdn.controller.cache import CachedKube, Store, parse_cached
from aerocdn.controller.context import API_VERSION, CC_KIND, Context
from aerocdn.controller.errors import FailureReason, PermanentError

SECRET = ("v1", "Secret")
SecretData = Mapping[str, str] | None  # a Secret's data (base64 values); None: no such Secret


def secret_names(raw_cluster: Mapping[str, Any]) -> set[str]:
    """Names of the Secrets the operator reads for a CacheCluster (stored object)."""
    try:
        cc = parse_cached(raw_cluster)
    except InputError:
        return set()
    return set(referenced_secrets(cc.spec)) if isinstance(cc, CacheCluster) else set()


def clusters_using(store: Store, namespace: str, secret: str) -> list[str]:
    """CacheClusters of ``namespace`` whose spec names the Secret ``secret``."""
    return [c["metadata"]["name"] for c in store.list(API_VERSION, CC_KIND, namespace)
            if secret in secret_names(c)]


def secret_shape(store: Store) -> Any:
    """The store's shape for Secrets: only those a CacheCluster names, only type and data."""
    def shape(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
        meta = obj["metadata"]
        if not clusters_using(store, meta.get("namespace") or "", meta["name"]):
            return None
        return {
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion")
                         if k in meta},
            "type": obj.get("type"),
            "data": dict(obj.get("data") or {}),
        }
    return shape


async def read_secrets(ctx: Context, namespace: str, names: set[str]) -> dict[str, SecretData]:
    """``data`` of each named Secret: from the store; from the API when the store does not
    hold it (see the module docstring); None for a Secret that does not exist."""
    out: dict[str, SecretData] = {}
    kube = ctx.kube
    store = kube.store if isinstance(kube, CachedKube) else None
    for name in sorted(names):
        obj = store.get(*SECRET, namespace, name) if store is not None else None
        if obj is None:
            obj = await kube.get(*SECRET, namespace, name, fresh=True)
        out[name] = None if obj is None else (obj.get("data") or {})
    return out


def _field(cc: CacheCluster, secret: str) -> str:
    """The spec field that names ``secret`` (for the condition)."""
    spec = cc.spec
    access = spec.access_control
    if spec.tls is not None and spec.tls.secret_name == secret:
        return "spec.tls.secretName"
    if access is not None:
        if access.admin_secret_ref.name == secret:
            return "spec.accessControl.adminSecretRef"
        if access.edge_secret_name == secret:
            return "spec.accessControl.edgeSecretName"
        if access.exporter_secret_name == secret:
            return "spec.accessControl.exporterSecretName"
        for i, user in enumerate(access.users):
            if user.secret_name == secret:
                return f"spec.accessControl.users[{i}].secretName"
    return "spec"


def check_secrets(cc: CacheCluster, secrets: Mapping[str, SecretData]) -> None:
    """Every key the operator reads from the Secrets ``cc`` names is there and usable; else a
    PermanentError (reason SecretInvalid) naming, for each problem in spec order, the field,
    the Secret and the key."""
    problems: list[tuple[str, str]] = []
    for secret, keys in referenced_secrets(cc.spec).items():
        try:
            for key in keys:
                secret_text(secret, secrets.get(secret), key)
        except SecretProblem as exc:
            problems.append((_field(cc, secret), str(exc)))
    if problems:
        raise PermanentError(
            FailureReason.SECRET_INVALID, problems[0][0],
            "; ".join(f"{f}: {m}" if i else m for i, (f, m) in enumerate(problems))
            + " (the reconcile waits until the Secret or the spec changes)")


def tls_dir(cc: CacheCluster, files: Mapping[str, str], root: str | None = None) -> Path:
    """Write the client's TLS files (ca.crt, tls.crt, tls.key) where the ``aerospike`` client
    reads them: a directory named after their content under the operator's temp dir (the
    chart's /tmp emptyDir), so a changed Secret is a new directory and a reader never sees
    half a file. Only the operator's user can read it."""
    digest = hashlib.sha256("\0".join(files[k] for k in TLS_KEYS).encode()).hexdigest()[:16]
    base = Path(root or tempfile.gettempdir()) / "aerocdn-tls" / cc.namespace / cc.name
    directory = base / digest
    if not directory.is_dir():
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        staging = Path(tempfile.mkdtemp(dir=base))
        for key in TLS_KEYS:
            path = staging / key
            path.write_text(files[key])
            os.chmod(path, 0o600)
        try:
            staging.rename(directory)
        except OSError:  # another reconcile wrote the same files first
            shutil.rmtree(staging, ignore_errors=True)
        # the files of an earlier Secret version: no client of a finished reconcile is left
        # (a cluster's reconciles never overlap), so they go
        for old in base.iterdir():
            if old != directory and not old.name.startswith("tmp"):
                shutil.rmtree(old, ignore_errors=True)
    return directory


def operator_security(cc: CacheCluster, secrets: Mapping[str, SecretData],
                      root: str | None = None) -> ClientSecurity:
    """The operator's own info client settings for ``cc`` (TLS files written as needed);
    the Secrets were checked by :func:`check_secrets`."""
    spec = cc.spec
    admin = (secrets.get(spec.access_control.admin_secret_ref.name)
             if spec.access_control is not None else None)
    directory = None
    if spec.tls is not None and spec.tls.service:
        directory = tls_dir(cc, tls_files(spec.tls.secret_name, secrets.get(spec.tls.secret_name)),
                            root)
    return client_security(cc.name, spec, admin, directory)
