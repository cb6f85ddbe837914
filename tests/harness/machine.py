"""What a Hypothesis state machine over live servers keeps from example to example."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

from tests.harness.redis_server import RedisServer
from tests.harness.strategies import examples

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

    async def start(self) -> None:
        """The servers every example of the machine shares."""

    async def stop(self) -> None:
        """Whatever `start` started."""

    def run_machine(self, machine_for: Callable[[Any], type[RuleBasedStateMachine]], budget: float, steps: int) -> None:
        """Start, run the machine `machine_for(self)` makes (once started: it may read what start
        made) for `examples(budget)` examples of up to `steps` steps, then stop (whatever the
        machine found) and close the loop."""
        self.run(self.start())
        try:
            machine = machine_for(self)
            run_state_machine_as_test(machine, settings=settings(examples(budget), stateful_step_count=steps))
        finally:
            with contextlib.suppress(Exception):
                self.run(self.stop())
            self.loop.close()
