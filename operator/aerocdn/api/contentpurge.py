"""ContentPurge: remove URLs or prefixes from every edge pod (L1) and cache tier (L2) of a
ContentEdge, in every region, and say which pods confirmed it.

A purge target is what the edge's admin ``POST /purge`` takes (``{"url": ...}`` or
``{"prefix": ...}``), checked here with the same grammar the CRD carries: everything it admits
is a target the edge can interpret (``aerocdn.edge.purge.Purger._purge_target``, which
canonicalises the path with ``aerocdn.edge.policy.canonical_path``). Whether the host is one of
the ContentEdge's is a fact of another object: the operator checks it before calling any pod.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

from aerocdn.api.common import (
    MAX_TAG_LENGTH,
    TAG_PATTERN,
    ApiModel,
    Condition,
    DnsLabel,
    StatusModel,
    find_condition,
)

KIND = "ContentPurge"
PLURAL = "contentpurges"
MAX_TARGETS = 100
MAX_TARGET_LENGTH = 2048

# [scheme://]host[:port][/path[?query]]: the host lower case (nginx server_name), the path
# any printable character but ?, #, * and %, or an escape that is not %00 (canonical_path
# refuses broken escapes and an encoded NUL), the query printable ASCII without # and *
# (check_query). RE2 (the apiserver) and Python's re read it alike.
_HOST = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_PATH = r"([^\x00-\x20\x7f%?#*]|%[1-9a-fA-F][0-9a-fA-F]|%0[1-9a-fA-F])*"
_QUERY = r"[\x21-\x22\x24-\x29\x2b-\x7e]*"
TARGET = rf"^(https?://)?{_HOST}(:[0-9]{{1,5}})?(/{_PATH}(\?{_QUERY})?)?$"
# A '.' or '..' segment (also escaped as %2E): '..' above the root cannot be interpreted,
# and a target is written as clients' canonical path - without dot segments.
DOT_SEGMENT = r"/(\.|%2[eE])(\.|%2[eE])?(/|\?|$)"
DOT_SEGMENT_MESSAGE = "must not contain '.' or '..' path segments (write the canonical path)"


def _no_dot_segments(value: str) -> str:
    if re.search(DOT_SEGMENT, value):
        raise ValueError(f"{value!r} {DOT_SEGMENT_MESSAGE}")
    return value


Tag = Annotated[str, Field(pattern=TAG_PATTERN, min_length=1, max_length=MAX_TAG_LENGTH)]
Target = Annotated[
    str,
    Field(pattern=TARGET, min_length=1, max_length=MAX_TARGET_LENGTH),
    AfterValidator(_no_dot_segments),
]


class ContentEdgeRef(ApiModel):
    """The ContentEdge (in this namespace) whose edges are purged."""

    name: DnsLabel = Field(description="Name of the ContentEdge.")


class ContentPurgeSpec(ApiModel):
    """What to purge. Immutable: a purge is an action; create another to purge again."""

    content_edge_ref: ContentEdgeRef = Field(description="The ContentEdge to purge.")
    urls: list[Target] = Field(
        default_factory=list, max_length=MAX_TARGETS,
        description="URLs to purge, e.g. https://www.example.com/a.css or "
        "www.example.com/a.css?v=1: every variant of each (all Vary values), in L1 and L2. "
        "The host must be one of the ContentEdge's hosts; the path is canonicalised like a "
        "request's.",
    )
    prefixes: list[Target] = Field(
        default_factory=list, max_length=MAX_TARGETS,
        description="URL prefixes to purge, e.g. www.example.com/img/: every object whose "
        "URL starts with one (a host alone purges the whole host).",
    )
    tags: list[Tag] = Field(
        default_factory=list, max_length=MAX_TARGETS,
        description="Tags (surrogate keys, from the origin's cachePolicy.tagHeader) to purge: "
        "every object carrying one, in every region's L1 and L2.",
    )
    soft: bool = Field(
        default=False,
        description="Mark the objects stale instead of removing them: in L2 they count as "
        "expired, so stale-while-revalidate and stale-if-error still protect the origin (the "
        "next request gets the stale object while it is refreshed, or while the origin "
        "fails); each pod's nginx drops them so the next request reaches L2.",
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None, ge=0, le=30 * 86400,
        description="Delete this ContentPurge this many seconds after it completed (unset: "
        "kept until deleted).",
    )

    @model_validator(mode="after")
    def _check(self) -> ContentPurgeSpec:
        if not self.urls and not self.prefixes and not self.tags:
            raise ValueError("name at least one target in urls, prefixes or tags")
        return self


_DOT_RULE = f"self.all(t, !t.matches(r'{DOT_SEGMENT}'))"
CEL_RULES: list[dict[str, str]] = [
    {
        "rule": "(has(self.urls) ? size(self.urls) : 0) + "
        "(has(self.prefixes) ? size(self.prefixes) : 0) + "
        "(has(self.tags) ? size(self.tags) : 0) > 0",
        "message": "name at least one target in urls, prefixes or tags",
    },
]
FIELD_CEL_RULES: dict[str, list[dict[str, str]]] = {
    "urls": [{"rule": _DOT_RULE, "message": f"urls: each {DOT_SEGMENT_MESSAGE}"}],
    "prefixes": [{"rule": _DOT_RULE, "message": f"prefixes: each {DOT_SEGMENT_MESSAGE}"}],
}
# spec as a whole: a purge is an action, not a desired state
SPEC_IMMUTABLE = {"rule": "self == oldSelf",
                  "message": "spec is immutable: create another ContentPurge to purge again"}


class PodPurge(StatusModel):
    """One edge pod's part of the purge."""

    name: str
    state: str = Field(default="Pending", description="Pending, Confirmed or Error.")
    message: str = ""
    attempts: int = 0
    next_attempt_at: float | None = Field(
        default=None, description="Unix time of the next try (after an Error).")
    confirmed_at: str | None = None


class RegionPurge(StatusModel):
    name: str
    pods: list[PodPurge] = Field(default_factory=list)
    confirmed: int = 0


class ContentPurgeStatus(StatusModel):
    observed_generation: int | None = None
    phase: str | None = Field(default=None, description="Pending, InProgress, Complete, Failed.")
    start_time: str | None = None
    completion_time: str | None = None
    pods: int = Field(default=0, description="Edge pods that must confirm.")
    confirmed: int = Field(default=0, description="Edge pods that confirmed.")
    failed: int = Field(default=0, description="Edge pods whose last attempt failed.")
    regions: list[RegionPurge] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)

    def condition(self, type_: str) -> Condition | None:
        return find_condition(self.conditions, type_)
