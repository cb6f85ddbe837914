"""What the PostgreSQL store does beyond the contract: votes that arrive together go in one
statement, and a vote that fails there fails alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


VOTE = st.tuples(st.integers(0, 5), st.integers(0, 3), st.sampled_from(["good", "bad", None]))
"""(user, teacher, value) by index: user 5 and teacher 3 do not exist."""


@given(waves=st.lists(st.lists(VOTE, min_size=1, max_size=24), min_size=1, max_size=4))
async def test_any_mix_of_votes_cast_together_answers_each_alone_and_counts_hold(
    store: PostgresStore, waves: list[list[tuple[int, int, str | None]]]
) -> None:
    """Batches whatever they hold: repeated pairs, unknown users and teachers among good votes.
    Each vote gets its own answer, and the counts and versions follow the answered changes."""
    subjects = (await store.list_subjects()).items
    if not subjects:  # the first example of the run sets the catalog up; the others vote on
        subject = await store.create_subject({"name": "S", "intro": "", "is_hot": False})
        for i in range(3):
            await store.create_teacher(teacher_fields(subject.no, f"t{i}"))
        for i in range(5):
            await store.create_user(f"voter{i}", "h", "user")
    teachers = [t.no for t in (await store.list_teachers()).items] + [10**9]
    users = [(await store.find_credentials(f"voter{i}")).user.id for i in range(5)] + [10**9]  # type: ignore[union-attr]
    versions = {c.no: c.version for c in await store.counts()}
    for wave in waves:
        results = await asyncio.wait_for(asyncio.gather(  # every vote is answered: none left waiting
            *(store.set_vote(users[u], teachers[t], value) for u, t, value in wave), return_exceptions=True
        ), timeout=30)
        for (u, t, value), result in zip(wave, results, strict=True):
            if t == 3 or (u == 5 and value is not None):
                assert isinstance(result, NotFound), result
                continue
            assert not isinstance(result, BaseException), result
            assert result.value == value and result.counts.no == teachers[t]
            assert not (u == 5 and result.changed), "nobody's withdrawal changes nothing"
            versions[teachers[t]] += result.changed
        for counts in await store.counts():
            assert (counts.good_count, counts.bad_count) == await store.tally_votes(counts.no)
            assert counts.version == versions[counts.no], "one version per answered change"
