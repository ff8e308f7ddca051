"""The strict jinja2 environment and helpers every renderer shares."""

from __future__ import annotations

import hashlib
import json
from functools import cache
from typing import Any

import jinja2
import yaml

from aerocdn.api.common import API_VERSION

# libyaml's loader: parsing rendered templates is most of a reconcile's CPU in pure Python.
SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MANAGER = "aerocdn"
PART_OF = "aerocdn"


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("aerocdn.render", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    # Values go into YAML templates as JSON scalars: JSON is valid YAML and quoting is exact.
    env.filters["tojson"] = lambda v: json.dumps(v, sort_keys=True)
    return env


def render_text(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def render_objects(template: str, **context: Any) -> list[dict[str, Any]]:
    """Render a YAML template and parse it back; every document must be a mapping."""
    text = render_text(template, **context)
    docs = [d for d in yaml.load_all(text, Loader=SAFE_LOADER) if d is not None]
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc:
            raise ValueError(f"template {template} produced a non-object document: {doc!r}")
    return docs


def config_hash(*parts: Any) -> str:
    """Stable hash of configuration that pods must roll for."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def labels(name: str, instance: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGER,
    }


def owner_references(kind: str, name: str, uid: str | None) -> list[dict[str, Any]]:
    if not uid:
        return []
    return [
        {
            "apiVersion": API_VERSION,
            "kind": kind,
            "name": name,
            "uid": uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def finish(objects: list[dict[str, Any]], owner: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Attach owner references and sort deterministically (kind order, then name)."""
    for obj in objects:
        if owner:
            obj["metadata"]["ownerReferences"] = owner
    return sorted(objects, key=lambda o: (_KIND_ORDER.get(o["kind"], 99), o["metadata"]["name"]))


_KIND_ORDER = {
    "Secret": 0,
    "ConfigMap": 1,
    "Service": 2,
    "StatefulSet": 3,
    "Deployment": 4,
    "PodDisruptionBudget": 5,
    "HorizontalPodAutoscaler": 6,
    "DNSEndpoint": 7,
}
