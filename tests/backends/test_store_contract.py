"""The Store contract: every implementation must pass these, unchanged."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.backends.store import Store
from services.backends.store_mongo import MongoStore
from services.backends.store_postgres import PostgresStore
from services.backends.store_sqlite import SqliteStore
from services.errors import Conflict, Invalid, NotFound, VotingClosed
from services.models import AuditEntry, HistoryMinute, Page, User
from tests.harness.server import ROOT
from tests.harness.stores import (
    STORE_PARAMS,
    STORES,
    drop_test_databases,  # noqa: F401  (autouse: drops the databases these tests open)
    teacher_fields,
)
from tests.harness.strategies import examples


@pytest.fixture(params=STORE_PARAMS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    instance = STORES[request.param](tmp_path)
    assert await instance.open() is True
    yield instance
    await instance.close()


async def test_subject_round_trip(store: Store) -> None:
    created = await store.create_subject({"name": "数学", "intro": "numbers", "is_hot": True})
    assert created.no >= 1
    assert await store.get_subject(created.no) == created
    assert (created.name, created.intro, created.is_hot) == ("数学", "numbers", True)


async def test_update_changes_only_given_fields(store: Store) -> None:
    subject = await store.create_subject({"name": "Art", "intro": "colours", "is_hot": False})
    changed = await store.update_subject(subject.no, {"is_hot": True})
    assert (changed.name, changed.intro, changed.is_hot) == ("Art", "colours", True)
    assert await store.update_subject(subject.no, {}) == changed


async def test_missing_records_raise_not_found(store: Store) -> None:
    for call in (
        store.get_subject(999), store.update_subject(999, {"name": "x"}), store.delete_subject(999),
        store.get_teacher(999), store.update_teacher(999, {"name": "x"}), store.delete_teacher(999),
    ):
        with pytest.raises(NotFound):
            await call


async def test_teacher_round_trip_starts_with_zero_counts(store: Store) -> None:
    subject = await store.create_subject({"name": "Physics", "intro": "", "is_hot": False})
    teacher = await store.create_teacher(teacher_fields(subject.no))
    assert await store.get_teacher(teacher.no) == teacher
    assert (teacher.good_count, teacher.bad_count, teacher.version) == (0, 0, 0)
    assert teacher.birth == date(1980, 5, 17) and teacher.subject == subject.no


async def test_teacher_needs_an_existing_subject(store: Store) -> None:
    with pytest.raises(Invalid) as caught:
        await store.create_teacher(teacher_fields(4242))
    assert [error.field for error in caught.value.errors] == ["subject"]
    subject = await store.create_subject({"name": "Bio", "intro": "", "is_hot": False})
    teacher = await store.create_teacher(teacher_fields(subject.no))
    with pytest.raises(Invalid):
        await store.update_teacher(teacher.no, {"subject": 4242})
    assert (await store.get_teacher(teacher.no)).subject == subject.no


async def test_a_teacher_update_bumps_the_version_and_an_empty_one_does_not(store: Store) -> None:
    """Live pages order a move or a rename among the votes by the version."""
    first = await store.create_subject({"name": "Geo", "intro": "", "is_hot": False})
    second = await store.create_subject({"name": "Art", "intro": "", "is_hot": False})
    teacher = await store.create_teacher(teacher_fields(first.no))
    await store.set_vote((await store.create_user("voter", "hash", "user")).id, teacher.no, "good")
    moved = await store.update_teacher(teacher.no, {"subject": second.no})
    renamed = await store.update_teacher(teacher.no, {"name": "Ms. Moved"})
    assert [(t.subject, t.good_count, t.version) for t in (moved, renamed)] == [(second.no, 1, 2), (second.no, 1, 3)]
    assert (await store.update_teacher(teacher.no, {})).version == 3
    assert (await store.get_teacher(teacher.no)).version == 3


async def test_subject_with_teachers_cannot_be_deleted(store: Store) -> None:
    subject = await store.create_subject({"name": "Chem", "intro": "", "is_hot": False})
    teacher = await store.create_teacher(teacher_fields(subject.no))
    with pytest.raises(Conflict):
        await store.delete_subject(subject.no)
    await store.delete_teacher(teacher.no)
    await store.delete_subject(subject.no)
    with pytest.raises(NotFound):
        await store.get_subject(subject.no)


async def test_lists_are_ordered_and_paged(store: Store) -> None:
    subjects = [await store.create_subject({"name": f"S{i}", "intro": "", "is_hot": False}) for i in range(5)]
    whole = await store.list_subjects()
    assert [s.no for s in whole.items] == [s.no for s in subjects] and whole.total == 5
    middle = await store.list_subjects(offset=2, limit=2)
    assert [s.name for s in middle.items] == ["S2", "S3"] and middle.total == 5
    assert (await store.list_subjects(offset=10, limit=2)).items == []


async def test_teachers_filter_by_subject(store: Store) -> None:
    first = await store.create_subject({"name": "A", "intro": "", "is_hot": False})
    second = await store.create_subject({"name": "B", "intro": "", "is_hot": False})
    for index in range(3):
        await store.create_teacher(teacher_fields(first.no, f"a{index}"))
    await store.create_teacher(teacher_fields(second.no, "b0"))
    page = await store.list_teachers(first.no, offset=1, limit=5)
    assert [t.name for t in page.items] == ["a1", "a2"] and page.total == 3
    assert (await store.list_teachers()).total == 4


async def test_ids_are_not_reused_after_delete(store: Store) -> None:
    first = await store.create_subject({"name": "A", "intro": "", "is_hot": False})
    await store.delete_subject(first.no)
    second = await store.create_subject({"name": "B", "intro": "", "is_hot": False})
    assert second.no > first.no


async def test_concurrent_writes_all_land(store: Store) -> None:
    await asyncio.gather(*(store.create_subject({"name": f"S{i}", "intro": "", "is_hot": False}) for i in range(50)))
    assert (await store.list_subjects()).total == 50


async def test_reopen_keeps_data_and_is_not_new(tmp_path: Path) -> None:
    for name, open_store in STORES.items():
        first = open_store(tmp_path / name)
        assert await first.open() is True
        subject = await first.create_subject({"name": "Kept", "intro": "", "is_hot": False})
        await first.close()
        again = open_store(tmp_path / name)
        assert await again.open() is False
        assert (await again.get_subject(subject.no)).name == "Kept"
        await again.close()


async def test_ping_answers_while_open(store: Store) -> None:
    await store.ping()


async def test_usernames_are_unique_ignoring_case(store: Store) -> None:
    user = await store.create_user("Alice", "hash-a", "user")
    assert (user.username, user.role) == ("Alice", "user")
    with pytest.raises(Conflict):
        await store.create_user("aLICE", "hash-b", "admin")
    found = await store.find_credentials("ALICE")
    assert found is not None and found.user == user and found.password_hash == "hash-a"
    assert await store.find_credentials("bob") is None
    assert await store.get_user(user.id) == user
    with pytest.raises(NotFound):
        await store.get_user(user.id + 100)


async def test_a_role_change_is_what_the_user_is_read_with_from_then_on(store: Store) -> None:
    user = await store.create_user("Carol", "h", "admin")
    assert await store.set_user_role(user.id, "user") == User(user.id, "Carol", "user")
    assert await store.get_user(user.id) == User(user.id, "Carol", "user")
    found = await store.find_credentials("carol")
    assert found is not None and found.user.role == "user"
    assert (await store.set_user_role(user.id, "admin")).role == "admin"
    with pytest.raises(NotFound):
        await store.set_user_role(user.id + 100, "admin")


async def test_a_vote_by_an_unknown_user_is_not_found_and_changes_nothing(store: Store) -> None:
    """A user removed from the store while their access token still runs (docs/api.md)."""
    subject = await store.create_subject({"name": "S", "intro": "", "is_hot": False})
    teacher = await store.create_teacher(teacher_fields(subject.no))
    for value in ("good", "bad"):
        with pytest.raises(NotFound):
            await store.set_vote(4242, teacher.no, value)
    assert (await store.get_teacher(teacher.no)).version == 0
    assert await store.tally_votes(teacher.no) == (0, 0)


async def test_votes_move_counts_in_one_step(store: Store) -> None:
    subject = await store.create_subject({"name": "S", "intro": "", "is_hot": False})
    teacher = await store.create_teacher(teacher_fields(subject.no))
    user = await store.create_user("voter", "h", "user")
    steps = [("good", (1, 0, 1), True), ("good", (1, 0, 1), False), ("bad", (0, 1, 2), True),
             (None, (0, 0, 3), True), (None, (0, 0, 3), False)]
    for value, (good, bad, version), changed in steps:
        result = await store.set_vote(user.id, teacher.no, value)
        assert (result.value, result.changed) == (value, changed)
        assert (result.counts.good_count, result.counts.bad_count, result.counts.version) == (good, bad, version)
        assert result.counts.subject == subject.no
        assert (await store.get_vote(user.id, teacher.no)).value == value
        assert await store.tally_votes(teacher.no) == (good, bad)
    with pytest.raises(NotFound):
        await store.set_vote(user.id, 4242, "good")
    with pytest.raises(NotFound):
        await store.get_vote(user.id, 4242)


async def test_a_closed_window_refuses_changes_in_the_votes_own_step(store: Store) -> None:
    """The window is checked where the vote is written: votes batched together (PostgreSQL)
    are refused one by one, and a vote already there may be sent again."""
    now = datetime.now(UTC)
    subject = await store.create_subject({"name": "S", "intro": "", "is_hot": False})
    other = await store.create_subject({"name": "T", "intro": "", "is_hot": False})
    teacher, open_teacher = [await store.create_teacher(teacher_fields(no)) for no in (subject.no, other.no)]
    users = [await store.create_user(f"voter{i}", "h", "user") for i in range(3)]
    await store.set_vote(users[0].id, teacher.no, "good")
    closed = await store.update_subject(subject.no, {"closes_at": now})
    assert (closed.closes_at, closed.opens_at, closed.state()) == (now, None, "closed")
    assert await store.get_subject(subject.no) == closed
    results = await asyncio.gather(
        *(store.set_vote(user.id, teacher.no, "bad") for user in users),
        *(store.set_vote(user.id, open_teacher.no, "bad") for user in users),
        store.set_vote(users[0].id, teacher.no, "good"),
        return_exceptions=True,
    )
    assert all(isinstance(result, VotingClosed) for result in results[:3]), results
    assert [result.counts.bad_count for result in results[3:6]] == [1, 2, 3]  # type: ignore[union-attr]
    assert results[6].changed is False  # type: ignore[union-attr]
    assert (results[6].state, results[3].state) == ("closed", "open")  # type: ignore[union-attr]
    await store.update_subject(subject.no, {"visibility": "after_close"})
    assert (await store.get_vote(users[0].id, teacher.no)).visibility == "after_close"
    with pytest.raises(VotingClosed):
        await store.set_vote(users[0].id, teacher.no, None)
    assert await store.tally_votes(teacher.no) == (1, 0) and (await store.get_teacher(teacher.no)).version == 1
    scheduled = await store.update_subject(subject.no, {"opens_at": now + timedelta(hours=1), "closes_at": None})
    assert scheduled.state() == "closed" and scheduled.state(now + timedelta(hours=2)) == "open"
    with pytest.raises(VotingClosed):
        await store.set_vote(users[1].id, teacher.no, "good")
    await store.update_subject(subject.no, {"opens_at": now - timedelta(seconds=1)})
    assert (await store.set_vote(users[1].id, teacher.no, "good")).counts.good_count == 2


async def test_voters_and_voted_subjects_follow_the_votes(store: Store) -> None:
    subjects = [await store.create_subject({"name": name, "intro": "", "is_hot": False}) for name in "ST"]
    first, second, third = [await store.create_teacher(teacher_fields(s.no)) for s in (*subjects, subjects[0])]
    ann, bob = [await store.create_user(name, "h", "user") for name in ("ann", "bob")]
    assert await store.voters(subjects[0].no) == set() and await store.voted_subjects(ann.id) == set()
    await store.set_vote(ann.id, first.no, "good")
    await store.set_vote(ann.id, third.no, "bad")
    await store.set_vote(bob.id, second.no, "bad")
    assert await store.voters(subjects[0].no) == {ann.id} and await store.voters(subjects[1].no) == {bob.id}
    assert await store.voted_subjects(ann.id) == {subjects[0].no}
    await store.set_vote(ann.id, first.no, None)
    assert await store.voters(subjects[0].no) == {ann.id}  # a vote on the other teacher remains
    await store.set_vote(ann.id, third.no, None)
    assert await store.voters(subjects[0].no) == set() and await store.voted_subjects(ann.id) == set()
    await store.update_teacher(second.no, {"subject": subjects[0].no})  # votes move with their teacher
    assert await store.voted_subjects(bob.id) == {subjects[0].no}


async def test_concurrent_votes_keep_counts_equal_to_votes(store: Store) -> None:
    subject = await store.create_subject({"name": "S", "intro": "", "is_hot": False})
    teacher = await store.create_teacher(teacher_fields(subject.no))
    users = [await store.create_user(f"user{i}", "h", "user") for i in range(20)]

    async def change_mind(user: User) -> None:
        """One user's votes in turn, as a page sends them; the users at once."""
        for value in ("good", "bad", "good"):
            await store.set_vote(user.id, teacher.no, value)

    await asyncio.gather(*(change_mind(user) for user in users))
    counts = (await store.counts(subject.no))[0]
    assert (counts.good_count, counts.bad_count) == await store.tally_votes(teacher.no) == (20, 0)
    assert counts.version == 60


async def test_counts_and_subject_totals(store: Store) -> None:
    first = await store.create_subject({"name": "A", "intro": "", "is_hot": False})
    empty = await store.create_subject({"name": "B", "intro": "", "is_hot": False})
    teachers = [await store.create_teacher(teacher_fields(first.no, f"t{i}")) for i in range(2)]
    user = await store.create_user("voter", "h", "user")
    await store.set_vote(user.id, teachers[0].no, "good")
    await store.set_vote(user.id, teachers[1].no, "bad")
    assert [(c.no, c.good_count, c.bad_count, c.version) for c in await store.counts(first.no)] == [
        (teachers[0].no, 1, 0, 1), (teachers[1].no, 0, 1, 1)]
    assert await store.counts(empty.no) == [] and len(await store.counts()) == 2
    totals = await store.subject_totals()
    assert [(t.no, t.name, t.good_count, t.bad_count) for t in totals] == [(first.no, "A", 1, 1), (empty.no, "B", 0, 0)]


async def test_deleting_a_teacher_deletes_its_votes(store: Store) -> None:
    subject = await store.create_subject({"name": "S", "intro": "", "is_hot": False})
    teacher = await store.create_teacher(teacher_fields(subject.no))
    user = await store.create_user("voter", "h", "user")
    await store.set_vote(user.id, teacher.no, "good")
    await store.delete_teacher(teacher.no)
    assert await store.tally_votes(teacher.no) == (0, 0)


# -- reconcile: recount from the vote records ----------------------------------


async def break_counts(store: Store, teacher: int, good: int, bad: int) -> None:
    """Overwrite a teacher's counters behind the store's back (what a bug or a crash could leave)."""
    if isinstance(store, SqliteStore):
        await store.database.write(
            lambda conn: conn.execute("UPDATE teachers SET good_count = ?, bad_count = ? WHERE no = ?",
                                      (good, bad, teacher)))
    elif isinstance(store, PostgresStore):
        await store.database.fetch("UPDATE teachers SET good_count = $1, bad_count = $2 WHERE no = $3",
                                   good, bad, teacher)
    else:
        assert isinstance(store, MongoStore)
        await store.database["teachers"].update_one({"_id": teacher}, {"$set": {"good_count": good, "bad_count": bad}})


async def write_vote_only(store: Store, user: int, teacher: int, value: str) -> None:
    """A vote record without its count change: a crash between the two writes on a standalone server."""
    if isinstance(store, SqliteStore):
        await store.database.write(
            lambda conn: conn.execute("INSERT INTO votes (user_id, teacher, value) VALUES (?, ?, ?)",
                                      (user, teacher, value)))
    elif isinstance(store, PostgresStore):
        await store.database.fetch("INSERT INTO votes (user_id, teacher, value) VALUES ($1, $2, $3)",
                                   user, teacher, value)
    else:
        assert isinstance(store, MongoStore)
        await store.database["votes"].insert_one({"user": user, "teacher": teacher, "value": value})


async def test_reconcile_changes_nothing_when_counts_agree(store: Store) -> None:
    subject = await store.create_subject({"name": "S", "intro": "", "is_hot": False})
    teachers = [await store.create_teacher(teacher_fields(subject.no, f"t{i}")) for i in range(3)]
    users = [await store.create_user(f"user{i}", "h", "user") for i in range(3)]
    for user in users:
        await store.set_vote(user.id, teachers[0].no, "good")
        await store.set_vote(user.id, teachers[1].no, "bad")
    before = await store.counts()
    assert await store.reconcile() == 0
    assert await store.counts() == before


async def test_reconcile_recounts_from_the_votes_and_bumps_versions(store: Store) -> None:
    subject = await store.create_subject({"name": "S", "intro": "", "is_hot": False})
    teachers = [await store.create_teacher(teacher_fields(subject.no, f"t{i}")) for i in range(3)]
    users = [await store.create_user(f"user{i}", "h", "user") for i in range(3)]
    for user in users:
        await store.set_vote(user.id, teachers[0].no, "good")
    await store.set_vote(users[0].id, teachers[1].no, "bad")
    await break_counts(store, teachers[0].no, 7, 2)
    await write_vote_only(store, users[1].id, teachers[1].no, "good")
    before = {c.no: c for c in await store.counts()}

    assert await store.reconcile() == 2

    after = {c.no: c for c in await store.counts()}
    assert (after[teachers[0].no].good_count, after[teachers[0].no].bad_count) == (3, 0)
    assert (after[teachers[1].no].good_count, after[teachers[1].no].bad_count) == (1, 1)
    for no, counts in after.items():
        assert (counts.good_count, counts.bad_count) == await store.tally_votes(no)
    assert [after[t.no].version - before[t.no].version for t in teachers] == [1, 1, 0]
    assert await store.reconcile() == 0
    result = await store.set_vote(users[1].id, teachers[1].no, "bad")
    assert (result.counts.good_count, result.counts.bad_count) == (0, 2), "votes go on from the recounted state"


async def test_reconcile_command_prints_what_it_fixed(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "data" / "livevote.db")
    await store.open()
    subject = await store.create_subject({"name": "S", "intro": "", "is_hot": False})
    teacher = await store.create_teacher(teacher_fields(subject.no))
    user = await store.create_user("voter", "h", "user")
    await store.set_vote(user.id, teacher.no, "good")
    await break_counts(store, teacher.no, 0, 5)
    await store.close()

    outputs = []
    for _ in range(2):
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "server.py"), "reconcile", "--data-dir", str(tmp_path / "data"),
            cwd=ROOT, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, err.decode()
        outputs.append(out.decode())
    assert "1 teacher" in outputs[0] and "corrected" in outputs[0]
    assert "nothing to fix" in outputs[1]

    again = SqliteStore(tmp_path / "data" / "livevote.db")
    await again.open()
    counts = (await again.counts())[0]
    assert (counts.good_count, counts.bad_count, counts.version) == (1, 0, 2)
    await again.close()


# -- the audit log -------------------------------------------------------------------------------


def audit_entry(action: str, no: int, before: dict[str, Any] | None, after: dict[str, Any] | None) -> AuditEntry:
    kind: Any = action.split(".")[0]
    return AuditEntry(0, "2026-12-06T20:01:02.345Z", 7, "Ada", "api", action, kind, no, before, after)


async def test_audit_entries_come_back_whole_and_newest_first(store: Store) -> None:
    subject = {"no": 3, "name": "数学 <b>", "intro": "a \"quoted\"\nline", "is_hot": True}
    teacher = {"no": 9, "name": "Zhao", "sex": False, "birth": "1980-05-17", "photo": "", "intro": "",
               "subject": 3, "good_count": 12, "bad_count": 0, "version": 4}
    written = [
        await store.record_audit(audit_entry("subject.create", 3, None, subject)),
        await store.record_audit(audit_entry("teacher.delete", 9, teacher, None)),
        await store.record_audit(replace(
            audit_entry("user.role", 7, {"id": 7, "username": "Ada", "role": "admin"},
                        {"id": 7, "username": "Ada", "role": "user"}),
            user_id=None, username=None, via="cli", at="2026-12-06T20:01:03.000Z",
        )),
    ]
    assert written[0].id < written[1].id < written[2].id
    assert [replace(entry, id=0) for entry in written] == [
        audit_entry("subject.create", 3, None, subject), audit_entry("teacher.delete", 9, teacher, None),
        replace(audit_entry("user.role", 7, {"id": 7, "username": "Ada", "role": "admin"},
                            {"id": 7, "username": "Ada", "role": "user"}),
                user_id=None, username=None, via="cli", at="2026-12-06T20:01:03.000Z"),
    ]
    listed = await store.list_audit()
    assert listed.items == written[::-1] and listed.total == 3
    assert list(listed.items[1].before or {}) == list(teacher)  # the record's own field order


async def test_audit_entries_are_paged_and_filtered_by_record(store: Store) -> None:
    for no in (1, 2, 1, 1):
        await store.record_audit(audit_entry("subject.update", no, {"no": no}, {"no": no}))
    await store.record_audit(audit_entry("teacher.update", 1, {"no": 1}, {"no": 1}))
    everything = await store.list_audit()
    newest_first = [entry.id for entry in everything.items]
    assert newest_first == sorted(newest_first, reverse=True) and everything.total == 5
    middle = await store.list_audit(offset=1, limit=2)
    assert [entry.id for entry in middle.items] == newest_first[1:3] and middle.total == 5
    subject_1 = await store.list_audit(kind="subject", no=1, offset=1, limit=5)
    assert [(e.kind, e.no) for e in subject_1.items] == [("subject", 1)] * 2 and subject_1.total == 3
    assert (await store.list_audit(kind="teacher")).total == 1
    assert (await store.list_audit(no=2)).total == 1
    past_the_end = await store.list_audit(kind="subject", offset=10, limit=2)
    assert past_the_end.items == [] and past_the_end.total == 4
    assert (await store.list_audit(kind="user")) == Page([], 0)
# -- vote history: per-minute changes kept with the counts ---------------------


def this_minute() -> int:
    return int(time.time() // 60)


async def age_history(store: Store, minutes: int) -> None:
    """Move every minute of history `minutes` into the past, as if the votes were cast that long ago."""
    if isinstance(store, SqliteStore):
        await store.database.write(lambda conn: conn.execute("UPDATE vote_history SET minute = minute - ?", (minutes,)))
    elif isinstance(store, PostgresStore):
        await store.database.fetch("UPDATE vote_history SET minute = minute - $1", minutes)
    else:
        assert isinstance(store, MongoStore)
        await store.database["vote_history"].update_many({}, {"$inc": {"minute": -minutes}})


async def a_teacher_and_voters(store: Store, voters: int, name: str = "t") -> tuple[int, list[int]]:
    subject = await store.create_subject({"name": "S", "intro": "", "is_hot": False})
    teacher = await store.create_teacher(teacher_fields(subject.no, name))
    return teacher.no, [(await store.create_user(f"{name}-voter{i}", "h", "user")).id for i in range(voters)]


async def test_history_records_votes_switches_and_withdrawals(store: Store) -> None:
    teacher, (ann, bob) = await a_teacher_and_voters(store, 2)
    for user, value in ((ann, "good"), (bob, "bad"), (ann, "bad"), (bob, None), (ann, "bad")):
        await store.set_vote(user, teacher, value)
    now = this_minute()
    buckets = await store.history([teacher], now - 4, now + 1, 1)
    assert [bucket.minute for bucket in buckets] == list(range(now - 4, now + 1)), "every minute, changed or not"
    assert (buckets[-1].good_count, buckets[-1].bad_count) == (0, 1)
    assert sum(bucket.votes for bucket in buckets) == 4, "the same vote again is no change"
    assert (buckets[0].good_count, buckets[0].bad_count, buckets[0].votes) == (0, 0, 0)


async def test_history_buckets_are_the_counts_at_their_end(store: Store) -> None:
    """Three rounds of votes, aged to 195 and 65 minutes ago and now: hourly buckets show each."""
    teacher, users = await a_teacher_and_voters(store, 3)
    for user, value in zip(users, ("good", "good", "bad"), strict=True):
        await store.set_vote(user, teacher, value)
    await age_history(store, 130)
    await store.set_vote(users[0], teacher, "bad")
    await store.set_vote(users[2], teacher, None)
    await age_history(store, 65)
    await store.set_vote(users[2], teacher, "good")
    since = this_minute() - 250  # the rounds fall at 55, 185 and 250 minutes after it (a minute may pass)
    hourly = await store.history([teacher], since, since + 300, 60)
    assert [(b.minute - since, b.good_count, b.bad_count, b.votes) for b in hourly] == [
        (0, 2, 1, 3), (60, 2, 1, 0), (120, 2, 1, 0), (180, 1, 1, 2), (240, 2, 1, 1)]
    by_minute = await store.history([teacher], since, since + 300, 1)
    assert len(by_minute) == 300 and sum(b.votes for b in by_minute) == 6
    assert [(b.good_count, b.bad_count) for b in by_minute[59::60]] == [(b.good_count, b.bad_count) for b in hourly]
    later = await store.history([teacher], since + 120, since + 300, 60)
    assert [(b.good_count, b.bad_count, b.votes) for b in later] == [(2, 1, 0), (1, 1, 2), (2, 1, 1)], (
        "a span that starts after some votes starts from the counts they left")


async def test_history_sums_teachers_and_pages_by_minute(store: Store) -> None:
    first, users = await a_teacher_and_voters(store, 2, "first")
    second = (await store.create_teacher(teacher_fields((await store.get_teacher(first)).subject, "second"))).no
    await store.set_vote(users[0], first, "good")
    await store.set_vote(users[1], second, "bad")
    await age_history(store, 10)
    await store.set_vote(users[0], second, "good")
    now = this_minute()
    both = await store.history([first, second, 4242], now - 20, now + 1, 21)
    assert [(b.good_count, b.bad_count, b.votes) for b in both] == [(2, 1, 3)]
    pages: list[HistoryMinute] = []
    after = None
    while page := await store.history_minutes([first, second], now - 20, now + 1, after, 1):
        pages += page
        after = page[-1]
    assert [(row.teacher, row.good_count, row.bad_count) for row in pages] == [
        (first, 1, 0), (second, 0, 1), (second, 1, 1)]
    assert [row.votes for row in pages] == [1, 1, 1] and pages[1].minute < pages[2].minute
    assert await store.history_minutes([first, second], now - 5, now + 1, None, 10) == pages[2:]


async def test_history_counts_votes_cast_together(store: Store) -> None:
    """Votes that arrive at once go in one batch or transaction (group commit): each is recorded."""
    teacher, users = await a_teacher_and_voters(store, 12)
    casts = [store.set_vote(user, teacher, "good" if index % 2 else "bad") for index, user in enumerate(users)]
    results = await asyncio.gather(*casts)
    assert all(result.changed for result in results)
    now = this_minute()
    buckets = await store.history([teacher], now - 1, now + 1, 2)
    assert [(b.good_count, b.bad_count, b.votes) for b in buckets] == [(6, 6, 12)]


async def test_history_goes_with_its_teacher(store: Store) -> None:
    teacher, (user,) = await a_teacher_and_voters(store, 1)
    await store.set_vote(user, teacher, "good")
    await store.delete_teacher(teacher)
    now = this_minute()
    assert [(b.good_count, b.bad_count, b.votes) for b in await store.history([teacher], now - 1, now + 1, 2)] == [
        (0, 0, 0)]
    assert await store.history_minutes([teacher], now - 1, now + 1, None, 10) == []


async def test_history_ends_at_the_recounted_counts_after_reconcile(store: Store) -> None:
    teacher, (user,) = await a_teacher_and_voters(store, 1)
    await store.set_vote(user, teacher, "good")
    await break_counts(store, teacher, 5, 5)
    await store.reconcile()
    now = this_minute()
    last = (await store.history([teacher], now - 1, now + 1, 1))[-1]
    assert (last.good_count, last.bad_count) == (1, 0)


VOTE_SEQUENCES = st.lists(st.tuples(st.integers(0, 2), st.sampled_from(["good", "bad", None])), max_size=12)


@examples(0.25)
@given(steps=VOTE_SEQUENCES)
async def test_any_votes_end_the_history_at_the_counts(store: Store, steps: list[tuple[int, str | None]]) -> None:
    """Whatever the votes, withdrawals and switches: the last bucket's counts are the teacher's, and
    the history counts every change, and only changes."""
    teacher, users = await a_teacher_and_voters(store, 3, f"p{time.monotonic_ns()}")
    changes = 0
    for user, value in steps:
        changes += (await store.set_vote(users[user], teacher, value)).changed  # type: ignore[arg-type]
    now = this_minute()
    buckets = await store.history([teacher], now - 2, now + 1, 1)
    counts = await store.get_teacher(teacher)
    assert (buckets[-1].good_count, buckets[-1].bad_count) == (counts.good_count, counts.bad_count)
    assert sum(bucket.votes for bucket in buckets) == changes
