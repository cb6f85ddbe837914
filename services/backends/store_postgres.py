"""PostgresStore: the Store on a PostgreSQL server, for processes on many hosts.

Each method is one statement or one transaction; a vote is one call of the schema's
set_vote function (postgres_db.py), so it costs one round trip and is answered after
its commit. Constraint violations become the domain errors the Store port names.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg
import orjson

from services.backends import history_sums
from services.backends.postgres_db import Limits, PostgresDatabase
from services.backends.postgres_votes import VoteBatches
from services.backends.sql_columns import (
    COUNTS_ROW,
    SUBJECT_COLUMNS,
    SUBJECT_ROW,
    TEACHER_COLUMNS,
    TEACHER_ROW,
    USER_ROW,
    VOTED_SUBJECTS,
    VOTERS,
)
from services.backends.store import Store
from services.errors import Conflict, FieldError, Invalid, NotFound, VotingClosed
from services.models import (
    AuditEntry,
    AuditKind,
    Counts,
    Credentials,
    HistoryBucket,
    HistoryMinute,
    Page,
    Subject,
    SubjectTotals,
    Teacher,
    User,
    VoteResult,
    VoteValue,
    iso_utc,
    utc_now,
    voting_state,
)
from services.schemas import account_key, username_key

if TYPE_CHECKING:
    from services.backends.postgres_db import Connection

TABLES = {"subjects": SUBJECT_ROW, "teachers": TEACHER_ROW}
GET_VOTE = (
    f"SELECT v.value, {', '.join('t.' + column for column in COUNTS_ROW.split(', '))}, s.visibility,"
    " s.opens_at, s.closes_at FROM teachers t JOIN subjects s ON s.no = t.subject"
    " LEFT JOIN votes v ON v.teacher = t.no AND v.user_id = $1 WHERE t.no = $2"
)


class PostgresStore(Store):
    def __init__(self, url: str, limits: Limits | None = None) -> None:
        self.database = PostgresDatabase(url, limits or Limits())
        self._db = self.database
        self._votes = VoteBatches(self.database)

    async def open(self) -> bool:
        return await self._db.open()

    async def close(self) -> None:
        await self._votes.close()
        await self._db.close()

    async def ping(self) -> None:
        await self._db.fetchval("SELECT 1")

    # -- subjects ----------------------------------------------------------

    async def list_subjects(self, offset: int = 0, limit: int | None = None) -> Page:
        return await self._page("subjects", Subject, offset, limit)

    async def get_subject(self, no: int) -> Subject:
        row = await self._db.fetchrow(f"SELECT {SUBJECT_ROW} FROM subjects WHERE no = $1", no)
        if row is None:
            raise NotFound(f"There is no subject {no}.")
        return Subject(**row)

    async def create_subject(self, fields: dict[str, Any]) -> Subject:
        return Subject(**await self._insert("subjects", _columns(fields, SUBJECT_COLUMNS)))

    async def update_subject(self, no: int, fields: dict[str, Any]) -> Subject:
        row = await self._update("subjects", no, _columns(fields, SUBJECT_COLUMNS), bump=False)
        if row is None:
            raise NotFound(f"There is no subject {no}.")
        return Subject(**row)

    async def delete_subject(self, no: int) -> None:
        try:
            deleted = await self._db.fetchval("DELETE FROM subjects WHERE no = $1 RETURNING no", no)
        except asyncpg.ForeignKeyViolationError:
            raise Conflict(f"Subject {no} still has teachers; move or delete them first.") from None
        if deleted is None:
            raise NotFound(f"There is no subject {no}.")

    # -- teachers ----------------------------------------------------------

    async def list_teachers(
        self, subject: int | None = None, offset: int = 0, limit: int | None = None
    ) -> Page:
        return await self._page("teachers", Teacher, offset, limit, subject)

    async def get_teacher(self, no: int) -> Teacher:
        row = await self._db.fetchrow(f"SELECT {TEACHER_ROW} FROM teachers WHERE no = $1", no)
        if row is None:
            raise NotFound(f"There is no teacher {no}.")
        return Teacher(**row)

    async def create_teacher(self, fields: dict[str, Any]) -> Teacher:
        values = _columns(fields, TEACHER_COLUMNS)
        try:
            return Teacher(**await self._insert("teachers", values))
        except asyncpg.ForeignKeyViolationError:
            raise _no_such_subject(values["subject"]) from None

    async def update_teacher(self, no: int, fields: dict[str, Any]) -> Teacher:
        values = _columns(fields, TEACHER_COLUMNS)
        try:
            row = await self._update("teachers", no, values, bump=True)
        except asyncpg.ForeignKeyViolationError:
            raise _no_such_subject(values["subject"]) from None
        if row is None:
            raise NotFound(f"There is no teacher {no}.")
        return Teacher(**row)

    async def delete_teacher(self, no: int) -> None:
        if await self._db.fetchval("DELETE FROM teachers WHERE no = $1 RETURNING no", no) is None:
            raise NotFound(f"There is no teacher {no}.")

    # -- accounts ----------------------------------------------------------

    async def create_user(self, username: str, password_hash: str, role: str) -> User:
        try:
            row = await self._db.fetchrow(
                f"INSERT INTO users (username, username_key, password_hash, role) VALUES ($1, $2, $3, $4)"
                f" RETURNING {USER_ROW}",
                username, account_key(username), password_hash, role,
            )
        except asyncpg.UniqueViolationError:
            raise Conflict(f"The username {username!r} is taken.") from None
        assert row is not None
        return User(*row)

    async def find_credentials(self, username: str) -> Credentials | None:
        key = username_key(username)
        if key is None:
            return None
        row = await self._db.fetchrow(f"SELECT {USER_ROW}, password_hash FROM users WHERE username_key = $1", key)
        return None if row is None else Credentials(User(*row[:3]), row[3])

    async def get_user(self, user_id: int) -> User:
        row = await self._db.fetchrow(f"SELECT {USER_ROW} FROM users WHERE id = $1", user_id)
        if row is None:
            raise NotFound(f"There is no user {user_id}.")
        return User(*row)

    async def set_user_role(self, user_id: int, role: str) -> User:
        row = await self._db.fetchrow(f"UPDATE users SET role = $1 WHERE id = $2 RETURNING {USER_ROW}", role, user_id)
        if row is None:
            raise NotFound(f"There is no user {user_id}.")
        return User(*row)

    # -- votes -------------------------------------------------------------

    async def set_vote(self, user_id: int, teacher: int, value: VoteValue | None) -> VoteResult:
        try:
            row = await self._votes.set_vote(user_id, teacher, value)
        except asyncpg.ForeignKeyViolationError:  # the teacher was locked: the user is gone
            raise NotFound(f"There is no user {user_id}.") from None
        if row is None:
            raise NotFound(f"There is no teacher {teacher}.")
        stored, *counts, changed, closed, visibility = row
        if closed and stored != value:
            raise VotingClosed(row["subject"])
        return VoteResult(stored, Counts(*counts), changed, visibility, "closed" if closed else "open")

    async def get_vote(self, user_id: int, teacher: int) -> VoteResult:
        row = await self._db.fetchrow(GET_VOTE, user_id, teacher)
        if row is None:
            raise NotFound(f"There is no teacher {teacher}.")
        value, *counts, visibility, opens_at, closes_at = row
        return VoteResult(value, Counts(*counts), False, visibility, voting_state(opens_at, closes_at, utc_now()))

    async def voted_subjects(self, user_id: int) -> set[int]:
        return {row[0] for row in await self._db.fetch(VOTED_SUBJECTS, user_id)}

    async def voters(self, subject: int) -> set[int]:
        return {row[0] for row in await self._db.fetch(VOTERS, subject)}

    async def counts(self, subject: int | None = None) -> list[Counts]:
        rows = await self._db.fetch(
            f"SELECT {COUNTS_ROW} FROM teachers WHERE $1::bigint IS NULL OR subject = $1 ORDER BY no", subject
        )
        return [Counts(*row) for row in rows]

    async def subject_totals(self) -> list[SubjectTotals]:
        rows = await self._db.fetch(
            "SELECT s.no, s.name, coalesce(sum(t.good_count), 0)::bigint, coalesce(sum(t.bad_count), 0)::bigint"
            " FROM subjects s LEFT JOIN teachers t ON t.subject = s.no GROUP BY s.no ORDER BY s.no"
        )
        return [SubjectTotals(*row) for row in rows]

    async def tally_votes(self, teacher: int) -> tuple[int, int]:
        row = await self._db.fetchrow(
            "SELECT count(*) FILTER (WHERE value = 'good'), count(*) FILTER (WHERE value = 'bad')"
            " FROM votes WHERE teacher = $1",
            teacher,
        )
        assert row is not None
        return row[0], row[1]

    async def reconcile(self) -> int:
        """Votes wait meanwhile (SHARE lock on votes), so that no vote lands between a recount and its write."""
        async with self._db.transaction() as conn:
            await conn.execute("LOCK TABLE votes IN SHARE MODE")
            corrected: int = await conn.fetchval(
                "WITH tally AS (SELECT t.no, count(v.value) FILTER (WHERE v.value = 'good') AS good,"
                " count(v.value) FILTER (WHERE v.value = 'bad') AS bad"
                " FROM teachers t LEFT JOIN votes v ON v.teacher = t.no GROUP BY t.no),"
                " fixed AS (UPDATE teachers t SET good_count = tally.good, bad_count = tally.bad,"
                " version = t.version + 1 FROM tally WHERE t.no = tally.no"
                " AND (t.good_count, t.bad_count) IS DISTINCT FROM (tally.good, tally.bad) RETURNING 1)"
                " SELECT count(*) FROM fixed"
            )
        return corrected

    # -- audit log ---------------------------------------------------------

    async def record_audit(self, entry: AuditEntry) -> AuditEntry:
        new_id = await self._db.fetchval(
            "INSERT INTO audit (at, user_id, username, via, action, kind, no, before_json, after_json)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            datetime.fromisoformat(entry.at), entry.user_id, entry.username, entry.via, entry.action, entry.kind,
            entry.no, _json_text(entry.before), _json_text(entry.after),
        )
        return replace(entry, id=new_id)

    async def list_audit(
        self, offset: int = 0, limit: int | None = None, kind: AuditKind | None = None, no: int | None = None
    ) -> Page:
        """As _page: the rows with the total beside them, or the count alone past the end."""
        where = "WHERE ($3::text IS NULL OR kind = $3) AND ($4::bigint IS NULL OR no = $4)"
        rows = await self._db.fetch(
            "SELECT id, at, user_id, username, via, action, kind, no, before_json, after_json, count(*) OVER ()"
            f" FROM audit {where} ORDER BY id DESC LIMIT $1 OFFSET $2",
            limit, offset, kind, no,
        )
        if rows:
            return Page([_audit_entry(row) for row in rows], rows[0][-1])
        total = 0 if offset == 0 else await self._db.fetchval(
            f"SELECT count(*) FROM audit {where.replace('$3', '$1').replace('$4', '$2')}", kind, no
        )
        return Page([], total)
    # -- vote history (the trigger of postgres_db.MIGRATIONS writes it) ------------

    async def history(self, teachers: Sequence[int], since: int, until: int, step: int) -> list[HistoryBucket]:
        async with self._snapshot() as conn:
            starts = (await _starts(conn, list(teachers), since)).values()
            rows = await conn.fetch(
                "SELECT $2 + (minute - $2) / $4 * $4, sum(good)::bigint, sum(bad)::bigint, sum(votes)::bigint"
                " FROM vote_history WHERE teacher = ANY($1::bigint[]) AND minute >= $2 AND minute < $3 GROUP BY 1",
                list(teachers), since, until, step,
            )
        start = (sum(good for good, _ in starts), sum(bad for _, bad in starts))
        return history_sums.buckets(start, {row[0]: tuple(row[1:]) for row in rows}, since, until, step)

    async def history_minutes(
        self, teachers: Sequence[int], since: int, until: int, after: HistoryMinute | None, limit: int
    ) -> list[HistoryMinute]:
        teacher, minute = (after.teacher, after.minute) if after else (0, since - 1)
        async with self._snapshot() as conn:
            rows = [tuple(row) for row in await conn.fetch(
                "SELECT teacher, minute, good, bad, votes FROM vote_history WHERE teacher = ANY($1::bigint[])"
                " AND minute >= $2 AND minute < $3 AND (teacher, minute) > ($4, $5) ORDER BY teacher, minute LIMIT $6",
                list(teachers), since, until, teacher, minute, limit,
            )]
            starts = await _starts(conn, history_sums.new_teachers(rows, after), since)
        return history_sums.minutes(rows, after, starts)

    @asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[Connection]:
        """Reads that see one state: the current counts and the changes after a minute agree."""
        async with self._db.connection() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            yield conn

    # -- helpers -----------------------------------------------------------

    async def _page(
        self, table: str, make: Any, offset: int, limit: int | None, subject: int | None = None
    ) -> Page:
        """One query: the rows, each with the total beside it (none past the end: then count alone)."""
        where, filters = ("WHERE subject = $3", (subject,)) if subject is not None else ("", ())
        rows = await self._db.fetch(
            f"SELECT {TABLES[table]}, count(*) OVER () FROM {table} {where} ORDER BY no LIMIT $1 OFFSET $2",
            limit, offset, *filters,
        )
        if rows:
            return Page([make(*row[:-1]) for row in rows], rows[0][-1])
        total = 0 if offset == 0 else await self._db.fetchval(
            f"SELECT count(*) FROM {table} {where.replace('$3', '$1')}", *filters
        )
        return Page([], total)

    async def _insert(self, table: str, values: dict[str, Any]) -> asyncpg.Record:
        names = ", ".join(values)
        marks = ", ".join(f"${i}" for i in range(1, len(values) + 1))
        row = await self._db.fetchrow(
            f"INSERT INTO {table} ({names}) VALUES ({marks}) RETURNING {TABLES[table]}", *values.values()
        )
        assert row is not None
        return row

    async def _update(self, table: str, no: int, values: dict[str, Any], *, bump: bool) -> asyncpg.Record | None:
        assignments = [f"{name} = ${i}" for i, name in enumerate(values, start=2)]
        if bump and values:
            assignments.append("version = version + 1")
        if not assignments:
            return await self._db.fetchrow(f"SELECT {TABLES[table]} FROM {table} WHERE no = $1", no)
        return await self._db.fetchrow(
            f"UPDATE {table} SET {', '.join(assignments)} WHERE no = $1 RETURNING {TABLES[table]}", no, *values.values()
        )


async def _starts(conn: Connection, teachers: list[int], since: int) -> dict[int, tuple[int, int]]:
    """Each teacher's counts at the start of minute `since`: its counts less the changes since."""
    rows = await conn.fetch(
        "SELECT t.no, t.good_count - coalesce(sum(h.good), 0)::bigint, t.bad_count - coalesce(sum(h.bad), 0)::bigint"
        " FROM teachers t LEFT JOIN vote_history h ON h.teacher = t.no AND h.minute >= $2"
        " WHERE t.no = ANY($1::bigint[]) GROUP BY t.no",
        teachers, since,
    )
    return {row[0]: (row[1], row[2]) for row in rows}


def _columns(fields: dict[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
    unknown = set(fields) - set(allowed)
    if unknown:
        raise ValueError(f"not a column: {sorted(unknown)}")
    return fields


def _no_such_subject(subject: int) -> Invalid:
    error = FieldError("subject", "no_such_subject", f"there is no subject {subject}")
    return Invalid("The request body is not valid.", [error])


def _json_text(value: dict[str, Any] | None) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _audit_entry(row: asyncpg.Record) -> AuditEntry:
    id, at, user_id, username, via, action, kind, no, before, after, _total = row
    return AuditEntry(
        id, iso_utc(at, "milliseconds"), user_id, username, via, action, kind, no,
        None if before is None else orjson.loads(before), None if after is None else orjson.loads(after),
    )
