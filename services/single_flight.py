"""SingleFlight: one read per key at a time, its answer shared by all who asked meanwhile.

A reconnect storm brings thousands of handshakes of the same session within a few loop
turns. Each needs the session and the user, which a process remembers for a second; once
that memory lapses, every handshake in the turn read the store again, and the reads queued
behind each other. With a flight per key, the first handshake reads and the others await it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    def __init__(self) -> None:
        self._flights: dict[K, asyncio.Future[V]] = {}

    async def run(self, key: K, read: Callable[[], Awaitable[V]]) -> V:
        """The answer of the read of `key` under way, or of a new one. A caller that is
        cancelled leaves the read running for the others."""
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.ensure_future(read())
            self._flights[key] = flight
            flight.add_done_callback(lambda done: self._land(key, done))
        return await asyncio.shield(flight)

    def _land(self, key: K, done: asyncio.Future[V]) -> None:
        del self._flights[key]
        if not done.cancelled():
            done.exception()  # retrieved: its waiters may all have gone
