"""Applying a parent's desired children: create/repair what differs, delete what is no longer
desired. The only place children are written."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aerocdn.controller.cache import CachedKube
from aerocdn.controller.diff import needs_apply
from aerocdn.controller.kube import Kube, KubeError

log = logging.getLogger(__name__)


@dataclass
class ApplyResult:
    applied: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


def key(obj: dict[str, Any]) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def owned_by(obj: dict[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences", []))


async def list_children(kube: Kube | CachedKube, namespace: str, selector: dict[str, str],
                        kinds: Iterable[tuple[str, str]], uid: str, *, fresh: bool = False,
                        missing: set[tuple[str, str]] | None = None
                        ) -> dict[tuple[str, str], dict[str, Any]]:
    """The children of ``uid`` of each kind, by (kind, name). An optional API that is not
    installed (ExternalDNS) has none; its (apiVersion, kind) is added to ``missing``."""
    live: dict[tuple[str, str], dict[str, Any]] = {}
    for api_version, kind in kinds:
        try:
            items = await kube.list(api_version, kind, namespace, selector, fresh=fresh)
        except KubeError as exc:
            if exc.status == 404 and "/" in api_version and not api_version.startswith(
                    ("apps/", "policy/", "autoscaling/")):
                if missing is not None:
                    missing.add((api_version, kind))
                continue  # an optional API (ExternalDNS) is not installed
            raise
        for item in items:
            if owned_by(item, uid):
                live[key(item)] = item
    return live


# (kind, namespace, name) -> (the desired object, live uid, live resourceVersion) last found
# covered: a reconcile of an unchanged parent compares nothing again (the desired objects
# are remembered renders, so the same object comes back while the spec is the same).
_COVERED: dict[tuple[str, str, str], tuple[dict[str, Any], str, str]] = {}
_COVERED_MAX = 16384


def _needs_apply(obj: dict[str, Any], live: dict[str, Any] | None) -> bool:
    if live is None:
        return True
    meta = live["metadata"]
    ref = (obj["kind"], meta.get("namespace") or "", meta["name"])
    version = (str(meta.get("uid")), str(meta.get("resourceVersion")))
    seen = _COVERED.get(ref)
    if seen is not None and seen[0] is obj and seen[1:] == version:
        return False
    if needs_apply(obj, live):
        return True
    if len(_COVERED) >= _COVERED_MAX:
        _COVERED.pop(next(iter(_COVERED)))
    _COVERED[ref] = (obj, *version)
    return False


async def sync_children(kube: Kube | CachedKube, desired: list[dict[str, Any]],
                        live: dict[tuple[str, str], dict[str, Any]],
                        keep: set[tuple[str, str]] | None = None) -> ApplyResult:
    """Apply every desired child that differs from its live copy; delete live children that
    are not desired (except those in ``keep``). Zero writes when nothing differs."""
    result = ApplyResult()
    wanted = {key(o) for o in desired}
    for obj in desired:
        if _needs_apply(obj, live.get(key(obj))):
            await kube.apply(obj)
            result.applied.append("{}/{}".format(*key(obj)))
    for k, obj in sorted(live.items()):
        if k in wanted or (keep and k in keep):
            continue
        meta = obj["metadata"]
        if await kube.delete(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"]):
            result.deleted.append("{}/{}".format(*k))
    return result
