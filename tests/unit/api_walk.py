"""Every field constraint of the API's pydantic models, as cases with a value that breaks it.

:func:`constraint_cases` walks CacheClusterSpec and ContentEdgeSpec (nested models, list
items, dict values, Optional, Annotated) and yields, for each constraint (ge/gt/le/lt,
min/max length, pattern, Literal), a whole object that is valid except for that one value.
:data:`CROSS_FIELD` lists the model validators' rules (CEL in the CRD) the same way. The unit
tier checks the generated CRD schema refuses each; the integration tier asks a real apiserver.
"""

from __future__ import annotations

import copy
import re
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from aerocdn.api.cachecluster import CacheClusterSpec
from aerocdn.api.common import camel
from aerocdn.api.contentedge import ContentEdgeSpec
from aerocdn.api.contentpurge import ContentPurgeSpec

BASE: dict[str, dict[str, Any]] = {
    "CacheCluster": {
        "apiVersion": "aerocdn.dev/v1alpha1", "kind": "CacheCluster",
        "metadata": {"name": "walk"},
        "spec": {"region": "eu-west", "size": 3,
                 "namespaces": [{"name": "cache", "storage": {"size": "1Gi"}}]}},
    "ContentEdge": {
        "apiVersion": "aerocdn.dev/v1alpha1", "kind": "ContentEdge",
        "metadata": {"name": "walk"},
        "spec": {"hosts": ["walk.example.com"], "origin": {"url": "http://origin.test"},
                 "regions": [{"name": "eu-west"}]}},
    "ContentPurge": {
        "apiVersion": "aerocdn.dev/v1alpha1", "kind": "ContentPurge",
        "metadata": {"name": "walk"},
        "spec": {"contentEdgeRef": {"name": "walk"}, "urls": ["walk.example.com/a"]}},
}
# A valid first item for lists of objects that the base objects leave empty.
ITEMS: dict[str, dict[str, Any]] = {"racks": {"id": 1, "zone": "a"},
                                    "origins": {"name": "walk", "url": "http://origin.test"},
                                    "routes": {"pathPrefix": "/walk/"}}
# Fields that replace another of the base object (exactly one of the two may be set): walking
# the first removes the second, so each case breaks only the value it names.
INSTEAD_OF: dict[str, str] = {"origins": "origin"}
# Fields whose valid value depends on the kind of storage: walked with persistent storage.
SPECS = {"CacheCluster": CacheClusterSpec, "ContentEdge": ContentEdgeSpec,
         "ContentPurge": ContentPurgeSpec}


@dataclass(frozen=True)
class Case:
    kind: str
    path: str  # spec.regions[0].replicas
    constraint: str  # "ge 0", "pattern ^...$"
    obj: dict[str, Any]

    def __str__(self) -> str:
        return f"{self.kind} {self.path}: {self.constraint}"


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """(the bare type, constraints carried by Annotated) of an annotation, Optional removed."""
    metadata: list[Any] = []
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            base, *extra = typing.get_args(annotation)
            for e in extra:
                metadata += e.metadata if isinstance(e, FieldInfo) else [e]
            annotation = base
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation, metadata
            annotation = args[0]
        else:
            return annotation, metadata


def _bad_values(bare: Any, constraint: Any) -> tuple[str, Any] | None:
    """(description, a value breaking ``constraint``) for a value of type ``bare``."""
    number = bare in (int, float)
    step = 1 if bare is int else 0.5
    if isinstance(constraint, at.Ge) and number:
        return f"ge {constraint.ge}", constraint.ge - step
    if isinstance(constraint, at.Gt) and number:
        return f"gt {constraint.gt}", constraint.gt
    if isinstance(constraint, at.Le) and number:
        return f"le {constraint.le}", constraint.le + step
    if isinstance(constraint, at.Lt) and number:
        return f"lt {constraint.lt}", constraint.lt
    if isinstance(constraint, at.MinLen) and bare is str and constraint.min_length == 1:
        return "min_length 1", ""
    if isinstance(constraint, at.MaxLen) and bare is str:
        return f"max_length {constraint.max_length}", "a" * (constraint.max_length + 1)
    pattern = getattr(constraint, "pattern", None)
    if pattern is not None and bare is str:
        for candidate in ("Bad Value!", "-a-", "a-b", "1a.", "x"):
            if not re.search(pattern, candidate):
                return f"pattern {pattern}", candidate
    return None


def _set(obj: dict[str, Any], steps: list[str | int], value: Any) -> None:
    if len(steps) > 1 and steps[1] in INSTEAD_OF:
        obj["spec"].pop(INSTEAD_OF[str(steps[1])], None)
    node: Any = obj
    for i, step in enumerate(steps[:-1]):
        nxt = steps[i + 1]
        if isinstance(step, int):
            node = node[step]
            continue
        if step not in node:
            if isinstance(nxt, int):
                node[step] = [copy.deepcopy(ITEMS.get(step, {}))]
            else:
                node[step] = {}
        node = node[step]
    last = steps[-1]
    if isinstance(last, int):
        node[last] = value
    else:
        node[last] = value


def _path(steps: list[str | int]) -> str:
    out = ""
    for s in steps:
        out += f"[{s}]" if isinstance(s, int) else ("." if out else "") + s
    return out


def _walk(kind: str, model: type[BaseModel], steps: list[str | int]) -> Iterator[Case]:
    for name, field in model.model_fields.items():
        alias = camel(name)
        yield from _walk_type(kind, field.annotation, list(field.metadata), [*steps, alias])


def _walk_type(kind: str, annotation: Any, metadata: list[Any], steps: list[str | int]
               ) -> Iterator[Case]:
    bare, inner = _unwrap(annotation)
    constraints = metadata + inner
    origin = typing.get_origin(bare)
    if origin is typing.Literal:
        obj = copy.deepcopy(BASE[kind])
        _set(obj, steps, "not-one-of-them")
        yield Case(kind, _path(steps), f"one of {typing.get_args(bare)}", obj)
        return
    if origin is list:
        for c in constraints:
            if isinstance(c, at.MinLen) and c.min_length == 1:
                obj = copy.deepcopy(BASE[kind])
                _set(obj, steps, [])
                yield Case(kind, _path(steps), "min_length 1", obj)
        (item,) = typing.get_args(bare)
        yield from _walk_type(kind, item, [], [*steps, 0])
        return
    if origin is dict:
        _, value = typing.get_args(bare)
        key = "eu-west"
        yield from _walk_type(kind, value, [], [*steps, key])
        return
    if isinstance(bare, type) and issubclass(bare, BaseModel):
        yield from _walk(kind, bare, steps)
        return
    for c in constraints:
        bad = _bad_values(bare, c)
        if bad is None:
            continue
        description, value = bad
        obj = copy.deepcopy(BASE[kind])
        _set(obj, steps, value)
        if steps[-2:] == ["storage", "size"] or "storageClassName" in steps:
            pass
        yield Case(kind, _path(steps), description, obj)


def constraint_cases() -> list[Case]:
    cases: list[Case] = []
    for kind, model in SPECS.items():
        cases += list(_walk(kind, model, ["spec"]))
    return cases


def _with(kind: str, **spec: Any) -> dict[str, Any]:
    obj = copy.deepcopy(BASE[kind])
    obj["spec"].update(spec)
    return obj


# The model validators' rules (cross-field, uniqueness): each is refused by pydantic and, by
# CEL or a list type, by the CRD.
CROSS_FIELD: list[Case] = [
    Case("CacheCluster", "spec.size", "size >= number of racks",
         _with("CacheCluster", size=1, racks=[{"id": 1, "zone": "a"}, {"id": 2, "zone": "b"}])),
    Case("CacheCluster", "spec.namespaces[0].storage.size", "memory needs 512Mi",
         _with("CacheCluster", namespaces=[{"name": "cache", "storage": {"size": "256Mi"}}])),
    Case("CacheCluster", "spec.namespaces[0].storage.storageClassName",
         "storageClassName only with persistent storage",
         _with("CacheCluster", namespaces=[{"name": "cache", "storage": {
             "size": "1Gi", "storageClassName": "fast"}}])),
    Case("CacheCluster", "spec.namespaces[0].evictUsedPct", "evict below stop-writes",
         _with("CacheCluster", namespaces=[{"name": "cache", "evictUsedPct": 95,
                                            "stopWritesUsedPct": 90}])),
    Case("CacheCluster", "spec.namespaces", "unique names",
         _with("CacheCluster", namespaces=[{"name": "cache"}, {"name": "cache"}])),
    Case("CacheCluster", "spec.racks", "unique ids",
         _with("CacheCluster", racks=[{"id": 1, "zone": "a"}, {"id": 1, "zone": "b"}])),
    Case("ContentEdge", "spec.autoscaling", "minReplicas <= maxReplicas",
         _with("ContentEdge", autoscaling={"enabled": True, "minReplicas": 5,
                                           "maxReplicas": 2})),
    Case("ContentEdge", "spec.hosts", "unique hosts",
         _with("ContentEdge", hosts=["a.example.com", "a.example.com"])),
    Case("ContentEdge", "spec.regions", "unique region names",
         _with("ContentEdge", regions=[{"name": "eu-west"}, {"name": "eu-west"}])),
    Case("ContentEdge", "spec.routing.dns.clientRegions", "a region of spec.regions",
         _with("ContentEdge", routing={"dns": {"clientRegions": [{
             "region": "mars", "providerSpecific": [{"name": "aws/region",
                                                     "value": "us-east-1"}]}]}})),
    Case("ContentEdge", "spec.routing.dns.hostname", "no wildcard with clientRegions",
         _with("ContentEdge", routing={"dns": {"hostname": "*.example.com", "clientRegions": [{
             "region": "eu-west", "providerSpecific": [{"name": "aws/region",
                                                        "value": "eu-west-1"}]}]}})),
    Case("ContentEdge", "spec.routing.dns.clientRegions", "<region>.<hostname> at most 253",
         _with("ContentEdge", routing={"dns": {
             "hostname": ".".join(["a" * 61] * 4), "clientRegions": [{
                 "region": "eu-west", "providerSpecific": [{"name": "aws/region",
                                                            "value": "eu-west-1"}]}]}})),
    Case("ContentEdge", "spec.regions[0].dnsTarget", "an IP address or a DNS name",
         _with("ContentEdge", regions=[{"name": "eu-west", "dnsTarget": "lb .example.com"}])),
    Case("CacheCluster", "spec.featureKeySecretRef", "required on enterprise",
         _with("CacheCluster", edition="enterprise")),
    Case("CacheCluster", "spec.featureKeySecretRef", "enterprise only",
         _with("CacheCluster", featureKeySecretRef={"name": "features"})),
    Case("CacheCluster", "spec.tls", "enterprise only",
         _with("CacheCluster", tls={"secretName": "eu-tls"})),
    Case("CacheCluster", "spec.accessControl", "enterprise only",
         _with("CacheCluster", accessControl={"adminSecretRef": {"name": "admin"}})),
    Case("CacheCluster", "spec.tls.service", "service or fabric",
         _with("CacheCluster", edition="enterprise", featureKeySecretRef={"name": "features"},
               tls={"secretName": "eu-tls", "service": False})),
    Case("CacheCluster", "spec.tls.clientAuthentication", "needs the TLS service port",
         _with("CacheCluster", edition="enterprise", featureKeySecretRef={"name": "features"},
               tls={"secretName": "eu-tls", "service": False, "fabric": True,
                    "clientAuthentication": True})),
    Case("CacheCluster", "spec.accessControl.users", "unique names",
         _with("CacheCluster", edition="enterprise", featureKeySecretRef={"name": "features"},
               accessControl={"adminSecretRef": {"name": "admin"}, "edgeSecretName": "e",
                              "users": [
                   {"name": "edge", "secretName": "a", "roles": ["read"]},
                   {"name": "edge", "secretName": "b", "roles": ["read"]}]})),
    Case("CacheCluster", "spec.accessControl.users[0].roles", "unique roles",
         _with("CacheCluster", edition="enterprise", featureKeySecretRef={"name": "features"},
               accessControl={"adminSecretRef": {"name": "admin"}, "edgeSecretName": "e",
                              "users": [
                   {"name": "edge", "secretName": "a", "roles": ["read", "read"]}]})),
    Case("CacheCluster", "spec.accessControl.users", "not the operator's own users",
         _with("CacheCluster", edition="enterprise", featureKeySecretRef={"name": "features"},
               accessControl={"adminSecretRef": {"name": "admin"}, "edgeSecretName": "e",
                              "users": [{"name": "aerocdn-exporter", "secretName": "a",
                                         "roles": ["read"]}]})),
    Case("CacheCluster", "spec.accessControl.exporterSecretName", "required with the exporter",
         _with("CacheCluster", edition="enterprise", featureKeySecretRef={"name": "features"},
               exporter={"enabled": True},
               accessControl={"adminSecretRef": {"name": "admin"}, "edgeSecretName": "e"})),
    Case("CacheCluster", "metadata.name", "at most 40 characters",
         {**_with("CacheCluster"), "metadata": {"name": "n" * 41}}),
    Case("ContentEdge", "metadata.name", "a DNS label",
         {**_with("ContentEdge"), "metadata": {"name": "a.b"}}),
    Case("ContentEdge", "spec.origins", "not both origin and origins",
         _with("ContentEdge", origins=[{"name": "a", "url": "http://a.test"}])),
    Case("ContentEdge", "spec.origins", "one of origin and origins",
         {**_with("ContentEdge"), "spec": {k: v for k, v in _with("ContentEdge")["spec"].items()
                                           if k != "origin"}}),
    Case("ContentEdge", "spec.origins", "unique names",
         {**_with("ContentEdge"), "spec": {
             **{k: v for k, v in _with("ContentEdge")["spec"].items() if k != "origin"},
             "origins": [{"name": "a", "url": "http://a.test"},
                         {"name": "a", "url": "http://b.test"}]}}),
    Case("ContentEdge", "spec.origins", "an origin in the group default or a route for /",
         {**_with("ContentEdge"), "spec": {
             **{k: v for k, v in _with("ContentEdge")["spec"].items() if k != "origin"},
             "origins": [{"name": "a", "url": "http://a.test", "group": "web"}],
             "routes": [{"pathPrefix": "/a/", "origin": "web"}]}}),
    Case("ContentEdge", "spec.routes", "unique path prefixes",
         _with("ContentEdge", routes=[{"pathPrefix": "/a/"}, {"pathPrefix": "/a/"}])),
    Case("ContentEdge", "spec.routes", "the origin shorthand is the group default",
         _with("ContentEdge", routes=[{"pathPrefix": "/a/", "origin": "web"}])),
    Case("ContentEdge", "spec.routes", "routes name a declared origin group",
         {**_with("ContentEdge"), "spec": {
             **{k: v for k, v in _with("ContentEdge")["spec"].items() if k != "origin"},
             "origins": [{"name": "a", "url": "http://a.test"}],
             "routes": [{"pathPrefix": "/a/", "origin": "a"}]}}),
    Case("ContentPurge", "spec.urls", "at least one target (urls or prefixes)",
         {**_with("ContentPurge"), "spec": {"contentEdgeRef": {"name": "walk"}}}),
    Case("ContentPurge", "spec.urls[0]", "no dot segments",
         _with("ContentPurge", urls=["walk.example.com/a/../b"])),
    Case("ContentPurge", "spec.prefixes[0]", "no dot segments",
         _with("ContentPurge", prefixes=["walk.example.com/%2e%2E/b"])),
]
