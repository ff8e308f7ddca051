"""Shared test helpers: paths of the repository and of the shared fixtures."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "manifests" / "examples"
CRDS = REPO / "crds"
