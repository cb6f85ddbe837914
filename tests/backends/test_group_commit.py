"""Group commit (services/backends/sqlite_db.py): writes that arrive together share a
transaction, yet each keeps the contract of a write of its own: all or nothing, its own
error, and an answer only once it is committed, which another connection can then read."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.backends.sqlite_db import SqliteDatabase
from services.backends.store_sqlite import SqliteStore
from services.errors import NotFound
from services.seed import seed_demo_data


class Refused(Exception):
    pass


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
