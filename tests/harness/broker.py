"""A broker handler for tests: what a Broker delivers (messages, resyncs), kept for the test to await."""

from __future__ import annotations

import asyncio


class Recorder:
    """A BrokerHandler that queues what it receives."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self.resynced = asyncio.Event()

    def on_message(self, channel: str, data: bytes) -> None:
        self.messages.put_nowait((channel, data))

    def on_resync(self) -> None:
        self.resynced.set()

    async def next(self, timeout: float = 5.0) -> tuple[str, bytes]:
        """The next (channel, data) delivered, within `timeout` seconds."""
        return await asyncio.wait_for(self.messages.get(), timeout)
