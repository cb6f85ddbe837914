"""The real app in this process on an unused port, a JSON client for it, its users, and waiting."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.testing import bind_unused_port

from handlers.app import LivevoteApplication, http_server, make_app
from server import shut_down
from services.config import Config, load_config
from services.container import Services
from services.wiring import build_services
from tests.harness.environment import FAST_ARGON2, TEST_SECRET
from tests.harness.redis_server import RedisServer

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]


def make_config(data_dir: Path, **overrides: Any) -> Config:
    """A config for tests: no file, no environment, `section__key=value` overrides."""
    values: dict[str, Any] = {"server.data_dir": data_dir, "auth.secret": TEST_SECRET, **FAST_ARGON2}
    values.update({key.replace("__", "."): value for key, value in overrides.items()})
    return load_config(None, environ={}, overrides=values)


@dataclass
class Response:
    status: int
    headers: Any
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    def json(self) -> Any:
        return json.loads(self.body)


class JsonClient:
    """Requests against `base_url`, with JSON bodies encoded for you."""

    port: int
    request_timeout: float = 30.0
    """Each request's bound, unless it passes its own; a reply that takes longer raises."""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def request(
        self,
        method: str,
        path: str,
        json_body: Any = None,
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        **options: Any,
    ) -> Response:
        """`options` go to tornado's HTTPRequest (validate_cert, network_interface, ...)."""
        all_headers = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body)
            all_headers.setdefault("Content-Type", "application/json")
        request = HTTPRequest(
            self.base_url + path,
            method=method,
            body=body,
            headers=all_headers,
            allow_nonstandard_methods=True,
            follow_redirects=False,
            **{"request_timeout": self.request_timeout, **options},
        )
        reply = await AsyncHTTPClient().fetch(request, raise_error=False)
        return Response(reply.code, reply.headers, reply.body or b"")

    async def get(self, path: str, **kwargs: Any) -> Response:
        return await self.request("GET", path, **kwargs)



@dataclass
class LiveServer(JsonClient):
    """The real application behind a real HTTPServer on 127.0.0.1:<unused port>, in this process."""

    config: Config
    services: Services | None = None
    port: int = 0
    _server: HTTPServer | None = field(default=None, repr=False)
    _app: LivevoteApplication | None = field(default=None, repr=False)

    async def start(self) -> LiveServer:
        """On an unused port, or on `port` again after a stop (a restart under open pages)."""
        self.services = await build_services(self.config)
        if self.port:
            sockets = bind_sockets(self.port, "127.0.0.1")
        else:
            sock, self.port = bind_unused_port()
            sockets = [sock]
        self._app = make_app(self.services)
        self._server = http_server(self._app, self.services)
        self._server.add_sockets(sockets)
        return self

    async def stop(self) -> None:
        """The same graceful stop as `python server.py` on SIGTERM."""
        if self._server is not None and self._app is not None and self.services is not None:
            await shut_down(self._server, self._app, self.services)
        self._server = self._app = self.services = None


@dataclass
class UserClient:
    """A logged-in user: every request carries its bearer access token."""

    server: JsonClient
    username: str
    password: str
    pair: dict[str, Any]

    @property
    def access_token(self) -> str:
        return str(self.pair["access_token"])

    @property
    def refresh_token(self) -> str:
        return str(self.pair["refresh_token"])

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}

    async def request(self, method: str, path: str, **kwargs: Any) -> Response:
        kwargs["headers"] = {**self.bearer, **kwargs.get("headers", {})}
        return await self.server.request(method, path, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> Response:
        return await self.request("GET", path, **kwargs)


async def log_in(server: JsonClient, username: str, password: str) -> UserClient:
    response = await server.request("POST", "/api/auth/login", json_body={"username": username, "password": password})
    assert response.status == 200, response.body
    return UserClient(server, username, password, response.json())


async def sign_up(server: JsonClient, username: str, password: str = "correct horse battery") -> UserClient:
    response = await server.request(
        "POST", "/api/auth/register", json_body={"username": username, "password": password}
    )
    assert response.status == 201, response.body
    return await log_in(server, username, password)


async def viewer_token(server: JsonClient) -> str:
    """A token to watch with, and nobody's (POST /api/auth/viewer)."""
    response = await server.request("POST", "/api/auth/viewer")
    assert response.status == 200, response.body
    body = response.json()
    assert body["role"] == "viewer" and body["token_type"] == "Bearer"
    return str(body["access_token"])


async def sign_up_admin(server: LiveServer, username: str = "root", password: str = "admin password") -> UserClient:
    """Admins are made by the operator (create-user --admin); here through the same service call."""
    assert server.services is not None
    await server.services.accounts.register({"username": username, "password": password}, role="admin")
    return await log_in(server, username, password)


def assert_problem(response: Response, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status; returns its body."""
    assert response.status == status, (response.status, response.body)
    assert response.content_type == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert problem["title"] and isinstance(problem["detail"], str)
    assert "Traceback" not in problem["detail"]
    return problem


async def wait_signalled(changed: asyncio.Event, done: Callable[[], bool], timeout: float) -> None:
    """Until `done()` holds, checked again each time `changed` is set (by whoever changes the state)."""

    async def until() -> None:
        while not done():
            changed.clear()
            await changed.wait()

    await asyncio.wait_for(until(), timeout)


async def wait_for(
    check: Callable[[], Awaitable[T]], timeout: float = 10.0, interval: float = 0.05, what: str = "condition"
) -> T:
    """Poll `check` until it returns something truthy, or fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise TimeoutError(f"{what} not met within {timeout} s")
        await asyncio.sleep(interval)


async def two_processes(start_server: Callable[..., Awaitable[LiveServer]], redis: RedisServer | None,
                        tmp_path: Path, **overrides: object) -> tuple[LiveServer, LiveServer]:
    """Two servers as two processes of one host: one SQLite file, one Redis, nothing else shared.
    Embedded (no Redis) a host is one process: both are the same server."""
    shared = {"redis__url": redis.url, **overrides} if redis else dict(overrides)
    first = await start_server(tmp_path / "host", **shared)
    return first, (await start_server(tmp_path / "host", **shared) if redis else first)
