"""What the soak checks once the voting is over: the store's counts, the pages that do not show
them, the votes the store lost, and the open sockets /api/stats counts."""

from __future__ import annotations

import asyncio
import contextlib
from time import monotonic as now
from typing import TYPE_CHECKING

from bench.soak.accounts import RETRY_DELAYS, Voter

if TYPE_CHECKING:
    from bench.soak.pages import Page
    from tests.harness.nginx import Nginx

CONVERGE = 5.0
"""Pages must show the store this long after the last vote (or the last recovery)."""


async def store_counts(nginx: Nginx, teachers: list[int]) -> dict[int, tuple[int, int, int]]:
    """GET /api/teachers/N for each teacher: good, bad, version."""
    counts = {}
    for no in teachers:
        for attempt in range(40):
            response = await nginx.get(f"/api/teachers/{no}/")
            if response.status == 200:
                body = response.json()
                counts[no] = (body["good_count"], body["bad_count"], body["version"])
                break
            await asyncio.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
        else:
            raise RuntimeError(f"GET /api/teachers/{no}/ kept failing")
    return counts


def stale_pages(pages: list[Page], subject_of: dict[int, int], counts: dict[int, tuple[int, int, int]]) -> list[Page]:
    """The pages not subscribed, or not showing `counts` (the store's, per teacher) for their channel."""
    totals: dict[int, tuple[int, int]] = {}
    for no, (good, bad, _) in counts.items():
        subject = subject_of[no]
        before = totals.get(subject, (0, 0))
        totals[subject] = (before[0] + good, before[1] + bad)
    votes_total = sum(good + bad for good, bad in totals.values())
    stale = []
    for page in pages:
        if not page.subscribed:
            stale.append(page)
        elif page.subject is None:
            if {no: page.subjects.get(no) for no in totals} != totals or page.votes_total != votes_total:
                stale.append(page)
        elif any(page.teachers.get(no) != counts[no] for no in counts if subject_of[no] == page.subject):
            stale.append(page)
    return stale


async def counted_sockets(nginx: Nginx, pages: list[Page], timeout: float = 5.0) -> int | None:
    """Open sockets as /api/stats counts them (each worker's count in Redis, renewed by its
    heartbeat): polled until it equals the pages' sockets, else the last answer. A figure, not a
    verdict: only the dashboard shows it."""
    deadline, shown = now() + timeout, None
    while now() < deadline:
        with contextlib.suppress(Exception):
            response = await nginx.get("/api/stats")
            if response.status == 200:
                shown = int(response.json()["sockets"])
                if shown == sum(page.subscribed for page in pages):
                    break
        await asyncio.sleep(0.2)
    return shown


async def lost_votes(voters: list[Voter]) -> int:
    """(user, teacher) pairs where the store holds another vote than the last acknowledged one."""
    limit = asyncio.Semaphore(20)

    async def differs(voter: Voter, teacher: int, value: str | None) -> bool:
        async with limit:
            response = await voter.api("GET", f"/api/teachers/{teacher}/vote")
        return bool(response.json()["value"] != value)

    checks = [differs(voter, teacher, value) for voter in voters for teacher, value in voter.votes.items()]
    return sum(await asyncio.gather(*checks))
