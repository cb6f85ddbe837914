"""asyncpg against psycopg 3 on the store's own vote: the measurement behind the PostgreSQL store's
choice of driver (services/backends/postgres_db.py).

    python -m bench.pg_drivers [--voters 16] [--seconds 5]

One throwaway PostgreSQL (tests/harness/postgres_server.py; fsync off, which takes the disk out of
the comparison) pinned to one core, this process to the other. For each driver, a pool of 10
connections in autocommit and --voters coroutines that switch their votes as fast as the pool
lets them, each vote one `SELECT * FROM set_vote(...)`, as PostgresStore sends it. Reported per
driver: votes/s, and this process's CPU per vote (the driver's share of what a livevote process
spends on a vote), then psycopg's figures as ratios of asyncpg's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

import asyncpg
from psycopg_pool import AsyncConnectionPool

from bench.common import CLIENT_CORE, SERVER_CORE, report
from services.backends.store_postgres import PostgresStore
from tests.harness.postgres_server import PostgresServer

POOL_SIZE = 10
VALUES = ("good", "bad", None)
Vote = Callable[[int, int, str | None], Awaitable[Any]]


async def prepare(url: str, voters: int) -> list[tuple[int, int]]:
    """The schema, and per voter a user and a teacher of its own (no row lock shared between voters:
    the drivers' cost, not the lock's), made through the store itself."""
    store = PostgresStore(url)
    await store.open()
    subject = await store.create_subject({"name": "S", "intro": "", "is_hot": False})
    pairs = []
    for i in range(voters):
        teacher = await store.create_teacher({"name": f"T{i}", "sex": True, "birth": date(1980, 1, 1),
                                              "photo": "", "intro": "", "subject": subject.no})
        pairs.append(((await store.create_user(f"voter{i}", "h", "user")).id, teacher.no))
    await store.close()
    return pairs


async def hammer(vote: Vote, pairs: list[tuple[int, int]], seconds: float) -> dict[str, float]:
    """Every voter switches its vote in turn until the time is up; votes/s and CPU µs per vote."""
    done = 0
    deadline = time.monotonic() + seconds

    async def voter(user: int, teacher: int) -> None:
        nonlocal done
        step = 0
        while time.monotonic() < deadline:
            await vote(user, teacher, VALUES[step % 3])
            step += 1
            done += 1

    cpu, wall = time.process_time(), time.monotonic()
    await asyncio.gather(*(voter(user, teacher) for user, teacher in pairs))
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    return {"votes_per_s": round(done / wall), "cpu_us_per_vote": round(1e6 * cpu / done, 1)}


async def with_asyncpg(url: str, pairs: list[tuple[int, int]], seconds: float) -> dict[str, float]:
    pool = await asyncpg.create_pool(url, min_size=POOL_SIZE, max_size=POOL_SIZE)

    async def vote(user: int, target: int, value: str | None) -> Any:
        async with pool.acquire() as conn:
            return await conn.fetchrow("SELECT * FROM set_vote($1, $2, $3)", user, target, value)

    try:
        return await hammer(vote, pairs, seconds)
    finally:
        await pool.close()


async def with_psycopg(url: str, pairs: list[tuple[int, int]], seconds: float) -> dict[str, float]:
    pool = AsyncConnectionPool(url, min_size=POOL_SIZE, max_size=POOL_SIZE, kwargs={"autocommit": True}, open=False)
    await pool.open(wait=True)

    async def vote(user: int, target: int, value: str | None) -> Any:
        async with pool.connection() as conn:
            cursor = await conn.execute("SELECT * FROM set_vote(%s, %s, %s)", (user, target, value))
            return await cursor.fetchone()

    try:
        return await hammer(vote, pairs, seconds)
    finally:
        await pool.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voters", type=int, default=16, help="coroutines voting at once")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each driver's run")
    args = parser.parse_args()
    server = await PostgresServer().start()
    try:
        postmaster = server.pid()
        assert postmaster is not None
        os.sched_setaffinity(postmaster, {int(CLIENT_CORE)})  # its backends inherit the core
        os.sched_setaffinity(0, {int(SERVER_CORE)})  # this process stands for livevote
        rows = []
        for name, run in (("asyncpg", with_asyncpg), ("psycopg", with_psycopg)):
            url = await server.create_database(f"drivers_{name}")
            rows.append({"driver": name, **await run(url, await prepare(url, args.voters), args.seconds)})
        base = rows[0]
        for row in rows:
            row["votes_ratio"] = round(row["votes_per_s"] / base["votes_per_s"], 2)
            row["cpu_ratio"] = round(row["cpu_us_per_vote"] / base["cpu_us_per_vote"], 2)
        report("pg_drivers", rows, ["driver", "votes_per_s", "cpu_us_per_vote", "votes_ratio", "cpu_ratio"],
               voters=args.voters, seconds=args.seconds, pool_size=POOL_SIZE)
    finally:
        await server.destroy()


if __name__ == "__main__":
    asyncio.run(main())
