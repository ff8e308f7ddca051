"""The image installs the `aerocdn` distribution only: the dev harness (the local cluster,
`localcluster/aerocdn_localcluster`) and the tests stay out of it.

The Dockerfile's build stage copies some sources into /src and runs `pip install /src`; what
that installs is what setuptools finds (``[tool.setuptools.packages.find]`` of pyproject.toml)
in the copied tree.  Both are read here from the files themselves.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from setuptools import find_packages
from tests.conftest import REPO


def build_stage(dockerfile: Path) -> str:
    """The Dockerfile's first stage (where the venv is made)."""
    stages = re.split(r"^FROM ", dockerfile.read_text(), flags=re.MULTILINE)
    return stages[1]


def copied_sources(stage: str) -> dict[str, str]:
    """COPY (from the build context) in ``stage``: source path -> destination."""
    out: dict[str, str] = {}
    for line in re.findall(r"^COPY (.*)$", stage, re.MULTILINE):
        args = line.split()
        assert not any(a.startswith("--from") for a in args), line
        *sources, dest = args
        for s in sources:
            out[s.rstrip("/")] = dest
    return out


def installed_top_level_packages() -> set[str]:
    """Top-level packages `pip install /src` builds, from the tree the build stage copies."""
    stage = build_stage(REPO / "Dockerfile")
    assert re.search(r"pip install [^\n]*/src\b", stage), "the build stage installs /src"
    sources = copied_sources(stage)
    assert "pyproject.toml" in sources, "pyproject.toml is copied: it lists the packages"
    find = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]["find"]
    found: set[str] = set()
    for where in find.get("where", ["."]):
        # only what the Dockerfile copies exists in /src
        if not any(where == s or where.startswith(s + "/") for s in sources):
            continue
        packages = find_packages(where=str(REPO / where), include=find.get("include", ("*",)),
                                 exclude=find.get("exclude", ()))
        found |= {p.split(".")[0] for p in packages}
    return found


def test_the_image_installs_the_aerocdn_package_only() -> None:
    assert installed_top_level_packages() == {"aerocdn"}


def test_nothing_the_image_copies_holds_the_local_cluster_or_the_tests() -> None:
    sources = copied_sources(build_stage(REPO / "Dockerfile"))
    for src in sources:
        path = REPO / src
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for f in files:
            parts = f.relative_to(REPO).parts
            assert "aerocdn_localcluster" not in parts and parts[0] not in (
                "localcluster", "tests", "bench"), f"{f} would be in the image"


def test_the_local_cluster_is_its_own_distribution_in_the_dev_venv() -> None:
    dev = tomllib.loads((REPO / "localcluster" / "pyproject.toml").read_text())
    assert dev["project"]["name"] == "aerocdn-localcluster"
    assert (REPO / "localcluster" / "aerocdn_localcluster" / "__main__.py").is_file()
    bootstrap = (REPO / "scripts" / "bootstrap.sh").read_text()
    assert re.search(r"pip\" install [^\n]*-e \./localcluster", bootstrap)
