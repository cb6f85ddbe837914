"""The Broker port: publish and subscribe across processes.

Incoming messages go up through the BrokerHandler given to `start`, never
through an import. Two implementations: LocalBroker (embedded mode, here) and
RedisBroker (scaled mode). A broker delivers at most once: after a gap (a lost
connection) it calls `on_resync`, and the handler must re-send state, since
whatever was published during the gap is gone.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Protocol


class BrokerHandler(Protocol):
    def on_message(self, channel: str, data: bytes) -> None: ...

    def on_resync(self) -> None: ...


class Broker(ABC):
    @abstractmethod
    async def start(self, handler: BrokerHandler) -> None:
        """Returns after the first connection attempt, connected or not: a broker that is down
        keeps retrying in the background and calls on_resync once through."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def publish(self, channel: str, data: bytes) -> None:
        """Raises when the message could not be handed to the broker."""

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """(channel, data) pairs, all at once; raises when any could not be handed over."""
        await asyncio.gather(*(self.publish(channel, data) for channel, data in messages))

    @abstractmethod
    async def subscribe(self, channel: str) -> None:
        """Returns once the subscription is active, so that state read afterwards misses no
        message; while disconnected it records the wish, and on_resync follows the reconnect."""

    @abstractmethod
    async def unsubscribe(self, channel: str) -> None: ...

    @abstractmethod
    async def ping(self) -> None:
        """Raise if the broker cannot be reached right now."""


class LocalBroker(Broker):
    """One process: a message reaches this process's handler on the next loop turn."""

    def __init__(self) -> None:
        self._handler: BrokerHandler | None = None
        self._channels: set[str] = set()

    async def start(self, handler: BrokerHandler) -> None:
        self._handler = handler

    async def close(self) -> None:
        self._handler = None
        self._channels.clear()

    async def publish(self, channel: str, data: bytes) -> None:
        if self._handler is not None and channel in self._channels:
            asyncio.get_running_loop().call_soon(self._handler.on_message, channel, data)

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        for channel, data in messages:
            await self.publish(channel, data)

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)

    async def ping(self) -> None:
        return None
