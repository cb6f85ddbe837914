"""The Counters port: fixed-window counters, for login throttling.

In-process in embedded mode (LocalCounters, here), in Redis in scaled mode so
that every process sees the same counts.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod


class Counters(ABC):
    @abstractmethod
    async def hit(self, key: str, window: float) -> tuple[int, float]:
        """Add one; returns (count in the current window, seconds until it resets)."""

    @abstractmethod
    async def peek(self, key: str) -> tuple[int, float]:
        """(count, seconds until reset) without adding; (0, 0) when unknown."""

    @abstractmethod
    async def reset(self, key: str) -> None: ...


class LocalCounters(Counters):
    """A dict of (count, reset time). Expired entries are dropped as they are read,
    and all at once when the dict grows past `sweep_at`, which bounds memory."""

    def __init__(self, sweep_at: int = 100_000) -> None:
        self._entries: dict[str, tuple[int, float]] = {}
        self._sweep_at = sweep_at

    def _current(self, key: str, now: float) -> tuple[int, float]:
        count, resets_at = self._entries.get(key, (0, 0.0))
        if resets_at <= now:
            self._entries.pop(key, None)
            return 0, 0.0
        return count, resets_at

    async def hit(self, key: str, window: float) -> tuple[int, float]:
        now = time.monotonic()
        if len(self._entries) >= self._sweep_at:
            self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
        count, resets_at = self._current(key, now)
        if not count:
            resets_at = now + window
        self._entries[key] = (count + 1, resets_at)
        return count + 1, resets_at - now

    async def peek(self, key: str) -> tuple[int, float]:
        now = time.monotonic()
        count, resets_at = self._current(key, now)
        return count, max(resets_at - now, 0.0)

    async def reset(self, key: str) -> None:
        self._entries.pop(key, None)
