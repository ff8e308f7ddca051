"""`aerocdn render` and `aerocdn crds` as a user runs them: output, errors, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from tests.conftest import CRDS, EXAMPLES

from aerocdn.api.crd import all_crds
from aerocdn.yamlio import dump


def aerocdn(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aerocdn.cli", *args],
                          capture_output=True, text=True, timeout=120)


def test_render_examples_prints_every_child() -> None:
    result = aerocdn("render", "-f", str(EXAMPLES))
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("StatefulSet", "us-east") in names
    assert ("StatefulSet", "eu-west-r2") in names
    assert ("Deployment", "web-ap-south") in names
    assert result.stderr == ""


def test_bad_input_reports_every_problem_and_prints_nothing(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text((EXAMPLES / "cacheclusters.yaml").read_text())
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: aerocdn.dev/v1alpha1\nkind: CacheCluster\nmetadata: {name: x}\n"
        "spec: {region: eu, size: -2}\n---\n"
        "apiVersion: aerocdn.dev/v1alpha1\nkind: Gadget\nmetadata: {name: g}\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed\n")
    result = aerocdn("render", "-f", str(tmp_path))
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"error: {bad}: CacheCluster/x: spec.size: Input should be greater than or equal to 1 "
        "(got -2)",
        f"error: {bad}: Gadget/g: kind: unknown kind 'Gadget'; aerocdn knows CacheCluster, "
        "ContentEdge, ContentPurge",
        f"error: {broken}: document: invalid YAML: line 2, column 1: expected ',' or ']', "
        "but got '<stream end>'",
    ]
    assert "Traceback" not in result.stderr


def test_missing_file() -> None:
    result = aerocdn("render", "-f", "/nonexistent/x.yaml")
    assert result.returncode == 1
    assert result.stderr == "error: /nonexistent/x.yaml: file: no such file or directory\n"


def test_checked_in_crds_are_current() -> None:
    for name, crd in all_crds().items():
        path = CRDS / name
        assert path.is_file(), f"{path} missing: run `aerocdn crds --out crds`"
        assert path.read_text() == dump(crd), f"{path} is stale: run `aerocdn crds --out crds`"
    assert aerocdn("crds", "--out", str(CRDS), "--check").returncode == 0


def test_crds_check_detects_staleness(tmp_path: Path) -> None:
    assert aerocdn("crds", "--out", str(tmp_path)).returncode == 0
    victim = sorted(tmp_path.iterdir())[0]
    victim.write_text(victim.read_text().replace("Aerospike", "Aerospyke"))
    result = aerocdn("crds", "--out", str(tmp_path), "--check")
    assert result.returncode == 1 and "is stale" in result.stderr


def test_crds_are_structural_and_explainable() -> None:
    for crd in all_crds().values():
        (version,) = crd["spec"]["versions"]
        schema = version["schema"]["openAPIV3Schema"]
        text = dump(schema)
        for forbidden in ("$ref", "anyOf", "title:", "additionalProperties: false", "null"):
            assert forbidden not in text, forbidden
        spec = schema["properties"]["spec"]
        assert spec["description"]
        for prop in spec["properties"].values():
            assert prop.get("description"), prop
        assert version["subresources"]["status"] == {}
        assert crd["spec"]["names"]["categories"] == ["aerocdn"]
    cc = all_crds()["aerocdn.dev_cacheclusters.yaml"]
    assert cc["spec"]["versions"][0]["subresources"]["scale"]["specReplicasPath"] == ".spec.size"
