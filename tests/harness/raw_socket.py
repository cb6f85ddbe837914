"""A WebSocket client over a plain socket whose reading the test controls: a peer that stops reading."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import socket
import struct
from typing import Any

from tests.harness.live_views import View

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class RawSocket:
    """The client side of a WebSocket over a plain non-blocking socket, handshake by hand.

    Nothing is read unless the test calls `read_message`: a test that stops calling it
    is a peer that stopped reading, whose kernel receive buffer (made small) fills up,
    after which the server's unsent output grows in the server process.
    """

    def __init__(self, sock: socket.socket, buffered: bytes) -> None:
        self.sock = sock
        self.port = int(sock.getsockname()[1])
        self.messages: list[dict[str, Any]] = []
        """Every text message read so far, in order."""
        self.view = View()
        self._buffer = bytearray(buffered)
        self.close_code: int | None = None
        self.eof = False
        self.pings = 0
        """Pings the server sent, each answered as it was read."""
        self.pongs: list[bytes] = []
        """The payloads of the server's pongs, in order."""
        self._close_sent = False

    @classmethod
    async def connect(
        cls, port: int, token: str, receive_buffer: int = 4096, timeout: float = 10.0, segment: int | None = 1024
    ) -> RawSocket:
        """`segment`: the largest TCP segment either side sends (None: loopback's 64 KiB). One smaller
        than the receive buffer lets Linux reopen the window as the test reads: with a larger one it
        never does by itself once the window was full, and the server waits for its zero-window
        probes, whose backoff reaches tens of seconds while the test reads other sockets. A socket
        that floods the server with large messages wants None, or it sends slowly."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            if segment is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, segment)
            sock.setblocking(False)
            await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), timeout)
            key = base64.b64encode(os.urandom(16)).decode()
            request = (
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Protocol: livevote.v1\r\nAuthorization: Bearer {token}\r\n\r\n"
            )
            await loop.sock_sendall(sock, request.encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = await asyncio.wait_for(loop.sock_recv(sock, 4096), timeout)
                if not chunk:
                    raise AssertionError(f"the server closed during the handshake: {head!r}")
                head += chunk
            head, _, rest = head.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            assert lines[0].startswith("HTTP/1.1 101"), lines[0]
            accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
            fields = (line.partition(":") for line in lines[1:])
            headers = {name.strip().lower(): value.strip() for name, _, value in fields}
            assert headers.get("sec-websocket-accept") == accept, lines
        except BaseException:
            sock.close()
            raise
        return cls(sock, rest)

    async def _fill(self, size: int, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        while len(self._buffer) < size:
            chunk = await asyncio.wait_for(loop.sock_recv(self.sock, 262144), timeout)
            if not chunk:
                self.eof = True
                return False
            self._buffer += chunk
        return True

    async def _take(self, size: int, timeout: float) -> bytes | None:
        if not await self._fill(size, timeout):
            return None
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    async def read_message(self, timeout: float = 5.0) -> dict[str, Any] | None:
        """The next text message; None once the server closed (see close_code) or the connection ended."""
        while True:
            kind = await self._read_frame(timeout)
            if kind != "control":
                return None if kind is None else self.messages[-1]

    async def _read_frame(self, timeout: float) -> str | None:
        """One frame, handled: "text" (appended to messages), "control" (a ping answered), or
        None when the server closed or the connection ended."""
        head = await self._take(2, timeout)
        if head is None:
            return None
        opcode, length = head[0] & 0x0F, head[1] & 0x7F
        if head[0] & 0xF0 != 0x80 or head[1] & 0x80 or opcode not in (0x1, 0x8, 0x9, 0xA):
            raise AssertionError(f"not a frame a server sends (cut into by another?): {bytes(head)!r}")
        if length == 126:
            extra = await self._take(2, timeout)
            if extra is None:
                return None
            (length,) = struct.unpack("!H", extra)
        elif length == 127:
            extra = await self._take(8, timeout)
            if extra is None:
                return None
            (length,) = struct.unpack("!Q", extra)
        payload = await self._take(length, timeout)
        if payload is None:
            return None
        if opcode == 0x1:
            message = dict(json.loads(payload))
            self.messages.append(message)
            self.view.feed(message)
            return "text"
        if opcode == 0x8:
            self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            if not self._close_sent:
                self._close_sent = True
                with contextlib.suppress(OSError):
                    await self.send_frame(0x8, payload[:2])
            return None
        if opcode == 0x9:
            self.pings += 1
            await self.send_frame(0xA, payload)
        if opcode == 0xA:
            self.pongs.append(payload)
        return "control"

    async def subscribe(self, channel: str, timeout: float = 5.0) -> dict[str, Any]:
        """Subscribe and read up to and including the channel's snapshot."""
        await self.send("subscribe", channel=channel, id=f"sub-{channel}")
        while True:
            message = await self.read_message(timeout)
            assert message is not None, f"closed ({self.close_code}) before the snapshot of {channel}"
            if message.get("type") == "error":
                raise AssertionError(message)
            if message.get("type") == "snapshot" and message.get("channel") == channel:
                return message

    async def read_until(self, done: Any, timeout: float) -> bool:
        """Read until `done()` holds (True) or the server closes the connection (False)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not done():
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"condition not met within {timeout} s")
            if await self._read_frame(left) is None:
                return False
        return True

    async def send_frame(self, opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0,
                         masked: bool = True) -> None:
        """Any frame, also one a client must not send: unfinished, with reserved bits (`rsv`,
        0-7, the three bits after FIN) or unmasked."""
        length = len(payload)
        mask_bit = 0x80 if masked else 0
        first = (0x80 if fin else 0) | rsv << 4 | opcode
        if length < 126:
            header = struct.pack("!BB", first, mask_bit | length)
        elif length < 65536:
            header = struct.pack("!BBH", first, mask_bit | 126, length)
        else:
            header = struct.pack("!BBQ", first, mask_bit | 127, length)
        if masked:
            mask = os.urandom(4)
            key = (mask * (length // 4 + 1))[:length]
            masked_payload = int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")
            payload = mask + masked_payload.to_bytes(length, "little")
        await asyncio.get_running_loop().sock_sendall(self.sock, header + payload)

    async def send(self, op: str, **fields: Any) -> None:
        await self.send_frame(0x1, json.dumps({"op": op, **fields}).encode())

    async def rest(self, timeout: float) -> bytes:
        """What arrives after the close frame until the connection ends: nothing, from a server."""
        loop = asyncio.get_running_loop()
        rest = bytes(self._buffer)
        while chunk := await asyncio.wait_for(loop.sock_recv(self.sock, 65536), timeout):
            rest += chunk
        return rest

    async def ping(self, payload: bytes) -> None:
        """A WebSocket ping, which tornado answers itself."""
        await self.send_frame(0x9, payload)

    async def close(self) -> None:
        """Say goodbye if the connection still stands, then close the socket."""
        try:
            if self.close_code is None and not self.eof:
                self._close_sent = True
                await self.send_frame(0x8, struct.pack("!H", 1000))
                while await self.read_message(timeout=5.0) is not None:
                    pass
        except (OSError, TimeoutError):
            pass
        finally:
            self.sock.close()
