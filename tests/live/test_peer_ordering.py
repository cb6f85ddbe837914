"""A Peer writes straight to its socket while nothing is queued, and through the transport's
queue otherwise. Over a real stream socket with a small kernel buffer, under every
interleaving of frames sent, the transport writing on its own, the reader taking some bytes
and the event loop running, the reader gets every frame whole and in the order it was sent."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from tornado.iostream import IOStream

from services.live.peer import Backpressure, Peer

SMALL_BUFFER = 4096


def connected_pair() -> tuple[socket.socket, socket.socket]:
    """A stream socket pair whose kernel buffer takes a few KiB at most, so frames go in part.
    (A Unix one: TCP over loopback with buffers this small waits on its persist timer.)"""
    writer, reader = socket.socketpair()
    writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
    reader.setblocking(False)
    return writer, reader


class StreamTransport:
    """The hub's Transport over a bare tornado IOStream, as LiveSocket is over its connection's."""

    def __init__(self, stream: IOStream) -> None:
        self.stream = stream

    def sink(self) -> socket.socket | None:
        return None if self.stream.closed() or self.stream.writing() else self.stream.socket

    def write_frame(self, frame: bytes) -> bool:
        if self.stream.closed():
            return False
        self.stream.write(frame)
        return True

    def drained(self) -> asyncio.Future[None]:
        return self.stream.write(b"")

    def close(self, code: int, reason: str) -> None:
        self.stream.close()


frames = st.integers(min_value=1, max_value=6 * SMALL_BUFFER)


class PeerOrderingMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        writer, self.reader = connected_pair()
        self.transport = self.loop.run_until_complete(self._stream(writer))
        rule = Backpressure(max_pending=1 << 30, stall_timeout=60, catch_up=lambda peer, missed: None)
        self.peer = self.loop.run_until_complete(self._peer(rule))
        self.sent = bytearray()
        self.received = bytearray()
        self.number = 0

    async def _stream(self, writer: socket.socket) -> StreamTransport:
        return StreamTransport(IOStream(writer))

    async def _peer(self, rule: Backpressure) -> Peer:
        return Peer(self.transport, "sid", rule, person=1)

    def _frame(self, size: int) -> bytes:
        """Distinct bytes per frame: a frame cut into by another shows in the stream."""
        self.number += 1
        return (self.number.to_bytes(4, "big") * (size // 4 + 1))[:size]

    @rule(size=frames, broadcast=st.booleans())
    def send(self, size: int, broadcast: bool) -> None:
        frame = self._frame(size)
        self.sent += frame
        self.loop.call_soon(self.peer.send, frame, "subject:1" if broadcast else None)
        self.loop.run_until_complete(asyncio.sleep(0))

    @rule(size=st.integers(min_value=2, max_value=125))
    def transport_writes_on_its_own(self, size: int) -> None:
        """As tornado writes a pong, and LiveSocket.on_ping then tells the peer."""
        frame = self._frame(size)
        self.sent += frame
        self.transport.write_frame(frame)
        self.peer.direct = None

    @rule(size=st.integers(min_value=1, max_value=4 * SMALL_BUFFER))
    def read(self, size: int) -> None:
        with contextlib.suppress(BlockingIOError):
            self.received += self.reader.recv(size)

    @rule(turns=st.integers(min_value=1, max_value=3))
    def loop_runs(self, turns: int) -> None:
        for _ in range(turns):
            self.loop.run_until_complete(asyncio.sleep(0.001))

    @invariant()
    def what_arrived_is_what_was_sent_so_far(self) -> None:
        assert self.received == self.sent[: len(self.received)]

    def teardown(self) -> None:
        try:
            deadline = self.loop.time() + 10
            while len(self.received) < len(self.sent) and self.loop.time() < deadline:
                self.loop.run_until_complete(asyncio.sleep(0.001))
                self.read(1 << 20)
            assert self.received == self.sent, "frames lost, cut into or out of order"
        finally:
            self.transport.stream.close()
            self.reader.close()
            self.loop.close()
            asyncio.set_event_loop(None)


TestPeerOrdering = PeerOrderingMachine.TestCase
