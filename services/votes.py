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
from dataclasses import dataclass

import orjson

from services.backends.store import Store
from services.cancellation import cancel_and_wait
from services.events import ALL_VOTES, PUBLISH_RETRY_DELAYS, EventBus, subject_votes
from services.metrics import Metrics
from services.models import Counts, VoteResult, VoteValue
from services.schemas import VoteRequest, parse

log = logging.getLogger("livevote.votes")

PUBLISH_PATIENCE = 0.5
"""How long one batch of counts may take to publish. Past this (a Redis Cluster failing over
retries for seconds) its teachers are republished from the store, and the next batch goes."""


@dataclass(frozen=True, slots=True)
class Change:
    """A teacher's counts after a vote, and who voted: cast (a vote now) or withdrew."""

    counts: Counts
    voter: int
    cast: bool

    def encode(self) -> bytes:
        counts = self.counts
        return orjson.dumps({
            "no": counts.no, "subject": counts.subject, "good_count": counts.good_count,
            "bad_count": counts.bad_count, "version": counts.version, "voter": self.voter, "cast": self.cast,
        })


class VoteService:
    def __init__(self, store: Store, events: EventBus, metrics: Metrics) -> None:
        self._store = store
        self._events = events
        self._metrics = metrics
        self._outbox: list[Change] = []
        self._publishing: asyncio.Task[None] | None = None
        self._unannounced: dict[int, dict[int, bool]] = {}
        """Teachers whose counts could not be published, and per teacher the voters of those
        votes (whether each cast a vote or withdrew one): after_vote sight follows them."""
        self._republishing: asyncio.Task[None] | None = None

    async def cast(self, user_id: int, teacher: int, body: object) -> VoteResult:
        return await self.set(user_id, teacher, parse(VoteRequest, body).value)

    async def set(self, user_id: int, teacher: int, value: VoteValue | None) -> VoteResult:
        """Cast "good"/"bad", or withdraw with None; NotFound for an unknown teacher."""
        result = await self._store.set_vote(user_id, teacher, value)
        if result.changed:
            self._metrics.votes.inc()
            self._announce(Change(result.counts, user_id, value is not None))
        return result

    async def get(self, user_id: int, teacher: int) -> VoteResult:
        return await self._store.get_vote(user_id, teacher)

    async def close(self) -> None:
        """What is queued goes out first (shutdown bounds the wait)."""
        if self._publishing is not None:
            await self._publishing
        if self._republishing is not None:
            await cancel_and_wait(self._republishing)

    def _announce(self, change: Change) -> None:
        self._outbox.append(change)
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
                    for change in batch:
                        self._unannounced.setdefault(change.counts.no, {})[change.voter] = change.cast
                    log.warning("could not publish the counts of %d teacher(s) (%r); will publish them again",
                                len({change.counts.no for change in batch}), exc)
                    if self._republishing is None or self._republishing.done():
                        self._republishing = asyncio.ensure_future(self._republish())
        finally:
            self._publishing = None

    async def _publish(self, batch: list[Change]) -> None:
        """Each on its subject's feed and on the dashboards' feed."""
        messages = []
        for change in batch:
            data = change.encode()
            messages += [(subject_votes(change.counts.subject), data), (ALL_VOTES, data)]
        await self._events.publish_many(messages)

    async def _republish(self) -> None:
        attempt = 0
        while self._unannounced:
            await asyncio.sleep(PUBLISH_RETRY_DELAYS[min(attempt, len(PUBLISH_RETRY_DELAYS) - 1)])
            attempt += 1
            teachers, self._unannounced = self._unannounced, {}
            try:
                latest = [counts for counts in await self._store.counts() if counts.no in teachers]
                await self._publish([
                    Change(counts, voter, cast) for counts in latest for voter, cast in teachers[counts.no].items()
                ])
            except Exception as exc:
                log.warning("publishing %d teacher(s) again failed (%s); retrying", len(teachers), exc)
                for no, voters in teachers.items():
                    self._unannounced[no] = {**voters, **self._unannounced.get(no, {})}
            else:
                log.info("published the latest counts again after a broker failure")
