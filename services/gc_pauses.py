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


class Freezer:
    """Freezes (gc.freeze) what lives through the young generations, instead of letting it join
    the oldest.

    A full collection walks every object not frozen: with 10,000 open sockets that was
    100-290 ms, a pause every socket's next frame waited behind. What survives two young
    collections is mostly what lives long (the services, the open sockets), so it is frozen
    the moment the middle generation's collection ends, and a full collection has next to
    nothing to walk. Start-up is frozen before the first connection. A frozen
    object is still freed by reference counting once its last reference goes, but never as
    part of a cycle: a closed connection leaves none (Peer.depart, tests/ops/test_gc_pauses.py).
    """

    __slots__ = ()

    def start(self) -> None:
        """The young generations are collected first; a full collection here found nothing to
        free and held back the first connection by ~17 ms (docs/performance.md, "Start-up")."""
        gc.collect(1)
        gc.freeze()
        gc.callbacks.append(self._on_collection)

    def stop(self) -> None:
        """Gives the collector back everything frozen (start-up included)."""
        if self._on_collection in gc.callbacks:
            gc.callbacks.remove(self._on_collection)
        gc.unfreeze()

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "stop" and info["generation"] == 1:
            gc.freeze()
