"""The Counters port: fixed-window counters, for login and registration throttling.

In-process in embedded mode (LocalCounters, here), in Redis in scaled mode so
that every process sees the same counts.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence


class Counters(ABC):
    @abstractmethod
    async def reserve(self, limits: Sequence[tuple[str, int]], window: float) -> float | None:
        """Add one to every key when each is below its limit, else to none, so that concurrent
        callers can never overshoot a limit (one that races another's reservation being given
        back may be refused). None when reserved, else the seconds until the first full key
        resets. A key's window starts with its first count."""

    @abstractmethod
    async def release(self, keys: Sequence[str]) -> None:
        """Give back one reservation per key. A key whose window has ended is left alone, and
        one back at zero is gone, so its next count starts a new window."""


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

    def _add(self, key: str, now: float, window: float) -> None:
        if len(self._entries) >= self._sweep_at:
            self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
        count, resets_at = self._current(key, now)
        if not count:
            resets_at = now + window
        self._entries[key] = (count + 1, resets_at)

    async def reserve(self, limits: Sequence[tuple[str, int]], window: float) -> float | None:
        """Checks and counts without an await in between: atomic on the event loop."""
        now = time.monotonic()
        for key, limit in limits:
            count, resets_at = self._current(key, now)
            if count >= limit:
                return resets_at - now
        for key, _ in limits:
            self._add(key, now, window)
        return None

    async def release(self, keys: Sequence[str]) -> None:
        now = time.monotonic()
        for key in keys:
            count, resets_at = self._current(key, now)
            if count > 1:
                self._entries[key] = (count - 1, resets_at)
            else:
                self._entries.pop(key, None)
