"""Event streams that drop and come back, hunted by a Hypothesis state machine.

Three pages watch over /sse (subject 1 and the dashboard; subject 2 and teacher 1; subject
1 alone), on one process or spread over two on a real redis-server. A page is what a
browser tab keeps: every message of every stream it opened, folded by the pages' rules
(tests/harness/page_model.py). The machine votes over REST, renames and moves records as
an admin and, on Redis, cuts the broker's connection; and it drops a page's stream, acts
while it is away, then brings it back as the page's client does: with the last event's
id in `Last-Event-ID` or `last_event_id` (on either process), or afresh. Whether the
server resumes (only what changed) or cannot tell (a snapshot), after every step every
page must show what the store holds.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tests.harness import page_model
from tests.harness.machine import MachineHarness
from tests.harness.redis_server import RedisServer
from tests.harness.server import LiveServer, UserClient, make_config, sign_up, sign_up_admin, viewer_token
from tests.harness.sse_client import EventStreamClient
from tests.harness.voting import cast

CHANNELS = (["subject:1", "dashboard"], ["subject:2", "teacher:1"], ["subject:1"])
TEACHERS = (1, 2, 3, 4, 5, 6)
"""The seed's: subject 1 has teachers 1-3, subject 2 teachers 4-6."""
WATCHED = {channel for channels in CHANNELS for channel in channels}
VOTERS = 3
SETTLE_TIMEOUT = 5.0


@dataclass
class Page:
    channels: list[str]
    stream: EventStreamClient | None = None
    seen: list[dict[str, Any]] = field(default_factory=list)
    """Every message of the streams closed so far: the tab's state outlives its stream."""
    last_id: str | None = None

    def messages(self) -> list[dict[str, Any]]:
        return self.seen + (self.stream.messages if self.stream is not None else [])

    async def drop(self) -> None:
        if self.stream is not None:
            await self.stream.close()
            self.seen.extend(self.stream.messages)
            self.last_id = self.stream.last_id or self.last_id
            self.stream = None


class Harness(MachineHarness):
    def __init__(self, tmp_path: Path, mode: str) -> None:
        super().__init__(tmp_path, mode)
        self.servers: list[LiveServer] = []
        self.voters: list[UserClient] = []
        self.admin: UserClient | None = None
        self.viewer = ""
        self.renamed = 0

    async def start(self) -> None:
        overrides: dict[str, Any] = {"ws__coalesce_ms": 100, "auth__viewer_ttl": 86400, "auth__access_ttl": 86400}
        if self.mode == "redis":
            self.redis = await RedisServer(self.tmp_path / "redis").start()
            overrides["redis__url"] = self.redis.url
        for _ in range(2 if self.redis is not None else 1):
            self.servers.append(await LiveServer(make_config(self.tmp_path / "data", **overrides)).start())
        self.voters = [await sign_up(self.servers[0], f"voter{index}") for index in range(VOTERS)]
        self.admin = await sign_up_admin(self.servers[0])
        self.viewer = await viewer_token(self.servers[0])

    async def stop(self) -> None:
        for server in self.servers:
            await server.stop()
        if self.redis is not None:
            await self.redis.stop()

    async def open(self, page: Page, server: int, how: str) -> None:
        """The page's stream again, on one of the processes, coming back as `how` says."""
        options: dict[str, Any] = {}
        if how == "header" and page.last_id is not None:
            options["last_event_id"] = page.last_id
        elif how == "query" and page.last_id is not None:
            options["query"] = {"last_event_id": page.last_id}
        base_url = self.servers[server % len(self.servers)].base_url
        page.stream = await EventStreamClient.open(base_url, page.channels, token=self.viewer, **options)

    async def vote(self, voter: int, teacher: int, value: str | None) -> None:
        acknowledged, response = await cast(self.voters[voter], teacher, value)
        assert acknowledged, response.body

    async def change_catalog(self, change: str, number: int) -> None:
        assert self.admin is not None
        self.renamed += 1
        path, body = {
            "rename_teacher": (f"/api/teachers/{number}/", {"name": f"renamed {self.renamed}"}),
            "move_teacher": (f"/api/teachers/{number}/", {"subject": 1 + self.renamed % 2}),
            "rename_subject": (f"/api/subjects/{1 + number % 2}/", {"name": f"renamed {self.renamed}"}),
        }[change]
        response = await self.admin.request("PATCH", path, json_body=body)
        assert response.status == 200, response.body

    async def broker_gap(self) -> None:
        """Kill this process's pub/sub connection, as a Redis failover or network blip would."""
        assert self.redis is not None
        await self.redis.kill_pubsub()


VOTES = st.lists(
    st.tuples(st.integers(0, VOTERS - 1), st.sampled_from(TEACHERS), st.sampled_from(["good", "bad", None])),
    max_size=4,
)
CATALOG = st.tuples(st.sampled_from(["rename_teacher", "move_teacher", "rename_subject"]), st.sampled_from(TEACHERS))


def machine_for(harness: Harness) -> type[RuleBasedStateMachine]:
    class StreamMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.pages = [Page(list(channels)) for channels in CHANNELS]
            harness.run(self._open_all())

        async def _open_all(self) -> None:
            for index, page in enumerate(self.pages):
                await harness.open(page, index, "fresh")

        @rule(votes=VOTES)
        def vote(self, votes: list[tuple[int, int, str | None]]) -> None:
            harness.run(self._votes(votes))

        async def _votes(self, votes: list[tuple[int, int, str | None]]) -> None:
            await asyncio.gather(*(harness.vote(*vote) for vote in votes))

        @rule(change=CATALOG)
        def catalog(self, change: tuple[str, int]) -> None:
            harness.run(harness.change_catalog(*change))

        @rule(
            page=st.integers(0, len(CHANNELS) - 1), before=VOTES, votes=VOTES, change=st.none() | CATALOG,
            server=st.integers(0, 1), how=st.sampled_from(["header", "query", "fresh"]),
        )
        def away(
            self, page: int, before: list[tuple[int, int, str | None]], votes: list[tuple[int, int, str | None]],
            change: tuple[str, int] | None, server: int, how: str,
        ) -> None:
            """Votes; at once (their news maybe still waiting for its coalescing tick) the page's
            stream drops; more votes (and maybe a catalog change) happen; it comes back."""
            harness.run(self._away(self.pages[page], before, votes, change, server, how))

        async def _away(
            self, page: Page, before: list[tuple[int, int, str | None]], votes: list[tuple[int, int, str | None]],
            change: tuple[str, int] | None, server: int, how: str,
        ) -> None:
            await self._votes(before)
            await page.drop()
            await self._votes(votes)
            if change is not None:
                await harness.change_catalog(*change)
            await harness.open(page, server, how)

        @rule()
        def gap(self) -> None:
            if harness.redis is not None:
                harness.run(harness.broker_gap())

        @invariant()
        def converged(self) -> None:
            harness.run(self._wait_converged())

        async def _wait_converged(self) -> None:
            server = harness.servers[0]
            loop = asyncio.get_running_loop()
            deadline = loop.time() + SETTLE_TIMEOUT
            stale: list[Any] = []
            while loop.time() < deadline:
                await asyncio.sleep(0.02)
                store = {channel: await page_model.expected(server, channel) for channel in WATCHED}
                stale = [
                    (index, channel, shown, store[channel])
                    for index, page in enumerate(self.pages)
                    for channel in page.channels
                    if (shown := page_model.shown(page.messages(), channel)) != store[channel]
                ]
                if not stale:
                    return
            raise AssertionError(f"not converged within {SETTLE_TIMEOUT} s: {stale[:2]}")

        def teardown(self) -> None:
            harness.run(self._teardown())

        async def _teardown(self) -> None:
            for page in self.pages:
                await page.drop()

    return StreamMachine


@pytest.mark.parametrize("mode", ["embedded", "redis"])
def test_every_page_on_a_stream_converges_however_it_drops_and_comes_back(tmp_path: Path, mode: str) -> None:
    harness = Harness(tmp_path, mode)
    harness.run_machine(machine_for, budget=0.375, steps=8)
