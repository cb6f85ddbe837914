"""Requests built to exhaust the server: bodies nobody asked for, declared huge, on raw sockets.

Memory is read from /proc of a `python server.py` subprocess, so the figures are
the server's alone: its peak resident size (VmHWM, reset before each attack), which
also catches memory that was taken and given back before the measurement.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.harness.environment import server_env
from tests.harness.procfs import peak_rss_kib, reset_peak_rss
from tests.harness.server import LiveServer, assert_problem
from tests.harness.server_process import ServerProcess

DECLARED = 50_000_000
SENT_PER_CONNECTION = 4 * 1024 * 1024
CONNECTIONS_PER_ROUTE = 3
RSS_GROWTH_LIMIT_KIB = 4 * 1024
UPGRADE = {
    "Connection": "Upgrade", "Upgrade": "websocket",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13",
}
BODYLESS_ROUTES: list[tuple[str, dict[str, str]]] = [
    ("/login.html", {}),
    ("/ws", UPGRADE),
    ("/static/js/livevote.js", {}),
]
"""A page, the WebSocket upgrade and a static file: GET routes that take no body."""


@pytest.fixture
async def process(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    server = await ServerProcess("--data-dir", str(tmp_path), env=server_env()).start()
    yield server
    await server.stop()


class RawRequest:
    """One request written by hand: headers, then as much of a body as the server will take."""

    def __init__(self, port: int, method: str, path: str, headers: dict[str, str]) -> None:
        self.port, self.method, self.path, self.headers = port, method, path, headers
        self.sent = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def send(self, body: bytes, total: int) -> None:
        """Headers, then `body` repeated up to `total` bytes or until the server stops reading."""
        self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        lines = [f"{self.method} {self.path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        with contextlib.suppress(ConnectionError):
            while self.sent < total and not self._writer.is_closing():
                self._writer.write(body)
                await asyncio.wait_for(self._writer.drain(), 10)
                self.sent += len(body)

    async def answer(self, timeout: float = 5.0) -> bytes:
        """What the server wrote back before closing; fails if it keeps waiting for the body."""
        assert self._reader is not None and self._writer is not None
        try:
            return await asyncio.wait_for(self._reader.read(), timeout)
        except ConnectionError:
            return b""
        except TimeoutError:
            raise AssertionError(f"{self.method} {self.path}: still reading the body after {self.sent} bytes") from None
        finally:
            self._writer.close()


def refused(answer: bytes) -> bool:
    """413 at the headers, or the connection closed without an answer."""
    return answer == b"" or answer.startswith(b"HTTP/1.1 413 ")


async def test_a_declared_body_where_none_is_taken_is_refused_unread(process: ServerProcess) -> None:
    for path, headers in BODYLESS_ROUTES:
        await process.get(path, headers=headers)
    assert process.process is not None
    before = reset_peak_rss(process.process.pid)

    requests = [
        RawRequest(process.port, "GET", path, {**headers, "Content-Length": str(DECLARED)})
        for path, headers in BODYLESS_ROUTES for _ in range(CONNECTIONS_PER_ROUTE)
    ]
    await asyncio.gather(*(request.send(b"x" * 65536, SENT_PER_CONNECTION) for request in requests))
    answers = await asyncio.gather(*(request.answer() for request in requests))
    grown = peak_rss_kib(process.process.pid) - before

    for request, answer in zip(requests, answers, strict=True):
        assert refused(answer), (request.path, answer[:200])
        if answer:
            assert b"application/problem+json" in answer and b"takes no request body" in answer
    assert grown < RSS_GROWTH_LIMIT_KIB, f"RSS grew by {grown} KiB"
    assert (await process.get("/login.html")).status == 200


async def test_a_small_body_where_none_is_taken_is_413(api: LiveServer) -> None:
    for path, headers in BODYLESS_ROUTES:
        response = await api.request("GET", path, body=b"{}", headers={**headers, "Content-Type": "application/json"})
        problem = assert_problem(response, 413)
        assert path in problem["detail"]


async def test_a_declared_body_to_the_api_is_413_at_the_headers(process: ServerProcess) -> None:
    request = RawRequest(process.port, "POST", "/api/subjects/",
                         {"Content-Length": str(DECLARED), "Content-Type": "application/json"})
    await request.send(b" " * 65536, SENT_PER_CONNECTION)
    answer = await request.answer()
    assert refused(answer), answer[:200]
    if answer:
        assert b"application/problem+json" in answer


async def test_an_endless_chunked_body_to_the_api_is_cut_off(process: ServerProcess) -> None:
    """Chunked: no size to refuse at the headers, so the server reads on to its cap plus a short
    drain (a body just over the cap still gets its 413 problem), then answers 400 and closes:
    the client is not left sending, and nothing it sent is kept."""
    assert process.process is not None
    await process.get("/api/subjects/")
    before = reset_peak_rss(process.process.pid)
    chunk = b"10000\r\n" + b" " * 65536 + b"\r\n"
    requests = [
        RawRequest(process.port, "POST", "/api/auth/register",
                   {"Transfer-Encoding": "chunked", "Content-Type": "application/json"})
        for _ in range(CONNECTIONS_PER_ROUTE)
    ]
    await asyncio.gather(*(request.send(chunk, SENT_PER_CONNECTION) for request in requests))
    for request in requests:
        answer = await request.answer()
        assert answer == b"" or answer.startswith((b"HTTP/1.1 413 ", b"HTTP/1.1 400 ")), answer[:200]
    grown = peak_rss_kib(process.process.pid) - before
    assert grown < RSS_GROWTH_LIMIT_KIB, f"RSS grew by {grown} KiB"

