"""Fixtures of the in-process reconcile tests: the real Aerospike replies."""

from __future__ import annotations

import pytest
from tests.unit.aerospike.aerofixtures import Fixtures


@pytest.fixture(scope="session")
def fx() -> Fixtures:
    return Fixtures()
