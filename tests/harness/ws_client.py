"""A WebSocket client for tests: the real protocol over a real socket."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from tests.harness.inbox import Inbox

if TYPE_CHECKING:
    from tests.harness.server import JsonClient


class FrameReader(Inbox):
    """A client connection whose reader task keeps every message the server sends, in order
    (as `keep` makes it), and wakes whoever waits on `_arrived`."""

    def __init__(self, connection: WebSocketClientConnection) -> None:
        super().__init__()
        self.connection = connection
        self.welcome: dict[str, Any] = {}
        self._reader = asyncio.create_task(self._read())

    def keep(self, raw: str | bytes) -> Any:
        return raw

    async def _read(self) -> None:
        while True:
            raw = await self.connection.read_message()
            async with self._arrived:
                if raw is not None:
                    self.messages.append(self.keep(raw))
                self._arrived.notify_all()
            if raw is None:
                self.connection.close()
                return

    @property
    def closed(self) -> bool:
        return self._reader.done()

    @property
    def close_code(self) -> int | None:
        return self.connection.close_code

    async def wait_closed(self, timeout: float = 5.0) -> int | None:
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        return self.close_code

    async def close(self) -> None:
        if not self.closed:
            self.connection.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._reader), 5)
        except TimeoutError:
            self._reader.cancel()


class LiveClient(FrameReader):
    """Reads every message, decoded, into a list; tests wait for the one they expect."""

    def __init__(self, connection: WebSocketClientConnection) -> None:
        super().__init__(connection)
        self._next_id = 0

    def keep(self, raw: str | bytes) -> Any:
        return json.loads(raw)

    @classmethod
    async def connect(
        cls, base_url: str, token: str | None = None, via: str = "protocol", headers: dict[str, str] | None = None,
        **options: Any,
    ) -> LiveClient:
        """Connect to /ws; the token goes in the subprotocol list (as browsers do) or the header."""
        all_headers = dict(headers or {})
        subprotocols = ["livevote.v1"]
        if token is not None and via == "protocol":
            subprotocols.append(f"bearer.{token}")
        elif token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        request = HTTPRequest(base_url.replace("http", "ws", 1) + "/ws", headers=all_headers, request_timeout=10)
        connection = await websocket_connect(request, subprotocols=subprotocols, **options)
        return cls(connection)

    def send(self, op: str, **fields: Any) -> str:
        self._next_id += 1
        op_id = f"m{self._next_id}"
        self.connection.write_message(json.dumps({"op": op, "id": op_id, **fields}))
        return op_id

    async def request(self, op: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
        """Send an op and return its reply (ack, error, pong, tokens ...)."""
        op_id = self.send(op, **fields)

        async def reply() -> dict[str, Any]:
            async with self._arrived:
                while True:
                    for index, message in enumerate(self.messages):
                        if message.get("id") == op_id:
                            return self.messages.pop(index)
                    if self.closed:
                        raise AssertionError(f"closed ({self.close_code}) before the reply to {op}")
                    await self._arrived.wait()

        return await asyncio.wait_for(reply(), timeout)


def client_port(client: LiveClient) -> int:
    """The local port of the client's connection (which /proc finds its server side by)."""
    stream = client.connection.protocol.stream  # type: ignore[union-attr]
    return int(stream.socket.getsockname()[1])


async def welcomed(server: JsonClient, token: str) -> LiveClient:
    """A socket to `server` with this token, past its `welcome`."""
    client = await LiveClient.connect(server.base_url, token)
    await client.expect("welcome")
    return client


async def refused_status(base_url: str, token: str | None = None, **kwargs: Any) -> int:
    """The HTTP status of a handshake the server refuses (it must never answer 101)."""
    try:
        client = await LiveClient.connect(base_url, token, **kwargs)
    except HTTPClientError as exc:
        if exc.code == 401:
            assert exc.response is not None
            assert exc.response.headers["WWW-Authenticate"].startswith("Bearer")
            assert exc.response.headers["Content-Type"] == "application/problem+json"
        return exc.code
    await client.close()
    raise AssertionError("the server accepted the socket")
