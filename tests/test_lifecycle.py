"""Start, seed, stop and start again: the process as an operator sees it."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from tests.conftest import ServerFactory
from tests.support import ROOT, ServerProcess

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
    created = (await first.request("POST", "/api/subjects/", json_body={"name": "Kept"})).json()
    await first.request("PATCH", "/api/teachers/2/", json_body={"name": "Renamed"})
    await first.stop()

    second = await start_server(tmp_path / "kept")
    assert (await second.get(f"/api/subjects/{created['no']}/")).json() == created
    assert (await second.get("/api/teachers/2/")).json()["name"] == "Renamed"
    assert len((await second.get("/api/subjects/")).json()) == 6, "seeded only on the first start"


async def test_no_seed_starts_empty(start_server: ServerFactory) -> None:
    server = await start_server(server__seed=False)
    assert (await server.get("/api/subjects/")).json() == []


async def test_schema_version_is_recorded(start_server: ServerFactory, tmp_path: Path) -> None:
    import sqlite3

    await start_server(tmp_path / "versioned")
    with sqlite3.connect(tmp_path / "versioned" / "livevote.db") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] >= 1
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_server_py_serves_the_demo_data(spawn: Spawn, tmp_path: Path) -> None:
    server = await spawn("--data-dir", str(tmp_path))
    subjects = (await server.get("/api/subjects/")).json()
    assert len(subjects) >= 5
    teachers = (await server.get(f"/api/teachers/?sno={subjects[0]['no']}")).json()["teachers"]
    assert len(teachers) >= 3
    photo = await server.get(f"/static/images/{teachers[0]['photo']}")
    assert photo.status == 200 and b"<svg" in photo.body


async def test_sigterm_lets_the_request_in_flight_finish(spawn: Spawn, tmp_path: Path) -> None:
    server = await spawn("--data-dir", str(tmp_path), "--dev")
    signalled = asyncio.Event()

    async def slow_body(write):  # type: ignore[no-untyped-def]
        await write(b'{"name": ')
        server.signal(signal.SIGTERM)
        await server.wait_for_line("stopping")
        signalled.set()
        await write(b'"Finished"}')

    request = HTTPRequest(f"{server.base_url}/api/subjects/", method="POST", body_producer=slow_body,
                          headers={"Content-Type": "application/json"})
    response = await AsyncHTTPClient().fetch(request, raise_error=False)
    assert signalled.is_set()
    assert response.code == 201, response.body
    assert await server.wait_exit() == 0
    assert any("stopped" in line for line in server.lines)

    again = await spawn("--data-dir", str(tmp_path))
    assert "Finished" in [s["name"] for s in (await again.get("/api/subjects/")).json()]


async def test_sigint_stops_cleanly(spawn: Spawn, tmp_path: Path) -> None:
    server = await spawn("--data-dir", str(tmp_path))
    server.signal(signal.SIGINT)
    assert await server.wait_exit() == 0


@pytest.mark.parametrize("env, message", [
    ({"LIVEVOTE_SERVER__PORT": "eighty"}, "server.port"),
    ({"LIVEVOTE_STORE__URL": "postgres://nope"}, "store.url"),
])
async def test_bad_config_exits_2_with_one_clear_message(env: dict[str, str], message: str, tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "server.py"), "--data-dir", str(tmp_path), env={**env, "PATH": "/usr/bin:/bin"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 2
    text = stderr.decode()
    assert message in text and "Traceback" not in text
