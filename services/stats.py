"""Totals for /api/stats: votes per subject and overall, and open sockets cluster-wide."""

from __future__ import annotations

from typing import Any

from services.backends.store import Store
from services.live.presence import WatchingService


class StatsService:
    def __init__(self, store: Store, watching: WatchingService) -> None:
        self._store = store
        self._watching = watching

    async def snapshot(self) -> dict[str, Any]:
        subjects = await self._store.subject_totals()
        return {
            "subjects": [
                {"no": s.no, "name": s.name, "good_count": s.good_count, "bad_count": s.bad_count} for s in subjects
            ],
            "votes_total": sum(s.good_count + s.bad_count for s in subjects),
            "sockets": (await self._watching.census()).sockets,
        }
