"""Totals for /api/stats: votes per subject and overall (the dashboard's body), and open sockets
cluster-wide."""

from __future__ import annotations

from services.backends.store import Store
from services.live.messages import TotalsJson, totals
from services.live.presence import PresenceService


class StatsJson(TotalsJson):
    """The dashboard's totals, and the sockets open across the cluster."""

    sockets: int


class StatsService:
    def __init__(self, store: Store, presence: PresenceService) -> None:
        self._store = store
        self._presence = presence

    async def snapshot(self) -> StatsJson:
        subjects = await self._store.subject_totals()
        return {**totals(subjects), "sockets": (await self._presence.count()).sockets}
