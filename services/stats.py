"""Totals for /api/stats: votes per subject and overall (the dashboard's body), and open sockets
cluster-wide."""

from __future__ import annotations

from typing import Any

from services.backends.store import Store
from services.live.messages import totals
from services.live.presence import PresenceService


class StatsService:
    def __init__(self, store: Store, presence: PresenceService) -> None:
        self._store = store
        self._presence = presence

    async def snapshot(self) -> dict[str, Any]:
        subjects = await self._store.subject_totals()
        return {**totals(subjects), "sockets": (await self._presence.count()).sockets}
