"""tini is PID 1 of every aerocdn container (issue 16.1).

The image's ENTRYPOINT is tini; a pod spec that sets `command` replaces the ENTRYPOINT, and the
program becomes PID 1 again, where the kernel drops SIGTERM until Python installs a handler.
So no container that runs the aerocdn image may set `command`: the operator of the chart and
of the kustomize base, nginx and `aerocdn edge` of every rendered edge pod. (The e2e tier shows
the consequence on a real node: tests/e2e/test_signals.py.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml
from tests.conftest import EXAMPLES, REPO

from aerocdn.cli import load_manifests
from aerocdn.render import render_all


def entrypoint(dockerfile: Path) -> list[str]:
    """The ENTRYPOINT of the Dockerfile's final stage (exec form)."""
    final = dockerfile.read_text().split("\nFROM ")[-1]
    (line,) = re.findall(r"^ENTRYPOINT (.*)$", final, re.MULTILINE)
    value: list[str] = json.loads(line)
    return value


def pod_containers(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for o in objects:
        template = o.get("spec", {}).get("template", {}).get("spec")
        if o.get("kind") in ("Deployment", "StatefulSet") and template:
            found += [(f"{o['kind']}/{o['metadata']['name']}", c)
                      for c in template.get("containers", []) + template.get("initContainers", [])]
    return found


def aerocdn_image(container: dict[str, Any]) -> bool:
    return "aerocdn" in container["image"].rsplit("/", 1)[-1].split(":")[0]


def test_the_image_runs_everything_under_tini() -> None:
    assert entrypoint(REPO / "Dockerfile") == ["/usr/bin/tini", "--"]
    assert "tini" in (REPO / "Dockerfile").read_text().split("\nFROM ")[-1].split("ENTRYPOINT")[0]


def test_no_aerocdn_container_replaces_the_entrypoint() -> None:
    with helm.Chart.load(str(REPO / "charts" / "aerocdn")) as chart:
        manifests = chart.render(None, name="aerocdn", namespace="aerocdn-system",
                                 is_install=True)
    chart_objects = [d for path, text in manifests.items() if path.endswith(".yaml")
                     for d in yaml.safe_load_all(text) if d]
    base = [d for d in yaml.safe_load_all((REPO / "manifests/base/deployment.yaml").read_text())
            if d]
    rendered = render_all(load_manifests([str(EXAMPLES)]))
    containers = [(where, c) for objects in (chart_objects, base, rendered)
                  for where, c in pod_containers(objects) if aerocdn_image(c)]
    names = {c["name"] for _, c in containers}
    # the operator (chart and base) and both containers of the edge pods are covered
    assert {"operator", "nginx", "edge"} <= names, names
    offenders = [f"{where}: {c['name']}" for where, c in containers if "command" in c]
    assert not offenders, f"these containers replace tini with `command`: {offenders}"
    assert all(c.get("args") for _, c in containers)
