"""Fixtures for the Aerospike unit tests: the real replies in ./fixtures."""

from __future__ import annotations

import pytest
from tests.unit.aerospike.aerofixtures import Fixtures


@pytest.fixture(scope="session")
def fx() -> Fixtures:
    return Fixtures()
