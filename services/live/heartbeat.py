"""Heartbeat: every socket's pings on one timer wheel.

Tornado's own pinging runs a task per socket that wakes two or three times per
interval; at 10,000 idle sockets those wake-ups were most of the idle CPU, and
the task and its frame about a KiB of each socket. Here sockets wait in slots
of one tick (PingWheel); one timer per tick visits the slots that are due: a
socket that has not answered its previous ping by then is dropped, the others
are pinged and move one interval on. Between deadlines nothing runs for a socket.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Hashable
from typing import Protocol

MAX_TICK = 1.0
"""Deadlines are kept to within a tick: a second, or a quarter of a short interval."""


class Pingable(Hashable, Protocol):
    def send_ping(self) -> None: ...

    def ping_timed_out(self) -> None: ...


class PingWheel:
    """Who is due when, with no clock of its own: every call is told the time."""

    def __init__(self, interval: float) -> None:
        self.tick = min(MAX_TICK, interval / 4)
        self._per_interval = max(1, round(interval / self.tick))
        self._slots: dict[int, set[Pingable]] = {}
        self._slot_of: dict[Pingable, int] = {}
        self._unanswered: set[Pingable] = set()

    def __len__(self) -> int:
        return len(self._slot_of)

    def __contains__(self, socket: Pingable) -> bool:
        return socket in self._slot_of

    @property
    def next_due(self) -> float | None:
        """When the earliest slot is due, if any socket waits."""
        return (min(self._slots) + 1) * self.tick if self._slots else None

    def add(self, socket: Pingable, now: float) -> None:
        self._place(socket, self._slot(now) + self._per_interval)

    def remove(self, socket: Pingable) -> None:
        slot = self._slot_of.pop(socket, None)
        self._unanswered.discard(socket)
        if slot is not None:
            members = self._slots[slot]
            members.discard(socket)
            if not members:
                del self._slots[slot]

    def answered(self, socket: Pingable) -> None:
        self._unanswered.discard(socket)

    def due(self, now: float) -> tuple[list[Pingable], list[Pingable]]:
        """(to ping, timed out) at `now`: the first move one interval on and now owe a pong,
        the second leave the wheel."""
        now_slot = self._slot(now)
        to_ping: list[Pingable] = []
        timed_out: list[Pingable] = []
        for slot in sorted(slot for slot in self._slots if slot <= now_slot):
            for socket in self._slots.pop(slot):
                del self._slot_of[socket]
                if socket in self._unanswered:
                    self._unanswered.discard(socket)
                    timed_out.append(socket)
                else:
                    self._unanswered.add(socket)
                    self._place(socket, now_slot + self._per_interval)
                    to_ping.append(socket)
        return to_ping, timed_out

    def clear(self) -> None:
        self._slots.clear()
        self._slot_of.clear()
        self._unanswered.clear()

    def _slot(self, now: float) -> int:
        return math.floor(now / self.tick)

    def _place(self, socket: Pingable, slot: int) -> None:
        self._slots.setdefault(slot, set()).add(socket)
        self._slot_of[socket] = slot


class Heartbeat:
    """A socket is pinged every `interval` seconds (to within a tick) and dropped when no pong
    came before the next ping is due. An interval of 0 turns pinging off."""

    def __init__(self, interval: float) -> None:
        self._wheel = PingWheel(interval) if interval > 0 else None
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._wheel) if self._wheel is not None else 0

    def add(self, socket: Pingable) -> None:
        if self._wheel is not None:
            self._wheel.add(socket, asyncio.get_running_loop().time())
            self._arm()

    def remove(self, socket: Pingable) -> None:
        if self._wheel is not None:
            self._wheel.remove(socket)

    def answered(self, socket: Pingable) -> None:
        if self._wheel is not None:
            self._wheel.answered(socket)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._wheel is not None:
            self._wheel.clear()

    def _arm(self) -> None:
        assert self._wheel is not None
        due = self._wheel.next_due
        if self._timer is None and due is not None:
            self._timer = asyncio.get_running_loop().call_at(due, self._beat)

    def _beat(self) -> None:
        assert self._wheel is not None
        self._timer = None
        to_ping, timed_out = self._wheel.due(asyncio.get_running_loop().time())
        for socket in timed_out:
            socket.ping_timed_out()
        for socket in to_ping:
            socket.send_ping()
        self._arm()
