"""A lean Server-Sent Events load client: thousands of event streams in one process.

Each stream is a raw asyncio connection that writes its GET itself and reads the chunked
`text/event-stream` body, handing each event's data (one JSON message) to a callback. An HTTP
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
        self._body = bytearray()
        self._head_done = False
        self._chunked = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._head_done and not self._raw and not self._body and self._one_event(data):
            return
        raw = self._raw
        raw += data
        if not self._head_done and not self._head(raw):
            return
        if self._chunked:
            self._dechunk(raw)
        else:
            self._body += raw
            raw.clear()
        self._events(self._body)

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

    def _one_event(self, data: bytes) -> bool:
        """The usual read, one whole event (in one whole chunk, if chunked), taken without copying
        it into the buffers; False for anything else."""
        start, end = 0, len(data) - 2
        if self._chunked:
            line_end = data.find(b"\r\n")
            if line_end < 0:
                return False
            start = line_end + 2
            end = start + int(data[:line_end], 16) - 2
            if end + 4 != len(data):
                return False
        if end < start or data.find(b"\n\n", start) != end:
            return False
        self._block(data[start:end])
        return True

    def _dechunk(self, raw: bytearray) -> None:
        position, size = 0, len(raw)
        while True:
            line_end = raw.find(b"\r\n", position)
            if line_end < 0:
                break
            length = int(bytes(raw[position:line_end]).split(b";", 1)[0], 16)
            start = line_end + 2
            if start + length + 2 > size:
                break
            self._body += raw[start : start + length]
            position = start + length + 2
            if length == 0:
                self.close()
                break
        del raw[:position]

    def _events(self, body: bytearray) -> None:
        position = 0
        while (end := body.find(b"\n\n", position)) >= 0:
            self._block(bytes(body[position:end]))
            position = end + 2
        del body[:position]

    def _block(self, block: bytes) -> None:
        """One event's lines, without the blank line that ends it."""
        data_at = block.find(b"data: ")
        if data_at < 0:
            return  # a comment (the heartbeat) or the retry line
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
