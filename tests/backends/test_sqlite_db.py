"""services/backends/sqlite_db.py: writes that arrive together share a transaction (group
commit), yet each keeps the contract of a write of its own: all or nothing, its own error, and
an answer only once it is committed, which another connection can then read. Reads that arrive
together share a trip to the database thread, yet each gets its own answer or its own error."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.backends.sqlite_db import SqliteDatabase
from services.backends.store_sqlite import SqliteStore
from services.errors import NotFound, Unavailable
from services.seed import seed_demo_data

T = TypeVar("T")


class Refused(Exception):
    pass


class CountedTrips(SqliteDatabase):
    """The real database, counting its trips to the database thread."""

    trips = 0

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        self.trips += 1
        return await super()._run(fn, *args)


def _put(conn: sqlite3.Connection, key: int, fail: bool) -> int:
    """Two statements, then perhaps a failure: a write undone alone leaves neither row."""
    conn.execute("INSERT INTO items (key, part) VALUES (?, 1)", (key,))
    conn.execute("INSERT INTO items (key, part) VALUES (?, 2)", (key,))
    if fail:
        raise Refused(key)
    return key


def _create(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE items (key INTEGER NOT NULL, part INTEGER NOT NULL)")


def _read_rows(path: Path) -> list[tuple[int, int]]:
    """Through a connection of its own: what is committed, nothing else."""
    with sqlite3.connect(path) as other:
        return sorted(other.execute("SELECT key, part FROM items").fetchall())


@given(rounds=st.lists(st.lists(st.booleans(), min_size=1, max_size=12), min_size=1, max_size=5))
async def test_writes_together_commit_as_if_alone(
    tmp_path_factory: pytest.TempPathFactory, rounds: list[list[bool]]
) -> None:
    path = tmp_path_factory.mktemp("group") / "g.db"
    database = SqliteDatabase(path)
    await database.open()
    await database.write(_create)
    committed: list[int] = []
    seen_at_answer: dict[int, bool] = {}

    async def put(key: int, fail: bool) -> None:
        try:
            assert await database.write(_put, key, fail) == key
        except Refused as exc:
            assert fail and exc.args == (key,), "a write fails with its own error only"
        else:
            assert not fail
            committed.append(key)
            seen_at_answer[key] = (key, 2) in await asyncio.to_thread(_read_rows, path)

    try:
        key, writes = 0, []
        for failures in rounds:  # each round's writes arrive at once; rounds overlap the previous commit
            for fail in failures:
                key += 1
                writes.append(asyncio.ensure_future(put(key, fail)))
            await asyncio.sleep(0)
        await asyncio.gather(*writes)
    finally:
        await database.close()
    assert _read_rows(path) == sorted((key, part) for key in committed for part in (1, 2))
    assert all(seen_at_answer.values()), f"answered before commit: {seen_at_answer}"


async def test_a_failed_vote_among_many_leaves_the_others(tmp_path: Path) -> None:
    """Through the store: one vote on a teacher that does not exist, among valid ones sent at once."""
    store = SqliteStore(tmp_path / "s.db")
    await store.open()
    try:
        await seed_demo_data(store)
        users = [(await store.create_user(f"voter{n}", "hash", "user")).id for n in range(8)]
        teachers = [t.no for t in (await store.list_teachers()).items][:4]
        votes = [store.set_vote(user, teacher, "good") for user in users for teacher in teachers]
        votes.insert(5, store.set_vote(users[0], 10**9, "bad"))
        results = await asyncio.gather(*votes, return_exceptions=True)
        assert [type(r) for r in results].count(NotFound) == 1
        assert sum(isinstance(r, Exception) for r in results) == 1
        for teacher in teachers:
            assert await store.tally_votes(teacher) == (len(users), 0)
            assert (await store.get_teacher(teacher)).good_count == len(users)
    finally:
        await store.close()


@pytest.fixture
async def items(tmp_path: Path) -> AsyncIterator[CountedTrips]:
    database = CountedTrips(tmp_path / "r.db")
    await database.open()
    await database.write(_create)
    yield database
    await database.close()


def _keys(conn: sqlite3.Connection, part: int) -> list[int]:
    return [key for (key,) in conn.execute("SELECT key FROM items WHERE part = ? ORDER BY key", (part,))]


def _unreadable(conn: sqlite3.Connection) -> None:
    conn.execute("SELECT * FROM no_such_table")


def _refuse(conn: sqlite3.Connection, key: int) -> None:
    raise Refused(key)


def _held(conn: sqlite3.Connection, entered: threading.Event, release: threading.Event) -> str:
    entered.set()
    assert release.wait(10), "the test never let the held read go"
    return "held"


@given(reads=st.lists(st.sampled_from(["part 1", "part 2", "unreadable", "refused"]), min_size=1, max_size=20))
async def test_reads_together_are_answered_as_if_alone(
    tmp_path_factory: pytest.TempPathFactory, reads: list[str]
) -> None:
    """Whatever fails among them fails alone, with its own error: a missing table is Unavailable
    (as any sqlite3.OperationalError), anything else is raised as it is."""
    database = SqliteDatabase(tmp_path_factory.mktemp("reads") / "r.db")
    await database.open()
    try:
        await database.write(_create)
        for key in (1, 2, 3):
            await database.write(_put, key, False)
        calls = {
            "part 1": lambda: database.read(_keys, 1),
            "part 2": lambda: database.read(_keys, 2),
            "unreadable": lambda: database.read(_unreadable),
            "refused": lambda: database.read(_refuse, 7),
        }
        answers = await asyncio.gather(*(calls[read]() for read in reads), return_exceptions=True)
    finally:
        await database.close()
    for read, answer in zip(reads, answers, strict=True):
        if read.startswith("part"):
            assert answer == [1, 2, 3], read
        elif read == "unreadable":
            assert isinstance(answer, Unavailable) and "no_such_table" in answer.detail
        else:
            assert isinstance(answer, Refused) and answer.args == (7,)


@given(ops=st.lists(st.sampled_from(["read", "write", "failing write"]), min_size=1, max_size=30))
async def test_a_read_sees_every_write_answered_before_it_was_asked(
    tmp_path_factory: pytest.TempPathFactory, ops: list[str]
) -> None:
    """Reads and writes queue apart, each group on its own trips: a read asked after a write was
    answered sees it, whatever else is in flight, and no read sees a write that failed."""
    database = SqliteDatabase(tmp_path_factory.mktemp("mixed") / "m.db")
    await database.open()
    await database.write(_create)
    answered: set[int] = set()
    failing = {key for key, op in enumerate(ops) if op == "failing write"}

    async def put(key: int) -> None:
        try:
            await database.write(_put, key, key in failing)
        except Refused:
            assert key in failing
        else:
            answered.add(key)

    async def read() -> None:
        asked_after = set(answered)
        seen = set(await database.read(_keys, 2))
        assert asked_after <= seen, f"answered before the read, not seen: {asked_after - seen}"
        assert not seen & failing

    try:
        calls = []
        for key, op in enumerate(ops):  # one a turn: each arrives while those before are in flight
            calls.append(asyncio.ensure_future(read() if op == "read" else put(key)))
            await asyncio.sleep(0)
        await asyncio.gather(*calls)
    finally:
        await database.close()


async def test_reads_that_arrive_while_the_thread_is_busy_take_one_trip(items: CountedTrips) -> None:
    """A reconnect storm's session and user reads: one thread switch for all that queued."""
    await items.write(_put, 1, False)
    entered, release = threading.Event(), threading.Event()
    held = asyncio.ensure_future(items.read(_held, entered, release))
    assert await asyncio.to_thread(entered.wait, 10)
    trips = items.trips
    waiting = [asyncio.ensure_future(items.read(_keys, part)) for part in (1, 2) * 20]
    await asyncio.sleep(0)
    release.set()
    assert await held == "held"
    assert await asyncio.gather(*waiting) == [[1]] * 40
    assert items.trips == trips + 1, "the 40 reads that queued went together"


async def test_a_read_given_up_on_leaves_the_others_answered(items: CountedTrips) -> None:
    await items.write(_put, 4, False)
    entered, release = threading.Event(), threading.Event()
    held = asyncio.ensure_future(items.read(_held, entered, release))
    assert await asyncio.to_thread(entered.wait, 10)
    given_up, kept = asyncio.ensure_future(items.read(_keys, 1)), asyncio.ensure_future(items.read(_keys, 2))
    await asyncio.sleep(0)
    given_up.cancel()
    release.set()
    assert await held == "held" and await kept == [4]
    assert given_up.cancelled()


async def test_close_waits_for_the_reads_under_way(tmp_path: Path) -> None:
    database = SqliteDatabase(tmp_path / "c.db")
    await database.open()
    await database.write(_create)
    reads = [asyncio.ensure_future(database.read(_keys, 1)) for _ in range(5)]
    await asyncio.sleep(0)
    await database.close()
    assert [read.result() for read in reads] == [[]] * 5
    with pytest.raises(RuntimeError, match="not open"):
        await database.read(_keys, 1)
