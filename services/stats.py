"""Totals for /api/stats: votes per subject and overall (the dashboard's body), and open sockets
cluster-wide."""

from __future__ import annotations

from services.backends.store import Store
from services.live.messages import TotalsJson, totals
from services.live.presence import PresenceService
from services.visibility import Reader, VisibilityService


class StatsJson(TotalsJson):
    """The dashboard's totals, and the sockets open across the cluster."""

    sockets: int


class StatsService:
    def __init__(self, store: Store, presence: PresenceService, visibility: VisibilityService) -> None:
        self._store = store
        self._presence = presence
        self._visibility = visibility

    async def snapshot(self, reader: Reader) -> StatsJson:
        """Counts the reader may not see are null, and left out of votes_total."""
        subjects = await self._store.subject_totals()
        hidden = await self._visibility.withheld(reader, (await self._store.list_subjects()).items)
        return {**totals(subjects, hidden=hidden), "sockets": (await self._presence.count()).sockets}
