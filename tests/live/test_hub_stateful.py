"""The hub's convergence invariant, hunted by a Hypothesis state machine.

The machine drives the real server over real sockets (embedded, and on a real
redis-server). Each step is a burst of ops that are all sent before any reply
is read: subscribes, unsubscribes, closes, votes, catalog changes by an admin
over REST (teachers created, renamed, moved and deleted; subjects created,
renamed and deleted) and, on Redis, a broker gap (the pub/sub connection
killed). So the server handles them interleaved, as it would from many pages
at once. Records are named by their index in the catalog as it is when the
burst runs, so that deletes and creates never leave the machine without
targets. After every burst the invariant must hold: every socket subscribed to
a channel ends showing what the store holds, records and counts, folded by the
pages' own rules (tests/harness/page_model.py); a dashboard shows /api/stats.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tests.harness import page_model
from tests.harness.machine import MachineHarness
from tests.harness.postgres_server import POSTGRES
from tests.harness.redis_server import RedisServer
from tests.harness.server import LiveServer, UserClient, log_in, make_config, sign_up, sign_up_admin
from tests.harness.ws_client import LiveClient

MAX_SOCKETS = 4
VOTERS = 2
SETTLE_TIMEOUT = 5.0


@dataclass
class Page:
    """One open socket and what it believes: channels acked last, replies still owed."""

    client: LiveClient
    channels: set[str] = field(default_factory=set)
    owed: dict[str, tuple[str, str]] = field(default_factory=dict)
    """op id -> (op, channel) for ops sent and not yet answered."""

    def settle_replies(self) -> bool:
        """Apply the replies that arrived; True once none is owed. A subscribe to a record
        deleted meanwhile is `not_found`."""
        for message in self.client.messages:
            op = self.owed.pop(message.get("id"), None)
            if op is None:
                continue
            kind, channel = op
            if message["type"] == "error":
                assert (kind, message["code"]) == ("subscribe", "not_found"), message
            elif kind == "subscribe":
                assert message["type"] == "ack", message
                self.channels.add(channel)
            else:
                assert message["type"] == "ack", message
                self.channels.discard(channel)
        return not self.owed

    def view(self, channel: str) -> page_model.Picture:
        return page_model.shown(self.client.messages, channel)


class Harness(MachineHarness):
    """The server, its loop and the voters, shared by every example of one run."""

    def __init__(self, tmp_path: Path, mode: str) -> None:
        super().__init__(tmp_path, mode)
        self.server: LiveServer | None = None
        self.voters: list[LiveClient] = []
        self.tokens: list[str] = []
        self.admin: UserClient | None = None
        self.created = 0

    async def start(self) -> None:
        overrides: dict[str, Any] = {"ws__coalesce_ms": 20, "ws__rate_limit": 10_000, "ws__rate_burst": 10_000}
        if self.mode != "embedded":
            self.redis = await RedisServer(self.tmp_path / "redis").start()
            overrides["redis__url"] = self.redis.url
        if self.mode == "postgresql":  # reads and writes run at once on a pool, not in turn on one thread
            overrides["store__url"] = await asyncio.to_thread(POSTGRES.database, f"hub_{uuid.uuid4().hex[:12]}")
        self.server = await LiveServer(make_config(self.tmp_path / "data", **overrides)).start()
        users = [await sign_up(self.server, f"voter{index}") for index in range(VOTERS + 1)]
        self.tokens = [user.access_token for user in users]
        self.admin = await sign_up_admin(self.server)
        self.voters = [await LiveClient.connect(self.server.base_url, token) for token in self.tokens[:VOTERS]]

    async def stop(self) -> None:
        for voter in self.voters:
            await voter.close()
        if self.server is not None:
            await self.server.stop()
        if self.redis is not None:
            await self.redis.stop()

    async def catalog(self) -> tuple[list[int], list[int]]:
        """The subjects' and the teachers' numbers, as the store has them now."""
        assert self.server is not None and self.server.services is not None
        store = self.server.services.backends.store
        subjects, teachers = await store.list_subjects(), await store.list_teachers()
        return [s.no for s in subjects.items], [t.no for t in teachers.items]

    async def change_catalog(self, kind: str, subject: int, teacher: int) -> None:
        """One admin request; a refusal (a subject that still has teachers, a record or a target
        subject deleted meanwhile) is an answer like any other."""
        assert self.admin is not None
        self.created += 1
        requests: dict[str, tuple[str, str, dict[str, Any] | None]] = {
            "create_teacher": ("POST", "/api/teachers/", {
                "name": f"new {self.created}", "sex": True, "birth": "1990-01-01", "subject": subject,
            }),
            "rename_teacher": ("PATCH", f"/api/teachers/{teacher}/", {"name": f"renamed {self.created}"}),
            "move_teacher": ("PATCH", f"/api/teachers/{teacher}/", {"subject": subject}),
            "delete_teacher": ("DELETE", f"/api/teachers/{teacher}/", None),
            "create_subject": ("POST", "/api/subjects/", {"name": f"subject {self.created}"}),
            "rename_subject": ("PATCH", f"/api/subjects/{subject}/", {"name": f"renamed {self.created}"}),
            "delete_subject": ("DELETE", f"/api/subjects/{subject}/", None),
        }
        method, path, body = requests[kind]
        response = await self.admin.request(method, path, **({"json_body": body} if body else {}))
        if response.status == 401:  # a long run outlives the access token
            self.admin = await log_in(self.admin.server, self.admin.username, self.admin.password)
            response = await self.admin.request(method, path, **({"json_body": body} if body else {}))
        assert response.status in (200, 201, 204, 404, 409, 422), (kind, response.status, response.body)

    async def broker_gap(self) -> None:
        """Kill this process's pub/sub connection, as a Redis failover or network blip would."""
        assert self.redis is not None
        await self.redis.kill_pubsub()


Op = tuple[str, int, Any]
"""(kind, socket or voter index, argument); records are indexes into the catalog of the moment."""

CHANNEL_KINDS = st.sampled_from(["subject", "teacher", "dashboard"])
RECORD = st.integers(0, 50)
CATALOG_CHANGES = st.sampled_from([
    "create_teacher", "rename_teacher", "move_teacher", "delete_teacher",
    "create_subject", "rename_subject", "delete_subject",
])

OPS = st.one_of(
    st.tuples(st.just("subscribe"), st.integers(0, MAX_SOCKETS - 1), st.tuples(CHANNEL_KINDS, RECORD)),
    st.tuples(st.just("unsubscribe"), st.integers(0, MAX_SOCKETS - 1), st.tuples(CHANNEL_KINDS, RECORD)),
    st.tuples(st.just("close"), st.integers(0, MAX_SOCKETS - 1), st.none()),
    st.tuples(
        st.just("vote"),
        st.integers(0, VOTERS - 1),
        st.tuples(RECORD, st.sampled_from(["good", "bad", None])),
    ),
    st.tuples(st.just("catalog"), st.just(0), st.tuples(CATALOG_CHANGES, RECORD, RECORD)),
    st.tuples(st.just("yield"), st.integers(0, 3), st.none()),
)


def pick(numbers: list[int], index: int) -> int:
    """The index-th record of the moment (an unknown number when there is none)."""
    return numbers[index % len(numbers)] if numbers else 10**6


def machine_for(harness: Harness) -> type[RuleBasedStateMachine]:
    ops = st.one_of(OPS, st.tuples(st.just("gap"), st.just(0), st.none())) if harness.redis is not None else OPS

    class HubMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.pages: list[Page | None] = [None] * MAX_SOCKETS
            self.votes_owed: list[tuple[LiveClient, str]] = []

        @rule(burst=st.lists(ops, min_size=1, max_size=6))
        def burst(self, burst: list[Op]) -> None:
            harness.run(self._burst(burst))

        async def _burst(self, burst: list[Op]) -> None:
            subjects, teachers = await harness.catalog()
            changes = []
            for kind, index, argument in burst:
                if kind in ("subscribe", "unsubscribe"):
                    page = await self._page(index)
                    channel_kind, record = argument
                    channel = {
                        "subject": f"subject:{pick(subjects, record)}",
                        "teacher": f"teacher:{pick(teachers, record)}",
                    }.get(channel_kind, "dashboard")
                    page.owed[page.client.send(kind, channel=channel)] = (kind, channel)
                elif kind == "close":
                    page = self.pages[index]
                    if page is not None:
                        page.client.connection.close()
                        self.pages[index] = None
                elif kind == "vote":
                    record, value = argument
                    voter = harness.voters[index]
                    self.votes_owed.append((voter, voter.send("vote", teacher=pick(teachers, record), value=value)))
                elif kind == "catalog":
                    change, subject, teacher = argument
                    changes.append(asyncio.ensure_future(
                        harness.change_catalog(change, pick(subjects, subject), pick(teachers, teacher))
                    ))
                elif kind == "gap":
                    await harness.broker_gap()
                else:
                    for _ in range(index):
                        await asyncio.sleep(0)
            await asyncio.gather(*changes)

        async def _page(self, index: int) -> Page:
            page = self.pages[index]
            if page is None:
                assert harness.server is not None
                client = await LiveClient.connect(harness.server.base_url, harness.tokens[-1])
                page = self.pages[index] = Page(client)
            return page

        def _votes_answered(self) -> bool:
            """Every vote sent has been acknowledged: acknowledged votes are in the store."""
            answered = {(id(voter), m.get("id")) for voter in harness.voters for m in voter.messages}
            self.votes_owed = [(voter, op_id) for voter, op_id in self.votes_owed if (id(voter), op_id) not in answered]
            return not self.votes_owed

        @invariant()
        def converged(self) -> None:
            harness.run(self._wait_converged())

        async def _wait_converged(self) -> None:
            """Votes are acknowledged, replies arrived, then every subscription shows the store."""
            assert harness.server is not None
            loop = asyncio.get_running_loop()
            deadline = loop.time() + SETTLE_TIMEOUT
            stale: list[Any] = []
            while loop.time() < deadline:
                await asyncio.sleep(0.01)
                pages = [page for page in self.pages if page is not None]
                if not all(page.settle_replies() for page in pages) or not self._votes_answered():
                    stale = ["replies still owed"]
                    continue
                store = {
                    channel: await page_model.expected(harness.server, channel)
                    for channel in {channel for page in pages for channel in page.channels}
                }
                stale = [
                    (index, channel, page.view(channel), store[channel])
                    for index, page in enumerate(pages)
                    for channel in sorted(page.channels)
                    if page.view(channel) != store[channel]
                ]
                if not stale:
                    return
            closed = [(i, p.client.close_code) for i, p in enumerate(self.pages) if p is not None and p.client.closed]
            raise AssertionError(f"not converged within {SETTLE_TIMEOUT} s (closed: {closed}): {stale[:3]}")

        def teardown(self) -> None:
            harness.run(self._teardown())

        async def _teardown(self) -> None:
            """Close every page; the hub must then hold no channel and no votes subscription."""
            for page in self.pages:
                if page is not None:
                    await page.client.close()
            assert harness.server is not None and harness.server.services is not None
            hub = harness.server.services.hub

            async def idle() -> bool:
                return hub.peer_count == len(harness.voters) and hub.channel_count == 0

            await _wait(idle)

    return HubMachine


async def _wait(check: Callable[[], Coroutine[Any, Any, bool]], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"{check.__name__} did not hold within {timeout} s")
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("mode", ["embedded", "redis", "postgresql"])
def test_every_subscriber_converges_whatever_the_interleaving(tmp_path: Path, mode: str) -> None:
    harness = Harness(tmp_path, mode)
    harness.run_machine(machine_for, budget=0.5, steps=10)
