"""A lean WebSocket load client: thousands of sockets in one process.

Each socket counts the text frames it receives by reading frame headers only;
a sample of sockets also hands every payload to a callback (to read the
version and time it). Kept minimal so that the client, not the server, is the
last thing to saturate; the benchmarks still report the client's CPU.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from collections.abc import Callable
from ssl import SSLContext
from typing import cast

OnPayload = Callable[[bytes], None]
ZERO_MASK = b"\x00\x00\x00\x00"


def client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A masked client frame; a zero mask key is valid and leaves the payload as it is."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    return header + ZERO_MASK + payload


class WsClient(asyncio.Protocol):
    def __init__(self, on_payload: OnPayload | None = None) -> None:
        self.frames = 0
        self.on_payload = on_payload
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._buffer = bytearray()
        self._upgraded = False
        self.on_text: OnPayload | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's classes

    def send_text(self, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(payload))

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        if not self._upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buffer[:end]).split(b"\r\n", 1)[0]
            del buffer[: end + 4]
            if b" 101 " not in status:
                self.opened.set_exception(ConnectionError(status.decode(errors="replace")))
                assert self.transport is not None
                self.transport.close()
                return
            self._upgraded = True
            self.opened.set_result(None)
        self._frames(buffer)

    def _frames(self, buffer: bytearray) -> None:
        position, size = 0, len(buffer)
        while size - position >= 2:
            first, second = buffer[position], buffer[position + 1]
            length, start = second & 0x7F, position + 2
            if length == 126:
                if size - position < 4:
                    break
                length, start = (buffer[position + 2] << 8) | buffer[position + 3], position + 4
            elif length == 127:
                if size - position < 10:
                    break
                length, start = struct.unpack_from("!Q", buffer, position + 2)[0], position + 10
            end = start + length
            if end > size:
                break
            opcode = first & 0x0F
            if opcode == 0x1:
                self.frames += 1
                if self.on_payload is not None or self.on_text is not None:
                    payload = bytes(buffer[start:end])
                    if self.on_text is not None:
                        self.on_text(payload)
                    if self.on_payload is not None:
                        self.on_payload(payload)
            elif opcode == 0x9 and self.transport is not None:
                self.transport.write(client_frame(bytes(buffer[start:end]), 0xA))
            elif opcode == 0x8:
                code = struct.unpack_from("!H", buffer, start)[0] if length >= 2 else None
                if not self.closed.done():
                    self.closed.set_result(code)
            position = end
        del buffer[:position]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def connect(
    port: int, path: str = "/ws", headers: dict[str, str] | None = None, on_payload: OnPayload | None = None, *,
    factory: Callable[[], WsClient] | None = None, ssl: SSLContext | None = None, timeout: float = 30.0,
) -> WsClient:
    """A socket to 127.0.0.1:`port`, open once the server's 101 came. `factory` makes the client
    instead of WsClient(on_payload): a client whose callbacks are set before the first frame,
    which may come in the 101's own read."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        _, client = await loop.create_connection(factory or (lambda: WsClient(on_payload)), "127.0.0.1", port, ssl=ssl)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket", "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in (headers or {}).items()),
        ]
        assert client.transport is not None
        client.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await asyncio.wait_for(client.opened, timeout)
    except BaseException:
        client.close()
        raise
    return client


async def open_subscribed(port: int, token: str, channel: str = "subject:1", on_text: OnPayload | None = None,
                          timeout: float = 60.0) -> WsClient:
    """A livevote socket (bearer token in the subprotocol) subscribed to `channel`, returned once
    its snapshot came; from then on `on_text` gets every text frame."""
    client = await connect(port, "/ws", {"Sec-WebSocket-Protocol": f"livevote.v1, bearer.{token}"})
    subscribed = asyncio.get_running_loop().create_future()

    def opening(payload: bytes) -> None:
        if payload.startswith(b'{"type":"snapshot"') and not subscribed.done():
            subscribed.set_result(None)

    client.on_text = opening
    client.send_text(b'{"op":"subscribe","channel":"%s"}' % channel.encode())
    await asyncio.wait_for(subscribed, timeout)
    client.on_text = on_text
    return client
