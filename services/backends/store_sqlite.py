"""SqliteStore: the embedded Store on one SQLite file (see sqlite_db for the threading)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

import orjson

from services.backends import history_sums
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
from services.backends.sqlite_db import SqliteDatabase
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
    utc_now,
    voting_state,
)
from services.schemas import account_key, username_key

COUNT_DELTAS = {"good": (1, 0), "bad": (0, 1), None: (0, 0)}


def sqlite_path(url: str) -> Path:
    """`sqlite:///relative/or/absolute.db` -> a Path."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ValueError(f"not a sqlite URL: {url}")
    return Path(url[len(prefix):])


class SqliteStore(Store):
    def __init__(self, path: Path) -> None:
        self.database = SqliteDatabase(path)
        self._read = self.database.read
        self._write = self.database.write

    async def open(self) -> bool:
        return await self.database.open()

    async def close(self) -> None:
        await self.database.close()

    async def ping(self) -> None:
        await self._read(lambda conn: conn.execute("SELECT 1").fetchone())

    # -- subjects ----------------------------------------------------------

    async def list_subjects(self, offset: int = 0, limit: int | None = None) -> Page:
        return await self._read(_page, SUBJECT_ROW, "subjects", "", (), offset, limit, _subject)

    async def get_subject(self, no: int) -> Subject:
        return await self._read(_get_subject, no)

    async def create_subject(self, fields: dict[str, Any]) -> Subject:
        return await self._write(_insert_subject, fields)

    async def update_subject(self, no: int, fields: dict[str, Any]) -> Subject:
        return await self._write(_update_subject, no, fields)

    async def delete_subject(self, no: int) -> None:
        await self._write(_delete_subject, no)

    # -- teachers ----------------------------------------------------------

    async def list_teachers(
        self, subject: int | None = None, offset: int = 0, limit: int | None = None
    ) -> Page:
        where, params = ("WHERE subject = ?", (subject,)) if subject is not None else ("", ())
        return await self._read(_page, TEACHER_ROW, "teachers", where, params, offset, limit, _teacher)

    async def get_teacher(self, no: int) -> Teacher:
        return await self._read(_get_teacher, no)

    async def create_teacher(self, fields: dict[str, Any]) -> Teacher:
        return await self._write(_insert_teacher, fields)

    async def update_teacher(self, no: int, fields: dict[str, Any]) -> Teacher:
        return await self._write(_update_teacher, no, fields)

    async def delete_teacher(self, no: int) -> None:
        await self._write(_delete_row, "teachers", no, "teacher")

    # -- accounts ----------------------------------------------------------

    async def create_user(self, username: str, password_hash: str, role: str) -> User:
        return await self._write(_insert_user, username, account_key(username), password_hash, role)

    async def find_credentials(self, username: str) -> Credentials | None:
        """By username_key(). Rows written before it have the casefold of an ASCII name
        there, which is the same key, so older files need no migration."""
        key = username_key(username)
        if key is None:
            return None
        query = f"SELECT {USER_ROW}, password_hash FROM users WHERE username_key = ?"
        row = await self._read(_fetch_one, query, (key,))
        return None if row is None else Credentials(User(*row[:3]), row[3])

    async def get_user(self, user_id: int) -> User:
        row = await self._read(_fetch_one, f"SELECT {USER_ROW} FROM users WHERE id = ?", (user_id,))
        if row is None:
            raise NotFound(f"There is no user {user_id}.")
        return User(*row)

    async def set_user_role(self, user_id: int, role: str) -> User:
        return await self._write(_set_user_role, user_id, role)

    # -- votes -------------------------------------------------------------

    async def set_vote(self, user_id: int, teacher: int, value: VoteValue | None) -> VoteResult:
        return await self._write(_set_vote, user_id, teacher, value)

    async def get_vote(self, user_id: int, teacher: int) -> VoteResult:
        return await self._read(_get_vote, user_id, teacher)

    async def voted_subjects(self, user_id: int) -> set[int]:
        rows = await self._read(_fetch_all, VOTED_SUBJECTS.replace("$1", "?"), (user_id,))
        return {row[0] for row in rows}

    async def voters(self, subject: int) -> set[int]:
        rows = await self._read(_fetch_all, VOTERS.replace("$1", "?"), (subject,))
        return {row[0] for row in rows}

    async def counts(self, subject: int | None = None) -> list[Counts]:
        where, params = ("WHERE subject = ?", (subject,)) if subject is not None else ("", ())
        rows = await self._read(_fetch_all, f"SELECT {COUNTS_ROW} FROM teachers {where} ORDER BY no", params)
        return [Counts(*row) for row in rows]

    async def subject_totals(self) -> list[SubjectTotals]:
        rows = await self._read(
            _fetch_all,
            "SELECT s.no, s.name, coalesce(sum(t.good_count), 0), coalesce(sum(t.bad_count), 0)"
            " FROM subjects s LEFT JOIN teachers t ON t.subject = s.no GROUP BY s.no ORDER BY s.no",
            (),
        )
        return [SubjectTotals(*row) for row in rows]

    async def tally_votes(self, teacher: int) -> tuple[int, int]:
        row = await self._read(
            _fetch_one,
            "SELECT count(*) FILTER (WHERE value = 'good'), count(*) FILTER (WHERE value = 'bad')"
            " FROM votes WHERE teacher = ?",
            (teacher,),
        )
        assert row is not None
        return row[0], row[1]

    async def reconcile(self) -> int:
        return await self._write(_reconcile)

    # -- audit log ---------------------------------------------------------

    async def record_audit(self, entry: AuditEntry) -> AuditEntry:
        return await self._write(_insert_audit, entry)

    async def list_audit(
        self, offset: int = 0, limit: int | None = None, kind: AuditKind | None = None, no: int | None = None
    ) -> Page:
        return await self._read(_audit_page, offset, limit, kind, no)
    # -- vote history (the trigger of sqlite_db.MIGRATIONS writes it) ------------

    async def history(self, teachers: Sequence[int], since: int, until: int, step: int) -> list[HistoryBucket]:
        return await self._read(_in_snapshot, _history, json.dumps(list(teachers)), since, until, step)

    async def history_minutes(
        self, teachers: Sequence[int], since: int, until: int, after: HistoryMinute | None, limit: int
    ) -> list[HistoryMinute]:
        return await self._read(_in_snapshot, _history_minutes, json.dumps(list(teachers)), since, until, after, limit)


# -- statements, run on the store's thread -------------------------------------


def _subject(row: tuple[Any, ...]) -> Subject:
    no, name, intro, is_hot, opens_at, closes_at, visibility = row
    return Subject(
        no=no, name=name, intro=intro, is_hot=bool(is_hot),
        opens_at=_moment(opens_at), closes_at=_moment(closes_at), visibility=visibility,
    )


def _moment(text: str | None) -> datetime | None:
    """Moments are stored as ISO 8601 text in UTC."""
    return None if text is None else datetime.fromisoformat(text)


def _teacher(row: tuple[Any, ...]) -> Teacher:
    no, name, sex, birth, photo, intro, subject, good, bad, version = row
    return Teacher(
        no=no, name=name, sex=bool(sex), birth=date.fromisoformat(birth), photo=photo,
        intro=intro, subject=subject, good_count=good, bad_count=bad, version=version,
    )


def _page(
    conn: sqlite3.Connection, columns: str, table: str, where: str, params: tuple[Any, ...],
    offset: int, limit: int | None, make: Callable[[tuple[Any, ...]], Any], order: str = "no",
) -> Page:
    rows = conn.execute(
        f"SELECT {columns} FROM {table} {where} ORDER BY {order} LIMIT ? OFFSET ?",
        (*params, -1 if limit is None else limit, offset),
    ).fetchall()
    total = conn.execute(f"SELECT count(*) FROM {table} {where}", params).fetchone()[0]
    return Page([make(row) for row in rows], total)


def _get_subject(conn: sqlite3.Connection, no: int) -> Subject:
    row = conn.execute(f"SELECT {SUBJECT_ROW} FROM subjects WHERE no = ?", (no,)).fetchone()
    if row is None:
        raise NotFound(f"There is no subject {no}.")
    return _subject(row)


def _get_teacher(conn: sqlite3.Connection, no: int) -> Teacher:
    row = conn.execute(f"SELECT {TEACHER_ROW} FROM teachers WHERE no = ?", (no,)).fetchone()
    if row is None:
        raise NotFound(f"There is no teacher {no}.")
    return _teacher(row)


def _columns(fields: dict[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
    unknown = set(fields) - set(allowed)
    if unknown:
        raise ValueError(f"not a column: {sorted(unknown)}")
    return {key: value.isoformat() if isinstance(value, date) else value for key, value in fields.items()}


def _insert(conn: sqlite3.Connection, table: str, values: dict[str, Any]) -> int:
    names = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    cursor = conn.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", tuple(values.values()))
    return int(cursor.lastrowid or 0)


def _update(conn: sqlite3.Connection, table: str, no: int, values: dict[str, Any]) -> None:
    if values:
        assignments = ", ".join(f"{name} = ?" for name in values)
        conn.execute(f"UPDATE {table} SET {assignments} WHERE no = ?", (*values.values(), no))


def _insert_subject(conn: sqlite3.Connection, fields: dict[str, Any]) -> Subject:
    return _get_subject(conn, _insert(conn, "subjects", _columns(fields, SUBJECT_COLUMNS)))


def _update_subject(conn: sqlite3.Connection, no: int, fields: dict[str, Any]) -> Subject:
    _get_subject(conn, no)
    _update(conn, "subjects", no, _columns(fields, SUBJECT_COLUMNS))
    return _get_subject(conn, no)


def _delete_subject(conn: sqlite3.Connection, no: int) -> None:
    _get_subject(conn, no)
    if conn.execute("SELECT 1 FROM teachers WHERE subject = ? LIMIT 1", (no,)).fetchone():
        raise Conflict(f"Subject {no} still has teachers; move or delete them first.")
    conn.execute("DELETE FROM subjects WHERE no = ?", (no,))


def _check_subject_exists(conn: sqlite3.Connection, values: dict[str, Any]) -> None:
    subject = values.get("subject")
    if subject is not None and not conn.execute(
        "SELECT 1 FROM subjects WHERE no = ?", (subject,)
    ).fetchone():
        error = FieldError("subject", "no_such_subject", f"there is no subject {subject}")
        raise Invalid("The request body is not valid.", [error])


def _insert_teacher(conn: sqlite3.Connection, fields: dict[str, Any]) -> Teacher:
    values = _columns(fields, TEACHER_COLUMNS)
    _check_subject_exists(conn, values)
    return _get_teacher(conn, _insert(conn, "teachers", values))


def _update_teacher(conn: sqlite3.Connection, no: int, fields: dict[str, Any]) -> Teacher:
    _get_teacher(conn, no)
    values = _columns(fields, TEACHER_COLUMNS)
    _check_subject_exists(conn, values)
    if values:
        _update(conn, "teachers", no, values)
        conn.execute("UPDATE teachers SET version = version + 1 WHERE no = ?", (no,))
    return _get_teacher(conn, no)


def _delete_row(conn: sqlite3.Connection, table: str, no: int, noun: str) -> None:
    if conn.execute(f"DELETE FROM {table} WHERE no = ?", (no,)).rowcount == 0:
        raise NotFound(f"There is no {noun} {no}.")


def _fetch_all(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    return conn.execute(sql, params).fetchall()


def _fetch_one(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
    row: tuple[Any, ...] | None = conn.execute(sql, params).fetchone()
    return row


def _insert_user(conn: sqlite3.Connection, username: str, key: str, password_hash: str, role: str) -> User:
    try:
        cursor = conn.execute(
            "INSERT INTO users (username, username_key, password_hash, role, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (username, key, password_hash, role, time.time()),
        )
    except sqlite3.IntegrityError:
        raise Conflict(f"The username {username!r} is taken.") from None
    return User(int(cursor.lastrowid or 0), username, role)


def _set_user_role(conn: sqlite3.Connection, user_id: int, role: str) -> User:
    row = conn.execute(f"UPDATE users SET role = ? WHERE id = ? RETURNING {USER_ROW}", (role, user_id)).fetchone()
    if row is None:
        raise NotFound(f"There is no user {user_id}.")
    return User(*row)


def _counts(conn: sqlite3.Connection, teacher: int) -> Counts:
    row = conn.execute(f"SELECT {COUNTS_ROW} FROM teachers WHERE no = ?", (teacher,)).fetchone()
    if row is None:
        raise NotFound(f"There is no teacher {teacher}.")
    return Counts(*row)


def _get_vote(conn: sqlite3.Connection, user_id: int, teacher: int) -> VoteResult:
    counts = _counts(conn, teacher)
    row = conn.execute("SELECT value FROM votes WHERE user_id = ? AND teacher = ?", (user_id, teacher)).fetchone()
    visibility, opens_at, closes_at = conn.execute(
        "SELECT visibility, opens_at, closes_at FROM subjects WHERE no = ?", (counts.subject,)
    ).fetchone()
    state = voting_state(_moment(opens_at), _moment(closes_at), utc_now())
    return VoteResult(None if row is None else row[0], counts, False, visibility, state)


def _set_vote(conn: sqlite3.Connection, user_id: int, teacher: int, value: VoteValue | None) -> VoteResult:
    current = _get_vote(conn, user_id, teacher)
    old = current.value
    if old == value:
        return current
    if current.state == "closed":
        raise VotingClosed(current.counts.subject)
    if value is None:
        conn.execute("DELETE FROM votes WHERE user_id = ? AND teacher = ?", (user_id, teacher))
    else:
        try:
            conn.execute(
                "INSERT INTO votes (user_id, teacher, value) VALUES (?, ?, ?)"
                " ON CONFLICT (user_id, teacher) DO UPDATE SET value = excluded.value",
                (user_id, teacher, value),
            )
        except sqlite3.IntegrityError:  # the teacher was read above: the user is gone
            raise NotFound(f"There is no user {user_id}.") from None
    good = COUNT_DELTAS[value][0] - COUNT_DELTAS[old][0]
    bad = COUNT_DELTAS[value][1] - COUNT_DELTAS[old][1]
    conn.execute(
        "UPDATE teachers SET good_count = good_count + ?, bad_count = bad_count + ?, version = version + 1"
        " WHERE no = ?",
        (good, bad, teacher),
    )
    return replace(current, value=value, counts=_counts(conn, teacher), changed=True)


def _reconcile(conn: sqlite3.Connection) -> int:
    rows = conn.execute(
        "SELECT t.no, coalesce(v.good, 0), coalesce(v.bad, 0) FROM teachers t LEFT JOIN"
        " (SELECT teacher, count(*) FILTER (WHERE value = 'good') AS good,"
        " count(*) FILTER (WHERE value = 'bad') AS bad FROM votes GROUP BY teacher) v ON v.teacher = t.no"
        " WHERE t.good_count <> coalesce(v.good, 0) OR t.bad_count <> coalesce(v.bad, 0)"
    ).fetchall()
    conn.executemany(
        "UPDATE teachers SET good_count = ?, bad_count = ?, version = version + 1 WHERE no = ?",
        [(good, bad, no) for no, good, bad in rows],
    )
    return len(rows)


AUDIT_ROW = "id, at, user_id, username, via, action, kind, no, before_json, after_json"


def _insert_audit(conn: sqlite3.Connection, entry: AuditEntry) -> AuditEntry:
    cursor = conn.execute(
        f"INSERT INTO audit ({AUDIT_ROW.removeprefix('id, ')}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (entry.at, entry.user_id, entry.username, entry.via, entry.action, entry.kind, entry.no,
         _json_text(entry.before), _json_text(entry.after)),
    )
    return replace(entry, id=int(cursor.lastrowid or 0))


def _audit_page(
    conn: sqlite3.Connection, offset: int, limit: int | None, kind: str | None, no: int | None
) -> Page:
    filters = {"kind": kind, "no": no}
    where = " AND ".join(f"{name} = ?" for name, value in filters.items() if value is not None)
    where = f"WHERE {where}" if where else ""
    params = tuple(value for value in filters.values() if value is not None)
    return _page(conn, AUDIT_ROW, "audit", where, params, offset, limit, _audit_entry, order="id DESC")


def _audit_entry(row: tuple[Any, ...]) -> AuditEntry:
    id, at, user_id, username, via, action, kind, no, before, after = row
    return AuditEntry(id, at, user_id, username, via, action, kind, no, _json_value(before), _json_value(after))


def _json_text(value: dict[str, Any] | None) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _json_value(text: str | None) -> dict[str, Any] | None:
    return None if text is None else orjson.loads(text)
# -- vote history --------------------------------------------------------------

TEACHERS_IN = "IN (SELECT value FROM json_each(?))"
"""The teachers asked for, given as one JSON array (any number, one parameter)."""


def _in_snapshot(conn: sqlite3.Connection, fn: Callable[..., Any], *args: Any) -> Any:
    """Several reads that see one state of the file, whatever other processes write meanwhile."""
    conn.execute("BEGIN")
    try:
        return fn(conn, *args)
    finally:
        conn.execute("COMMIT")


def _starts(conn: sqlite3.Connection, teachers: str, since: int) -> dict[int, tuple[int, int]]:
    """Each teacher's counts at the start of minute `since`: its counts less the changes since."""
    rows = conn.execute(
        "SELECT t.no, t.good_count - coalesce(sum(h.good), 0), t.bad_count - coalesce(sum(h.bad), 0)"
        f" FROM teachers t LEFT JOIN vote_history h ON h.teacher = t.no AND h.minute >= ? WHERE t.no {TEACHERS_IN}"
        " GROUP BY t.no",
        (since, teachers),
    ).fetchall()
    return {no: (good, bad) for no, good, bad in rows}


def _history(conn: sqlite3.Connection, teachers: str, since: int, until: int, step: int) -> list[HistoryBucket]:
    starts = _starts(conn, teachers, since).values()
    rows = conn.execute(
        "SELECT ? + (minute - ?) / ? * ?, sum(good), sum(bad), sum(votes) FROM vote_history"
        f" WHERE teacher {TEACHERS_IN} AND minute >= ? AND minute < ? GROUP BY 1",
        (since, since, step, step, teachers, since, until),
    ).fetchall()
    start = (sum(good for good, _ in starts), sum(bad for _, bad in starts))
    return history_sums.buckets(start, {row[0]: row[1:] for row in rows}, since, until, step)


def _history_minutes(
    conn: sqlite3.Connection, teachers: str, since: int, until: int, after: HistoryMinute | None, limit: int
) -> list[HistoryMinute]:
    teacher, minute = (after.teacher, after.minute) if after else (0, since - 1)
    rows = conn.execute(
        f"SELECT teacher, minute, good, bad, votes FROM vote_history WHERE teacher {TEACHERS_IN}"
        " AND minute >= ? AND minute < ? AND (teacher, minute) > (?, ?) ORDER BY teacher, minute LIMIT ?",
        (teachers, since, until, teacher, minute, limit),
    ).fetchall()
    return history_sums.minutes(rows, after, _starts(conn, json.dumps(history_sums.new_teachers(rows, after)), since))
