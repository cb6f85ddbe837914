"""Voting windows as the live channel shows them: the next scheduled opening or closing.

A subject's state is derived from its opens_at / closes_at and the time (services/models.py),
so no process needs to be up at that moment for a vote to be refused after it. What does need
a process is telling the open pages: the hub keeps one timer for the next moment among the
subjects it shows, rebuilt from their records after every change, so a restart loses nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from services.models import moment, utc_now

RECHECK = 60.0
"""The longest the timer sleeps in one go: the wall clock may be set while it waits."""




class WindowWatch:
    """Calls `on_change(subject)` soon after a subject's scheduled opening or closing passes."""

    def __init__(self, on_change: Callable[[int], None]) -> None:
        self._on_change = on_change
        self._moments: list[tuple[datetime, int]] = []
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, subjects: Iterable[Mapping[str, Any]]) -> None:
        """The subjects shown now (their records); moments already past are not watched."""
        now = utc_now()
        self._moments = sorted(
            (at, record["no"]) for record in subjects for key in ("opens_at", "closes_at")
            if (at := moment(record.get(key))) is not None and at > now
        )
        self._arm(now)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, now: datetime) -> None:
        self.stop()
        if self._moments:
            delay = min((self._moments[0][0] - now).total_seconds(), RECHECK)
            self._timer = asyncio.get_running_loop().call_later(max(delay, 0.0), self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = utc_now()
        passed = [no for at, no in self._moments if at <= now]
        self._moments = [(at, no) for at, no in self._moments if at > now]
        for no in dict.fromkeys(passed):
            self._on_change(no)
        self._arm(now)
