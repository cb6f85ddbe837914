"""A lean Server-Sent Events load client: thousands of event streams in one process.

Each stream is a raw asyncio connection that writes its GET itself and reads the
`text/event-stream` body (chunked or not), handing each event's data (one JSON message) to a callback. An HTTP
client library per stream would cost the load client more than the server it measures, as
bench/wsload.py avoids a WebSocket library for the same reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from urllib.parse import urlencode

import orjson

OnPayload = Callable[[bytes], None]


class SseClient(asyncio.Protocol):
    def __init__(self) -> None:
        self.events = 0
        self.on_text: OnPayload | None = None
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        """Resolved with the code of the server's `close` message, or None if the stream just ended."""
        self._raw = bytearray()
        """Bytes before the body: the response head, or a chunked body's framing."""
        self._rest = b""
        """The start of an event that has not all arrived yet."""
        self._head_done = False
        self._chunked = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        """Events are read in place from each read (livevote's body is not chunked: a read is one
        or more events); only a partial event's start waits for the next."""
        if not self._head_done:
            self._raw += data
            if not self._head(self._raw):
                return
            data = bytes(self._raw)
            self._raw.clear()
        if self._chunked:
            self._raw += data
            data = self._dechunk(self._raw)
        if self._rest:
            data, self._rest = self._rest + data, b""
        position = 0
        while (end := data.find(b"\n\n", position)) >= 0:
            self._event(data[position:end])
            position = end + 2
        if position < len(data):
            self._rest = data[position:]

    def _head(self, raw: bytearray) -> bool:
        end = raw.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(raw[:end])
        del raw[: end + 4]
        status = head.split(b"\r\n", 1)[0]
        if b" 200 " not in status + b" ":
            self.opened.set_exception(ConnectionError(f"{status.decode(errors='replace')}: {bytes(raw)!r}"))
            self.close()
            return False
        self._head_done = True
        self._chunked = b"\r\ntransfer-encoding: chunked" in head.lower()
        self.opened.set_result(None)
        return True

    def _dechunk(self, raw: bytearray) -> bytes:
        """The payload of the whole chunks in `raw`, taken out of it."""
        payload, position, size = bytearray(), 0, len(raw)
        while (line_end := raw.find(b"\r\n", position)) >= 0:
            length = int(bytes(raw[position:line_end]).split(b";", 1)[0], 16)
            start = line_end + 2
            if start + length + 2 > size:
                break
            payload += raw[start : start + length]
            position = start + length + 2
            if length == 0:
                self.close()
                break
        del raw[:position]
        return bytes(payload)

    def _event(self, block: bytes) -> None:
        """One event's lines, without the blank line that ends it."""
        data_at = block.find(b"data: ")
        if data_at < 0:
            return  # a comment (the heartbeat), the retry line, or an id alone
        payload = block[data_at + 6 :]
        if b"\n" in payload:  # not livevote's one data line last: every data line, as EventSource joins them
            payload = b"\n".join(line[6:] for line in block.split(b"\n") if line.startswith(b"data: "))
        self.events += 1
        if payload.startswith(b'{"type":"close"'):
            if not self.closed.done():
                self.closed.set_result(int(orjson.loads(payload)["code"]))
        elif self.on_text is not None:
            self.on_text(payload)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed before the response head"))
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_stream(
    port: int,
    token: str,
    channels: tuple[str, ...] = ("subject:1",),
    on_text: OnPayload | None = None,
    timeout: float = 60.0,
) -> SseClient:
    """A livevote event stream (bearer token in the Authorization header) on `channels`, returned
    once a snapshot came; from then on `on_text` gets every event's data."""
    loop = asyncio.get_running_loop()
    subscribed = loop.create_future()

    def opening(payload: bytes) -> None:
        if payload.startswith(b'{"type":"snapshot"') and not subscribed.done():
            subscribed.set_result(None)

    def factory() -> SseClient:
        client = SseClient()
        client.on_text = opening  # before the first read: the snapshot may come with the head
        return client

    async with asyncio.timeout(timeout):
        _, client = await loop.create_connection(factory, "127.0.0.1", port)
    try:
        query = urlencode([("channel", channel) for channel in channels])
        lines = [
            f"GET /sse?{query} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Accept: text/event-stream",
            f"Authorization: Bearer {token}",
        ]
        assert client.transport is not None
        client.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        async with asyncio.timeout(timeout):
            await client.opened
            await subscribed
    except BaseException:
        client.close()
        raise
    client.on_text = on_text
    return client
