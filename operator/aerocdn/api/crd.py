"""Generate the CustomResourceDefinitions from the pydantic models.

The models are the single source of truth; ``crds/`` holds the output of ``aerocdn crds``
and a unit test fails when it is stale.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

from aerocdn.api import cachecluster, contentedge, contentpurge
from aerocdn.api.common import DNS_LABEL, GROUP, OBJECT_NAME_MAX, VERSION

_DROP = {"title", "examples"}


def _structural(schema: Any, defs: dict[str, Any]) -> Any:
    """Inline $refs, turn Optional into a plain type, drop what Kubernetes rejects."""
    if isinstance(schema, list):
        return [_structural(s, defs) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        target = defs[schema["$ref"].split("/")[-1]]
        merged = {**copy.deepcopy(target), **{k: v for k, v in schema.items() if k != "$ref"}}
        return _structural(merged, defs)
    if "anyOf" in schema:
        options = [o for o in schema["anyOf"] if o.get("type") != "null"]
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        if len(options) == 1:
            merged = {**options[0], **rest}
            if merged.get("default", 0) is None:
                merged.pop("default")
            return _structural(merged, defs)
        raise ValueError(f"cannot express anyOf {schema['anyOf']} structurally")
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DROP or key == "$defs":
            continue
        if key == "properties":
            out[key] = {name: _structural(sub, defs) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _structural(value, defs)
        elif key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            # JSON Schema 2020-12 numbers -> OpenAPI v3.0 booleans beside minimum/maximum.
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "additionalProperties" and value is False:
            continue  # structural schemas forbid it; the apiserver prunes unknown fields
        else:
            out[key] = value
    if out.get("default", 0) is None:
        out.pop("default")
    if out.get("x-kubernetes-preserve-unknown-fields"):
        out.pop("additionalProperties", None)
        if "type" not in out:
            out["type"] = "object"
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if out.get("type") == "object" and out.get("additionalProperties") is True:
        out.pop("additionalProperties")
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a model, camelCase, with descriptions."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    result: dict[str, Any] = _structural(raw, defs)
    # Defaults of nested objects are applied by pydantic; the apiserver needs no copy of them.
    _strip_object_defaults(result)
    return result


def _strip_object_defaults(schema: dict[str, Any]) -> None:
    if schema.get("type") in ("object", "array") and isinstance(schema.get("default"), dict | list):
        schema.pop("default")
    for sub in schema.get("properties", {}).values():
        _strip_object_defaults(sub)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            _strip_object_defaults(schema[key])


def _status_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = openapi_schema(model)
    schema.pop("additionalProperties", None)
    schema["x-kubernetes-preserve-unknown-fields"] = True
    return schema


def _with_field_rules(schema: dict[str, Any], rules: dict[str, list[dict[str, str]]]) -> None:
    for field, field_rules in rules.items():
        schema["properties"][field]["x-kubernetes-validations"] = field_rules


def _crd(
    *,
    kind: str,
    plural: str,
    short: str,
    spec_model: type[BaseModel],
    status_model: type[BaseModel],
    cel: list[dict[str, str]],
    field_cel: dict[str, list[dict[str, str]]],
    columns: list[dict[str, Any]],
    description: str,
    scale: dict[str, str] | None = None,
    short_names: list[str] | None = None,
) -> dict[str, Any]:
    spec = openapi_schema(spec_model)
    if cel:
        spec["x-kubernetes-validations"] = cel
    _with_field_rules(spec, field_cel)
    subresources: dict[str, Any] = {"status": {}}
    if scale:
        subresources["scale"] = scale
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "aerocdn"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short_names or [short],
                "categories": ["aerocdn"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "additionalPrinterColumns": columns,
                    "subresources": subresources,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": description,
                            "x-kubernetes-validations": [_NAME_RULE],
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": _status_schema(status_model),
                            },
                        }
                    },
                }
            ],
        },
    }


# metadata.name as parse_object checks it (CEL can read metadata.name at the root).
_NAME_RULE = {
    "rule": f"size(self.metadata.name) <= {OBJECT_NAME_MAX} && "
    f"self.metadata.name.matches('{DNS_LABEL}')",
    "message": f"metadata.name must be a DNS label of at most {OBJECT_NAME_MAX} characters "
    "(the operator appends suffixes to it for the children)",
}

_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
_PHASE = {"name": "Phase", "type": "string", "jsonPath": ".status.phase"}


def cachecluster_crd() -> dict[str, Any]:
    return _crd(
        kind=cachecluster.KIND,
        plural=cachecluster.PLURAL,
        short="cc",
        spec_model=cachecluster.CacheClusterSpec,
        status_model=cachecluster.CacheClusterStatus,
        cel=cachecluster.CEL_RULES,
        field_cel=cachecluster.FIELD_CEL_RULES,
        description="An Aerospike cluster in one region: the shared cache tier of CDN edges.",
        columns=[
            {"name": "Region", "type": "string", "jsonPath": ".spec.region"},
            {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
            {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
            _PHASE,
            {
                "name": "Probe",
                "type": "string",
                "jsonPath": ".status.probe",
                "priority": 1,
            },
            _AGE,
        ],
        scale={
            "specReplicasPath": ".spec.size",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    )


def contentedge_crd() -> dict[str, Any]:
    return _crd(
        kind=contentedge.KIND,
        plural=contentedge.PLURAL,
        short="ce",
        spec_model=contentedge.ContentEdgeSpec,
        status_model=contentedge.ContentEdgeStatus,
        cel=contentedge.CEL_RULES,
        field_cel=contentedge.FIELD_CEL_RULES,
        description="A CDN property (hosts, origin, cache policy) served by edges in regions.",
        columns=[
            {"name": "Hosts", "type": "string", "jsonPath": ".spec.hosts[0]"},
            {"name": "Regions", "type": "string", "jsonPath": ".status.ready"},
            _PHASE,
            {"name": "Origin", "type": "string", "jsonPath": ".spec.origin.url", "priority": 1},
            # spec.origins (several origins): their names, as kubectl shows a list
            {"name": "Origins", "type": "string", "jsonPath": ".spec.origins[*].name",
             "priority": 1},
            _AGE,
        ],
    )


def contentpurge_crd() -> dict[str, Any]:
    crd = _crd(
        kind=contentpurge.KIND,
        plural=contentpurge.PLURAL,
        short="cpurge",
        spec_model=contentpurge.ContentPurgeSpec,
        status_model=contentpurge.ContentPurgeStatus,
        cel=[*contentpurge.CEL_RULES, contentpurge.SPEC_IMMUTABLE],
        field_cel=contentpurge.FIELD_CEL_RULES,
        description="A purge of URLs or prefixes from every edge pod and cache tier of a "
        "ContentEdge, in every region; its status says which pods confirmed it.",
        columns=[
            {"name": "ContentEdge", "type": "string", "jsonPath": ".spec.contentEdgeRef.name"},
            {"name": "Confirmed", "type": "integer", "jsonPath": ".status.confirmed"},
            {"name": "Pods", "type": "integer", "jsonPath": ".status.pods"},
            _PHASE,
            _AGE,
        ],
    )
    return crd


def all_crds() -> dict[str, dict[str, Any]]:
    """File name -> CRD object."""
    return {
        f"{GROUP}_{cachecluster.PLURAL}.yaml": cachecluster_crd(),
        f"{GROUP}_{contentedge.PLURAL}.yaml": contentedge_crd(),
        f"{GROUP}_{contentpurge.PLURAL}.yaml": contentpurge_crd(),
    }
