"""TokenClock: every socket's access-token deadlines in one heap, served by one timer.

Each tracked socket gets two deadlines: a push, `refresh_ahead` before its
token expires (jittered over the earlier half of that window so that tokens
minted together are not all refreshed in one burst), and the expiry itself.
Entries are never removed: when one comes due for a socket that is closed or
whose token has since changed, it is skipped. They hold the socket weakly, so a
closed socket is freed at once, not when its token would have expired.
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

    def __len__(self) -> int:
        return len(self._heap)

    def track(self, holder: TokenHolder) -> None:
        """Schedule the deadlines of the holder's current token."""
        expires_at, held = holder.expires_at, weakref.ref(holder)
        if self._push:
            push_at = expires_at - self._ahead * (1 - 0.5 * self._rng.random())
            heapq.heappush(self._heap, (push_at, next(self._order), PUSH, held, expires_at))
        heapq.heappush(self._heap, (expires_at, next(self._order), EXPIRE, held, expires_at))
        self._arm()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._heap.clear()
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
            if holder is None or holder.closed or holder.expires_at != expires_at:
                continue
            if kind == PUSH:
                task = asyncio.ensure_future(holder.push_token())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                holder.token_expired()
        self._arm()
