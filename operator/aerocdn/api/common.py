"""Shared building blocks of the aerocdn API models.

The pydantic models in this package are the single source of truth for the CRDs: the
OpenAPI schemas in ``crds/`` are generated from them (``aerocdn crds``) and the operator and
``aerocdn render`` validate with them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from aerocdn.constants import API_VERSION as API_VERSION  # re-exported: part of the api
from aerocdn.constants import GROUP as GROUP
from aerocdn.constants import VERSION as VERSION

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Names the edge puts into nginx variables ($arg_x, $http_x) and its own cache key: one
# pattern for the API (and so the CRD) and the edge config, so nothing admitted fails later.
QUERY_PARAM = r"^[A-Za-z0-9_]+$"
HEADER_NAME = r"^[A-Za-z0-9-]+$"
# A host an edge serves (nginx server_name): a DNS name, lower case, a leading "*." allowed.
HOSTNAME = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# A tag (surrogate key) as an origin's tag header can carry it and a ContentPurge names it:
# printable ASCII without space or comma.
TAG_PATTERN = r"^[\x21-\x2b\x2d-\x7e]+$"
MAX_TAG_LENGTH = 256
# metadata.name of our objects: children append suffixes, so it is shorter than a DNS label
OBJECT_NAME_MAX = 40
QUANTITY = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$"

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

DnsLabel = Annotated[str, Field(pattern=DNS_LABEL, min_length=1, max_length=63)]
DnsSubdomain = Annotated[str, Field(pattern=DNS_SUBDOMAIN, min_length=1, max_length=253)]
Quantity = Annotated[
    str,
    Field(
        pattern=QUANTITY,
        max_length=32,
        description="A Kubernetes quantity such as 512Mi or 4Gi.",
        examples=["1Gi"],
    ),
]


def camel(name: str) -> str:
    """snake_case -> camelCase, keeping TTL upper case as Kubernetes APIs do (defaultTTLSeconds)."""
    return to_camel(name).replace("Ttl", "TTL")


class ApiModel(BaseModel):
    """Base of every spec model: camelCase on the wire, unknown fields rejected, frozen."""

    model_config = ConfigDict(
        alias_generator=camel,
        populate_by_name=True,
        frozen=True,
        extra="forbid",
    )


class StatusModel(BaseModel):
    """Base of status models: camelCase, tolerant of fields written by newer operators. The
    operator builds the status it writes with these models and reads statuses (its own, and
    a CacheCluster's from a ContentEdge's reconcile) back through them."""

    model_config = ConfigDict(alias_generator=camel, populate_by_name=True, extra="allow")

    def to_api(self) -> dict[str, Any]:
        """The JSON the status subresource stores (camelCase)."""
        return self.model_dump(by_alias=True, mode="json")


_SUFFIX = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
}


def parse_quantity(value: str) -> int:
    """Bytes in a Kubernetes quantity (binary and decimal suffixes); raises ValueError."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?", value)
    if not match:
        raise ValueError(f"{value!r} is not a quantity such as 512Mi or 4Gi")
    number, suffix = match.groups()
    return int(float(number) * _SUFFIX[suffix or ""])


ResourceQuantity = Annotated[
    str,
    Field(pattern=r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$"),
]


class ResourceRequirements(ApiModel):
    """CPU and memory for a container, as in a Pod spec."""

    requests: dict[str, ResourceQuantity] = Field(
        default_factory=dict, description="Minimum resources, e.g. {cpu: 500m, memory: 2Gi}."
    )
    limits: dict[str, ResourceQuantity] = Field(
        default_factory=dict, description="Maximum resources, e.g. {memory: 2Gi}."
    )


class Condition(StatusModel):
    """A standard Kubernetes condition."""

    type: str
    status: str
    reason: str = ""
    message: str = ""
    last_transition_time: str | None = None
    observed_generation: int | None = None

    @property
    def true(self) -> bool:
        return self.status == "True"


def find_condition(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def camel_path(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a field path users recognise: spec.regions[0].name."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def free_object(description: str) -> Any:
    """A field holding an arbitrary Kubernetes object (for example an Affinity)."""
    return Field(
        default=None,
        description=description,
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


def free_object_list(description: str) -> Any:
    """A list of arbitrary Kubernetes objects (for example Tolerations)."""
    return Field(
        default_factory=list,
        description=description,
        json_schema_extra={
            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        },
    )


class Placement(ApiModel):
    """Where pods may run: the scheduling fields of a Pod spec, plus the region rule."""

    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node labels the pods require."
    )
    tolerations: list[dict[str, Any]] = free_object_list("Pod tolerations, as in a Pod spec.")
    affinity: dict[str, Any] | None = free_object(
        "Pod affinity, as in a Pod spec. The region rule (regionAffinity) is added to its "
        "nodeAffinity; Aerospike pods also get one-pod-per-node anti-affinity unless this "
        "sets podAntiAffinity."
    )
    priority_class_name: DnsSubdomain | None = Field(
        default=None, description="PriorityClass of the pods."
    )
    topology_spread_constraints: list[dict[str, Any]] = free_object_list(
        "Topology spread constraints, as in a Pod spec (edges default to spreading over "
        "nodes)."
    )
    # No schema default: the apiserver would fill it into regions[].placement and so
    # override spec.placement's choice.
    region_affinity: Literal["Preferred", "Required", "Ignored"] | None = Field(
        default=None,
        description="Nodes whose topology.kubernetes.io/region is the pods' region: "
        "Preferred (the default: elsewhere only when none fits), Required, or Ignored.",
    )

    def overlay(self, other: Placement | None) -> Placement:
        """This placement with every field ``other`` sets explicitly taking precedence."""
        if other is None:
            return self
        return self.model_copy(update={f: getattr(other, f) for f in other.model_fields_set})


class LocalObjectReference(ApiModel):
    """A reference to an object in the same namespace, by name."""

    name: DnsSubdomain = Field(description="Name of the object.")


ImagePullPolicy = Literal["Always", "IfNotPresent", "Never"]


class ImagePull(ApiModel):
    """Mixin fields: how the pods' images are pulled."""

    image_pull_policy: ImagePullPolicy | None = Field(
        default=None,
        description="imagePullPolicy of every container (default: Kubernetes' rule, "
        "IfNotPresent unless the tag is latest).",
    )
    image_pull_secrets: list[LocalObjectReference] = Field(
        default_factory=list,
        description="Secrets (kubernetes.io/dockerconfigjson) used to pull the images.",
    )


class NetworkPolicySpec(ApiModel):
    """NetworkPolicies rendered for an object (they need a CNI that enforces them)."""

    enabled: bool = Field(default=False, description="Render NetworkPolicies.")
    operator_namespace: DnsLabel = Field(
        default="aerocdn-system", description="Namespace the aerocdn operator runs in."
    )
    metrics_namespaces: list[DnsLabel] = Field(
        default_factory=list, max_length=20,
        description="Namespaces allowed to scrape /metrics (Prometheus).",
    )
