"""The PostgreSQL store under faults: the real app on a real redis-server and real PostgreSQL
servers that the tests restart, crash, cut off and fail over while votes flow.

What must hold each time: every request is answered, and quickly (a 503 with Retry-After
while the database cannot serve, never a 500 and never a hang), the service comes back by
itself once the database does, and every vote that was acknowledged is in the database, with
the teachers' counts equal to a recount of the votes.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from tests.conftest import ServerFactory
from tests.harness.postgres_server import PostgresServer
from tests.harness.redis_server import RedisServer
from tests.harness.server import LiveServer, Response, UserClient, assert_problem, sign_up, wait_for
from tests.harness.tcp_proxy import TcpProxy
from tests.harness.voting import VoteStream

DATABASE = "livevote"
TEACHERS = (1, 2, 3, 4)
VOTERS = 6
LIMITS = {"store__connect_timeout": 1, "store__statement_timeout": 1, "store__acquire_timeout": 1}
"""Small bounds, so that an outage is answered within about a second or two."""
REQUEST_TIMEOUT = 5.0
"""No request may take longer, whatever the database does: past it, the test fails."""


@pytest.fixture
async def postgres() -> AsyncIterator[PostgresServer]:
    server = await PostgresServer().start()
    await server.create_database(DATABASE)
    yield server
    await server.destroy()


class Replies:
    """Each vote's reply, as the voters get them: a refusal must be a 503 problem with
    Retry-After; an acknowledgement is kept with the phase its vote was sent in, the time it
    came, and the counts it showed."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.acknowledged: list[tuple[str, float, dict[str, Any]]] = []
        self.refused: list[float] = []

    def __call__(self, phase: str, reply: Response) -> None:
        if 200 <= reply.status < 300:
            self.acknowledged.append((phase, self.loop.time(), reply.json()))
        else:
            assert_problem(reply, 503)
            assert reply.headers.get("Retry-After") == "1"
            self.refused.append(self.loop.time())

    def first_acknowledged_after(self, moment: float) -> float:
        return min(time for _, time, _ in self.acknowledged if time >= moment)

    def acknowledged_before(self, phase: str, moment: float) -> int:
        """How many votes sent in `phase` were acknowledged before `moment`."""
        return sum(sent == phase and time < moment for sent, time, _ in self.acknowledged)


async def start_livevote(start_server: ServerFactory, url: str, redis: RedisServer, **overrides: Any) -> LiveServer:
    app = await start_server(store__url=url, redis__url=redis.url, **{**LIMITS, **overrides})
    app.request_timeout = REQUEST_TIMEOUT
    return app


async def voting(app: LiveServer) -> tuple[list[UserClient], Replies, VoteStream]:
    voters = [await sign_up(app, f"voter{index}") for index in range(VOTERS)]
    replies = Replies()
    stream = VoteStream(voters, TEACHERS, pause=0.01, tolerate=(), retry=True, on_reply=replies)
    return voters, replies, stream


async def assert_store_holds(postgres: PostgresServer, stream: VoteStream, voters: list[UserClient],
                             replies: Replies) -> None:
    """Each voter's last acknowledged vote per teacher is the row in `votes`; the teachers' counts
    are a recount of those rows; no two acknowledgements showed one version with other counts."""
    rows = await postgres.fetch(
        "SELECT u.username, v.teacher, v.value FROM votes v JOIN users u ON u.id = v.user_id", database=DATABASE
    )
    index = {voter.username: number for number, voter in enumerate(voters)}
    stored = {(index[row["username"]], row["teacher"]): row["value"] for row in rows if row["username"] in index}
    assert stored == {key: value for key, value in stream.acked.items() if value is not None}
    await assert_counts_are_a_recount(postgres)
    now = await versions(postgres)
    shown: dict[tuple[int, int], tuple[int, int]] = {}
    for _, _, body in replies.acknowledged:
        counts = (body["good_count"], body["bad_count"])
        assert shown.setdefault((body["teacher"], body["version"]), counts) == counts, body
        assert body["version"] <= now[body["teacher"]], body


async def versions(server: PostgresServer) -> dict[int, int]:
    rows = await server.fetch("SELECT no, version FROM teachers", database=DATABASE)
    return {row["no"]: row["version"] for row in rows}


async def assert_counts_are_a_recount(postgres: PostgresServer) -> None:
    rows = await postgres.fetch(
        "SELECT t.no, t.good_count, t.bad_count, count(v.value) FILTER (WHERE v.value = 'good') AS good,"
        " count(v.value) FILTER (WHERE v.value = 'bad') AS bad"
        " FROM teachers t LEFT JOIN votes v ON v.teacher = t.no GROUP BY t.no",
        database=DATABASE,
    )
    assert rows
    for row in rows:
        assert (row["good_count"], row["bad_count"]) == (row["good"], row["bad"]), dict(row)


def all_replies(stream: VoteStream) -> dict[str, int]:
    """What the votes got, all phases together ("REST 200": n, "REST 503": m)."""
    return dict(sum((stream.replies(phase) for phase in stream.outcomes), collections.Counter()))


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_a_restart_of_postgresql_is_503s_then_service_without_losing_a_vote(
    mode: str, postgres: PostgresServer, redis_server: RedisServer, start_server: ServerFactory
) -> None:
    """`fast` ends every connection with a message; `immediate` is a crash, recovered at start.
    Either way the pool must notice by itself and reconnect, livevote running throughout."""
    app = await start_livevote(start_server, postgres.url(DATABASE), redis_server)
    voters, replies, stream = await voting(app)
    try:
        await stream.wait_votes("before", 30, acknowledged_only=True)
        await postgres.stop(mode)
        stream.phase = "down"
        await stream.wait_votes("down", 20)
        probe = assert_problem(await voters[0].request("PUT", "/api/teachers/1/vote", json_body={"value": "good"}), 503)
        assert "PostgreSQL" in probe["detail"]
        assert_problem(await app.get("/api/teachers/1"), 503)
        ready = assert_problem(await app.get("/readyz"), 503)
        assert ready["detail"] == f"The store (PostgreSQL at 127.0.0.1:{postgres.port}/{DATABASE}) is unreachable."
        restarting = asyncio.get_running_loop().time()
        await postgres.start()
        back = asyncio.get_running_loop().time()
        stream.phase = "after"
        await stream.wait_votes("after", 30, acknowledged_only=True)
    finally:
        await stream.stop()
    recovery = replies.first_acknowledged_after(back) - back
    print(f"\npg_ctl stop -m {mode}: first vote acknowledged {recovery:.3f} s after pg_ctl start returned;"
          f" replies {all_replies(stream)}")
    assert recovery < 2.0
    assert replies.acknowledged_before("down", restarting) == 0
    assert all_replies(stream).keys() <= {"REST 200", "REST 503"}
    assert (await app.get("/readyz")).status == 200
    await assert_store_holds(postgres, stream, voters, replies)


TERMINATE = ("SELECT pg_terminate_backend(pid), state FROM pg_stat_activity"
             " WHERE application_name = 'livevote' AND pid <> pg_backend_pid()")


async def kill_voting_backends(postgres: PostgresServer) -> tuple[int, int]:
    """Kill livevote's backends while some are inside set_vote's transaction, waiting for a row
    lock the test holds; (how many were killed, how many of them inside a transaction)."""
    holder = await asyncpg.connect(postgres.url(DATABASE), timeout=10)
    try:
        async with holder.transaction():
            await holder.execute("SELECT FROM teachers WHERE no = ANY($1) FOR UPDATE", list(TEACHERS))
            await wait_for(lambda: postgres.fetch(
                "SELECT 1 FROM pg_stat_activity WHERE application_name = 'livevote' AND wait_event_type = 'Lock'"
            ), timeout=5, interval=0.01, what="a vote waiting for the row lock")
            backends = await postgres.fetch(TERMINATE)
    finally:
        await holder.close()
    return len(backends), sum(row["state"] == "active" for row in backends)


async def test_backends_killed_mid_transaction_cost_a_few_503s_and_the_pool_heals(
    postgres: PostgresServer, redis_server: RedisServer, start_server: ServerFactory
) -> None:
    """Each killed connection fails at most the statement it carried: the pool replaces them all,
    and a vote whose connection died under it is sent again on another (set_vote is safe to repeat)."""
    app = await start_livevote(start_server, postgres.url(DATABASE), redis_server)
    voters, replies, stream = await voting(app)
    killed = active = 0
    try:
        for round_ in range(3):
            stream.phase = f"round {round_}"
            await stream.wait_votes(stream.phase, 20, acknowledged_only=True)
            backends, busy = await kill_voting_backends(postgres)
            killed, active = killed + backends, active + busy
        stream.phase = "healed"
        await stream.wait_votes("healed", 30, acknowledged_only=True)
    finally:
        await stream.stop()
    print(f"\npg_terminate_backend: {killed} backends killed, {active} of them mid-transaction;"
          f" {len(replies.refused)} votes refused")
    assert active >= 3
    assert len(replies.refused) <= active
    assert all_replies(stream).keys() <= {"REST 200", "REST 503"}
    await assert_store_holds(postgres, stream, voters, replies)
    # Connections killed while idle: the next vote finds out on its connection, and goes again.
    assert await postgres.fetch(TERMINATE)
    response = await voters[0].request("PUT", "/api/teachers/1/vote", json_body={"value": "good"})
    assert response.status == 200, response.body


async def test_a_blackhole_to_postgresql_is_503s_in_bounds_while_the_loop_serves(
    postgres: PostgresServer, redis_server: RedisServer, start_server: ServerFactory
) -> None:
    """No byte passes and nothing closes: only livevote's own timeouts end the waits. A statement
    is refused after statement_timeout, not after the cancel that cannot arrive as well (which
    the driver would wait for, up to statement_timeout more); a request after acquire_timeout +
    statement_timeout at most, as it may wait for a connection first."""
    proxy = await TcpProxy(postgres.port).start()
    app = await start_livevote(start_server, f"postgresql://postgres@127.0.0.1:{proxy.port}/{DATABASE}", redis_server)
    app.request_timeout = 3.0
    voters, replies, stream = await voting(app)
    prober = await sign_up(app, "prober")
    loop = asyncio.get_running_loop()
    try:
        await stream.wait_votes("before", 30, acknowledged_only=True)
        proxy.blackhole()
        probe_sent = loop.time()
        stream.phase = "blackhole"
        probe = asyncio.ensure_future(prober.request("PUT", "/api/teachers/2/vote", json_body={"value": "bad"}))
        while not probe.done():
            started = loop.time()
            assert (await app.get("/healthz")).status == 200
            assert loop.time() - started < 0.5
        assert_problem(probe.result(), 503)
        probe_took = loop.time() - probe_sent
        await stream.wait_votes("blackhole", 2 * VOTERS)
        lifted = loop.time()
        proxy.restore()
        stream.phase = "after"
        await stream.wait_votes("after", 30, acknowledged_only=True)
    finally:
        await stream.stop()
        await proxy.stop()
    recovery = replies.first_acknowledged_after(lifted) - lifted
    print(f"\nblackhole: a vote refused after {probe_took:.3f} s; first vote acknowledged {recovery:.3f} s after it"
          f" lifted; slowest acknowledged {dict(stream.slowest)}")
    assert replies.acknowledged_before("blackhole", lifted) == 0
    assert all_replies(stream).keys() <= {"REST 200", "REST 503"}
    assert probe_took < 1.7
    assert recovery < 3
    await assert_store_holds(postgres, stream, voters, replies)


async def replayed(standby: PostgresServer) -> bool:
    rows = await standby.fetch("SELECT pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() AS done")
    return bool(rows[0]["done"])


async def stream_through(standby: PostgresServer, link: TcpProxy) -> None:
    """Have the standby stream from its primary through `link`, which the test can blackhole."""
    await standby.execute(f"ALTER SYSTEM SET primary_conninfo = 'host=127.0.0.1 port={link.port} user=postgres'")
    await standby.execute("SELECT pg_reload_conf()")
    await wait_for(lambda: standby.fetch(
        "SELECT 1 FROM pg_stat_wal_receiver WHERE sender_port = $1 AND status = 'streaming'", link.port
    ), what="the standby streaming through the link")


@pytest.mark.parametrize("replication", ["async", "sync"])
async def test_a_failover_to_the_promoted_standby_goes_on_without_a_restart(
    replication: str, postgres: PostgresServer, redis_server: RedisServer, start_server: ServerFactory
) -> None:
    """livevote names both servers and asks for the writable one. The standby falls behind (its
    link blackholed), the primary dies (kill -9), the standby is promoted. Asynchronous
    replication loses the votes acknowledged meanwhile: they are counted and reported, and the
    new primary's counts must still be a recount of its votes. Synchronous replication must
    acknowledge none of them, and so lose none."""
    standby = await postgres.standby()
    link = await TcpProxy(postgres.port).start()
    try:
        await stream_through(standby, link)
        if replication == "sync":
            await postgres.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            await postgres.execute("SELECT pg_reload_conf()")
            await wait_for(lambda: postgres.fetch("SELECT 1 FROM pg_stat_replication WHERE sync_state = 'sync'"),
                           what="a synchronous standby")
        url = (f"postgresql://postgres@127.0.0.1:{postgres.port},127.0.0.1:{standby.port}/{DATABASE}"
               "?target_session_attrs=read-write")
        app = await start_livevote(start_server, url, redis_server)
        voters, replies, stream = await voting(app)
        loop = asyncio.get_running_loop()
        try:
            await stream.wait_votes("before", 40, acknowledged_only=True)
            link.blackhole()
            stream.phase = "standby behind"
            await stream.wait_votes("standby behind", 2 * VOTERS)
            killed = loop.time()
            await postgres.kill()
            stream.phase = "primary gone"
            await stream.wait_votes("primary gone", 2 * VOTERS)
            await wait_for(lambda: replayed(standby), what="the standby replaying all it received")
            kept = await versions(standby)
            acknowledged = list(replies.acknowledged)
            await standby.promote()
            promoted = loop.time()
            stream.phase = "after"
            await stream.wait_votes("after", 30, acknowledged_only=True)
        finally:
            await stream.stop()
        lost = [body for _, _, body in acknowledged if body["version"] > kept[body["teacher"]]]
        first_failure = min(time for time in replies.refused if time >= killed)
        back = replies.first_acknowledged_after(promoted)
        print(f"\nfailover ({replication}): votes failed for {back - first_failure:.3f} s after the kill,"
              f" {back - promoted:.3f} s after pg_ctl promote; {len(lost)} of {len(acknowledged)} acknowledged"
              f" votes lost; while the standby was behind: {dict(stream.replies('standby behind'))}")
        assert back - promoted < 2.0
        assert all_replies(stream).keys() <= {"REST 200", "REST 503"}
        if replication == "sync":
            assert stream.replies("standby behind").keys() == {"REST 503"}
            assert not lost
            await assert_store_holds(standby, stream, voters, replies)
        else:
            assert lost
            await assert_counts_are_a_recount(standby)
    finally:
        await link.stop()
        await standby.destroy()
