"""EventBus: this process's listeners per channel, over the Broker.

It is the broker's handler. A channel is subscribed at the broker only while
at least one local listener wants it, and each incoming message is handed to
every listener of its channel.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from services.backends.broker import Broker

log = logging.getLogger("livevote.events")

Listener = Callable[[str, bytes], None]
ResyncListener = Callable[[], None]

PUBLISH_RETRY_DELAYS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
"""Between attempts to publish what the broker refused (counts, revocations); the last repeats."""

CATALOG = "catalog"
"""Catalog changes: {"kind": "subject"|"teacher", "record": {...}} or {"kind": ..., "removed": no}."""

REVOKED = "revoked"
"""Channel of session revocations: {"sids": [...]}."""


ALL_VOTES = "votes:all"
"""Every teacher's count changes (Counts as JSON), for dashboards: a process listens here
only while it shows a dashboard, and then needs no subject feed besides."""


def subject_votes(subject: int) -> str:
    """The count changes of one subject's teachers. The braces are a Redis Cluster hash tag:
    a subject's feed lives on one shard, and subjects spread over all of them."""
    return f"votes:{{{subject}}}"


class EventBus:
    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._listeners: dict[str, list[Listener]] = {}
        self._subscribed: dict[str, asyncio.Future[None]] = {}
        self._resync_listeners: list[ResyncListener] = []

    async def start(self) -> None:
        await self._broker.start(self)

    async def close(self) -> None:
        await self._broker.close()

    async def publish(self, channel: str, data: bytes) -> None:
        await self._broker.publish(channel, data)

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        await self._broker.publish_many(messages)

    async def listen(self, channel: str, listener: Listener) -> None:
        """Returns once the channel is subscribed at the broker, also for a second listener
        that arrives while the first one's subscription is still on its way."""
        self._listeners.setdefault(channel, []).append(listener)
        if channel not in self._subscribed:
            self._subscribed[channel] = asyncio.ensure_future(self._broker.subscribe(channel))
        await asyncio.shield(self._subscribed[channel])

    async def unlisten(self, channel: str, listener: Listener) -> None:
        listeners = self._listeners.get(channel, [])
        if listener in listeners:
            listeners.remove(listener)
        if not listeners and self._listeners.pop(channel, None) is not None:
            self._subscribed.pop(channel, None)
            await self._broker.unsubscribe(channel)

    def listen_resync(self, listener: ResyncListener) -> None:
        """`listener` runs after any gap in delivery, to re-send state."""
        self._resync_listeners.append(listener)

    # -- BrokerHandler -------------------------------------------------------

    def on_message(self, channel: str, data: bytes) -> None:
        for listener in list(self._listeners.get(channel, ())):
            try:
                listener(channel, data)
            except Exception:
                log.exception("listener of %s failed", channel)

    def on_resync(self) -> None:
        for listener in list(self._resync_listeners):
            listener()
