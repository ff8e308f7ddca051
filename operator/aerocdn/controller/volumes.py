"""Growing the persistent volumes of a CacheCluster (issue 13, AKO #604): a pure decision.

A StatefulSet's ``volumeClaimTemplates`` cannot be edited, so a larger ``storage.size``
is carried out the way Kubernetes allows without restarting a pod:

1. every existing claim of the StatefulSet is patched to the new size (the apiserver lets
   a bound claim grow only when its StorageClass has ``allowVolumeExpansion: true``; that
   is checked here first, so a refusal names the StorageClass and nothing is changed);
2. the StatefulSet is deleted with ``propagationPolicy: Orphan`` - its pods keep running -
   and created again from the new template; the new one adopts the pods (same selector,
   same pod template, so no pod restarts) and gives pods it creates later the new size;
3. progress is reported until every claim's ``status.capacity`` shows the new size (the
   storage driver resizes the volume; a filesystem may grow only when the pod restarts,
   which Kubernetes reports as the ``FileSystemResizePending`` condition).

Shrinking, adding and removing volumes stay refused (``ccplan.refused_changes``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aerocdn.api.common import parse_quantity

DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
PROGRESS_REASON = "GrowingVolumes"


@dataclass(frozen=True)
class VolumePlan:
    patch_claims: dict[str, str] = field(default_factory=dict)  # PVC name -> new size
    replace_statefulsets: tuple[str, ...] = ()  # delete with Orphan, then apply again
    waiting: tuple[str, ...] = ()  # claims not yet at their size (progress)
    refused: tuple[str, ...] = ()
    # A volume is still being resized by its storage driver: pods are not restarted
    # meanwhile (the roll for the new filesize would start Aerospike on the old volume).
    # A claim whose filesystem waits for the pod to restart (FileSystemResizePending) does
    # not hold the roll: the restart is what completes it.
    hold_roll: bool = False

    @property
    def busy(self) -> bool:
        return bool(self.patch_claims or self.replace_statefulsets or self.waiting)


def claim_sizes(sts: Mapping[str, Any]) -> dict[str, tuple[int, str, str | None]]:
    """volumeClaimTemplate name -> (bytes, size as written, storageClassName)."""
    out = {}
    for claim in (sts.get("spec") or {}).get("volumeClaimTemplates") or []:
        size = claim["spec"]["resources"]["requests"]["storage"]
        out[claim["metadata"]["name"]] = (parse_quantity(size), size,
                                          claim["spec"].get("storageClassName"))
    return out


def default_class(classes: Iterable[Mapping[str, Any]]) -> str | None:
    for sc in classes:
        if ((sc.get("metadata") or {}).get("annotations") or {}).get(
                DEFAULT_CLASS_ANNOTATION) == "true":
            return str(sc["metadata"]["name"])
    return None


def _bytes(quantity: Any) -> int:
    try:
        return parse_quantity(str(quantity))
    except ValueError:
        return 0


def _claims_of(sts: str, template: str, pvcs: Iterable[Mapping[str, Any]]
               ) -> list[Mapping[str, Any]]:
    """The claims a StatefulSet made from one template: ``<template>-<sts>-<ordinal>``."""
    prefix = f"{template}-{sts}-"
    return sorted((p for p in pvcs if p["metadata"]["name"].startswith(prefix)
                   and p["metadata"]["name"][len(prefix):].isdigit()),
                  key=lambda p: int(p["metadata"]["name"][len(prefix):]))


def plan_volume_growth(desired_sts: Iterable[Mapping[str, Any]],
                       live_sts: Mapping[str, Mapping[str, Any]],
                       pvcs: Iterable[Mapping[str, Any]],
                       classes: Iterable[Mapping[str, Any]],
                       scaling: Iterable[str] = ()) -> VolumePlan:
    """What to do now so that every claim of every StatefulSet reaches the desired size.

    ``scaling``: StatefulSets whose replicas are changing; they are not replaced meanwhile
    (a re-created StatefulSet must find exactly the pods its replicas say).
    """
    pvcs = list(pvcs)
    classes = list(classes)
    by_name = {sc["metadata"]["name"]: sc for sc in classes}
    fallback = default_class(classes)
    scaling = set(scaling)
    patch: dict[str, str] = {}
    replace: list[str] = []
    waiting: list[str] = []
    refused: list[str] = []
    hold_roll = False
    for sts in desired_sts:
        sts_name = sts["metadata"]["name"]
        live = live_sts.get(sts_name)
        if live is None:
            continue
        have = claim_sizes(live)
        grow_template = False
        for template, (want, size, sc_name) in claim_sizes(sts).items():
            if template not in have or want < have[template][0]:
                continue  # refused elsewhere (ccplan.refused_changes)
            claims = _claims_of(sts_name, template, pvcs)
            small = [c for c in claims
                     if _bytes(c["spec"]["resources"]["requests"].get("storage")) < want]
            if want > have[template][0] or small:
                names = {c["spec"].get("storageClassName") for c in claims} or {sc_name}
                for cls in sorted(n or fallback or "" for n in names):
                    problem = _cannot_expand(cls, by_name, template, sts_name)
                    if problem:
                        refused.append(problem)
                if refused:
                    continue
                # The apiserver lets only a bound claim grow; one still pending is reported.
                patch.update({c["metadata"]["name"]: size for c in small if _bound(c)})
                waiting.extend(f"PersistentVolumeClaim {c['metadata']['name']} is not bound "
                               "yet; it grows once bound" for c in small if not _bound(c))
                grow_template = grow_template or want > have[template][0]
            for c in filter(_bound, claims):
                now = _bytes(((c.get("status") or {}).get("capacity") or {}).get("storage"))
                if now < want:
                    conditions = {x.get("type") for x in (c.get("status") or {}).get(
                        "conditions") or []}
                    pending_fs = "FileSystemResizePending" in conditions
                    hold_roll = hold_roll or not pending_fs
                    note = " (the filesystem grows when the pod restarts)" if pending_fs else ""
                    waiting.append(f"PersistentVolumeClaim {c['metadata']['name']}: "
                                   f"{_fmt(now)} of {size}{note}")
        if grow_template and not refused:
            if sts_name in scaling:
                waiting.append(f"StatefulSet {sts_name} is re-created for the new volume size "
                               "once its scaling is done")
            else:
                replace.append(sts_name)
    if refused:
        return VolumePlan(refused=tuple(refused))
    return VolumePlan(patch_claims=patch, replace_statefulsets=tuple(replace),
                      waiting=tuple(waiting), hold_roll=hold_roll or bool(patch or replace))


def _cannot_expand(cls: str, by_name: Mapping[str, Mapping[str, Any]], template: str,
                   sts: str) -> str | None:
    what = f"growing volume {template} of StatefulSet {sts}"
    if not cls:
        return (f"{what} needs a StorageClass that allows expansion; the claims name none and "
                "the cluster has no default StorageClass; refused (set the size back)")
    sc = by_name.get(cls)
    if sc is None:
        return f"{what}: StorageClass {cls} does not exist; refused (set the size back)"
    if not sc.get("allowVolumeExpansion"):
        return (f"{what}: StorageClass {cls} does not allow volume expansion "
                "(allowVolumeExpansion is not true); refused (set the size back)")
    return None


def _bound(claim: Mapping[str, Any]) -> bool:
    return (claim.get("status") or {}).get("phase") == "Bound"


def _fmt(n: int) -> str:
    if n == 0:
        return "unknown"
    for unit, size in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)
