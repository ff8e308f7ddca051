"""An in-memory stand-in for :class:`aerocdn.controller.kube.Kube` and a StatefulSet controller,
for in-process reconcile tests: every request is recorded (verb, kind, name) so a test can
count reads and writes; errors are raised as the real wrapper raises them (KubeError)."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aerocdn.controller.kube import KubeError

Key = tuple[str, str, str]  # kind, namespace, name
_uids = itertools.count(1)


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


@dataclass
class Call:
    verb: str
    kind: str
    name: str


@dataclass
class FakeKube:
    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    # (verb, kind) -> a function deciding whether to fail this call (raise KubeError)
    faults: dict[tuple[str, str], Callable[[str], KubeError | None]] = field(
        default_factory=dict)
    # called after every StatefulSet write (the test's stand-in for the StatefulSet controller)
    on_statefulset: Callable[[FakeKube, dict[str, Any]], None] | None = None
    rv: int = 0
    ips: int = 0
    not_found: list[Call] = field(default_factory=list)  # every request answered 404

    # ------------------------------------------------------------------ bookkeeping
    def _record(self, verb: str, kind: str, name: str) -> None:
        self.calls.append(Call(verb, kind, name))
        fault = self.faults.get((verb, kind))
        if fault is not None:
            error = fault(name)
            if error is not None:
                raise error

    def writes(self) -> list[Call]:
        return [c for c in self.calls if c.verb in ("PATCH", "POST", "DELETE", "PUT")]

    def reset_calls(self) -> None:
        self.calls.clear()

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Store an object as the apiserver would (uid, resourceVersion, generation)."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", "default")
        meta.setdefault("uid", f"uid-{next(_uids)}")
        meta.setdefault("generation", 1)
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        self.objects[(obj["kind"], meta["namespace"], meta["name"])] = obj
        return obj

    def obj(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((kind, namespace, name))

    def kind_of(self, kind: str, namespace: str) -> list[dict[str, Any]]:
        return [o for (k, ns, _), o in sorted(self.objects.items())
                if k == kind and ns == namespace]

    # ------------------------------------------------------------------ the Kube interface
    async def get(self, api_version: str, kind: str, namespace: str, name: str, *,
                  fresh: bool = False) -> dict[str, Any] | None:
        self._record("GET", kind, name)
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    async def list(self, api_version: str, kind: str, namespace: str | None,
                   selector: dict[str, str] | None = None, *,
                   fresh: bool = False) -> list[dict[str, Any]]:
        self._record("LIST", kind, "")
        out = []
        for (k, ns, _), o in sorted(self.objects.items()):
            if k != kind or (namespace and ns != namespace):
                continue
            labels = o["metadata"].get("labels") or {}
            if all(labels.get(a) == b for a, b in (selector or {}).items()):
                out.append(copy.deepcopy(o))
        return out

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        self._record("PATCH", obj["kind"], meta["name"])
        key = (obj["kind"], meta["namespace"], meta["name"])
        old = self.objects.get(key)
        if old is None:
            stored = self.put(obj)
        else:
            merged = _merge(old, {k: v for k, v in obj.items() if k != "status"})
            if merged.get("spec") != old.get("spec"):
                merged["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
            stored = self.put(merged)
        if obj["kind"] == "StatefulSet" and self.on_statefulset is not None:
            self.on_statefulset(self, stored)
        return copy.deepcopy(stored)

    async def delete(self, api_version: str, kind: str, namespace: str, name: str, *,
                     propagation: str = "Background") -> bool:
        self._record("DELETE", kind, name)
        return self.objects.pop((kind, namespace, name), None) is not None

    async def patch_status(self, api_version: str, kind: str, namespace: str, name: str,
                           status: dict[str, Any]) -> dict[str, Any]:
        self._record("PATCH", kind, f"{name}/status")
        obj = self.objects.get((kind, namespace, name))
        if obj is None:
            raise KubeError(404, "Not Found", {"message": f'{kind} "{name}" not found'})
        obj = copy.deepcopy(obj)
        obj["status"] = copy.deepcopy(status)
        return copy.deepcopy(self.put(obj))  # a fresh answer, as the real API's

    async def patch_pod_conditions(self, namespace: str, name: str,
                                   conditions: list[dict[str, Any]]) -> None:
        self._record("PATCH", "Pod", f"{name}/status")
        pod = self.objects.get(("Pod", namespace, name))
        if pod is None:
            self.not_found.append(Call("PATCH", "Pod", f"{name}/status"))
            raise KubeError(404, "Not Found", {"message": f'pods "{name}" not found'})
        status = pod.setdefault("status", {})
        by_type = {c["type"]: c for c in status.get("conditions", [])}
        for c in conditions:
            by_type[c["type"]] = copy.deepcopy(c)
        status["conditions"] = list(by_type.values())
        self.put(pod)

    async def delete_pod(self, namespace: str, name: str) -> None:
        await self.delete("v1", "Pod", namespace, name)

    async def event(self, involved: dict[str, Any], type_: str, reason: str,
                    message: str) -> None:
        self._record("POST", "Event", involved["metadata"]["name"])
        self.events.append({"type": type_, "reason": reason, "message": message,
                            "object": involved["metadata"]["name"]})

    # ------------------------------------------------------------------ a StatefulSet controller
    def run_statefulsets(self, namespace: str, *, ready: bool = True) -> None:
        """Make each StatefulSet's pods match its replicas (create missing ordinals with the
        template's labels and config hash; remove the highest ordinals past replicas)."""
        for sts in self.kind_of("StatefulSet", namespace):
            name = sts["metadata"]["name"]
            want = sts["spec"].get("replicas", 0)
            template = sts["spec"]["template"]["metadata"]
            for pod in self.kind_of("Pod", namespace):
                owner = (pod["metadata"].get("ownerReferences") or [{}])[0].get("name")
                ordinal = int(pod["metadata"]["name"].rsplit("-", 1)[1])
                if owner == name and ordinal >= want:
                    del self.objects[("Pod", namespace, pod["metadata"]["name"])]
            for i in range(want):
                pod_name = f"{name}-{i}"
                if ("Pod", namespace, pod_name) in self.objects:
                    continue
                self.ips += 1  # a new pod gets a new IP
                self.put(pod_object(namespace, pod_name, name, template, ready,
                                    f"10.0.{self.ips // 250}.{self.ips % 250 + 1}"))


def pod_object(namespace: str, name: str, sts: str, template: dict[str, Any], ready: bool,
               ip: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": dict(template.get("labels") or {}),
                     "annotations": dict(template.get("annotations") or {}),
                     "ownerReferences": [{"kind": "StatefulSet", "name": sts}]},
        "status": {"phase": "Running", "podIP": ip,
                   "containerStatuses": [{"name": "aerospike", "ready": ready}],
                   "conditions": []},
    }


def remove_pods_at_once(kube: FakeKube, sts: dict[str, Any]) -> None:
    """A StatefulSet controller whose pods stop at once: a pod past the new replicas is gone
    before the reconcile that shrank the StatefulSet goes on (what asd pods do when they
    terminate quickly)."""
    namespace = sts["metadata"]["namespace"]
    want = sts["spec"].get("replicas", 0)
    for pod in kube.kind_of("Pod", namespace):
        owner = (pod["metadata"].get("ownerReferences") or [{}])[0].get("name")
        ordinal = int(pod["metadata"]["name"].rsplit("-", 1)[1])
        if owner == sts["metadata"]["name"] and ordinal >= want:
            del kube.objects[("Pod", namespace, pod["metadata"]["name"])]
