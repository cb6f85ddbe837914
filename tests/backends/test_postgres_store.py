"""What the PostgreSQL store does beyond the contract: votes that arrive together go in one
statement, and a vote that fails there fails alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from services.backends.store_postgres import PostgresStore
from services.errors import NotFound
from tests.harness.postgres_server import POSTGRES
from tests.harness.server import wait_for
from tests.harness.stores import teacher_fields


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[PostgresStore]:
    database = postgres_url.rsplit("/", 1)[1]
    await POSTGRES.server().execute(f"ALTER DATABASE \"{database}\" SET track_functions = 'all'")
    instance = PostgresStore(postgres_url)
    await instance.open()
    yield instance
    await instance.close()


async def function_calls(store: PostgresStore) -> dict[str, int]:
    rows = await store.database.fetch("SELECT funcname, calls FROM pg_stat_user_functions")
    return {row["funcname"]: row["calls"] for row in rows}


async def test_votes_cast_together_go_in_batches_and_a_failing_one_fails_alone(store: PostgresStore) -> None:
    subject = await store.create_subject({"name": "S", "intro": "", "is_hot": False})
    teachers = [await store.create_teacher(teacher_fields(subject.no, f"t{i}")) for i in range(3)]
    users = [await store.create_user(f"voter{i}", "h", "user") for i in range(30)]
    together = [store.set_vote(user.id, teacher.no, "good") for user in users for teacher in teachers]
    assert all(result.changed for result in await asyncio.gather(*together))
    nobody, again = await asyncio.gather(
        store.set_vote(10**9, teachers[0].no, "bad"), store.set_vote(users[0].id, teachers[0].no, "bad"),
        return_exceptions=True,
    )
    assert isinstance(nobody, NotFound), nobody
    assert not isinstance(again, BaseException) and again.changed and again.value == "bad"
    counts = {c.no: (c.good_count, c.bad_count, c.version) for c in await store.counts(subject.no)}
    assert counts == {teachers[0].no: (29, 1, 31), teachers[1].no: (30, 0, 30), teachers[2].no: (30, 0, 30)}

    async def reported() -> bool:  # the server counts calls once the backend has reported them
        return (await function_calls(store)).get("set_vote", 0) >= len(together) + 1

    await wait_for(reported, timeout=10)
    assert 1 <= (await function_calls(store)).get("set_votes", 0) <= 2, "the votes cast together went together"
