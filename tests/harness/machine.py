"""What a Hypothesis state machine over live servers keeps from example to example."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from tests.harness.redis_server import RedisServer

T = TypeVar("T")


class MachineHarness:
    """Its own event loop (Hypothesis runs the rules one after another, outside any loop), the
    run's folder and mode, and the Redis server of the modes that have one."""

    def __init__(self, tmp_path: Path, mode: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.tmp_path = tmp_path
        self.mode = mode
        self.redis: RedisServer | None = None

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)
