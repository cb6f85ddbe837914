"""Processes sharing one PostgreSQL: a schema migrated once however many start at once, and
votes from many processes that keep every teacher's counts equal to its votes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest

from services.seed import SUBJECTS
from tests.harness.environment import server_env
from tests.harness.redis_server import RedisServer
from tests.harness.server import UserClient, sign_up
from tests.harness.server_process import ServerProcess
from tests.harness.voting import VALUES, Value, cast

PROCESSES = 3
VOTERS = 64
VOTES_EACH = 12
TEACHERS = (1, 2, 3)


@pytest.fixture
async def processes(postgres_url: str, redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[list[ServerProcess]]:
    """Three `python server.py`, each with its own (empty) data dir, started at once on an empty database."""
    env = server_env(**{"store.url": postgres_url, "redis.url": redis_server.url})
    started = [ServerProcess("--data-dir", f"{tmp_path}/host{i}", env=env) for i in range(PROCESSES)]
    await asyncio.gather(*(process.start() for process in started))
    yield started
    await asyncio.gather(*(process.stop() for process in started))


async def test_processes_starting_at_once_migrate_and_seed_once(
    processes: list[ServerProcess], postgres_url: str
) -> None:
    conn = await asyncpg.connect(postgres_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM schema_version") == 1
        seeded = await conn.fetchval("SELECT count(*) FROM subjects")
    finally:
        await conn.close()
    assert seeded == len(SUBJECTS), "one process seeded, the others found the store made"
    assert len((await processes[-1].get("/api/subjects/")).json()) == seeded


async def test_votes_from_three_processes_keep_counts_equal_to_the_votes(
    processes: list[ServerProcess], postgres_url: str
) -> None:
    users = await asyncio.gather(*(sign_up(processes[i % PROCESSES], f"voter{i}") for i in range(VOTERS)))
    changes = dict.fromkeys(TEACHERS, 0)

    async def switch(index: int, user: UserClient) -> None:
        """Each turn the voter sends both other values at once, through two processes (two tabs):
        both are changes whichever commits first, and the later one is what stands."""
        through = [replace(user, server=process) for process in processes]
        standing: dict[int, Value] = dict.fromkeys(TEACHERS)
        for step in range(VOTES_EACH):
            teacher = TEACHERS[(index + step) % len(TEACHERS)]
            others = [value for value in VALUES if value != standing[teacher]]
            replies = await asyncio.gather(*(
                cast(through[(step + tab) % PROCESSES], teacher, value) for tab, value in enumerate(others)
            ))
            assert all(acknowledged for acknowledged, _ in replies), [reply.body for _, reply in replies]
            latest = max((reply.json() for _, reply in replies), key=lambda body: body["version"])
            standing[teacher] = latest["value"]
            changes[teacher] += len(others)

    await asyncio.gather(*(switch(index, user) for index, user in enumerate(users)))

    conn = await asyncpg.connect(postgres_url)
    try:
        rows = await conn.fetch(
            "SELECT t.no, t.good_count, t.bad_count, t.version,"
            " count(v.value) FILTER (WHERE v.value = 'good') AS good,"
            " count(v.value) FILTER (WHERE v.value = 'bad') AS bad"
            " FROM teachers t LEFT JOIN votes v ON v.teacher = t.no WHERE t.no = ANY($1) GROUP BY t.no",
            list(TEACHERS),
        )
    finally:
        await conn.close()
    assert sum(changes.values()) == VOTERS * VOTES_EACH * 2
    for row in rows:
        assert (row["good_count"], row["bad_count"]) == (row["good"], row["bad"]), dict(row)
        assert row["version"] == changes[row["no"]], f"teacher {row['no']}: one version per change"
