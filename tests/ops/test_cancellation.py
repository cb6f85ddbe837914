"""services/cancellation.py: a background task stopped while a Redis command is in flight ends,
however the cancellation meets the command; and so a scaled server's stop leaves no loop of
its own running, and closes everything within its deadline.

(On Python 3.11 a plain task.cancel() that came as redis-py's send completed was lost, and the
cancelled loop went on: a server stopped while its presence report was in flight waited out the
5 s deadline, its backends left unclosed.)
"""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from services.backends.redis_client import connect_redis
from services.cancellation import cancel_and_wait
from tests.conftest import ServerFactory
from tests.harness.redis_server import RedisServer

ROUNDS = 40


async def test_a_loop_of_redis_commands_ends_wherever_it_is_stopped(redis_server: RedisServer) -> None:
    client = await connect_redis(redis_server.url, cluster=False)
    commands = 0

    async def loop() -> None:
        nonlocal commands
        while True:
            await client.incr("commands")
            commands += 1

    try:
        for _ in range(ROUNDS):
            task = asyncio.ensure_future(loop())
            await asyncio.sleep(random.random() * 0.002)
            await cancel_and_wait(task)
            assert task.cancelled(), "stopped for good"
            stopped_at = commands
            await asyncio.sleep(0.01)
            assert commands == stopped_at, "nothing ran after the stop"
    finally:
        await client.aclose()
    assert commands > 0, "the loop did reach Redis"


async def test_cancel_and_wait_logs_what_a_task_failed_with(caplog: pytest.LogCaptureFixture) -> None:
    async def broken() -> None:
        raise ValueError("a bug")

    task = asyncio.ensure_future(broken())
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="livevote"):
        await cancel_and_wait(task)
    assert "failed before it was stopped" in caplog.text and "a bug" in caplog.text


async def test_a_scaled_server_stopped_mid_report_leaves_nothing_running(
    start_server: ServerFactory, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Presence reported every millisecond, so that each stop meets a report in flight."""
    for round_ in range(ROUNDS):
        server = await start_server(redis__url=redis_server.url, ws__watching_interval=0.001)
        await asyncio.sleep(random.random() * 0.05)
        with caplog.at_level(logging.WARNING, logger="livevote"):
            await server.stop()
        leftovers = [task for task in asyncio.all_tasks() if "_report_forever" in repr(task.get_coro())]
        assert leftovers == [], f"round {round_}: the presence loop outlived its server"
        assert "did not close" not in caplog.text, caplog.text
