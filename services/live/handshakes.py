"""HandshakeQueue: live connections are admitted a few at a time, in the order they came.

A reconnect storm brings thousands of handshakes within a second. Admitted all at once, each
turn of the event loop advanced every one of them by a step: turns of half a second and more,
every page waiting for every other, and /healthz and the live sockets' updates waiting behind
them all. Here at most `ws.max_handshakes` are between their token check and their `welcome`
at once; the rest wait their turn (a request head read and parsed, nothing more), first come,
first served, so each page is live as soon as its turn comes and the loop's turns stay short.
"""

from __future__ import annotations

import asyncio

from services.metrics import Metrics


class Turn:
    """One handshake's place among those admitted at once; ending it again does nothing."""

    __slots__ = ("_queue",)

    def __init__(self, queue: HandshakeQueue) -> None:
        self._queue: HandshakeQueue | None = queue

    def end(self) -> None:
        if self._queue is not None:
            self._queue.end()
            self._queue = None


class HandshakeQueue:
    def __init__(self, at_once: int, metrics: Metrics) -> None:
        self._slots = asyncio.Semaphore(at_once)
        self.waiting = 0
        metrics.handshakes_waiting.set_function(lambda: self.waiting)

    async def turn(self) -> Turn:
        """Once fewer than `at_once` handshakes are under way; asyncio's semaphore wakes its
        waiters in the order they came."""
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        return Turn(self)

    def end(self) -> None:
        self._slots.release()
