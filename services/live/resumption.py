"""Resumption: what an event stream's `id` says, so that a client coming back is sent only what
changed while it was away.

Counts are state, not a log: a client back from a dropped stream needs the latest
counts of the teachers that changed since, not every message it missed. The hub
numbers each change of its board, one sequence per process. Each event carries a
mark: the process's epoch (random, per start) and the highest number whose change
every channel had already sent (a change still waiting for its channel's coalescing
tick is not counted yet). A mark of this process, no older than the last change a
`votes` message cannot convey (a catalog change, a voting window passing, a change
of who may see what, a broker gap), on a channel open since before it, can resume:
the channel sends the teachers changed after it. Anything else gets a snapshot.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable

from services.models import Counts

MARK = re.compile(r"([0-9a-f]{8})-([0-9]{1,18})")


class Resumption:
    def __init__(self) -> None:
        self.epoch = secrets.token_hex(4)
        self.seq = 0
        """The number of the board's latest change."""
        self._changed_at: dict[int, int] = {}
        self._floor = 0
        """Marks older than this cannot resume."""
        self._waiting: dict[object, int] = {}
        """Channels whose changes wait for their coalescing tick: the number of the first."""

    def changed(self, teacher: int) -> None:
        self.seq += 1
        self._changed_at[teacher] = self.seq

    def forget(self, teacher: int) -> None:
        self._changed_at.pop(teacher, None)

    def reset(self) -> None:
        """Something changed that no `votes` message conveys: marks up to now cannot resume."""
        self.seq += 1
        self._floor = self.seq

    def waiting(self, channel: object) -> None:
        self._waiting.setdefault(channel, self.seq)

    def sent(self, channel: object) -> None:
        """The channel's waiting changes went out (or it closed with them)."""
        self._waiting.pop(channel, None)

    @property
    def settled(self) -> int:
        return min(self._waiting.values()) - 1 if self._waiting else self.seq

    @property
    def mark(self) -> bytes:
        return f"{self.epoch}-{self.settled}".encode()

    def since(self, mark: str | None) -> int | None:
        """The change a client's mark says it has seen, when this process can tell what came after."""
        match = MARK.fullmatch(mark or "")
        if match is None or match[1] != self.epoch:
            return None
        seq = int(match[2])
        return seq if self._floor <= seq <= self.seq else None

    def changed_after(self, seq: int, teachers: Iterable[Counts]) -> list[Counts]:
        return [counts for counts in teachers if self._changed_at.get(counts.no, 0) > seq]
