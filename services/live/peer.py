"""Peer: one socket as the hub sees it (its session, and who is behind it), and the slow-consumer
rule every socket lives by.

Counts are state, not a log: a socket whose unsent output passes `ws.max_pending`
is skipped, and once it drains it gets a snapshot of the latest state of what it
missed; one stuck past `ws.stall_timeout` is closed 4008. Memory per socket stays
bounded either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from services.live.messages import CLOSE_TOO_SLOW

Person = int | str
"""Who is behind a socket: a user's id, or a viewer token's id (a viewer has nothing more lasting)."""


class Sink(Protocol):
    """A raw byte sink: what the kernel takes of `data` at once (OSError when it takes none)."""

    def send(self, data: bytes, /) -> int: ...


class Transport(Protocol):
    def sink(self) -> Sink | None:
        """The socket itself, while the connection is open and nothing is queued before it."""

    def write_frame(self, frame: bytes) -> bool:
        """Queue a frame behind what is queued; once the socket is closing, drop it (False)."""

    def drained(self) -> asyncio.Future[None]:
        """Resolves once everything queued so far is flushed (or the socket closed)."""

    def close(self, code: int, reason: str) -> None: ...


class Departed:
    """The transport of a peer whose connection closed: it takes nothing and holds nothing."""

    __slots__ = ()

    def sink(self) -> None:
        return None

    def write_frame(self, frame: bytes) -> bool:
        return False

    def drained(self) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def close(self, code: int, reason: str) -> None:
        pass


DEPARTED = Departed()


@dataclass(frozen=True, slots=True)
class Backpressure:
    """The slow-consumer rule, shared by every peer of a hub: how much may wait unsent, how long
    a socket may stay behind, and who sends a socket that drained what it missed."""

    max_pending: int
    stall_timeout: float
    catch_up: Callable[[Peer, set[str]], None]


class Peer:
    """One socket: its session, its channels, and whether it fell behind.

    A frame goes straight to the socket's send() while nothing is queued before
    it: a broadcast to a socket that keeps up is one system call, and touches
    the Peer and the socket alone (at 10,000 sockets, every other object is a
    cache miss). What the kernel does not take is queued in the transport, in
    order, and counts against `max_pending`, replies as well as broadcasts.
    Past it the socket is behind: broadcasts are skipped (the channels noted),
    a timer closes it 4008 unless it drains within `stall_timeout`, and once
    it drains it gets a snapshot of what it missed.
    """

    __slots__ = (
        "transport", "sid", "person", "admin", "channels", "direct", "_rule", "_queued", "_missed", "_stall_timer",
    )

    def __init__(self, transport: Transport, sid: str, rule: Backpressure, person: Person, admin: bool = False) -> None:
        self.transport = transport
        self.sid = sid
        self.person = person
        """Who watches through this socket: presence counts each person once per subject."""
        self.admin = admin
        """An administrator's socket sees every count (as its token says)."""
        self.channels: set[str] = set()
        self.direct = transport.sink()
        """The socket, while frames may go straight to it; None once one was queued, or when
        the transport wrote on its own (a pong, the close frame)."""
        self._rule = rule
        self._queued = 0
        """Bytes queued since the transport was last seen clear (an upper bound on its backlog)."""
        self._missed: set[str] | None = None
        """Channels skipped while behind; None while the socket keeps up."""
        self._stall_timer: asyncio.TimerHandle | None = None

    @property
    def behind(self) -> bool:
        return self._missed is not None

    def send(self, frame: bytes, channel: str | None = None) -> None:
        """Write a frame. A broadcast names its `channel`: it is skipped while the socket is
        behind, the channel noted. Without one (replies, snapshots, tokens) it is never dropped.
        This runs once per socket per broadcast: the common case reads `direct` and sends."""
        sink = self.direct
        if sink is None:
            if channel is not None and self._missed is not None:
                self._missed.add(channel)
                return
            sink = self.transport.sink()
            if sink is not None:
                self._queued = 0
                asyncio.get_running_loop().call_soon(self._clear)
        if sink is not None:
            try:
                sent = sink.send(frame)
            except OSError:
                sent = 0
            if sent == len(frame):
                return
            frame = frame[sent:]
        self._queue(frame)

    def depart(self) -> None:
        """The connection closed: from now on the peer writes nowhere, and lets go of its
        transport and socket. The handler holds its peer and the peer held the handler: a cycle
        that only a full collection frees, were it not broken here. Broken, a closed socket's
        objects go by reference counting the moment tornado lets go of them, which is what lets
        open sockets be frozen out of the collector (services/gc_pauses.py)."""
        self.transport, self.direct = DEPARTED, None
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    def _queue(self, frame: bytes) -> None:
        """A queued write is also how a socket that failed gets closed: the transport sees it."""
        self.direct = None
        if not self.transport.write_frame(frame):
            return
        self._queued += len(frame)
        if self._queued > self._rule.max_pending and self._missed is None:
            self._fall_behind()

    def _clear(self) -> None:
        """Frames go straight to the socket again if it is still clear once the callbacks
        already due have run: the transport may write from one of them (a pong it held back)."""
        self.direct = self.transport.sink()

    def _fall_behind(self) -> None:
        self._missed = set()
        self._stall_timer = asyncio.get_running_loop().call_later(self._rule.stall_timeout, self._stalled)
        self.transport.drained().add_done_callback(self._drained)

    def _stalled(self) -> None:
        self.transport.close(CLOSE_TOO_SLOW, "too slow")

    def _drained(self, flushed: asyncio.Future[None]) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
        missed, self._missed, self._stall_timer = self._missed or set(), None, None
        if not flushed.cancelled() and flushed.exception() is None:
            self._rule.catch_up(self, missed)
