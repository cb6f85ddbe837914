"""Votes: the store's atomic cast/withdraw, then a "counts changed" event.

The store commits the vote and its counter change in one step before anything
is answered; the vote stands whatever happens to the event. The answer does
not wait for the event either: counts changed by votes answered together are
queued and published together by one background task (one Redis pipeline),
in the order the votes were stored, and each subscriber gets them after the
voter's answer, as before.

An event that cannot be published is not lost for good: the teacher is
remembered, and a background task publishes its latest counts from the store,
with capped backoff, until the broker takes them. Counts are state, so the
latest counts stand in for every change that could not be sent, and
subscribers converge even when only the publishing side failed (their
subscription stayed up and saw no gap to resync from).
"""

from __future__ import annotations

import asyncio
import logging

import orjson

from services.backends.store import Store
from services.events import ALL_VOTES, PUBLISH_RETRY_DELAYS, EventBus, subject_votes
from services.metrics import Metrics
from services.models import Counts, VoteResult, VoteValue
from services.schemas import VoteRequest, parse

log = logging.getLogger("livevote.votes")

PUBLISH_PATIENCE = 0.5
"""How long one batch of counts may take to publish. Past this (a Redis Cluster failing over
retries for seconds) its teachers are republished from the store, and the next batch goes."""


class VoteService:
    def __init__(self, store: Store, events: EventBus, metrics: Metrics) -> None:
        self._store = store
        self._events = events
        self._metrics = metrics
        self._outbox: list[Counts] = []
        self._publishing: asyncio.Task[None] | None = None
        self._unannounced: set[int] = set()
        self._republishing: asyncio.Task[None] | None = None

    async def cast(self, user_id: int, teacher: int, body: object) -> VoteResult:
        return await self.set(user_id, teacher, parse(VoteRequest, body).value)

    async def set(self, user_id: int, teacher: int, value: VoteValue | None) -> VoteResult:
        """Cast "good"/"bad", or withdraw with None; NotFound for an unknown teacher."""
        result = await self._store.set_vote(user_id, teacher, value)
        if result.changed:
            self._metrics.votes.inc()
            self._announce(result.counts)
        return result

    async def get(self, user_id: int, teacher: int) -> VoteResult:
        return await self._store.get_vote(user_id, teacher)

    async def close(self) -> None:
        """What is queued goes out first (shutdown bounds the wait)."""
        if self._publishing is not None:
            await self._publishing
        if self._republishing is not None:
            self._republishing.cancel()
            await asyncio.gather(self._republishing, return_exceptions=True)

    def _announce(self, counts: Counts) -> None:
        self._outbox.append(counts)
        if self._publishing is None:
            self._publishing = asyncio.ensure_future(self._publish_queued())

    async def _publish_queued(self) -> None:
        try:
            while self._outbox:
                batch, self._outbox = self._outbox, []
                try:
                    async with asyncio.timeout(PUBLISH_PATIENCE):
                        await self._publish(batch)
                except Exception as exc:
                    teachers = {counts.no for counts in batch}
                    log.warning("could not publish the counts of %d teacher(s) (%r); will publish them again",
                                len(teachers), exc)
                    self._unannounced |= teachers
                    if self._republishing is None or self._republishing.done():
                        self._republishing = asyncio.ensure_future(self._republish())
        finally:
            self._publishing = None

    async def _publish(self, batch: list[Counts]) -> None:
        """Each on its subject's feed and on the dashboards' feed."""
        messages = []
        for counts in batch:
            data = orjson.dumps(counts)
            messages += [(subject_votes(counts.subject), data), (ALL_VOTES, data)]
        await self._events.publish_many(messages)

    async def _republish(self) -> None:
        attempt = 0
        while self._unannounced:
            await asyncio.sleep(PUBLISH_RETRY_DELAYS[min(attempt, len(PUBLISH_RETRY_DELAYS) - 1)])
            attempt += 1
            teachers, self._unannounced = self._unannounced, set()
            try:
                await self._publish([counts for counts in await self._store.counts() if counts.no in teachers])
            except Exception as exc:
                log.warning("publishing %d teacher(s) again failed (%s); retrying", len(teachers), exc)
                self._unannounced |= teachers
            else:
                log.info("published the latest counts again after a broker failure")
