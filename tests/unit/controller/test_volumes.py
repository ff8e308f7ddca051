"""Volume growth of a CacheCluster (issue 13 item 3): the pure plan."""

from __future__ import annotations

from typing import Any

from aerocdn.controller.ccplan import refused_changes
from aerocdn.controller.volumes import plan_volume_growth


def sts(name: str, size: str, sc: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": size}}}
    if sc:
        spec["storageClassName"] = sc
    return {"metadata": {"name": name},
            "spec": {"replicas": 2, "volumeClaimTemplates": [
                {"metadata": {"name": "data-cache"}, "spec": spec}]}}


def pvc(name: str, request: str, capacity: str | None, sc: str = "fast",
        phase: str = "Bound", conditions: tuple[str, ...] = ()) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if capacity:
        status["capacity"] = {"storage": capacity}
    if conditions:
        status["conditions"] = [{"type": c, "status": "True"} for c in conditions]
    return {"metadata": {"name": name},
            "spec": {"storageClassName": sc, "resources": {"requests": {"storage": request}}},
            "status": status}


def sc(name: str, expand: bool, default: bool = False) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": name}, "provisioner": "x"}
    if expand:
        obj["allowVolumeExpansion"] = True
    if default:
        obj["metadata"]["annotations"] = {
            "storageclass.kubernetes.io/is-default-class": "true"}
    return obj


CLAIMS = [pvc("data-cache-cc-0", "10Gi", "10Gi"), pvc("data-cache-cc-1", "10Gi", "10Gi")]


def test_growth_patches_every_claim_and_replaces_the_statefulset() -> None:
    plan = plan_volume_growth([sts("cc", "20Gi", "fast")], {"cc": sts("cc", "10Gi", "fast")},
                              [*CLAIMS, pvc("data-cache-other-0", "10Gi", "10Gi")],
                              [sc("fast", True)])
    assert plan.refused == ()
    assert plan.patch_claims == {"data-cache-cc-0": "20Gi", "data-cache-cc-1": "20Gi"}
    assert plan.replace_statefulsets == ("cc",)
    assert plan.hold_roll
    assert len(plan.waiting) == 2 and all("10Gi of 20Gi" in w for w in plan.waiting)
    # refused_changes no longer refuses growth: it is this plan's to carry out
    assert refused_changes([sts("cc", "20Gi", "fast")], {"cc": sts("cc", "10Gi", "fast")}) == []


def test_refused_naming_the_storage_class_when_it_cannot_expand() -> None:
    plan = plan_volume_growth([sts("cc", "20Gi", "slow")], {"cc": sts("cc", "10Gi", "slow")},
                              [pvc("data-cache-cc-0", "10Gi", "10Gi", sc="slow")],
                              [sc("slow", False)])
    (message,) = plan.refused
    assert "StorageClass slow does not allow volume expansion" in message
    assert "data-cache" in message and "StatefulSet cc" in message
    assert not plan.busy  # nothing is changed


def test_default_class_and_missing_class() -> None:
    template = sts("cc", "20Gi")  # no storageClassName: the default class decides
    live = {"cc": sts("cc", "10Gi")}
    assert plan_volume_growth([template], live, [], [sc("std", True, default=True)]
                              ).replace_statefulsets == ("cc",)
    (no_default,) = plan_volume_growth([template], live, [], [sc("std", True)]).refused
    assert "no default StorageClass" in no_default
    (gone,) = plan_volume_growth([sts("cc", "20Gi", "x")], {"cc": sts("cc", "10Gi", "x")}, [],
                                 []).refused
    assert "StorageClass x does not exist" in gone


def test_after_the_replacement_progress_until_every_capacity_shows_the_size() -> None:
    grown = {"cc": sts("cc", "20Gi", "fast")}
    resizing = [pvc("data-cache-cc-0", "20Gi", "20Gi"),
                pvc("data-cache-cc-1", "20Gi", "10Gi", conditions=("FileSystemResizePending",))]
    plan = plan_volume_growth([sts("cc", "20Gi", "fast")], grown, resizing, [sc("fast", True)])
    assert plan.patch_claims == {} and plan.replace_statefulsets == ()
    (waiting,) = plan.waiting
    assert "data-cache-cc-1" in waiting and "filesystem grows when the pod restarts" in waiting
    assert not plan.hold_roll  # the restart is what grows that filesystem
    driver_busy = [pvc("data-cache-cc-0", "20Gi", "10Gi"), pvc("data-cache-cc-1", "20Gi", "20Gi")]
    assert plan_volume_growth([sts("cc", "20Gi", "fast")], grown, driver_busy,
                              [sc("fast", True)]).hold_roll
    done = [pvc("data-cache-cc-0", "20Gi", "20Gi"), pvc("data-cache-cc-1", "20Gi", "20Gi")]
    assert not plan_volume_growth([sts("cc", "20Gi", "fast")], grown, done,
                                  [sc("fast", True)]).busy


def test_a_claim_left_small_is_patched_even_after_the_template_grew() -> None:
    # the reconcile that replaced the StatefulSet died before patching one claim
    plan = plan_volume_growth([sts("cc", "20Gi", "fast")], {"cc": sts("cc", "20Gi", "fast")},
                              [pvc("data-cache-cc-0", "20Gi", "20Gi"),
                               pvc("data-cache-cc-1", "10Gi", "10Gi")], [sc("fast", True)])
    assert plan.patch_claims == {"data-cache-cc-1": "20Gi"}
    assert plan.replace_statefulsets == ()


def test_unbound_claims_are_not_patched_and_scaling_racks_are_not_replaced() -> None:
    pending = [pvc("data-cache-cc-0", "10Gi", None, phase="Pending")]
    plan = plan_volume_growth([sts("cc", "20Gi", "fast")], {"cc": sts("cc", "10Gi", "fast")},
                              pending, [sc("fast", True)], scaling=["cc"])
    assert plan.patch_claims == {} and plan.replace_statefulsets == ()
    assert any("not bound" in w for w in plan.waiting)
    assert any("once its scaling is done" in w for w in plan.waiting)


def test_no_change_no_plan() -> None:
    plan = plan_volume_growth([sts("cc", "10Gi", "fast")], {"cc": sts("cc", "10Gi", "fast")},
                              CLAIMS, [sc("fast", False)])
    assert plan == type(plan)()
