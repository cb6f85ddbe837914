"""What batching votes buys on PostgreSQL: the store, which sends the votes that arrive together in
one statement (services/backends/postgres_votes.py), against fixed N votes per statement.

    python bench/pgbatch.py [--seconds 6] [--rounds 2] [--pool-sizes 4,10,20] [--batches 1,4,16]

This process (on the client's core) is the only client of a PostgreSQL started as
bench/ingest.py starts it (fsync on, on the server's core). One at a time: PostgresStore's
set_vote from 64 tasks (wrk's 64 connections) through a pool of each --pool-sizes; then, for
each --batches N, 4 tasks (4 pooled connections) each sending N votes at once to the schema's
set_votes function through the store's own pool (N = 1: one vote per round trip, as the store
sends a vote that finds nothing else queued). Every vote changes a stored vote (good, bad,
withdrawn in turn, as bench/wrk/votes.lua), and the counts are checked against the votes at the
end. The modes take turns in each round; each row is the median of the rounds. The store's
path costs the client more than livevote's REST path would add around it: this is the
database's side, not a server's.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import pin_client, report
from bench.ingest import MISMATCHED_TEACHERS, TEACHERS, USERS, BenchPostgres
from services.backends.postgres_db import Limits
from services.backends.store_postgres import PostgresStore
from services.models import VoteValue
from services.seed import seed_demo_data
from tests.harness.procfs import cpu_seconds

IN_FLIGHT = 64
BATCH_TASKS = 4
VALUES: tuple[VoteValue | None, ...] = ("good", "bad", None)
BATCH_SQL = "SELECT * FROM set_votes($1, $2, $3)"
"""N votes, one round trip, one transaction; the teachers in order, so two batches never deadlock."""
COLUMNS = ["mode", "votes/s", "postgres us/vote", "client us/vote", "votes/s ratio", "postgres cpu ratio", "rounds"]

Vote = tuple[int, int, VoteValue | None]


def votes() -> Iterator[Vote]:
    """(user, teacher, value) so that each changes a stored vote: users turn fastest, then teachers,
    and each pass moves every pair on in good, bad, withdrawn. A pair comes back only after
    USERS x TEACHERS votes, more than are ever in flight."""
    pairs = USERS * TEACHERS
    for step in itertools.count():
        pair = step % pairs
        yield pair % USERS + 1, pair // USERS + 1, VALUES[step // pairs % 3]


async def through_the_store(store: PostgresStore, cast: Iterator[Vote], seconds: float) -> int:
    done = 0
    end = time.monotonic() + seconds

    async def voter() -> None:
        nonlocal done
        while time.monotonic() < end:
            result = await store.set_vote(*next(cast))
            assert result.changed, result
            done += 1

    await asyncio.gather(*(voter() for _ in range(IN_FLIGHT)))
    return done


async def batched(store: PostgresStore, cast: Iterator[Vote], seconds: float, size: int) -> int:
    done = 0
    end = time.monotonic() + seconds

    async def sender() -> None:
        nonlocal done
        while time.monotonic() < end:
            batch = sorted((next(cast) for _ in range(size)), key=lambda vote: (vote[1], vote[0]))
            rows = await store.database.fetch(BATCH_SQL, *map(list, zip(*batch, strict=True)))
            assert len(rows) == size and all(row["changed"] for row in rows), rows
            done += size

    await asyncio.gather(*(sender() for _ in range(BATCH_TASKS)))
    return done


async def timed(postgres: BenchPostgres, run: Callable[[float], Awaitable[int]], seconds: float) -> dict[str, float]:
    """votes/s, and PostgreSQL's and this process's CPU per vote, over one run."""
    await run(1.0)  # the pool opens its connections first, outside the measurement
    before, client, started = postgres.cpu(), cpu_seconds(os.getpid()), time.monotonic()
    count = await run(seconds)
    elapsed = time.monotonic() - started
    spent = sum(after - before.get(pid, 0.0) for pid, after in postgres.cpu().items())
    return {"votes/s": count / elapsed, "postgres us/vote": 1e6 * spent / count,
            "client us/vote": 1e6 * (cpu_seconds(os.getpid()) - client) / count}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each measured run")
    parser.add_argument("--rounds", type=int, default=2, help="turns of every mode")
    parser.add_argument("--pool-sizes", default="4,10,20", help="store.pool_size of the store's runs")
    parser.add_argument("--batches", default="1,4,16", help="votes per statement of the batched runs")
    options = parser.parse_args()
    pool_sizes = [int(size) for size in options.pool_sizes.split(",")]
    batch_sizes = [int(size) for size in options.batches.split(",")]
    pin_client()
    postgres = await BenchPostgres().start()
    try:
        url = await postgres.database("pgbatch")
        setup = PostgresStore(url)
        await setup.open()
        await seed_demo_data(setup)
        for index in range(USERS):
            await setup.create_user(f"bench{index}", "not a hash: nobody signs in", "user")
        await setup.close()
        modes: dict[str, tuple[int, Callable[[PostgresStore, Iterator[Vote], float], Awaitable[int]]]] = {
            f"store, pool {size}": (size, through_the_store) for size in pool_sizes}
        for size in batch_sizes:
            modes[f"{size} per statement, pool {BATCH_TASKS}"] = (
                BATCH_TASKS, lambda store, cast, seconds, size=size: batched(store, cast, seconds, size))
        cast = votes()
        measured: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
        for _ in range(options.rounds):
            for mode, (pool_size, run) in modes.items():
                store = PostgresStore(url, Limits(pool_size=pool_size))
                await store.open()
                try:
                    measured[mode].append(await timed(
                        postgres, lambda seconds, store=store, run=run: run(store, cast, seconds), options.seconds))
                finally:
                    await store.close()
                print(mode, measured[mode][-1], flush=True)
        [mismatched] = await postgres.server.fetch(MISMATCHED_TEACHERS, database="pgbatch")
    finally:
        await postgres.server.destroy()
    if mismatched[0]:
        sys.exit(f"{mismatched[0]} teacher(s) whose counts differ from their votes")
    rows: list[dict[str, Any]] = [
        {"mode": mode, "rounds": len(runs), **{key: statistics.median(run[key] for run in runs) for key in runs[0]}}
        for mode, runs in measured.items()]
    base = next(row for row in rows if row["mode"] == f"store, pool {Limits().pool_size}") if (
        Limits().pool_size in pool_sizes) else rows[0]
    for row in rows:
        row["votes/s ratio"] = row["votes/s"] / base["votes/s"]
        row["postgres cpu ratio"] = row["postgres us/vote"] / base["postgres us/vote"]
    report("pgbatch", rows, COLUMNS, seconds=options.seconds, baseline=base["mode"], counts_ok=True)


if __name__ == "__main__":
    asyncio.run(main())
