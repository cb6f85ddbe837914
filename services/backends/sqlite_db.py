"""One SQLite file in WAL mode, its schema, and the thread that owns its connection.

One worker thread owns the connection and runs a whole transaction per hop,
so the event loop never waits on disk and a request costs one thread switch,
not one per statement. Writes take `BEGIN IMMEDIATE`, so several processes on
one host (scaled mode) serialize on SQLite's own lock; `synchronous=FULL`
makes a commit durable before its caller is answered.

Group commit: writes that arrive while a transaction is on the thread wait for
it to end, then go together in the next one, each in its own savepoint (a write
that fails is undone alone and fails alone), and every one is answered after
that transaction's commit. A busy server then pays one thread switch and one
fsync per group instead of per write; an idle one still commits each at once.

Reads go in groups the same way, each on its own (no transaction): a reconnect storm
brings a session read and a user read per handshake, and one thread switch per read
cost more than the reads themselves (docs/performance.md, "Every page its own session").
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from services.errors import Unavailable

T = TypeVar("T")

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE subjects (
        no INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        intro TEXT NOT NULL DEFAULT '',
        is_hot INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE teachers (
        no INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        sex INTEGER NOT NULL,
        birth TEXT NOT NULL,
        photo TEXT NOT NULL DEFAULT '',
        intro TEXT NOT NULL DEFAULT '',
        subject INTEGER NOT NULL REFERENCES subjects(no),
        good_count INTEGER NOT NULL DEFAULT 0,
        bad_count INTEGER NOT NULL DEFAULT 0,
        version INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX teachers_by_subject ON teachers(subject, no);
    """,
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        username TEXT NOT NULL,
        username_key TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('user', 'admin')),
        created_at REAL NOT NULL
    );
    CREATE TABLE votes (
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        teacher INTEGER NOT NULL REFERENCES teachers(no) ON DELETE CASCADE,
        value TEXT NOT NULL CHECK (value IN ('good', 'bad')),
        PRIMARY KEY (user_id, teacher)
    ) WITHOUT ROWID;
    CREATE INDEX votes_by_teacher ON votes(teacher, value);
    CREATE TABLE sessions (
        sid TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        max_expires_at REAL NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0,
        current_hash TEXT NOT NULL,
        previous_hash TEXT,
        rotated_at REAL
    ) WITHOUT ROWID;
    CREATE INDEX sessions_by_user ON sessions(user_id);
    CREATE INDEX sessions_by_expiry ON sessions(max_expires_at);
    CREATE TABLE refresh_tokens (
        hash TEXT PRIMARY KEY,
        sid TEXT NOT NULL REFERENCES sessions(sid) ON DELETE CASCADE
    ) WITHOUT ROWID;
    CREATE INDEX refresh_tokens_by_sid ON refresh_tokens(sid);
    """,
    """
    ALTER TABLE subjects ADD COLUMN opens_at TEXT;
    ALTER TABLE subjects ADD COLUMN closes_at TEXT;
    ALTER TABLE subjects ADD COLUMN visibility TEXT NOT NULL DEFAULT 'always'
        CHECK (visibility IN ('always', 'after_vote', 'after_close', 'hidden'));
    """,
    """
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        user_id INTEGER,
        username TEXT,
        via TEXT NOT NULL,
        action TEXT NOT NULL,
        kind TEXT NOT NULL,
        no INTEGER NOT NULL,
        before_json TEXT,
        after_json TEXT
    );
    CREATE INDEX audit_by_record ON audit(kind, no, id);
    """,
    """
    -- Vote history: each teacher's net change of its counts per minute (minutes since 1970 UTC),
    -- and how many changes. The trigger writes it in the transaction that moves the counts, so a
    -- vote, a batch of them and a reconcile correction are all recorded, and the counts at the end
    -- of any minute are the current ones less the changes after it.
    CREATE TABLE vote_history (
        teacher INTEGER NOT NULL REFERENCES teachers(no) ON DELETE CASCADE,
        minute INTEGER NOT NULL,
        good INTEGER NOT NULL DEFAULT 0,
        bad INTEGER NOT NULL DEFAULT 0,
        votes INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (teacher, minute)
    ) WITHOUT ROWID;
    CREATE TRIGGER vote_history_of_counts AFTER UPDATE OF good_count, bad_count ON teachers
    WHEN NEW.good_count <> OLD.good_count OR NEW.bad_count <> OLD.bad_count
    BEGIN
        INSERT INTO vote_history (teacher, minute, good, bad, votes)
        VALUES (NEW.no, CAST(strftime('%s', 'now') AS INTEGER) / 60,
                NEW.good_count - OLD.good_count, NEW.bad_count - OLD.bad_count, 1)
        ON CONFLICT (teacher, minute) DO UPDATE SET
            good = good + excluded.good, bad = bad + excluded.bad, votes = votes + 1;
    END;
    """,
    """
    CREATE TABLE spent_keys (
        hash TEXT PRIMARY KEY,
        until REAL NOT NULL
    ) WITHOUT ROWID;
    """,
)



@dataclass
class _Call:
    """One caller's read or write in a group: run on the thread, answered on the loop."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    answer: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    result: Any = None
    error: BaseException | None = None

    def run(self, conn: sqlite3.Connection) -> None:
        try:
            self.result = self.fn(conn, *self.args)
        except Exception as exc:
            self.error = _unavailable(exc) if isinstance(exc, sqlite3.OperationalError) else exc

    def settle(self) -> None:
        if self.answer.done():  # the caller went away
            return
        if self.error is None:
            self.answer.set_result(self.result)
        else:
            self.answer.set_exception(self.error)


class _Groups:
    """Calls waiting for the database thread: each trip there takes all that waited, by `trip`."""

    def __init__(self, trip: Callable[[list[_Call]], Awaitable[None]]) -> None:
        self._trip = trip
        self._waiting: list[_Call] = []
        self._taking: asyncio.Task[None] | None = None

    async def join(self, call: _Call) -> Any:
        self._waiting.append(call)
        if self._taking is None:
            self._taking = asyncio.ensure_future(self._take_waiting())
        return await call.answer

    async def idle(self) -> None:
        if self._taking is not None:
            await self._taking

    async def _take_waiting(self) -> None:
        try:
            while self._waiting:
                group, self._waiting = self._waiting, []
                try:
                    await self._trip(group)
                except Exception as exc:  # the trip itself: busy, disk full, the connection closed
                    for call in group:
                        call.error = exc
                for call in group:
                    call.settle()
        finally:
            self._taking = None


class SqliteDatabase:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._conn: sqlite3.Connection | None = None
        self._writes = _Groups(lambda group: self._run(self._transaction, _run_group, group))
        self._reads = _Groups(lambda group: self._run(_run_each, self._connection(), group))

    async def open(self) -> bool:
        """Connect and migrate; True when the file was just created."""
        return await self._run(self._open)

    async def close(self) -> None:
        await self._writes.idle()
        await self._reads.idle()
        if self._conn is not None:
            await self._run(self._connection().close)
            self._conn = None
        self._executor.shutdown(wait=True)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(connection, *args)` on the database thread, outside a transaction, with the
        other reads that arrived meanwhile (see the module docstring)."""
        self._connection()  # not open: the caller's error now, not its group's later
        result: T = await self._reads.join(_Call(fn, args))
        return result

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(connection, *args)` on the database thread, atomically, and return once it
        is committed (with the writes that arrived meanwhile: see the module docstring)."""
        result: T = await self._writes.join(_Call(fn, args))
        return result

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except sqlite3.OperationalError as exc:
            raise _unavailable(exc) from exc

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("database is not open")
        return self._conn

    def _transaction(self, fn: Callable[..., T], *args: Any) -> T:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn, *args)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    def _open(self) -> bool:
        """The file is made 0600 before SQLite opens it: it holds password hashes and sessions, and
        SQLite gives the -wal and -shm files it creates the database file's mode. An existing file
        keeps its mode."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(self._path, os.O_RDONLY | os.O_CREAT, 0o600))
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=5000")
        self._conn = conn
        return self._transaction(_migrate)


def _unavailable(exc: sqlite3.OperationalError) -> Unavailable:
    return Unavailable(f"The database is busy or unreadable ({exc}); try again shortly.")


def _run_each(conn: sqlite3.Connection, group: list[_Call]) -> None:
    for read in group:
        read.run(conn)


def _run_group(conn: sqlite3.Connection, group: list[_Call]) -> None:
    """Inside one transaction, each write in a savepoint: one that fails leaves nothing behind."""
    for write in group:
        conn.execute("SAVEPOINT one_write")
        write.run(conn)
        if write.error is not None:
            conn.execute("ROLLBACK TO one_write")
        conn.execute("RELEASE one_write")


def _migrate(conn: sqlite3.Connection) -> bool:
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    for script in MIGRATIONS[version:]:
        for statement in _statements(script):
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
    return version == 0


def _statements(script: str) -> list[str]:
    """A script's statements; a trigger's body holds semicolons of its own, so a piece ends a
    statement only where SQLite says the statement is complete."""
    statements, pending = [], ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            statements.append(pending)
            pending = ""
    return [statement for statement in statements if statement.strip("; \n")]
