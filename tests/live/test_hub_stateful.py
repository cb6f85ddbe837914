"""The hub's convergence invariant, hunted by a Hypothesis state machine.

The machine drives the real server over real sockets (embedded, and on a real
redis-server). Each step is a burst of ops that are all sent before any reply
is read: subscribes, unsubscribes, closes, votes and, on Redis, a broker gap
(the pub/sub connection killed). So the server handles them interleaved, as it
would from many pages at once. After every burst the invariant must hold:
every socket subscribed to a channel ends showing the store's counts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis.asyncio as redis
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from services.models import Counts
from tests.harness.redis_server import RedisServer
from tests.harness.server import LiveServer, make_config, sign_up
from tests.harness.ws_client import LiveClient

T = TypeVar("T")

CHANNELS = ("subject:1", "subject:2", "teacher:1", "teacher:4", "dashboard")
TEACHERS = (1, 2, 4, 5)
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
        """Apply the replies that arrived; True once none is owed."""
        for message in self.client.messages:
            op = self.owed.pop(message.get("id"), None)
            if op is None:
                continue
            assert message["type"] == "ack", message
            kind, channel = op
            if kind == "subscribe":
                self.channels.add(channel)
            else:
                self.channels.discard(channel)
        return not self.owed

    def view(self, channel: str) -> dict[Any, tuple[int, ...]]:
        """Per teacher the highest version shown, or for the dashboard the latest totals."""
        shown: dict[Any, tuple[int, ...]] = {}
        for message in self.client.messages:
            if message.get("channel") != channel or message.get("type") not in ("snapshot", "votes"):
                continue
            if channel == "dashboard":
                shown.update({item["no"]: (item["good_count"], item["bad_count"]) for item in message["subjects"]})
                shown["total"] = (message["votes_total"],)
                continue
            for item in message.get("teachers", []) + message.get("updates", []):
                known = shown.get(item["no"])
                if known is None or known[2] < item["version"]:
                    shown[item["no"]] = (item["good_count"], item["bad_count"], item["version"])
        return shown


def expected(channel: str, counts: list[Counts]) -> dict[Any, tuple[int, ...]]:
    if channel == "dashboard":
        totals: dict[Any, tuple[int, ...]] = {}
        for c in counts:
            good, bad = totals.get(c.subject, (0, 0))
            totals[c.subject] = (good + c.good_count, bad + c.bad_count)
        totals["total"] = (sum(c.good_count + c.bad_count for c in counts),)
        return totals
    kind, _, number = channel.partition(":")
    return {
        c.no: (c.good_count, c.bad_count, c.version)
        for c in counts
        if (kind == "subject" and c.subject == int(number)) or (kind == "teacher" and c.no == int(number))
    }


class Harness:
    """The server, its loop and the voters, shared by every example of one run."""

    def __init__(self, tmp_path: Path, with_redis: bool) -> None:
        self.loop = asyncio.new_event_loop()
        self.tmp_path = tmp_path
        self.with_redis = with_redis
        self.redis: RedisServer | None = None
        self.server: LiveServer | None = None
        self.voters: list[LiveClient] = []
        self.tokens: list[str] = []

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    async def start(self) -> None:
        overrides: dict[str, Any] = {"ws__coalesce_ms": 20, "ws__rate_limit": 10_000, "ws__rate_burst": 10_000}
        if self.with_redis:
            self.redis = await RedisServer(self.tmp_path / "redis").start()
            overrides["redis__url"] = self.redis.url
        self.server = await LiveServer(make_config(self.tmp_path / "data", **overrides)).start()
        users = [await sign_up(self.server, f"voter{index}") for index in range(VOTERS + 1)]
        self.tokens = [user.access_token for user in users]
        self.voters = [await LiveClient.connect(self.server.base_url, token) for token in self.tokens[:VOTERS]]

    async def stop(self) -> None:
        for voter in self.voters:
            await voter.close()
        if self.server is not None:
            await self.server.stop()
        if self.redis is not None:
            await self.redis.stop()

    async def store_counts(self) -> list[Counts]:
        assert self.server is not None and self.server.services is not None
        return await self.server.services.backends.store.counts()

    async def broker_gap(self) -> None:
        """Kill this process's pub/sub connection, as a Redis failover or network blip would."""
        assert self.redis is not None
        client = redis.Redis.from_url(self.redis.url)
        try:
            await client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        finally:
            await client.aclose()


Op = tuple[str, int, Any]
"""(kind, socket or voter index, argument)"""

OPS = st.one_of(
    st.tuples(st.just("subscribe"), st.integers(0, MAX_SOCKETS - 1), st.sampled_from(CHANNELS)),
    st.tuples(st.just("unsubscribe"), st.integers(0, MAX_SOCKETS - 1), st.sampled_from(CHANNELS)),
    st.tuples(st.just("close"), st.integers(0, MAX_SOCKETS - 1), st.none()),
    st.tuples(
        st.just("vote"),
        st.integers(0, VOTERS - 1),
        st.tuples(st.sampled_from(TEACHERS), st.sampled_from(["good", "bad", None])),
    ),
    st.tuples(st.just("yield"), st.integers(0, 3), st.none()),
)


def machine_for(harness: Harness) -> type[RuleBasedStateMachine]:
    ops = st.one_of(OPS, st.tuples(st.just("gap"), st.just(0), st.none())) if harness.with_redis else OPS

    class HubMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.pages: list[Page | None] = [None] * MAX_SOCKETS
            self.votes_owed: list[tuple[LiveClient, str]] = []

        @rule(burst=st.lists(ops, min_size=1, max_size=6))
        def burst(self, burst: list[Op]) -> None:
            harness.run(self._burst(burst))

        async def _burst(self, burst: list[Op]) -> None:
            for kind, index, argument in burst:
                if kind in ("subscribe", "unsubscribe"):
                    page = await self._page(index)
                    page.owed[page.client.send(kind, channel=argument)] = (kind, argument)
                elif kind == "close":
                    page = self.pages[index]
                    if page is not None:
                        page.client.connection.close()
                        self.pages[index] = None
                elif kind == "vote":
                    teacher, value = argument
                    voter = harness.voters[index]
                    self.votes_owed.append((voter, voter.send("vote", teacher=teacher, value=value)))
                elif kind == "gap":
                    await harness.broker_gap()
                else:
                    for _ in range(index):
                        await asyncio.sleep(0)

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
            loop = asyncio.get_running_loop()
            deadline = loop.time() + SETTLE_TIMEOUT
            stale: list[Any] = []
            while loop.time() < deadline:
                await asyncio.sleep(0.01)
                pages = [page for page in self.pages if page is not None]
                if not all(page.settle_replies() for page in pages) or not self._votes_answered():
                    stale = ["replies still owed"]
                    continue
                counts = await harness.store_counts()
                stale = [
                    (index, channel, page.view(channel), expected(channel, counts))
                    for index, page in enumerate(pages)
                    for channel in sorted(page.channels)
                    if page.view(channel) != expected(channel, counts)
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


@pytest.mark.parametrize("mode", ["embedded", "redis"])
def test_every_subscriber_converges_whatever_the_interleaving(tmp_path: Path, mode: str) -> None:
    harness = Harness(tmp_path, with_redis=mode == "redis")
    harness.run(harness.start())
    try:
        run_state_machine_as_test(
            machine_for(harness), settings=settings(settings.default, stateful_step_count=10)
        )
    finally:
        with contextlib.suppress(Exception):
            harness.run(harness.stop())
        harness.loop.close()
