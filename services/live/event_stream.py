"""The live channel as text/event-stream: the same messages as the socket's, one event each.

The hub builds every message once, as a WebSocket text frame (services/live/messages.py).
A peer on an event stream sends each as `id: <mark>` and `data: <the frame's JSON>`
(orjson writes no newline, so the JSON is one data line). A broadcast is encoded
once for all its streams: the last frame encoded is remembered with its event.
"""

from __future__ import annotations

from services.live.peer import Backpressure, Peer, Person, Transport
from services.live.resumption import Resumption

TEXT_FRAME = 0x81
"""The first byte of every message frame the hub builds; event-stream text never starts so."""
HEARTBEAT = b":\n\n"
"""A comment: keeps proxies from timing the stream out, and is ignored by EventSource."""


def retry(milliseconds: int) -> bytes:
    """How long EventSource waits before it reconnects by itself."""
    return b"retry: %d\n\n" % milliseconds


def payload(frame: bytes) -> bytes:
    """The JSON of an unmasked WebSocket text frame."""
    length = frame[1]
    return frame[2 if length < 126 else 4 if length == 126 else 10:]


def mark_only(mark: bytes) -> bytes:
    """An event with an id and no data: EventSource takes the id and dispatches nothing."""
    return b"id: " + mark + b"\n\n"


def event(frame: bytes, mark: bytes | None) -> bytes:
    data = b"data: " + payload(frame) + b"\n\n"
    return data if mark is None else b"id: " + mark + b"\n" + data


class Events:
    """Frames as events carrying the mark of when they were first encoded: a frame sent again
    later keeps its older mark, which can only make a resumption send more, never less."""

    def __init__(self, resumption: Resumption) -> None:
        self._resumption = resumption
        self._last: tuple[bytes, bytes] = (b"", b"")

    def of(self, frame: bytes) -> bytes:
        last, encoded = self._last
        if frame is not last:
            encoded = event(frame, self._resumption.mark)
            self._last = (frame, encoded)
        return encoded


class EventStreamPeer(Peer):
    """A peer whose transport is an event stream. Its events carry no mark until every channel
    it asked for sent its first state (`resumable`), nor while it is behind: a client that
    drops then comes back from the mark it had, which is never ahead of what it was sent."""

    __slots__ = ("_events", "resumable")

    def __init__(
        self, transport: Transport, sid: str, rule: Backpressure, person: Person, admin: bool, events: Events
    ) -> None:
        super().__init__(transport, sid, rule, person, admin)
        self._events = events
        self.resumable = False

    def send(self, frame: bytes, channel: str | None = None) -> None:
        if frame[0] == TEXT_FRAME:
            frame = self._events.of(frame) if self.resumable and not self.behind else event(frame, None)
        super().send(frame, channel)
