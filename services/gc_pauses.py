"""Garbage-collection pauses: timed per generation (gc.callbacks), and kept short.

A collection runs inside whatever allocation triggered it, between two bytecodes of
the event loop: every socket's next frame waits behind it. A full collection walks
every tracked object the process holds, so its pause grows with the open sockets
(docs/performance.md, "Garbage collection at 10,000 sockets").
"""

from __future__ import annotations

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


def freeze_start_up() -> None:
    """Everything built before the first connection (modules, classes, schemas, the services)
    lives as long as the process: frozen (gc.freeze), no collection walks it again, about
    78,000 objects fewer in every full collection. Its garbage is collected first. Only at
    start-up: a socket frozen later would keep its cyclic garbage for good once closed."""
    gc.collect()
    gc.freeze()
