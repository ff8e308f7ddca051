"""The e2e tier: aerocdn as installed in a real cluster (the Helm chart, the image), reached
through KUBECONFIG. `make kind-e2e` creates such a cluster with kind and runs this tier.

Without KUBECONFIG every test here is skipped, with the reason shown: there is no cluster to
test, and the integration tier already covers the operator against the local control plane.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SKIP_REASON = ("e2e needs a cluster with aerocdn installed: set KUBECONFIG "
               "(`make kind-e2e` creates a kind cluster, installs the chart and runs this tier)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = None if os.environ.get("KUBECONFIG") else pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)
            if skip is not None:
                item.add_marker(skip)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: needs a cluster with aerocdn installed (KUBECONFIG)")


@pytest.fixture(scope="session")
def e2e_kubeconfig() -> str:
    path = os.environ.get("KUBECONFIG")
    if not path:
        pytest.skip(SKIP_REASON)
    return path
