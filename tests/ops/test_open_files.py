"""File descriptors: the limit raised at start, a cap on connections answered cleanly, and a
process that runs out anyway pausing its accepts instead of spinning.

Each test runs `python server.py` with a low open-file limit of its own (what `ulimit -n` sets),
and reads the process's CPU time from /proc, not a timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.harness.environment import server_env
from tests.harness.metrics import sample
from tests.harness.procfs import accept_queue, cpu_seconds
from tests.harness.server import Response, assert_problem, wait_for
from tests.harness.server_process import ServerProcess

EPISODE = "out of file descriptors"
FLOOD = 160
"""Connections to open at a process limited to FEW_FILES: more than it can hold."""
FEW_FILES = 96
QUIET_WINDOW = 2.0
"""Seconds of CPU time read during an episode: a spinning process burns all of them."""
QUIET_CPU_SHARE = 0.15
CHURN = 10
"""Connections of a flood closed during its episode: their places go to others, still one episode."""


class KeptConnection:
    """One HTTP/1.1 connection opened before the trouble, kept alive for several requests."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> KeptConnection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def get(self, path: str, timeout: float = 5.0) -> Response:
        self._writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        head = await asyncio.wait_for(self._reader.readuntil(b"\r\n\r\n"), timeout)
        status_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
        headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        body = await asyncio.wait_for(self._reader.readexactly(int(headers.get("content-length", 0))), timeout)
        return Response(int(status_line.split()[1]), headers, body)

    def close(self) -> None:
        self._writer.close()


def flood(port: int, count: int) -> list[socket.socket]:
    """`count` connections that send nothing: the kernel completes them whether or not the
    server accepts them."""
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sock.connect(("127.0.0.1", port))
        sockets.append(sock)
    return sockets


def close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


def episode_lines(server: ServerProcess) -> list[str]:
    return [line for line in server.lines if EPISODE in line]


async def logged(server: ServerProcess, episodes: int) -> bool:
    return len(episode_lines(server)) >= episodes


async def start(tmp_path: Path, open_files: tuple[int, int], **config: object) -> ServerProcess:
    return await ServerProcess("--data-dir", str(tmp_path), env=server_env(**config), open_files=open_files).start()


@pytest.fixture
async def starved(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    """A process that can open FEW_FILES files, with no connection cap to stop it sooner."""
    server = await start(tmp_path, (FEW_FILES, FEW_FILES), **{"server.max_connections": 100_000})
    yield server
    await server.stop()


async def test_out_of_descriptors_pauses_accepting_serves_what_it_has_and_recovers(starved: ServerProcess) -> None:
    """Two floods past the limit, each one episode however many of its connections close and are
    replaced meanwhile: one log line and one count each, the CPU quiet meanwhile, the connection
    opened before still served, new ones accepted after."""
    assert starved.process is not None
    pid = starved.process.pid
    kept = await KeptConnection.open(starved.port)
    try:
        assert (await kept.get("/healthz")).status == 200
        for episode in (1, 2):
            sockets = flood(starved.port, FLOOD)
            try:
                await wait_for(functools.partial(logged, starved, episode), what=f"episode {episode} logged")
                waiting = accept_queue(starved.port)
                close_all(sockets[:CHURN])  # accepted first: the server closes them, and takes as many more

                async def replaced(before: int = waiting) -> bool:
                    return accept_queue(starved.port) <= before - CHURN

                await wait_for(replaced, what="closed connections replaced from the queue")
                before = cpu_seconds(pid)
                await asyncio.sleep(QUIET_WINDOW)  # a measuring window, not a wait for an event
                busy = cpu_seconds(pid) - before
                assert busy < QUIET_CPU_SHARE * QUIET_WINDOW, f"{busy:.2f} s of CPU in {QUIET_WINDOW} s: spinning"
                assert (await kept.get("/healthz")).status == 200
                metrics = (await kept.get("/metrics")).body.decode()
                assert sample(metrics, "livevote_accept_pauses_total") == episode
            finally:
                close_all(sockets)

            async def accepts_again() -> bool:
                return (await starved.get("/healthz", request_timeout=2)).status == 200

            await wait_for(accepts_again, timeout=15, what="a new connection accepted after the flood")
            assert len(episode_lines(starved)) == episode, "one line per episode, not one per accept"
    finally:
        kept.close()
    assert not [line for line in starved.lines if "Traceback" in line]
    assert all(EPISODE in line for line in starved.lines if "Too many open files" in line)


EXCESS = {
    "an API request": b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "a WebSocket upgrade": (
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ),
    "a connection that sends nothing": b"",
}
CAP = 6


@pytest.mark.parametrize("excess", EXCESS)
async def test_connections_past_the_cap_get_a_503_and_the_rest_are_served(tmp_path: Path, excess: str) -> None:
    """Whatever the excess connection sends, or if it sends nothing, it reads a complete 503
    problem+json with Retry-After, and the connection is closed; the ones held go on."""
    server = await start(tmp_path, (1024, 1024), **{"server.max_connections": CAP})
    held: list[KeptConnection] = []
    try:
        held = [await KeptConnection.open(server.port) for _ in range(CAP)]
        for connection in held:  # each accepted and served before the next one
            assert (await connection.get("/healthz")).status == 200
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(EXCESS[excess])
        answer = await asyncio.wait_for(reader.read(), 5)  # to the end: the server closes it
        writer.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        fields = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
        assert lines[0] == "HTTP/1.1 503 Service Unavailable"
        assert fields["retry-after"] == "1" and fields["connection"] == "close"
        assert_problem(Response(503, {"Content-Type": fields["content-type"]}, body), 503)
        metrics = (await held[0].get("/metrics")).body.decode()
        assert sample(metrics, "livevote_connections_refused_total") == 1
        assert sample(metrics, "livevote_connections_open") == CAP
        held.pop().close()

        async def served() -> bool:
            return (await server.get("/healthz", request_timeout=2)).status == 200

        await wait_for(served, what="a connection accepted once one closed")
    finally:
        for connection in held:
            connection.close()
        await server.stop()


def open_files_limit(pid: int) -> tuple[int, int]:
    text = Path(f"/proc/{pid}/limits").read_text()
    match = re.search(r"^Max open files\s+(\d+)\s+(\d+)", text, re.MULTILINE)
    assert match, text
    return int(match.group(1)), int(match.group(2))


@pytest.mark.parametrize(("soft", "hard", "logged"), [
    (256, 4096, "open files: soft limit raised from 256 to 4096 (the hard limit)"),
    (4096, 4096, "open files: limit 4096 (soft and hard)"),
])
async def test_the_soft_limit_is_raised_to_the_hard_one_and_logged(
    tmp_path: Path, soft: int, hard: int, logged: str
) -> None:
    """And the default cap on connections keeps a tenth of that for the store, Redis and refusals."""
    server = await start(tmp_path, (soft, hard))
    try:
        assert server.process is not None
        assert open_files_limit(server.process.pid) == (hard, hard)
        assert next(line for line in server.lines if "open files:" in line).endswith(logged)
        cap = hard - hard // 10
        await server.wait_for_line(f"accepts up to {cap} connections at once")
    finally:
        await server.stop()
