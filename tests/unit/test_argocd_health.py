"""The Argo CD health check (manifests/argocd/health.lua), run by a real Lua interpreter on
CacheCluster and ContentEdge objects that the operator really produced.

The objects in tests/unit/data/argocd/ were captured from the operator running as its
ServiceAccount on the local control plane (the scenarios of tests/integration/test_operator.py);
tests/integration/test_install.py also runs the script on live objects."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml
from tests.conftest import REPO

ARGOCD = REPO / "manifests" / "argocd"
SCRIPT = ARGOCD / "health.lua"
DATA = Path(__file__).resolve().parent / "data" / "argocd"
KEYS = ("resource.customizations.health.aerocdn.dev_CacheCluster",
        "resource.customizations.health.aerocdn.dev_ContentEdge")


class Health(NamedTuple):
    status: str
    message: str


def lua_string(text: str) -> str:
    """A Lua 5.1-5.4 string literal: UTF-8 bytes, anything but printable ASCII as \\ddd."""
    return '"' + "".join(chr(b) if 32 <= b < 127 and chr(b) not in '"\\' else f"\\{b:03d}"
                         for b in text.encode()) + '"'


def lua_literal(value: Any) -> str:
    """A Lua expression for a JSON value, as Argo CD hands objects to its scripts (nil for
    null; arrays as sequences)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        assert math.isfinite(value)
        return repr(value)
    if isinstance(value, str):
        return lua_string(value)
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{lua_string(str(k))}] = {lua_literal(v)}"
                               for k, v in value.items() if v is not None) + "}"
    raise TypeError(f"not a JSON value: {value!r}")


# Argo CD runs health scripts in gopher-lua, a Lua 5.1: the script is run by a 5.1 as well as
# by the 5.4 that scripts/bootstrap.sh installs.
INTERPRETERS = ("lua5.4", "lua5.1")


def lua_interpreter(name: str = "lua5.4") -> str:
    found = shutil.which(name)
    if found:
        return found
    if name == "lua5.4":
        pytest.fail("no Lua interpreter: apt-get install -y lua5.4 (scripts/bootstrap.sh "
                    "installs it)", pytrace=False)
    pytest.skip(f"{name} is not installed (apt-get install -y {name}): the script is checked "
                "with lua5.4 only")


@pytest.fixture(params=INTERPRETERS)
def lua(request: pytest.FixtureRequest) -> str:
    return lua_interpreter(request.param)


def health(obj: dict[str, Any], lua: str | None = None) -> Health:
    """Run the health script with `obj` bound as Argo CD binds it; return its verdict."""
    program = (f"obj = {lua_literal(obj)}\n"
               f"local check = assert((loadstring or load)({lua_string(SCRIPT.read_text())}, "
               "'health.lua'))\n"
               "local hs = check()\n"
               "io.write(hs.status, '\\0', hs.message or '')\n")
    out = subprocess.run([lua or lua_interpreter(), "-"], input=program, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, f"the health script failed: {out.stderr}"
    status, message = out.stdout.split("\0", 1)
    return Health(status, message)


def captured(name: str) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text())
    return obj


def test_objects_reach_lua_unchanged(lua: str) -> None:
    text = 'tab\tquote" back\\slash — é newline\n'
    program = f"io.write({lua_string(text)})"
    out = subprocess.run([lua, "-"], input=program, capture_output=True, text=True, timeout=30)
    assert out.stdout == text


def test_the_argocd_cm_patch_carries_the_script_for_both_kinds() -> None:
    patch = yaml.safe_load((ARGOCD / "argocd-cm-patch.yaml").read_text())
    assert (patch["kind"], patch["metadata"]["name"]) == ("ConfigMap", "argocd-cm")
    assert sorted(patch["data"]) == sorted(KEYS)
    for key in KEYS:
        assert patch["data"][key] == SCRIPT.read_text(), f"{key} differs from health.lua"


@pytest.mark.parametrize("name", ["cachecluster-ready", "contentedge-ready"])
def test_ready_and_current_is_healthy(name: str, lua: str) -> None:
    obj = captured(name)
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    verdict = health(obj, lua)
    assert verdict.status == "Healthy"
    assert verdict.message.startswith(("ClusterReady: 2/2 Aerospike pods ready",
                                       "EdgesReady: 1/1 regions ready"))


@pytest.mark.parametrize("name", ["cachecluster-stale-generation",
                                  "contentedge-stale-generation"])
def test_status_of_an_older_generation_is_progressing(name: str, lua: str) -> None:
    obj = captured(name)
    generation, observed = obj["metadata"]["generation"], obj["status"]["observedGeneration"]
    assert observed < generation
    # the stale status still says Ready: the verdict must not trust it
    assert {c["type"]: c["status"] for c in obj["status"]["conditions"]}["Ready"] == "True"
    assert health(obj, lua) == Health(
        "Progressing", f"Waiting for the aerocdn operator to observe generation {generation} "
                       f"(status is of generation {observed})")


@pytest.mark.parametrize(("name", "message"), [
    ("cachecluster-rolling", "Reconciling: restarting pod roll-"),
    ("contentedge-progressing", "Reconciling: applying children and waiting for edges"),
])
def test_progressing_true_is_progressing(name: str, message: str, lua: str) -> None:
    obj = captured(name)
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    verdict = health(obj, lua)
    assert verdict.status == "Progressing"
    assert verdict.message.startswith(message)


def test_no_status_yet_is_progressing(lua: str) -> None:
    obj = captured("cachecluster-no-status")
    assert "status" not in obj
    assert health(obj, lua) == Health("Progressing",
                                 "Waiting for the aerocdn operator to report status")


def test_missing_cachecluster_is_degraded_and_says_what_to_do(lua: str) -> None:
    verdict = health(captured("contentedge-degraded-missing-cachecluster"), lua)
    assert verdict.status == "Degraded"
    assert verdict.message.startswith("CacheClusterMissing: ")
    assert "CacheCluster later, which does not exist" in verdict.message
    assert "create it, or set spec.regions[].cacheCluster" in verdict.message


def test_refused_change_is_degraded(lua: str) -> None:
    verdict = health(captured("cachecluster-degraded-change-refused"), lua)
    assert verdict.status == "Degraded"
    assert verdict.message.startswith("ChangeRefused: ")
    assert "shrinking volume data-data" in verdict.message


def test_paused_cachecluster_is_suspended(lua: str) -> None:
    obj = captured("cachecluster-paused")
    assert obj["status"]["phase"] == "Paused"
    assert health(obj, lua).status == "Suspended"


def test_degraded_wins_over_ready(lua: str) -> None:
    obj = captured("cachecluster-ready")
    for cond in obj["status"]["conditions"]:
        if cond["type"] == "Degraded":
            cond.update(status="True", reason="Problem", message="Aerospike cannot be asked")
    assert health(obj, lua) == Health("Degraded", "Problem: Aerospike cannot be asked")


def test_every_captured_object_gets_a_verdict_argo_cd_knows(lua: str) -> None:
    names = sorted(p.stem for p in DATA.glob("*.json"))
    assert len(names) >= 10
    for name in names:
        verdict = health(captured(name), lua)
        assert verdict.status in {"Healthy", "Progressing", "Degraded", "Suspended"}, name
        assert verdict.message, name


def test_the_component_adds_both_checks_to_an_argocd_install(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not on PATH: cannot run kustomize")
    (tmp_path / "argocd-cm.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "argocd-cm", "namespace": "argocd"},
        "data": {"url": "https://argocd.example.com"}}))
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": ["argocd-cm.yaml"], "components": [os.path.relpath(ARGOCD, tmp_path)]}))
    out = subprocess.run([kubectl, "kustomize", "--load-restrictor", "LoadRestrictionsNone",
                          str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    (cm,) = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert cm["data"]["url"] == "https://argocd.example.com"  # the rest of argocd-cm is kept
    for key in KEYS:
        assert cm["data"][key] == SCRIPT.read_text()
