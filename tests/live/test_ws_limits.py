"""The two limits that close a /ws socket, with generated input against the real server: a frame
over ws.max_message_size (bytes on the wire, not characters) closes it 1009 unanswered, one just
under it is answered; a flood past ws.rate_burst is told rate_limited once, then closed 4029, and
up to the burst nothing is refused. Rig and oracle: tests/harness/ws_probe.py, ws_contract.py.
With the `ci` profile: 40 frame sizes and 20 floods.
"""

from __future__ import annotations

import math
import time

from hypothesis import given
from hypothesis import strategies as st

from tests.harness.ws_contract import Expect, bad_json, check_frame
from tests.harness.ws_probe import (
    MAX_MESSAGE,
    RATE_BURST,
    RATE_LIMIT,
    UNSOLICITED,
    Env,
    ProbeSocket,
    new_user,
    ws_examples,
)


def sized_frame(size: int, style: str) -> str | bytes:
    """A frame of exactly `size` bytes on the wire: JSON with multi-byte padding, raw text, or bytes."""
    if style == "binary":
        return (b'{"op":"ping","pad":"' + b"x" * size)[:size]
    head, tail = '{"op":"ping","id":"big","pad":"', '"}'
    room = size - len(head) - len(tail)
    wide = {"ascii": "x", "cjk": "票", "emoji": "🗳", "mixed": "é"}[style]
    count, rest = divmod(room, len(wide.encode()))
    frame = head + wide * count + "x" * rest + tail
    assert len(frame.encode()) == size
    return frame


@ws_examples(1)
@given(
    size=st.one_of(st.integers(MAX_MESSAGE - 8, MAX_MESSAGE + 8), st.integers(64, 4 * MAX_MESSAGE)),
    style=st.sampled_from(["ascii", "cjk", "emoji", "mixed", "binary"]),
)
def test_frames_over_the_size_limit_close_1009_and_others_do_not(env: Env, size: int, style: str) -> None:
    """Bytes on the wire count, not characters: 6,000 CJK characters are 18,000 bytes."""
    frame = sized_frame(size, style)

    async def example() -> None:
        if size <= MAX_MESSAGE:
            if isinstance(frame, bytes):
                await check_frame(env, frame, bad_json(), binary=True)
            else:
                await check_frame(env, frame, Expect(frozenset({"error:invalid"}), "big"))
            return
        sock = await env.probe()
        start = len(sock.messages)
        sock.write(frame, binary=isinstance(frame, bytes))
        sock.send(op="ping", id="after")
        code = await sock.wait_closed(10)
        assert code == 1009, f"a {size}-byte frame closed with {code}, not 1009; got {sock.messages[start:]}"
        replies = [m for m in sock.decoded(start) if m["type"] not in UNSOLICITED]
        assert replies == [], f"an oversized frame was answered: {replies}"

    env.run(example())


CHEAP_FRAMES = st.sampled_from([
    '{"op":"ping"}', "{not json", '{"op":"dance"}', '{"op":"vote"}', "[1,2]", '{"op":"ping","id":1}',
    '{"op":"subscribe","channel":"subject:x"}', '{"op":"refresh","refresh_token":"x"}',
])


@ws_examples(0.5)
@given(count=st.integers(1, RATE_BURST - 1) | st.integers(RATE_BURST + 2, 5 * RATE_BURST),
       frames=st.lists(CHEAP_FRAMES, min_size=5 * RATE_BURST, max_size=5 * RATE_BURST))
def test_rate_limit_tells_then_closes_4029_and_only_past_the_burst(env: Env, count: int, frames: list[str]) -> None:
    """rate_burst frames at once are fine; a flood past it gets one rate_limited error, then 4029."""

    async def example() -> None:
        server = await env.limited()
        user = await new_user(server, env.username("flood"))
        sock = await ProbeSocket.open(server.base_url, user.access_token)
        started = time.monotonic()
        for frame in frames[:count]:
            sock.write(frame)
        if count < RATE_BURST:
            sock.send(op="ping", id="last")
            assert await sock.until(lambda: sock.find(0, type="pong", id="last") is not None, 10), (
                f"{count + 1} frames (burst {RATE_BURST}) closed the socket {sock.close_code}: {sock.messages}")
            replies = sock.decoded()
            assert len(replies) == count + 1 and not [m for m in replies if m.get("code") == "rate_limited"], replies
            await sock.close()
            return
        code = await sock.wait_closed(10)
        elapsed = time.monotonic() - started
        replies = sock.decoded()
        limited = [i for i, m in enumerate(replies) if m.get("code") == "rate_limited"]
        assert code == 4029, f"a flood of {count} closed with {code}"
        assert len(limited) == 1 and limited[0] == len(replies) - 1, f"rate_limited must be told once, last: {replies}"
        assert replies[-1]["type"] == "error" and "id" in replies[-1]
        answered = len(replies) - 1
        assert RATE_BURST <= answered <= RATE_BURST + math.floor(elapsed * RATE_LIMIT) + 1, (
            f"{answered} frames answered before the limit (burst {RATE_BURST}, {elapsed:.2f} s)")

    env.run(example())
