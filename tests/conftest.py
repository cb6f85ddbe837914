from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.redis_server import RedisServer
from tests.support import LiveServer, make_config

ServerFactory = Callable[..., Awaitable[LiveServer]]


@pytest.fixture
async def start_server(tmp_path: Path) -> AsyncIterator[ServerFactory]:
    """Start the real app; keyword arguments are config overrides (`server__dev=False`)."""
    started: list[LiveServer] = []

    async def start(data_dir: Path | None = None, **overrides: Any) -> LiveServer:
        server = await LiveServer(make_config(data_dir or tmp_path / "data", **overrides)).start()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        await server.stop()


@pytest.fixture
async def api(start_server: ServerFactory) -> LiveServer:
    """A seeded --dev server: catalog writes are allowed."""
    return await start_server()


@pytest.fixture
async def locked_api(start_server: ServerFactory) -> LiveServer:
    """A seeded server without --dev: catalog writes are refused."""
    return await start_server(server__dev=False)


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A fresh redis-server of our own on a free port, stopped by its pid afterwards."""
    server = await RedisServer(tmp_path / "redis").start()
    yield server
    await server.stop()
