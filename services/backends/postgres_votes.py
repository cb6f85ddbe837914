"""Group commit for votes on PostgreSQL: votes that arrive while a batch is on its way go
together in the next one, one statement and one transaction for all of them.

A vote alone costs a round trip, a pool checkout and PostgreSQL's per-statement and
per-commit work; in a batch of 16 the server spends about a seventh of that per vote
(bench/pgbatch.py). An idle server still sends each vote at once, through set_vote; a busy
one sends what queued meanwhile through set_votes. Each vote is answered after the commit of
its batch, as one sent alone would be. The votes of a batch go in teacher order, so two
batches (from two processes) lock teachers in the same order and never deadlock; votes on
one teacher keep their arrival order. A batch that fails on one vote (a user deleted since
they logged in) is sent again vote by vote, so that only that vote fails.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import asyncpg

from services.backends.postgres_db import PostgresDatabase
from services.errors import Unavailable
from services.models import VoteValue

MAX_BATCH = 256
"""Votes in one statement at most: a batch stays short, and so do the row locks it holds."""

ONE = "SELECT * FROM set_vote($1, $2, $3)"
MANY = "SELECT * FROM set_votes($1, $2, $3)"


@dataclass
class _Vote:
    user: int
    teacher: int
    value: VoteValue | None
    answer: asyncio.Future[asyncpg.Record | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def settle(self, row: asyncpg.Record | None = None, error: BaseException | None = None) -> None:
        if self.answer.done():  # the caller went away; the vote stands all the same
            return
        if error is None:
            self.answer.set_result(row)
        else:
            self.answer.set_exception(error)


class VoteBatches:
    def __init__(self, database: PostgresDatabase) -> None:
        self._db = database
        self._waiting: list[_Vote] = []
        self._sender: asyncio.Task[None] | None = None

    async def set_vote(self, user: int, teacher: int, value: VoteValue | None) -> asyncpg.Record | None:
        """The row of set_vote once committed; None for an unknown teacher. ForeignKeyViolationError
        for an unknown user."""
        vote = _Vote(user, teacher, value)
        self._waiting.append(vote)
        if self._sender is None:
            self._sender = asyncio.ensure_future(self._send_waiting())
        return await vote.answer

    async def close(self) -> None:
        if self._sender is not None:
            await self._sender

    async def _send_waiting(self) -> None:
        """Batch after batch while votes wait. When the database did not answer one (an outage),
        the votes queued behind it fail with it at once: they would wait as long again, and their
        callers are better told to retry (503) within one statement_timeout."""
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                if len(batch) == 1:
                    outage = await self._send_one(batch[0])
                else:
                    outage = await self._send(sorted(batch, key=lambda vote: vote.teacher))
                if outage is not None:
                    queued, self._waiting = self._waiting, []
                    for vote in queued:
                        vote.settle(error=outage)
        finally:
            self._sender = None

    async def _send(self, batch: list[_Vote]) -> Unavailable | None:
        try:
            rows = await self._db.fetch(
                MANY, [vote.user for vote in batch], [vote.teacher for vote in batch], [vote.value for vote in batch]
            )
        except asyncpg.ForeignKeyViolationError:
            for index, vote in enumerate(batch):
                if (outage := await self._send_one(vote)) is not None:
                    for rest in batch[index + 1:]:
                        rest.settle(error=outage)
                    return outage
            return None
        except Exception as exc:
            for vote in batch:
                vote.settle(error=exc)
            return exc if isinstance(exc, Unavailable) else None
        for vote, row in zip(batch, rows, strict=True):
            vote.settle(row if row["no"] is not None else None)
        return None

    async def _send_one(self, vote: _Vote) -> Unavailable | None:
        try:
            vote.settle(await self._db.fetchrow(ONE, vote.user, vote.teacher, vote.value))
        except Exception as exc:
            vote.settle(error=exc)
            return exc if isinstance(exc, Unavailable) else None
        return None
