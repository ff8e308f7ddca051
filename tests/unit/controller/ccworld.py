"""A CacheCluster, its children and its Aerospike nodes, in memory: the reconcile runs with
``--aerospike-probe=aerospike`` (the production branch) against a FakeKube and nodes that
answer the captured real replies."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from tests.unit.controller.aerofake import FakeAerospike
from tests.unit.controller.fakekube import FakeKube

from aerocdn.controller.cachecluster import reconcile_cachecluster
from aerocdn.controller.context import Context
from aerocdn.controller.queue import WorkQueue

NS = "n"
GATE = "aerocdn.dev/cluster-stable"


def cc_object(name: str = "cc", size: int = 3, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "aerocdn.dev/v1alpha1", "kind": "CacheCluster",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"region": "eu-west", "size": size,
                     "namespaces": [{"name": "cache", "storage": {"size": "1Gi"}}], **spec}}


async def _nothing(_: Any) -> None:
    return None


@dataclass
class World:
    kube: FakeKube
    aero: FakeAerospike
    ctx: Context
    name: str = "cc"

    @classmethod
    def make(cls, **kube_args: Any) -> World:
        kube = FakeKube(**kube_args)
        aero = FakeAerospike(kube, NS)
        ctx = Context(kube=kube, queue=WorkQueue(_nothing), probe="aerospike",  # type: ignore[arg-type]
                      aerospike_client_factory=aero.factory)
        return cls(kube, aero, ctx)

    async def reconcile(self) -> float | None:
        return await reconcile_cachecluster(self.ctx, NS, self.name)

    def cc(self) -> dict[str, Any]:
        obj = self.kube.obj("CacheCluster", NS, self.name)
        assert obj is not None
        return obj

    def edit(self, **spec: Any) -> None:
        obj = copy.deepcopy(self.cc())
        obj["spec"].update(spec)
        obj["metadata"]["generation"] += 1
        self.kube.put(obj)

    def condition(self, type_: str) -> dict[str, Any]:
        return next((c for c in (self.cc().get("status") or {}).get("conditions", [])
                     if c["type"] == type_), {})

    def pods(self) -> list[str]:
        return [p["metadata"]["name"] for p in self.kube.kind_of("Pod", NS)]

    def gate(self, pod: str) -> dict[str, Any]:
        obj = self.kube.obj("Pod", NS, pod)
        assert obj is not None
        return next((c for c in obj["status"]["conditions"] if c["type"] == GATE), {})

    def replicas(self, sts: str | None = None) -> int:
        obj = self.kube.obj("StatefulSet", NS, sts or self.name)
        assert obj is not None
        return int(obj["spec"]["replicas"])

    def events(self, reason: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.kube.events if reason is None or e["reason"] == reason]
