"""An event-stream client for tests: GET /sse over a raw socket, parsed as EventSource would.

The head is read as it comes, then each event's `data` (JSON) is kept in `messages`
(which `expect` takes from) and, with the `id` in force when it arrived, in `events`
(which it does not); comments are counted as heartbeats. The server's close message is kept like any other.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode, urlsplit

from tests.harness.inbox import Inbox


def request_head(params: list[tuple[str, str]], headers: dict[str, str]) -> bytes:
    head = f"GET /sse?{urlencode(params)} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode() + b"\r\n"


class StreamRefused(Exception):
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        super().__init__(f"{status}: {body[:200]!r}")
        self.status, self.headers, self.body = status, headers, body


class EventStreamClient(Inbox):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: dict[str, str]) -> None:
        super().__init__()
        self.headers = headers
        self.events: list[tuple[str | None, dict[str, Any]]] = []
        self.last_id: str | None = None
        self.retry: int | None = None
        self.heartbeats = 0
        self._writer = writer
        self._reader = asyncio.create_task(self._read(reader))

    @classmethod
    async def open(
        cls, base_url: str, channels: Sequence[str], token: str | None = None, ticket: str | None = None,
        last_event_id: str | None = None, headers: dict[str, str] | None = None, query: dict[str, str] | None = None,
    ) -> EventStreamClient:
        """StreamRefused unless the server answers 200 with an event stream."""
        url = urlsplit(base_url)
        params = [("channel", name) for name in channels] + list((query or {}).items())
        if ticket is not None:
            params.append(("ticket", ticket))
        sent = {"Host": url.netloc, "Accept": "text/event-stream", **(headers or {})}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        if last_event_id is not None:
            sent["Last-Event-ID"] = last_event_id
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        writer.write(request_head(params, sent))
        status_line, *lines = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode().split("\r\n")
        received = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines if line)}
        status = int(status_line.split()[1])
        if status != 200:
            length = int(received.get("content-length", "0"))
            body = await reader.readexactly(length) if length else b""
            writer.close()
            raise StreamRefused(status, received, body)
        return cls(reader, writer, received)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        data: list[str] = []
        try:
            while line := (await reader.readline()).decode():
                field, _, value = line.rstrip("\n").partition(":")
                value = value.removeprefix(" ")
                if line == "\n":
                    if data:
                        await self._arrive(json.loads("\n".join(data)))
                    data = []
                elif field == "":
                    self.heartbeats += 1
                elif field == "data":
                    data.append(value)
                elif field == "id":
                    self.last_id = value
                elif field == "retry":
                    self.retry = int(value)
        except ConnectionError:
            pass
        self._writer.close()
        async with self._arrived:
            self._arrived.notify_all()

    async def _arrive(self, message: dict[str, Any]) -> None:
        async with self._arrived:
            self.messages.append(message)
            self.events.append((self.last_id, message))
            self._arrived.notify_all()

    @property
    def closed(self) -> bool:
        return self._reader.done()

    @property
    def close_code(self) -> int | None:
        return None

    async def wait_closed(self, timeout: float = 5.0) -> None:
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)

    async def close(self) -> None:
        self._writer.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._reader), 5)
        except TimeoutError:
            self._reader.cancel()
