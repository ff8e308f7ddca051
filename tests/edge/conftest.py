"""Fixtures for the edge tests: a counting origin, pods (``aerocdn edge`` + nginx), a client.
Everything listens on 127.0.0.1 and is stopped by the fixture that started it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.edge.edgeharness import (
    Origin,
    Pod,
    PodFactory,
    edge_config,
    nginx_missing,
    start_pod,
    stop_pod,
)

from aerocdn.edge.config import EdgeConfig


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    o = Origin()
    await o.start()
    yield o
    await o.stop()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as s:
        yield s


@pytest.fixture
async def pods(origin: Origin, tmp_path: Path) -> AsyncIterator[PodFactory]:
    started: list[Pod] = []
    count = 0

    async def factory(*, nginx: bool = True, cfg: EdgeConfig | None = None,
                      edge_kw: dict[str, Any] | None = None, **overrides: Any) -> Pod:
        """``overrides``: edge config fields; ``edge_kw``: arguments of ``Edge``."""
        nonlocal count
        if nginx and (why := nginx_missing()):
            pytest.skip(why)
        count += 1
        d = tmp_path / f"pod{count}"
        d.mkdir()
        if cfg is None:
            cfg = edge_config(origin.url, d, **overrides)
        pod = await start_pod(cfg, d, nginx=nginx, **(edge_kw or {}))
        started.append(pod)
        return pod

    yield factory
    for p in reversed(started):
        await stop_pod(p)
