"""RFC 6455 where tornado's WebSocketProtocol13 is lenient or silent.

On a protocol error tornado drops the TCP connection without a word, it takes
unmasked client frames, and it echoes whatever close code it is sent. Here a
frame that breaks the framing rules closes with 1002, a text message that is
not UTF-8 with 1007, and a close frame with a code no peer may send gets 1002
instead of its echo: the client learns why, and nothing reads as a crash.
"""

from __future__ import annotations

import struct
from asyncio import Future

from tornado.websocket import WebSocketProtocol13

CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007
OPCODES = frozenset({0x0, 0x1, 0x2, 0x8, 0x9, 0xA})
"""Continuation, text, binary, close, ping, pong: any other is reserved."""
TEXT, CLOSE = 0x1, 0x8
MAX_CONTROL_PAYLOAD = 125


def close_code_allowed(code: int) -> bool:
    """Codes a peer may put in a close frame: the registered ones meant to be sent (1004-1006
    and 1015 are not: they only report what happened) and 3000-4999 for libraries and apps."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def is_utf8(data: bytes) -> bool:
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class StrictProtocol(WebSocketProtocol13):
    """Checks each frame's header before tornado reads the rest, and each message before
    tornado hands it on; what tornado does with a well-formed frame is left alone."""

    _read_ahead: bytes | None = None

    def _header_problem(self, first: int, second: int) -> str | None:
        fin, opcode, masked, length = first & self.FIN, first & self.OPCODE_MASK, second & 0x80, second & 0x7F
        extension_bits = self.RSV1 if self._decompressor is not None and opcode != 0 else 0
        if first & self.RSV_MASK & ~extension_bits:
            return "reserved bits set"
        if opcode not in OPCODES:
            return f"reserved opcode {opcode:#x}"
        if not masked:
            return "client frames must be masked"
        if opcode & 0x8:
            if not fin:
                return "fragmented control frame"
            if length > MAX_CONTROL_PAYLOAD:
                return "control frame over 125 bytes"
        elif opcode == 0 and self._fragmented_message_buffer is None:
            return "continuation frame without a message"
        elif opcode != 0 and self._fragmented_message_buffer is not None:
            return "new message inside a fragmented one"
        return None

    async def _receive_frame(self) -> None:
        header = await self._read_bytes(2)
        problem = self._header_problem(header[0], header[1])
        if problem is not None:
            self.fail(CLOSE_PROTOCOL_ERROR, problem)
            return
        self._read_ahead = header
        await super()._receive_frame()

    async def _read_bytes(self, n: int) -> bytes:
        """The header checked above is handed to tornado's own frame reading as if read anew."""
        ahead, self._read_ahead = self._read_ahead, None
        if ahead is not None:
            assert n == len(ahead)
            return ahead
        return await super()._read_bytes(n)

    def _handle_message(self, opcode: int, data: bytes) -> Future[None] | None:
        if not self.client_terminated:
            if opcode == TEXT and not is_utf8(data):
                self.fail(CLOSE_INVALID_DATA, "text message is not UTF-8")
                return None
            if opcode == CLOSE:
                problem = close_frame_problem(data)
                if problem is not None:
                    self.fail(*problem)
                    return None
        return super()._handle_message(opcode, data)

    def fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 7.1.7): a close frame saying why, then the TCP close."""
        self.close(code, reason)
        self._abort()


def close_frame_problem(payload: bytes) -> tuple[int, str] | None:
    if len(payload) == 1:
        return CLOSE_PROTOCOL_ERROR, "close frame of one byte"
    if len(payload) >= 2:
        (code,) = struct.unpack("!H", payload[:2])
        if not close_code_allowed(code):
            return CLOSE_PROTOCOL_ERROR, f"close code {code} may not be sent"
        if not is_utf8(payload[2:]):
            return CLOSE_INVALID_DATA, "close reason is not UTF-8"
    return None
