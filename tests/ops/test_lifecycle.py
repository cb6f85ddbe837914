"""Start, seed, stop and start again: the process as an operator sees it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from services.config import PLACEHOLDER_SECRET
from tests.conftest import ServerFactory
from tests.harness.environment import server_env
from tests.harness.server import ROOT, log_in, sign_up_admin
from tests.harness.server_process import ServerProcess

Spawn = Callable[..., Awaitable[ServerProcess]]


@pytest.fixture
async def spawn() -> AsyncIterator[Spawn]:
    processes: list[ServerProcess] = []

    async def start(*args: str) -> ServerProcess:
        process = await ServerProcess(*args).start()
        processes.append(process)
        return process

    yield start
    for process in processes:
        await process.stop()


async def test_data_survives_a_restart(start_server: ServerFactory, tmp_path: Path) -> None:
    first = await start_server(tmp_path / "kept")
    admin = await sign_up_admin(first)
    created = (await admin.request("POST", "/api/subjects/", json_body={"name": "Kept"})).json()
    await admin.request("PATCH", "/api/teachers/2/", json_body={"name": "Renamed"})
    await first.stop()

    second = await start_server(tmp_path / "kept")
    assert (await second.get(f"/api/subjects/{created['no']}/")).json() == created
    assert (await second.get("/api/teachers/2/")).json()["name"] == "Renamed"
    assert len((await second.get("/api/subjects/")).json()) == 6, "seeded only on the first start"
    assert (await replace(admin, server=second).get("/api/auth/me")).status == 200, "sessions survive too"


async def test_no_seed_starts_empty(start_server: ServerFactory) -> None:
    server = await start_server(server__seed=False)
    assert (await server.get("/api/subjects/")).json() == []


async def test_schema_version_is_recorded(start_server: ServerFactory, tmp_path: Path) -> None:
    import sqlite3

    await start_server(tmp_path / "versioned")
    with sqlite3.connect(tmp_path / "versioned" / "livevote.db") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] >= 1
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_database_files_are_private(start_server: ServerFactory, tmp_path: Path) -> None:
    """Password hashes and sessions live there: 0600 like secret.key, WAL and SHM too. An
    existing database keeps its mode and keeps working."""
    data = tmp_path / "private"
    server = await start_server(data)
    database = data / "livevote.db"
    for path in (database, data / "livevote.db-wal", data / "livevote.db-shm"):
        assert path.stat().st_mode & 0o777 == 0o600, path
    await server.stop()

    database.chmod(0o644)
    again = await start_server(data)
    assert len((await again.get("/api/subjects/")).json()) == 5
    assert database.stat().st_mode & 0o777 == 0o644


async def test_server_py_serves_the_demo_data(spawn: Spawn, tmp_path: Path) -> None:
    """With nothing configured: SQLite, demo data, and a signing secret of its own."""
    server = await spawn("--data-dir", str(tmp_path))
    secret = tmp_path / "secret.key"
    assert secret.stat().st_mode & 0o777 == 0o600
    assert PLACEHOLDER_SECRET not in secret.read_text()
    subjects = (await server.get("/api/subjects/")).json()
    assert len(subjects) >= 5
    teachers = (await server.get(f"/api/teachers/?sno={subjects[0]['no']}")).json()["teachers"]
    assert len(teachers) >= 3
    photo = await server.get(f"/static/images/{teachers[0]['photo']}")
    assert photo.status == 200 and b"<svg" in photo.body


async def test_sigterm_lets_the_request_in_flight_finish(spawn: Spawn, tmp_path: Path) -> None:
    server = await spawn("--data-dir", str(tmp_path))
    reader, writer = await begun_registration(server.port, b'{"username": "late", ')
    server.signal(signal.SIGTERM)
    await server.wait_for_line("stopping")
    writer.write(b'"password": "finished in time"}')
    assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"HTTP/1.1 201 ")
    writer.close()
    assert await server.wait_exit() == 0
    assert any("stopped" in line for line in server.lines)

    again = await spawn("--data-dir", str(tmp_path))
    await log_in(again, "late", "finished in time")


BODY = b'{"username": "late", "password": "finished in time"}'


async def begun_registration(port: int, first: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A registration whose body has begun to arrive, once the server has begun the request (it
    answers `Expect: 100-continue` then), so that a signal sent next finds it under way."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /api/auth/register HTTP/1.1\r\nHost: livevote\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(BODY))
    assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"HTTP/1.1 100 ")
    await reader.readline()  # the blank line after the interim answer
    assert BODY.startswith(first)
    writer.write(first)
    await writer.drain()
    return reader, writer


async def abandon_a_body(port: int) -> None:
    """Start a chunked POST to /api, wait until the server has begun it (it answers
    `Expect: 100-continue` once the handler is ready for the body), send a little, hang up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /api/auth/register HTTP/1.1\r\nHost: livevote\r\nContent-Type: application/json\r\n"
                 b"Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
    assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"HTTP/1.1 100 ")
    writer.write(b"9\r\n{\"userna\r\n")
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def test_sigterm_does_not_wait_for_abandoned_bodies(spawn: Spawn, tmp_path: Path) -> None:
    """Three clients hung up halfway through their bodies: nothing to wait for. A request
    still arriving when SIGTERM comes is still let finish."""
    server = await spawn("--data-dir", str(tmp_path))
    await asyncio.gather(*(abandon_a_body(server.port) for _ in range(3)))
    reader, writer = await begun_registration(server.port, b'{"username": "late", ')
    signalled_at = time.monotonic()
    server.signal(signal.SIGTERM)
    await server.wait_for_line("stopping")
    writer.write(b'"password": "finished in time"}')
    assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"HTTP/1.1 201 ")
    writer.close()
    assert await server.wait_exit() == 0
    elapsed = time.monotonic() - signalled_at
    assert elapsed < 2.0, f"took {elapsed:.1f} s to stop:\n" + "\n".join(server.lines)
    assert not any("still running" in line for line in server.lines)


async def test_create_user_makes_an_admin(spawn: Spawn, tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "server.py"), "create-user", "Boss", "--admin", "--password-stdin",
        "--data-dir", str(tmp_path),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(b"a long admin password\n"), 60)
    assert process.returncode == 0, stderr
    assert b"created admin Boss" in stdout

    server = await spawn("--data-dir", str(tmp_path))
    admin = await log_in(server, "boss", "a long admin password")
    assert admin.pair["user"]["role"] == "admin"
    created = await admin.request("POST", "/api/subjects/", json_body={"name": "Made by the boss"})
    assert created.status == 201


async def test_sigint_stops_cleanly(spawn: Spawn, tmp_path: Path) -> None:
    server = await spawn("--data-dir", str(tmp_path))
    server.signal(signal.SIGINT)
    assert await server.wait_exit() == 0


@pytest.mark.parametrize("env, message", [
    ({"LIVEVOTE_SERVER__PORT": "eighty"}, "server.port"),
    ({"LIVEVOTE_STORE__URL": "postgres://nope"}, "store.url"),
    ({"LIVEVOTE_AUTH__SECRET": "thirty-one-bytes-is-one-too-few"}, "auth.secret"),
])
async def test_bad_config_exits_2_with_one_clear_message(env: dict[str, str], message: str, tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "server.py"), "--data-dir", str(tmp_path),
        env={"LIVEVOTE_SERVER__PORT": "0", **env, "PATH": "/usr/bin:/bin"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 2
    text = stderr.decode()
    assert message in text and "Traceback" not in text


UNFIT_KEYS = {"one byte": b"k", "empty": b"", "31 bytes": b"k" * 31 + b"\n", "not text": b"\xff" * 48}


@pytest.mark.parametrize("kind", [*UNFIT_KEYS, "a directory"])
async def test_an_unfit_secret_key_stops_the_start(tmp_path: Path, kind: str) -> None:
    """A short key would sign tokens anyone can forge, an empty one fails every login: one line
    naming the file, a non-zero exit, no traceback."""
    key = tmp_path / "secret.key"
    if kind in UNFIT_KEYS:
        key.write_bytes(UNFIT_KEYS[kind])
    else:
        key.mkdir()
    env = {name: value for name, value in os.environ.items() if not name.startswith("LIVEVOTE_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "server.py"), "--data-dir", str(tmp_path), "--port", "0", env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 20)
    lines = stderr.decode().splitlines()
    assert process.returncode not in (0, None)
    assert len(lines) == 1 and str(key) in lines[0] and "Traceback" not in lines[0], lines


@pytest.mark.parametrize("access_log", [True, False])
async def test_the_access_log_can_be_turned_off(tmp_path: Path, access_log: bool) -> None:
    process = await ServerProcess(
        "--data-dir", str(tmp_path), env=server_env(**{"server.access_log": access_log})
    ).start()
    try:
        assert (await process.get("/healthz")).status == 200
        process.signal(signal.SIGTERM)
        assert await process.wait_exit() == 0
    finally:
        await process.stop()
    logged = [line for line in process.lines if "tornado.access" in line]
    assert bool(logged) == access_log, logged
    assert any("stopped" in line for line in process.lines), "the log was read to its end"
