"""Feeds: which broker feeds of count changes this process listens to, and its gaps.

A channel's changes come on one feed: its subject's (services/events.py,
`subject_votes`), or every subject's (`ALL_VOTES`) for the dashboard. A feed is
listened to only while an open channel, or a subscribe under way, holds it; a
process that shows a dashboard listens to ALL_VOTES alone, since it carries every
subject. After a gap in delivery (a broker reconnect) `generation` moves on, so
that a store read begun before it is known to have maybe missed votes.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

from services.backends.store import Store
from services.events import ALL_VOTES, EventBus, Listener, subject_votes


class Feeds:
    def __init__(self, events: EventBus, store: Store, on_votes: Listener, on_gap: Callable[[], None]) -> None:
        self._events = events
        self._store = store
        self._on_votes = on_votes
        self._on_gap = on_gap
        self._holds: Counter[str] = Counter()
        """Per feed, the open channels and the subscribes under way that need it."""
        self._active: set[str] = set()
        """The feeds listened to at the broker."""
        self._syncing: asyncio.Future[None] | None = None
        """The sync under way, which every caller meanwhile awaits."""
        self.generation = 0
        """Bumped by every gap: a store read begun before one may miss its votes."""

    def start(self) -> None:
        self._events.listen_resync(self._gap)

    def _gap(self) -> None:
        self.generation += 1
        self._on_gap()

    async def feed_of(self, kind: str, number: int | None) -> str:
        """Where a channel's changes come from; a teacher's feed is its subject's."""
        if kind == "dashboard":
            return ALL_VOTES
        assert number is not None
        return subject_votes(number if kind == "subject" else (await self._store.get_teacher(number)).subject)

    def hold(self, feed: str) -> None:
        self._holds[feed] += 1

    def release(self, feed: str) -> None:
        self._holds[feed] -= 1
        if self._holds[feed] <= 0:
            del self._holds[feed]

    async def sync(self) -> None:
        """Listen to the feeds held, and to nothing else: when it returns, every feed held at the
        call is active. One sync runs at a time, until nothing is left to do, and every caller
        meanwhile awaits that one: a storm of subscribes waits for one sync and wakes together,
        where a queue on a lock would wake them one per turn of the loop."""
        while self._wanted() != self._active:
            if self._syncing is None:
                self._syncing = asyncio.ensure_future(self._apply())
            await asyncio.shield(self._syncing)

    def _wanted(self) -> set[str]:
        return {ALL_VOTES} if ALL_VOTES in self._holds else set(self._holds)

    async def _apply(self) -> None:
        """A new feed is active before an old one is dropped, so a switch loses nothing;
        duplicates meanwhile are dropped by version."""
        try:
            while True:
                wanted = self._wanted()
                added, dropped = wanted - self._active, self._active - wanted
                if not added and not dropped:
                    return
                await asyncio.gather(*(self._events.listen(feed, self._on_votes) for feed in added))
                self._active |= added
                for feed in dropped:
                    self._active.discard(feed)
                    await self._events.unlisten(feed, self._on_votes)
        finally:
            self._syncing = None
