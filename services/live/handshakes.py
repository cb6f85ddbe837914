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


class HandshakeQueue:
    def __init__(self, at_once: int, metrics: Metrics) -> None:
        self._at_once = at_once
        self._slots = asyncio.Semaphore(at_once)
        self.waiting = 0
        metrics.handshakes_waiting.set_function(lambda: self.waiting)

    async def wait_turn(self) -> None:
        """Until fewer than `at_once` handshakes are under way; asyncio's semaphore wakes its
        waiters in the order they came. Each turn is ended once, by `end_turn`."""
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1

    def backed_up(self) -> bool:
        """As many waiting as are under way: taking more connections now would only lengthen
        the loop's turns (their heads read and parsed) and keep them waiting here."""
        return self.waiting >= self._at_once

    def end_turn(self) -> None:
        self._slots.release()
