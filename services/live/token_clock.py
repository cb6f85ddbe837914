"""TokenClock: every socket's access-token deadlines in one heap, served by one timer.

Each tracked socket gets two deadlines: a push, `refresh_ahead` before its
token expires (jittered over the earlier half of that window so that tokens
minted together are not all refreshed in one burst), and the expiry itself.
An entry is not removed when its socket closes or gets a newer token: when it
comes due it is skipped. It holds the socket weakly, so a closed socket is freed
at once; and once dead entries outnumber the live sockets' own, the heap is
rebuilt without them, so churn does not keep ~375 bytes per closed socket until
its token would have expired.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import time
import weakref
from typing import Protocol

PUSH = 0
EXPIRE = 1
SLACK = 64
"""Dead entries always tolerated: a handful of sockets never pays for a rebuild."""


class TokenHolder(Protocol):
    closed: bool

    @property
    def expires_at(self) -> float: ...

    async def push_token(self) -> None: ...

    def token_expired(self) -> None: ...


class TokenClock:
    def __init__(self, refresh_ahead: float, push: bool, rng: random.Random | None = None) -> None:
        self._ahead = refresh_ahead
        self._push = push and refresh_ahead > 0
        self._rng = rng or random.Random()
        self._heap: list[tuple[float, int, int, weakref.ref[TokenHolder], float]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._tasks: set[asyncio.Task[None]] = set()
        self._tracked: set[int] = set()
        """id() of every holder tracked and not forgotten: how many entries may be live."""

    def __len__(self) -> int:
        return len(self._heap)

    def forget(self, holder: TokenHolder) -> None:
        """The holder closed: its entries are dead, and go at the next rebuild."""
        self._tracked.discard(id(holder))
        self._compact_if_mostly_dead()

    def track(self, holder: TokenHolder) -> None:
        """Schedule the deadlines of the holder's current token."""
        expires_at, held = holder.expires_at, weakref.ref(holder)
        if self._push:
            push_at = expires_at - self._ahead * (1 - 0.5 * self._rng.random())
            heapq.heappush(self._heap, (push_at, next(self._order), PUSH, held, expires_at))
        heapq.heappush(self._heap, (expires_at, next(self._order), EXPIRE, held, expires_at))
        self._tracked.add(id(holder))
        self._compact_if_mostly_dead()
        self._arm()

    def _compact_if_mostly_dead(self) -> None:
        """Rebuilt when the heap holds over twice what the tracked holders' current tokens need:
        each rebuild follows as many changes as it visits entries, so it costs O(1) per change."""
        per_holder = 2 if self._push else 1
        if len(self._heap) <= 2 * per_holder * len(self._tracked) + SLACK:
            return
        self._heap = [entry for entry in self._heap if self._live(entry[3], entry[4])]
        heapq.heapify(self._heap)

    def _live(self, held: weakref.ref[TokenHolder], expires_at: float) -> bool:
        holder = held()
        return holder is not None and not holder.closed and id(holder) in self._tracked \
            and holder.expires_at == expires_at

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._heap.clear()
        self._tracked.clear()
        for task in self._tasks:
            task.cancel()

    def _arm(self) -> None:
        if not self._heap or self._heap[0][0] >= self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = self._heap[0][0]
        self._timer = asyncio.get_running_loop().call_later(max(self._timer_at - time.time(), 0), self._fire)

    def _fire(self) -> None:
        self._timer, self._timer_at = None, float("inf")
        now = time.time()
        while self._heap and self._heap[0][0] <= now:
            _, _, kind, held, expires_at = heapq.heappop(self._heap)
            holder = held()
            if holder is None or not self._live(held, expires_at):
                continue
            if kind == PUSH:
                task = asyncio.ensure_future(holder.push_token())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                holder.token_expired()
        self._arm()
