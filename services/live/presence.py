"""Presence: how many sockets are open, and how many people watch each subject, across every process.

Every `interval` this process reports its own count (open sockets, people per
subject channel: a user, or a viewer token, once however many sockets it has)
through the Presence port and gets every process's back; the hub then tells
each subject channel, and the dashboard, when their figure changed (the
protocol's `watching` message). In scaled mode the figures are at most an
interval or two old on every process, and a person with sockets on two
processes counts on each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from services.backends.presence import Presence, PresenceCount
from services.cancellation import cancel_and_wait
from services.errors import Unavailable
from services.live.hub import Hub

log = logging.getLogger("livevote.presence")


class PresenceService:
    def __init__(self, presence: Presence, hub: Hub, interval: float) -> None:
        self._presence = presence
        self._hub = hub
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Reports once before returning: a process counts from its start, not an interval later."""
        with contextlib.suppress(Unavailable):
            await self.count()
        self._task = asyncio.create_task(self._report_forever())

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
        await self._presence.leave()

    async def count(self) -> PresenceCount:
        """Every process's count, this one's reported afresh; the hub shows it too."""
        count = await self._presence.report(self._hub.presence_count())
        self._hub.show_presence(count.by_subject)
        return count

    async def _report_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.count()
            except Unavailable as exc:
                log.warning("could not report who is watching: %s", exc.detail)
