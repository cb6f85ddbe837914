"""Votes: the store's atomic cast/withdraw, then a "counts changed" event.

The store commits the vote and its counter change in one step before anything
is answered. The event is best effort: if the broker is down the vote still
stands, and subscribers converge from the snapshot they get on reconnect.
"""

from __future__ import annotations

import logging

import orjson

from services.backends.store import Store
from services.events import VOTES, EventBus
from services.metrics import Metrics
from services.models import Counts, VoteResult
from services.schemas import VoteRequest, parse

log = logging.getLogger("livevote.votes")


class VoteService:
    def __init__(self, store: Store, events: EventBus, metrics: Metrics) -> None:
        self._store = store
        self._events = events
        self._metrics = metrics

    async def cast(self, user_id: int, teacher: int, body: object) -> VoteResult:
        return await self.set(user_id, teacher, parse(VoteRequest, body).value)

    async def set(self, user_id: int, teacher: int, value: str | None) -> VoteResult:
        """Cast "good"/"bad", or withdraw with None; NotFound for an unknown teacher."""
        result = await self._store.set_vote(user_id, teacher, value)
        if result.changed:
            self._metrics.votes.inc()
            await self._announce(result.counts)
        return result

    async def get(self, user_id: int, teacher: int) -> VoteResult:
        return await self._store.get_vote(user_id, teacher)

    async def _announce(self, counts: Counts) -> None:
        try:
            await self._events.publish(VOTES, orjson.dumps(counts))
        except Exception:
            log.warning("could not publish the counts of teacher %d; subscribers will resync", counts.no)
