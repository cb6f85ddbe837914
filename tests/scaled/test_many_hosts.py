"""Many hosts, no shared disk: three `python server.py` processes, each with its own empty data dir
and port, as on three machines, sharing only one PostgreSQL store (tests/harness/postgres_server.py),
a 3+3 Redis Cluster and one auth secret (LIVEVOTE_AUTH__SECRET, from server_env), behind nginx
with the shipped deploy/nginx.conf.

The store is what makes them one deployment: a vote through one host is live on pages of every
host, an admin's catalog change shows everywhere, and while voters vote through nginx, a kill -9
of a host (started again), of the Redis master of a watched feed (failed over) and a PostgreSQL
restart lose no acknowledged vote, and every page ends showing the store.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tornado.httpclient import HTTPClientError

from services.events import subject_votes
from tests.harness.cli import run_server_py
from tests.harness.environment import server_env
from tests.harness.live_cluster import PREFIX
from tests.harness.live_views import close_all, subscribe
from tests.harness.nginx import NginxFactory, start_nginx  # noqa: F401  (start_nginx: a fixture)
from tests.harness.page_model import wait_showing_the_store
from tests.harness.postgres_server import PostgresServer
from tests.harness.redis_cluster import ClusterServers
from tests.harness.server import JsonClient, log_in, sign_up, wait_for
from tests.harness.server_process import ServerProcess, logged_errors, stop_process
from tests.harness.voting import VoteStream
from tests.harness.ws_client import LiveClient, welcomed

CHANNELS = ("subject:1", "subject:2", "dashboard")
"""What the pages on each host watch: the teachers voted on are in subjects 1-3."""
VOTED = tuple(range(2, 10))
"""The voters' teachers (subjects 1-3); teacher 1 is the first vote's, kept out of their ledger."""
ADMIN, ADMIN_PASSWORD = "root", "admin password"
CONFIG = {"server.xheaders": "true"}
"""Behind nginx, as deploy/nginx.conf expects."""


@dataclass
class Host:
    """One machine's livevote: its own data dir, one Redis node to start from, the port it keeps
    across a restart (nginx's upstream)."""

    data_dir: Path
    store: str
    redis_node: int
    port: int = 0
    process: ServerProcess | None = None
    pages: list[tuple[LiveClient, str]] = field(default_factory=list)

    async def start(self) -> ServerProcess:
        port = ("--port", str(self.port)) if self.port else ()
        self.process = await ServerProcess(
            "--data-dir", str(self.data_dir), "--store", self.store,
            "--redis-url", f"redis://127.0.0.1:{self.redis_node}/0", "--redis-cluster", *port,
            env=server_env(**CONFIG),
        ).start(timeout=30)
        self.port = self.process.port
        await wait_for(lambda: ready(self.process), timeout=20, what=f"host on {self.port} ready")
        return self.process

    async def open_pages(self) -> list[tuple[LiveClient, str]]:
        """A page per channel, as visitors open them (a viewer token: no session to lose)."""
        assert self.process is not None
        viewer = await self.process.request("POST", "/api/auth/viewer")
        assert viewer.status == 200, viewer.body
        pages = [(await welcomed(self.process, viewer.json()["access_token"]), channel) for channel in CHANNELS]
        await asyncio.gather(*(subscribe(client, channel) for client, channel in pages))
        self.pages += pages
        return pages


async def ready(server: JsonClient | None) -> bool:
    """/readyz: the store, the sessions and the broker all reachable from this process."""
    with contextlib.suppress(OSError, HTTPClientError):  # refused, or a timeout
        return server is not None and (await server.get("/readyz", request_timeout=2)).status == 200
    return False


@pytest.fixture
async def postgres() -> AsyncIterator[PostgresServer]:
    """A PostgreSQL server of this test's own, which it restarts."""
    server = PostgresServer()
    try:
        yield await server.start()
    finally:
        await server.destroy()


async def all_show_the_store(pages: Sequence[tuple[LiveClient, str]], store: JsonClient, timeout: float = 10) -> None:
    await asyncio.gather(*(wait_showing_the_store(client, channel, store, timeout) for client, channel in pages))


async def test_three_hosts_on_one_store_share_votes_and_catalog_and_lose_nothing_to_faults(
    tmp_path: Path, postgres: PostgresServer, redis_cluster: ClusterServers, start_nginx: NginxFactory  # noqa: F811
) -> None:
    store = await postgres.create_database("livevote")
    hosts = [Host(tmp_path / f"host{i}", store, port) for i, port in enumerate(redis_cluster.running_ports[:3])]
    stream: VoteStream | None = None
    try:
        # Three empty hosts start at once on an empty database: one creates and seeds it.
        servers = list(await asyncio.gather(*(host.start() for host in hosts)))
        subjects = await postgres.fetch("SELECT count(*) AS n FROM subjects", database="livevote")
        assert subjects[0]["n"] == 5, "seeded once"
        for host in hosts:  # no SQLite file, no secret file: nothing a host would have to share
            assert not any(host.data_dir.rglob("*")), f"{host.data_dir}: {list(host.data_dir.rglob('*'))}"
        nginx = await start_nginx([host.port for host in hosts])
        created = await run_server_py(
            "create-user", ADMIN, "--admin", "--password-stdin", "--data-dir", str(tmp_path / "operator"),
            "--store", store, "--redis-url", redis_cluster.url, "--redis-cluster",
            stdin=ADMIN_PASSWORD.encode() + b"\n",
        )
        assert created.code == 0, created.stderr
        admin = await log_in(nginx, ADMIN, ADMIN_PASSWORD)
        for host in hosts:
            await host.open_pages()
        first_pages = [page for host in hosts for page in host.pages]

        # A vote through host 0 is live on the pages of all three: they subscribed before it, so
        # only a pushed message can bring them to the store's count.
        alice = await sign_up(servers[0], "alice")
        voted = await alice.request("PUT", "/api/teachers/1/vote", json_body={"value": "good"})
        assert voted.status == 200, voted.body
        await all_show_the_store(first_pages, nginx, timeout=5)

        # The admin's catalog changes (through nginx: any host) show on the pages of every host.
        added = await admin.request("POST", "/api/teachers/", json_body={
            "name": "新来的", "sex": True, "birth": "1990-01-01", "subject": 1})
        assert added.status == 201, added.body
        teacher = added.json()["no"]
        await all_show_the_store(first_pages, nginx, timeout=5)
        for method, body in (("PATCH", {"name": "改了名"}), ("DELETE", None)):
            changed = await admin.request(method, f"/api/teachers/{teacher}/", **({"json_body": body} if body else {}))
            assert changed.status in (200, 204), changed.body
            await all_show_the_store(first_pages, nginx, timeout=5)

        # Faults under a steady stream of votes through nginx, each vote resent until acknowledged.
        voters = [await sign_up(nginx, f"voter{i}") for i in range(6)]
        stream = VoteStream(voters, VOTED, pause=0.01, retry=True, log_in_again=True)

        async def votes_flow(phase: str, count: int = 20) -> None:
            """Until `count` votes sent since `phase` began are acknowledged: the deployment serves again."""
            await stream.wait_votes(phase, count, acknowledged_only=True, timeout=30)

        await votes_flow("before")
        killed = hosts[1]
        assert killed.process is not None and killed.process.process is not None
        stream.phase = "host killed"
        killed.process.process.kill()  # kill -9
        await killed.process.wait_exit()
        await votes_flow("host killed")
        stream.phase = "host restarted"
        port = killed.port
        await killed.start()
        assert killed.port == port, "on its port again, where nginx looks for it"
        await votes_flow("host restarted")

        master = await redis_cluster.master_for_key(PREFIX + subject_votes(1))  # serves a watched feed
        slot = next(node.slots[0][0] for node in await redis_cluster.nodes() if node.port == master)
        stream.phase = "redis master killed"
        await redis_cluster.kill(master)
        await redis_cluster.wait_failover(master, slot, timeout=15)
        await votes_flow("redis master killed")

        stream.phase = "postgres restarted"
        await postgres.stop("fast")
        await postgres.start()
        await votes_flow("postgres restarted")

        async def all_ready() -> bool:
            return all(await asyncio.gather(*(ready(host.process) for host in hosts)))

        await wait_for(all_ready, timeout=20, what="every host ready after the faults")
        await stream.stop()
        print(f"votes by phase: { {phase: dict(outcomes) for phase, outcomes in stream.outcomes.items()} }")
        # A fault is an outage (503, or nginx's 502), never an error: a 500 said nothing of the vote.
        assert not [phase for phase, outcomes in stream.outcomes.items() if outcomes["REST 500"]], stream.outcomes

        # No acknowledged vote lost: each voter's last acknowledged value per teacher is its row in
        # the votes table (no row: withdrawn), and the teachers' counts add those rows up.
        rows = await postgres.fetch(
            "SELECT u.username, v.teacher, v.value FROM votes v JOIN users u ON u.id = v.user_id", database="livevote"
        )
        stored = {(row["username"], row["teacher"]): row["value"] for row in rows}
        names = [voter.username for voter in voters]
        lost = {(names[index], no): value for (index, no), value in stream.acked.items()
                if stored.get((names[index], no)) != value}
        assert not lost, f"acknowledged votes the store does not hold: {lost}"
        counts = await postgres.fetch("SELECT no, good_count, bad_count FROM teachers WHERE no = ANY($1::bigint[])",
                                      list(VOTED), database="livevote")
        assert {row["no"]: (row["good_count"], row["bad_count"]) for row in counts} == stream.ledger_counts()

        # Every page shows the store: the killed host's pages closed with it, the others stayed
        # open through the failover and the restart; new pages on every host, the restarted too.
        assert all(client.closed for client, _ in hosts[1].pages[:len(CHANNELS)])
        survivors = [page for host in (hosts[0], hosts[2]) for page in host.pages]
        assert not [channel for client, channel in survivors if client.closed]
        fresh = [page for host in hosts for page in await host.open_pages()]
        await all_show_the_store(survivors + fresh, nginx)
        errors = logged_errors([host.process for host in hosts if host.process is not None])
        print(f"{len(errors)} error lines logged (the faults' 503s, asyncpg's reconnections):", *errors[:20], sep="\n")
    finally:
        if stream is not None:
            with contextlib.suppress(Exception):  # resends that cannot be acknowledged any more
                await asyncio.wait_for(stream.stop(), 30)
        await close_all([client for host in hosts for client, _ in host.pages])
        await asyncio.gather(*(stop_process(host.process) for host in hosts if host.process is not None))
