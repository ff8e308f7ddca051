"""Whole API objects (metadata + spec) and turning raw manifests into validated models."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aerocdn.api import cachecluster, contentedge, contentpurge
from aerocdn.api.common import API_VERSION, DNS_LABEL, OBJECT_NAME_MAX, camel_path


class ObjectMeta(BaseModel):
    """The parts of metadata the operator reads."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(pattern=DNS_LABEL, max_length=OBJECT_NAME_MAX)
    namespace: str = "default"
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class _Object(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    api_version: str = Field(alias="apiVersion")
    kind: str
    metadata: ObjectMeta

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    def ref(self) -> str:
        return f"{self.kind}/{self.metadata.name}"


class CacheCluster(_Object):
    spec: cachecluster.CacheClusterSpec


class ContentEdge(_Object):
    spec: contentedge.ContentEdgeSpec


class ContentPurge(_Object):
    spec: contentpurge.ContentPurgeSpec


KINDS: dict[str, type[CacheCluster] | type[ContentEdge] | type[ContentPurge]] = {
    cachecluster.KIND: CacheCluster,
    contentedge.KIND: ContentEdge,
    contentpurge.KIND: ContentPurge,
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one object: where, which field, what."""

    source: str
    object: str
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        field = f" {self.field}:" if self.field else ""
        return f"{where}{self.object}:{field} {self.message}"


class InputError(Exception):
    """One or more problems with user input; str() lists each on its own line."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def _describe(raw: Any) -> str:
    if not isinstance(raw, dict):
        return "document"
    kind = raw.get("kind") or "<no kind>"
    meta = raw.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    return f"{kind}/{name or '<no name>'}"


def _message(err: Any) -> str:
    msg = str(err["msg"])
    if err["type"] == "missing":
        return "required field is missing"
    if err["type"] == "extra_forbidden":
        return "unknown field (check spelling; fields are camelCase)"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if err["type"] not in ("value_error", "assertion_error") and "input" in err:
        msg += f" (got {err['input']!r})"
    return msg


def parse_object(raw: Any, source: str = "") -> CacheCluster | ContentEdge | ContentPurge:
    """Validate one manifest; raise InputError naming the object and each bad field."""
    what = _describe(raw)
    if not isinstance(raw, dict):
        raise InputError([Problem(source, what, "", "expected a mapping (a Kubernetes object)")])
    kind = raw.get("kind")
    if kind not in KINDS:
        known = ", ".join(sorted(KINDS))
        raise InputError(
            [Problem(source, what, "kind", f"unknown kind {kind!r}; aerocdn knows {known}")]
        )
    if raw.get("apiVersion") != API_VERSION:
        raise InputError(
            [
                Problem(
                    source,
                    what,
                    "apiVersion",
                    f"expected {API_VERSION}, got {raw.get('apiVersion')!r}",
                )
            ]
        )
    model = KINDS[kind]
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = [
            Problem(source, what, camel_path(tuple(err["loc"])), _message(err))
            for err in exc.errors(include_url=False)
        ]
        raise InputError(problems) from None
