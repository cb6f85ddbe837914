"""RFC 6455 conformance of /ws, in Autobahn's categories, with hand-made frames over a raw socket.

Each row of the table is a frame sequence and what the server must do: answer and stay open
(REPLY), or send a close frame with the given code and end the connection. A protocol error is
never a bare TCP drop: the client is told why (1002 for framing, 1007 for text that is not
UTF-8). A valid close code is echoed; one no peer may send is answered with 1002. The property
test sends arbitrary bytes as a text message, whole or in fragments: UTF-8 is answered, anything
else closes 1007, and the server keeps serving.
"""

from __future__ import annotations

import contextlib
import itertools
import struct
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.harness.raw_socket import RawSocket
from tests.harness.ws_probe import Env, ws_examples

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
REPLY = 0
"""The row's expectation when the server must answer and keep the socket open."""
NO_CODE = 1005
"""What RawSocket records for a close frame without a code."""


@dataclass(frozen=True)
class Frame:
    opcode: int
    payload: bytes = b""
    fin: bool = True
    rsv: int = 0
    masked: bool = True


def close(code: int, reason: bytes = b"") -> Frame:
    return Frame(CLOSE, struct.pack("!H", code) + reason)


def row(name: str, expected: int, *frames: Frame) -> Any:
    """A table row, named in the test id."""
    return pytest.param(frames, expected, id=name)


VALID_CLOSE_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]
INVALID_CLOSE_CODES = [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]

TABLE = [
    # UTF-8 validity (Autobahn 6.x), whole and fragmented.
    row("utf8-ascii", REPLY, Frame(TEXT, b"{}")),
    row("utf8-two-byte", REPLY, Frame(TEXT, "é".encode())),
    row("utf8-four-byte", REPLY, Frame(TEXT, "\U0010ffff".encode())),
    row("utf8-empty", REPLY, Frame(TEXT, b"")),
    row("utf8-bad-byte", 1007, Frame(TEXT, b"\xff")),
    row("utf8-truncated", 1007, Frame(TEXT, b"caf\xc3")),
    row("utf8-overlong", 1007, Frame(TEXT, b"\xc0\xaf")),
    row("utf8-surrogate", 1007, Frame(TEXT, b"\xed\xa0\x80")),
    row("utf8-beyond-10ffff", 1007, Frame(TEXT, b"\xf4\x90\x80\x80")),
    row("utf8-fragmented-split-char", REPLY, Frame(TEXT, b"\xc3", fin=False), Frame(CONTINUATION, b"\xa9")),
    row("utf8-fragmented-invalid", 1007, Frame(TEXT, b'{"op":', fin=False), Frame(CONTINUATION, b"\xff}")),
    row("utf8-fragmented-ping-between", REPLY,
        Frame(TEXT, b"{", fin=False), Frame(PING, b"p"), Frame(CONTINUATION, b"}")),
    row("binary", REPLY, Frame(BINARY, b"\xff\x00")),
    # Masking: every client frame is masked (RFC 6455 5.1).
    row("unmasked-text", 1002, Frame(TEXT, b"{}", masked=False)),
    row("unmasked-binary", 1002, Frame(BINARY, b"x", masked=False)),
    row("unmasked-ping", 1002, Frame(PING, b"x", masked=False)),
    row("unmasked-close", 1002, Frame(CLOSE, struct.pack("!H", 1000), masked=False)),
    row("unmasked-continuation", 1002, Frame(TEXT, b"{", fin=False), Frame(CONTINUATION, b"}", masked=False)),
    # Reserved bits (3.x): no extension is negotiated.
    *[row(f"rsv-{rsv}-text", 1002, Frame(TEXT, b"{}", rsv=rsv)) for rsv in range(1, 8)],
    row("rsv-ping", 1002, Frame(PING, b"", rsv=4)),
    # Opcodes (4.x): 3-7 and 11-15 are reserved.
    *[row(f"opcode-{opcode:#x}", 1002, Frame(opcode, b"x")) for opcode in [*range(3, 8), *range(0xB, 0x10)]],
    # Fragmentation (5.x).
    row("continuation-of-nothing", 1002, Frame(CONTINUATION, b"x")),
    row("text-inside-fragmented", 1002, Frame(TEXT, b"{", fin=False), Frame(TEXT, b"{}")),
    row("fragmented-ping", 1002, Frame(PING, b"a", fin=False), Frame(CONTINUATION, b"b")),
    row("fragmented-close", 1002, Frame(CLOSE, struct.pack("!H", 1000), fin=False)),
    # Control frames (2.x): payloads of at most 125 bytes.
    row("ping-125", REPLY, Frame(PING, b"x" * 125)),
    row("ping-126", 1002, Frame(PING, b"x" * 126)),
    row("pong-unsolicited", REPLY, Frame(PONG, b"x")),
    row("close-126", 1002, close(1000, b"x" * 124)),
    # Close frames (7.x): codes, reason, length.
    row("close-empty", NO_CODE, Frame(CLOSE)),
    row("close-one-byte", 1002, Frame(CLOSE, b"\x03")),
    row("close-reason-utf8", 1000, close(1000, "bye é".encode())),
    row("close-reason-not-utf8", 1007, close(1000, b"\xff")),
    *[row(f"close-{code}-echoed", code, close(code)) for code in VALID_CLOSE_CODES],
    *[row(f"close-{code}-refused", 1002, close(code)) for code in INVALID_CLOSE_CODES],
]


async def play(env: Env, frames: tuple[Frame, ...]) -> tuple[int | None, bool, int]:
    """Send the frames, then a ping op: (close code, connection ended, replies before its pong)."""
    sock = await RawSocket.connect(env.server.port, env.user.access_token)
    try:
        assert (await sock.read_message())["type"] == "welcome"
        for frame in frames:
            await sock.send_frame(frame.opcode, frame.payload, fin=frame.fin, rsv=frame.rsv, masked=frame.masked)
        with contextlib.suppress(OSError):  # closed already: what arrived before says why
            await sock.send("ping", id="after")
        answered = await sock.read_until(lambda: any(m.get("id") == "after" for m in sock.messages), 10)
        if answered:
            return None, False, len(sock.messages) - 2
        try:
            ended = await sock.rest(10) == b""
        except ConnectionResetError:
            ended = True
        return sock.close_code, ended, len(sock.messages) - 1
    finally:
        sock.sock.close()


async def still_serving(env: Env) -> None:
    sock = await RawSocket.connect(env.server.port, env.user.access_token)
    try:
        await sock.send("ping", id="alive")
        assert await sock.read_until(lambda: any(m.get("id") == "alive" for m in sock.messages), 10)
    finally:
        await sock.close()


@pytest.mark.parametrize(("frames", "expected"), TABLE)
def test_a_frame_sequence_gets_the_answer_rfc_6455_names(env: Env, frames: tuple[Frame, ...], expected: int) -> None:
    close_code, ended, _ = env.run(play(env, frames))
    if expected == REPLY:
        assert close_code is None and not ended, f"closed {close_code} instead of answering"
    else:
        assert close_code == expected, f"expected a close frame {expected}, got {close_code} (None: a bare drop)"
        assert ended, "the server kept the connection open after its close frame"
    env.run(still_serving(env))


texts = st.one_of(
    st.binary(max_size=64),
    st.text(max_size=32).map(str.encode),
    st.tuples(st.text(max_size=16), st.binary(min_size=1, max_size=4), st.text(max_size=16))
    .map(lambda parts: parts[0].encode() + parts[1] + parts[2].encode()),
)
"""Arbitrary bytes, UTF-8 texts, and UTF-8 texts with a few arbitrary bytes inside."""


@ws_examples(2)
@given(payload=texts, cuts=st.lists(st.integers(0, 64), max_size=3, unique=True))
@example(payload=b"\xff", cuts=[])
@example(payload="ü".encode(), cuts=[1])
def test_text_is_answered_when_utf8_and_closed_1007_when_not(env: Env, payload: bytes, cuts: list[int]) -> None:
    bounds = [0, *sorted(cut for cut in cuts if 0 < cut < len(payload)), len(payload)]
    pieces = [payload[start:stop] for start, stop in itertools.pairwise(bounds)] or [b""]
    frames = tuple(
        Frame(TEXT if index == 0 else CONTINUATION, piece, fin=index == len(pieces) - 1)
        for index, piece in enumerate(pieces)
    )
    close_code, ended, replies = env.run(play(env, frames))
    try:
        payload.decode()
    except UnicodeDecodeError:
        assert close_code == 1007 and ended, f"closed {close_code} (None: a bare drop), ended {ended}"
    else:
        assert close_code is None, f"valid UTF-8 closed the socket {close_code}"
        assert replies >= 1, "valid UTF-8 got no answer"
    env.run(still_serving(env))
