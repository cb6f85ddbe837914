"""The /ws property suites' rig: a loop thread for Hypothesis, a module-wide server, a probe socket.

Hypothesis drives plain (sync) tests; every example is a coroutine submitted to the one event
loop in a thread of its own, where the server lives (rate limits raised, ws.max_message_size
set). The probe socket keeps every frame the server sends and delimits a frame's replies with
a sentinel ping.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClosedError, websocket_connect

from tests.harness.server import LiveServer, UserClient, log_in, make_config
from tests.harness.strategies import examples
from tests.harness.ws_client import FrameReader

T = TypeVar("T")

MAX_MESSAGE = 16 * 1024
"""The server's ws.max_message_size (the shipped default, set explicitly below)."""
RATE_BURST = 10
RATE_LIMIT = 1.0
"""The rate-limited server: ten frames at once, then one a second."""
UNSOLICITED = {"votes", "token", "watching", "catalog"}
"""Messages the server may push at any time; never a reply to a frame (watching: whenever how many
watch a subject changes, which another example's sockets coming and going can cause)."""


def ws_examples(factor: float) -> settings:
    """examples(factor) with every health check off: the strategies draw frames up to four times
    ws.max_message_size, and every example goes to the live server."""
    return examples(factor, suppress_health_check=list(HealthCheck))


class LoopThread:
    """One asyncio loop in a thread; tests hand it coroutines and wait with a timeout."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="ws-properties-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise AssertionError(f"the example did not finish within {timeout} s") from None

    def close(self) -> None:
        async def cancel_rest() -> None:
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)
            await self.loop.shutdown_asyncgens()

        self.run(cancel_rest(), 30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


class ErrorLog(logging.Handler):
    """ERROR records the server logs in the loop thread (an uncaught exception in a handler)."""

    def __init__(self, thread_name: str) -> None:
        super().__init__(logging.ERROR)
        self.thread_name = thread_name
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.threadName == self.thread_name:
            self.records.append(record)

    def since(self, mark: int) -> list[str]:
        return [f"{r.name}: {r.getMessage()} {r.exc_info[1]!r}" if r.exc_info else f"{r.name}: {r.getMessage()}"
                for r in self.records[mark:]]


def short(value: str | bytes, limit: int = 240) -> str:
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit // 2]!r} ... {value[-limit // 4:]!r} ({len(value)} in all)"


class Text(str):
    """A generated frame whose repr stays short (Hypothesis warns about reprs over ~40 kB)."""

    def __repr__(self) -> str:
        return short(str(self))


class Blob(bytes):
    def __repr__(self) -> str:
        return short(bytes(self))


def decode(raw: str | bytes) -> dict[str, Any]:
    """A server message: a text frame holding one JSON object with a string `type`."""
    assert isinstance(raw, str), f"the server sent a binary frame: {raw!r}"
    message = json.loads(raw)
    assert isinstance(message, dict) and isinstance(message.get("type"), str), f"not a typed object: {raw!r}"
    return message


@dataclass
class Outcome:
    replies: list[dict[str, Any]]
    closed: bool
    close_code: int | None


class ProbeSocket(FrameReader):
    """A raw client: keeps every frame the server sends, in order, undecoded."""

    _probes = itertools.count()

    @classmethod
    async def open(cls, base_url: str, token: str) -> ProbeSocket:
        request = HTTPRequest(base_url.replace("http", "ws", 1) + "/ws", request_timeout=10)
        connection = await websocket_connect(request, subprotocols=["livevote.v1", f"bearer.{token}"])
        sock = cls(connection)
        assert await sock.until(lambda: len(sock.messages) >= 1, 10), f"no welcome (closed {sock.close_code})"
        sock.welcome = decode(sock.messages.pop(0))
        assert sock.welcome["type"] == "welcome", sock.welcome
        return sock

    def write(self, payload: str | bytes, binary: bool = False) -> None:
        try:
            written = self.connection.write_message(payload, binary=binary)
        except WebSocketClosedError:
            return
        written.add_done_callback(lambda f: f.cancelled() or f.exception())

    def send(self, **op: Any) -> None:
        self.write(json.dumps(op))

    async def until(self, check: Callable[[], T], timeout: float) -> T | None:
        """`check()` once it is neither None nor False (0 counts: an index); None if the socket
        closed or time ran out first."""

        def done(found: T | None) -> bool:
            return found is not None and found is not False

        async def wait() -> T | None:
            async with self._arrived:
                while not done(found := check()):
                    if self.closed:
                        return found if done(found := check()) else None
                    await self._arrived.wait()
                return found

        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            return None

    def decoded(self, start: int = 0, stop: int | None = None) -> list[dict[str, Any]]:
        return [decode(raw) for raw in self.messages[start:stop]]

    def find(self, start: int, **match: Any) -> int | None:
        for index in range(start, len(self.messages)):
            raw = self.messages[index]
            if isinstance(raw, str):
                try:
                    message = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(message, dict) and all(message.get(k) == v for k, v in match.items()):
                    return index
        return None

    async def exchange(self, payload: str | bytes, binary: bool = False, timeout: float = 10.0) -> Outcome:
        """Send a frame, then a sentinel ping; the replies are what came before its pong."""
        start = len(self.messages)
        probe = f"\x00probe-{next(self._probes)}"
        self.write(payload, binary)
        self.send(op="ping", id=probe)
        found = await self.until(lambda: self.find(start, type="pong", id=probe), timeout)
        if found is None:
            if not self.closed:
                raise AssertionError(
                    f"no pong within {timeout} s and the socket is still open: {self.messages[start:]}"
                )
            return Outcome(self._solicited(start, None), True, self.close_code)
        return Outcome(self._solicited(start, found), False, None)

    def _solicited(self, start: int, stop: int | None) -> list[dict[str, Any]]:
        return [m for m in self.decoded(start, stop) if m["type"] not in UNSOLICITED]

    async def request(self, timeout: float = 10.0, **op: Any) -> dict[str, Any]:
        """Send an op with a fresh id and return the reply carrying that id."""
        op_id = f"r-{next(self._probes)}"
        start = len(self.messages)
        self.send(id=op_id, **op)
        found = await self.until(lambda: self.find(start, id=op_id), timeout)
        assert found is not None, f"no reply to {op} (closed: {self.closed}, code {self.close_code})"
        return decode(self.messages[found])



PASSWORD = "plum tractor quietly 9431"


async def new_user(server: LiveServer, username: str) -> UserClient:
    """Registered through the service (as sign_up_admin does: no per-IP registration budget
    to run out of over hundreds of examples), then logged in over HTTP."""
    assert server.services is not None
    await server.services.accounts.register({"username": username, "password": PASSWORD})
    return await log_in(server, username, PASSWORD)


@dataclass
class Env:
    runner: LoopThread
    server: LiveServer
    user: UserClient
    stranger: UserClient
    teachers_of: dict[int, list[int]]
    errors: ErrorLog
    data_dir: Path
    _probe: ProbeSocket | None = None
    _limited: LiveServer | None = None
    _users: Iterator[int] = field(default_factory=itertools.count)

    @property
    def teachers(self) -> set[int]:
        return {no for nos in self.teachers_of.values() for no in nos}

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Run one example; fails it on any error the server logged meanwhile."""
        mark = len(self.errors.records)
        try:
            result = self.runner.run(coro, timeout)
        except BaseException:
            self.runner.run(self.drop_probe(), 30)
            raise
        logged = self.errors.since(mark)
        assert not logged, f"the server logged errors: {logged}"
        return result

    async def probe(self) -> ProbeSocket:
        """The shared socket, reopened after it closed."""
        if self._probe is None or self._probe.closed:
            self._probe = await ProbeSocket.open(self.server.base_url, self.user.access_token)
        return self._probe

    async def drop_probe(self) -> None:
        if self._probe is not None:
            await self._probe.close()
            self._probe = None

    async def limited(self) -> LiveServer:
        """A second server with a low rate limit, for the flood tests."""
        if self._limited is None:
            config = make_config(self.data_dir / "limited", ws__rate_limit=RATE_LIMIT, ws__rate_burst=RATE_BURST)
            self._limited = await LiveServer(config).start()
        return self._limited

    def username(self, prefix: str) -> str:
        return f"{prefix}{next(self._users)}"


def probe_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """The server and its users, up for as long as the caller (a module-scoped fixture) holds it."""
    runner = LoopThread()
    errors = ErrorLog(runner.thread.name)
    logging.getLogger().addHandler(errors)
    data_dir = tmp_path_factory.mktemp("ws-properties")

    async def start() -> Env:
        config = make_config(data_dir / "main", ws__rate_limit=10000, ws__rate_burst=10000,
                             ws__max_message_size=MAX_MESSAGE, auth__viewer_attempts=1_000_000)
        server = await LiveServer(config).start()
        user = await new_user(server, "prober")
        stranger = await new_user(server, "stranger")
        subjects = (await server.get("/api/subjects/")).json()
        teachers_of = {}
        for subject in subjects:
            teachers = (await server.get(f"/api/subjects/{subject['no']}/teachers/")).json()
            teachers_of[subject["no"]] = [t["no"] for t in teachers]
        return Env(runner, server, user, stranger, teachers_of, errors, data_dir)

    try:
        environment = runner.run(start())
    except BaseException:
        logging.getLogger().removeHandler(errors)
        runner.close()
        raise

    async def stop() -> None:
        await environment.drop_probe()
        for server in (environment._limited, environment.server):
            if server is not None:
                await server.stop()

    try:
        yield environment
    finally:
        try:
            runner.run(stop())
        finally:
            logging.getLogger().removeHandler(errors)
            runner.close()
