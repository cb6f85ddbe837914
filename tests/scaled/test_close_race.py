"""Votes racing a close: 32 voters switch their votes without pause, over REST and over the
socket, through several processes, while an admin closes the subject through another one.

Each vote is either counted and acknowledged or refused with voting_closed, never
acknowledged and then dropped: what the store holds for every voter is the last value it
acknowledged, each teacher's version moved once per acknowledged change (so nothing refused
was applied), the counts equal a recount of the votes, and every open page ends showing them.
The store commits the close before answering it and checks the window in each vote's own
transaction, so no vote sent after the close was answered is acknowledged with a change.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.harness.live_views import SUBJECT, TEACHERS, close_all, store_counts, subscribe, wait_converged
from tests.harness.server import LiveServer, UserClient, sign_up, sign_up_admin, viewer_token, wait_signalled
from tests.harness.voting import VALUES, Value, Voter, cast
from tests.harness.ws_client import LiveClient, welcomed

VOTERS = 32
ANSWERED_BEFORE_THE_CLOSE = 150
"""Votes answered before the admin closes: the close lands among votes in full flow."""
ANSWERED_EACH_AFTER = 3
"""Votes each voter sends after the close was answered before the voters stop."""
UNLIMITED_SOCKETS = {"ws__rate_limit": 10_000, "ws__rate_burst": 10_000}
"""Voters vote as fast as they are answered; the socket's rate limit is not under test."""


@dataclass
class Servers:
    voting: list[LiveServer]
    """The processes the voters use, in turn."""
    admin: LiveServer
    """The one the admin closes through (another process, except in embedded mode)."""

    @property
    def every(self) -> list[LiveServer]:
        return [*self.voting, *([] if self.admin in self.voting else [self.admin])]


@pytest.fixture(params=["embedded", "redis", "postgresql"])
def backing(request: pytest.FixtureRequest) -> dict[str, Any]:
    """What the processes share: nothing (embedded: a host is one process), one Redis (and one
    SQLite file), or one Redis and one PostgreSQL database. A plain fixture, as redis_or_none."""
    if request.param == "embedded":
        return {}
    shared = {"redis__url": request.getfixturevalue("redis_server").url}
    if request.param == "postgresql":
        shared["store__url"] = request.getfixturevalue("postgres_url")
    return shared


async def start_servers(start_server: Callable[..., Awaitable[LiveServer]], tmp_path: Path,
                        backing: dict[str, Any]) -> Servers:
    """Embedded: one process. Redis: three processes of one host. PostgreSQL: two processes
    with a data dir each (no shared disk)."""
    if not backing:
        only = await start_server(tmp_path / "host", **UNLIMITED_SOCKETS)
        return Servers([only], only)
    on_postgres = "store__url" in backing
    started = [
        await start_server(tmp_path / (f"host{index}" if on_postgres else "host"), **backing, **UNLIMITED_SOCKETS)
        for index in range(2 if on_postgres else 3)
    ]
    return Servers(started[:2], started[-1])


@dataclass
class Answer:
    voter: int
    teacher: int
    value: Value
    sent: float
    answered: float
    acknowledged: bool
    changed: bool
    """Acknowledged with a value other than the voter's previous one on that teacher."""
    reply: str
    """"REST 200", "REST 409 voting_closed", "socket ack", "socket error voting_closed", ..."""


@dataclass
class Voters:
    """Each voter votes on random teachers of the subject, one vote after another, until told to stop."""

    voters: list[Voter]
    answers: list[Answer] = field(default_factory=list)
    standing: dict[tuple[int, int], Value] = field(default_factory=dict)
    """Per (voter, teacher): the value of its last acknowledged vote."""
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, index: int) -> None:
        rng = random.Random(index)
        loop = asyncio.get_running_loop()
        while not self.stop.is_set():
            teacher, value = rng.choice(TEACHERS), rng.choice(VALUES)
            sent = loop.time()
            acknowledged, reply = await cast(self.voters[index], teacher, value)
            before = self.standing.get((index, teacher))
            if acknowledged:
                echoed = reply["value"] if isinstance(reply, dict) else reply.json()["value"]
                assert echoed == value, (index, teacher, value, reply)
                self.standing[index, teacher] = value
            self.answers.append(Answer(index, teacher, value, sent, loop.time(), acknowledged,
                                       acknowledged and value != before, describe(reply)))
            self.changed.set()

    def sent_after(self, moment: float) -> list[Answer]:
        return [answer for answer in self.answers if answer.sent > moment]


def describe(reply: Any) -> str:
    if isinstance(reply, dict):
        return f"socket {reply['type']}" + (f" {reply['code']}" if "code" in reply else "")
    if reply.status == 200:
        return "REST 200"
    body = reply.json() if reply.content_type == "application/problem+json" else {}
    return f"REST {reply.status} {body.get('code')}"


ALLOWED = {"REST 200", "REST 409 voting_closed", "socket ack", "socket error voting_closed"}


async def test_a_vote_racing_a_close_is_counted_or_refused(
    start_server: Callable[..., Awaitable[LiveServer]], tmp_path: Path, backing: dict[str, Any]
) -> None:
    servers = await start_servers(start_server, tmp_path, backing)
    admin = await sign_up_admin(servers.admin)
    users = [await sign_up(servers.voting[index % len(servers.voting)], f"voter{index}") for index in range(VOTERS)]
    sockets: dict[int, LiveClient] = {}
    pages: list[tuple[LiveClient, str]] = []
    try:
        await race(servers, admin, users, sockets, pages)
    finally:
        await close_all([*sockets.values(), *(client for client, _ in pages)])


async def race(servers: Servers, admin: UserClient, users: list[UserClient], sockets: dict[int, LiveClient],
               pages: list[tuple[LiveClient, str]]) -> None:
    """Every other voter votes over the socket's vote op, the others over REST, spread over the
    voting processes; every process shows the subject and the dashboard to a page."""
    sockets.update({index: await welcomed(user.server, user.access_token) for index, user in enumerate(users)
                    if index % 2})
    voting: list[Voter] = [sockets.get(index, user) for index, user in enumerate(users)]
    token = await viewer_token(servers.admin)
    pages += [(await welcomed(server, token), channel) for server in servers.every
              for channel in (f"subject:{SUBJECT}", "dashboard")]
    await asyncio.gather(*(subscribe(client, channel) for client, channel in pages))
    versions = {no: version for no, (_, _, version) in (await store_counts(servers.admin)).items()}

    crowd = Voters(voting)
    running = [asyncio.create_task(crowd.run(index)) for index in range(VOTERS)]
    try:
        await wait_signalled(crowd.changed, lambda: len(crowd.answers) >= ANSWERED_BEFORE_THE_CLOSE, 20)
        closing = await admin.request("PATCH", f"/api/subjects/{SUBJECT}/", json_body={"state": "closed"})
        closed_at = asyncio.get_running_loop().time()
        assert closing.status == 200 and closing.json()["state"] == "closed", closing.body

        def everyone_voted_after_the_close() -> bool:
            after = [answer.voter for answer in crowd.sent_after(closed_at)]
            return all(after.count(index) >= ANSWERED_EACH_AFTER for index in range(VOTERS))

        await wait_signalled(crowd.changed, everyone_voted_after_the_close, 20)
    finally:
        crowd.stop.set()
        await asyncio.gather(*running)

    replies = {answer.reply for answer in crowd.answers}
    assert replies <= ALLOWED, replies - ALLOWED
    in_flight = [answer for answer in crowd.answers if answer.sent < closed_at < answer.answered]
    assert len(in_flight) >= VOTERS // 2, "the close did not race the votes"
    first_refusal = min(answer.answered for answer in crowd.answers if not answer.acknowledged)
    late = crowd.sent_after(min(closed_at, first_refusal))
    assert not [answer for answer in late if answer.changed], "acknowledged a change after the close or a refusal"
    assert {"REST 409 voting_closed", "socket error voting_closed"} <= {answer.reply for answer in late}

    for index, user in enumerate(users):
        for teacher in TEACHERS:
            held = (await user.get(f"/api/teachers/{teacher}/vote")).json()["value"]
            assert held == crowd.standing.get((index, teacher)), (user.username, teacher)

    counts = await store_counts(servers.admin)
    assert servers.admin.services is not None
    store = servers.admin.services.backends.store
    for teacher in TEACHERS:
        changes = sum(answer.changed for answer in crowd.answers if answer.teacher == teacher)
        good, bad, version = counts[teacher]
        assert version - versions[teacher] == changes, (teacher, "a refused vote was applied or one dropped")
        assert (good, bad) == await store.tally_votes(teacher)
    assert await store.reconcile() == 0, "counts that a recount had to fix"

    await wait_converged(pages, servers.admin, timeout=15)
    for client, channel in pages:
        if channel != "dashboard":
            assert any(message.get("type") == "catalog" and (message.get("record") or {}).get("state") == "closed"
                       for message in client.messages), f"a page of {channel} never heard the close"
