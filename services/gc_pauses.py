"""Garbage-collection pauses: timed per generation (gc.callbacks), and kept short.

A collection runs inside whatever allocation triggered it, between two bytecodes of
the event loop: every socket's next frame waits behind it. A full collection walks
every tracked object the process holds, so its pause grows with the open sockets
(docs/performance.md, "Garbage collection at 10,000 sockets").
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any


class GcPauseTimer:
    """Calls `observe(generation, seconds)` after each collection of this process, while installed."""

    __slots__ = ("_observe", "_started")

    def __init__(self, observe: Callable[[int, float], None]) -> None:
        self._observe = observe
        self._started = 0.0

    def install(self) -> None:
        gc.callbacks.append(self._on_collection)

    def remove(self) -> None:
        if self._on_collection in gc.callbacks:
            gc.callbacks.remove(self._on_collection)

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._observe(info["generation"], time.perf_counter() - self._started)


FREEZE_EVERY = 0.25
"""Seconds between freezes. While 1,500 sockets a second connect, what a tick's collection walks
(what came since the last one) stays within a few milliseconds."""


class Freezer:
    """Freezes (gc.freeze) whatever has lived through a tick, after collecting the garbage there is.

    A full collection walks every object it has not been told to leave alone: with 10,000 open
    sockets that was 100-290 ms, a pause every socket's next frame waited behind. What lives
    through a tick is mostly what lives long (the services, the open sockets), so each tick
    collects, then freezes what is left; each collection, the ticks' and Python's own, walks
    only what came since. The first tick is at start: start-up is frozen before the first
    connection. A frozen object is still freed by reference counting once its last reference
    goes: a closed socket leaves no cycle (Peer.depart), so its objects go as before.
    """

    __slots__ = ("_every", "_timer")

    def __init__(self, every: float = FREEZE_EVERY) -> None:
        self._every = every
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._tick()

    def stop(self) -> None:
        """Gives the collector back everything frozen (start-up included)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        gc.unfreeze()

    def _tick(self) -> None:
        gc.collect()
        gc.freeze()
        self._timer = asyncio.get_running_loop().call_later(self._every, self._tick)
