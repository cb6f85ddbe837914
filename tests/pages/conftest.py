"""The page tests' fixtures, on the session's event loop: one Chromium for every page test, and servers
that can be restarted on their port (these override the root conftest's `start_server`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
from playwright.async_api import Browser, async_playwright

from tests.conftest import ServerFactory
from tests.harness.pages import launch_chromium
from tests.harness.server import LiveServer, make_config


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await launch_chromium(playwright)
        yield chromium
        await chromium.close()


@pytest_asyncio.fixture(loop_scope="session")
async def start_server(tmp_path: Path) -> AsyncIterator[ServerFactory]:
    started: list[LiveServer] = []

    async def start(**overrides: Any) -> LiveServer:
        server = await LiveServer(make_config(tmp_path / "data", **overrides)).start()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        await server.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def server(start_server: ServerFactory) -> LiveServer:
    return await start_server()
