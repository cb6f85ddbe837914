"""SqliteSessionStore: refresh sessions in the embedded SQLite file.

It shares the store's SqliteDatabase, so a rotation is one `BEGIN IMMEDIATE`
transaction on the database thread: concurrent rotations of one token are
serialized, and exactly one of them sees the token as current.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from services.backends.sessions import Outcome, Rotation, SessionRecord, SessionStore
from services.backends.sqlite_db import SqliteDatabase

SESSION_ROW = "sid, user_id, created_at, expires_at, max_expires_at, revoked"


class SqliteSessionStore(SessionStore):
    def __init__(self, database: SqliteDatabase) -> None:
        self._db = database

    async def open(self) -> None:
        """The database belongs to the store, which opens it."""

    async def close(self) -> None:
        """The database belongs to the store, which closes it."""

    async def ping(self) -> None:
        await self._db.read(lambda conn: conn.execute("SELECT 1").fetchone())

    async def create(
        self, sid: str, user_id: int, token_hash: str, now: float, expires_at: float, max_expires_at: float
    ) -> SessionRecord:
        return await self._db.write(_create, sid, user_id, token_hash, now, expires_at, max_expires_at)

    async def rotate(self, token_hash: str, new_hash: str, now: float, refresh_ttl: float, grace: float) -> Rotation:
        return await self._db.write(_rotate, token_hash, new_hash, now, refresh_ttl, grace)

    async def find(self, token_hash: str) -> SessionRecord | None:
        return await self._db.read(_find, token_hash)

    async def get(self, sid: str) -> SessionRecord | None:
        return await self._db.read(_get, sid)

    async def revoke(self, sid: str) -> bool:
        return await self._db.write(_revoke, sid)

    async def revoke_user(self, user_id: int) -> list[str]:
        return await self._db.write(_revoke_user, user_id)

    async def spend(self, key_hash: str, now: float, until: float) -> bool:
        return await self._db.write(_spend, key_hash, now, until)


def _record(row: tuple[Any, ...] | None) -> SessionRecord | None:
    if row is None:
        return None
    sid, user_id, created_at, expires_at, max_expires_at, revoked = row
    return SessionRecord(sid, user_id, created_at, expires_at, max_expires_at, bool(revoked))


def _get(conn: sqlite3.Connection, sid: str) -> SessionRecord | None:
    return _record(conn.execute(f"SELECT {SESSION_ROW} FROM sessions WHERE sid = ?", (sid,)).fetchone())


def _find(conn: sqlite3.Connection, token_hash: str) -> SessionRecord | None:
    row = conn.execute(
        f"SELECT {SESSION_ROW} FROM sessions WHERE sid = (SELECT sid FROM refresh_tokens WHERE hash = ?)",
        (token_hash,),
    ).fetchone()
    return _record(row)


def _create(
    conn: sqlite3.Connection, sid: str, user_id: int, token_hash: str,
    now: float, expires_at: float, max_expires_at: float,
) -> SessionRecord:
    conn.execute("DELETE FROM sessions WHERE max_expires_at < ?", (now,))
    conn.execute(
        "INSERT INTO sessions (sid, user_id, created_at, expires_at, max_expires_at, current_hash)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (sid, user_id, now, expires_at, max_expires_at, token_hash),
    )
    conn.execute("INSERT INTO refresh_tokens (hash, sid) VALUES (?, ?)", (token_hash, sid))
    return SessionRecord(sid, user_id, now, expires_at, max_expires_at, False)


def _rotate(
    conn: sqlite3.Connection, token_hash: str, new_hash: str, now: float, refresh_ttl: float, grace: float
) -> Rotation:
    row = conn.execute(
        f"SELECT {SESSION_ROW}, current_hash, previous_hash, rotated_at FROM sessions"
        " WHERE sid = (SELECT sid FROM refresh_tokens WHERE hash = ?)",
        (token_hash,),
    ).fetchone()
    if row is None:
        return Rotation(Outcome.INVALID, None)
    session = _record(row[:6])
    assert session is not None
    current, previous, rotated_at = row[6:]
    if not session.active(now):
        return Rotation(Outcome.INVALID, session)
    if token_hash == current:
        expires_at = min(now + refresh_ttl, session.max_expires_at)
        conn.execute(
            "UPDATE sessions SET previous_hash = current_hash, current_hash = ?, rotated_at = ?, expires_at = ?"
            " WHERE sid = ?",
            (new_hash, now, expires_at, session.sid),
        )
        conn.execute("INSERT INTO refresh_tokens (hash, sid) VALUES (?, ?)", (new_hash, session.sid))
        return Rotation(Outcome.ROTATED, _get(conn, session.sid))
    if token_hash == previous and now - rotated_at < grace:
        return Rotation(Outcome.GRACE, session)
    conn.execute("UPDATE sessions SET revoked = 1 WHERE sid = ?", (session.sid,))
    return Rotation(Outcome.REUSED, _get(conn, session.sid))


def _revoke(conn: sqlite3.Connection, sid: str) -> bool:
    return conn.execute("UPDATE sessions SET revoked = 1 WHERE sid = ? AND revoked = 0", (sid,)).rowcount > 0


def _revoke_user(conn: sqlite3.Connection, user_id: int) -> list[str]:
    rows = conn.execute("SELECT sid FROM sessions WHERE user_id = ? AND revoked = 0", (user_id,)).fetchall()
    conn.execute("UPDATE sessions SET revoked = 1 WHERE user_id = ?", (user_id,))
    return [sid for (sid,) in rows]



def _spend(conn: sqlite3.Connection, key_hash: str, now: float, until: float) -> bool:
    conn.execute("DELETE FROM spent_keys WHERE until < ?", (now,))
    return conn.execute("INSERT OR IGNORE INTO spent_keys (hash, until) VALUES (?, ?)", (key_hash, until)).rowcount > 0
