"""The live channel in scaled mode: real `python server.py`
processes on one real redis-server and one SQLite data dir, real sockets.

Every test ends on the convergence invariant: when votes stop, every subscriber's
view of every teacher (the highest version seen in snapshots and votes) equals
the store's counts.
"""

from __future__ import annotations

import asyncio
import collections
import random
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.harness.environment import server_env
from tests.harness.procfs import child_pids, rss_kib, send_queue, socket_owner
from tests.harness.redis_server import RedisServer
from tests.harness.scaled import (
    SUBJECT,
    TEACHERS,
    Counts,
    RawSocket,
    View,
    client_port,
    close_all,
    processes,
    start_process,
    stop_process,
    store_counts,
    store_totals,
    subscribe,
    teacher_view,
    wait_converged,
)
from tests.harness.server import ServerProcess, UserClient, log_in, sign_up, wait_for
from tests.harness.voting import VALUES, Script, Value, VoteStream, cast, vote_all
from tests.harness.ws_client import LiveClient, welcomed

CHANNEL = f"subject:{SUBJECT}"


# -- votes -------------------------------------------------------------------------


def vote_script(seed: int, length: int) -> Script:
    """A voter's ops in order: casts, switches, withdrawals and repeats, at random."""
    rng = random.Random(seed)
    return [(rng.choice(TEACHERS), rng.choice(VALUES)) for _ in range(length)]


def expected_counts(scripts: Sequence[Script]) -> tuple[dict[int, Counts], collections.Counter[str]]:
    """What the store must hold after these scripts (one per user), and how many changes of each kind.

    version counts every change: a cast, a switch, a withdrawal; a repeat changes nothing.
    """
    good = dict.fromkeys(TEACHERS, 0)
    bad = dict.fromkeys(TEACHERS, 0)
    version = dict.fromkeys(TEACHERS, 0)
    kinds: collections.Counter[str] = collections.Counter()
    for script in scripts:
        current: dict[int, Value] = {}
        for teacher, value in script:
            before = current.get(teacher)
            if value == before:
                kinds["repeat"] += 1
                continue
            kinds["cast" if before is None else "withdrawal" if value is None else "switch"] += 1
            version[teacher] += 1
            current[teacher] = value
        for teacher, value in current.items():
            good[teacher] += value == "good"
            bad[teacher] += value == "bad"
    return {no: (good[no], bad[no], version[no]) for no in TEACHERS}, kinds


def snapshot_count(client: LiveClient, channel: str = CHANNEL) -> int:
    return sum(1 for m in client.messages if m.get("type") == "snapshot" and m.get("channel") == channel)


def votes_messages(messages: Sequence[dict[str, Any]], channel: str) -> int:
    return sum(1 for m in messages if m.get("type") == "votes" and m.get("channel") == channel)


# -- fan-out across processes ----------------------------------------------------------


@pytest.mark.parametrize("coalesce_ms", [0, None], ids=["coalesce_0", "coalesce_default_50"])
async def test_fan_out_across_two_processes_converges(
    tmp_path: Path, redis_server: RedisServer, coalesce_ms: int | None
) -> None:
    """50 sockets over two processes; REST votes on one, socket votes on the other."""
    config = {} if coalesce_ms is None else {"ws.coalesce_ms": coalesce_ms}
    async with processes(2, tmp_path / "host", redis_server.url, **config) as (rest_side, socket_side):
        rest_voters = [await sign_up(rest_side, f"rest{i}") for i in range(4)]
        socket_users = [await sign_up(socket_side, f"sock{i}") for i in range(4)]
        watcher = await sign_up(rest_side, "watcher")
        clients: list[LiveClient] = []
        try:
            for i in range(50):
                clients.append(await welcomed((rest_side, socket_side)[i % 2], watcher.access_token))
            await asyncio.gather(*(subscribe(client, CHANNEL) for client in clients))
            await asyncio.gather(*(subscribe(client, "dashboard") for client in clients[::5]))
            subscribers = [(c, CHANNEL) for c in clients] + [(c, "dashboard") for c in clients[::5]]
            voter_sockets = [await welcomed(socket_side, user.access_token) for user in socket_users]
            clients.extend(voter_sockets)

            scripts = [vote_script(seed, 25) for seed in range(len(rest_voters) + len(voter_sockets))]
            expected, kinds = expected_counts(scripts)
            assert kinds["cast"] and kinds["switch"] and kinds["withdrawal"] and kinds["repeat"], kinds
            await vote_all([*rest_voters, *voter_sockets], scripts)

            store = await wait_converged(subscribers, rest_side, timeout=10)
            assert store == expected, "the store counts every vote once"
            assert await store_counts(socket_side) == expected
            delivered = [votes_messages(c.messages, CHANNEL) for c in clients[:50]]
            assert min(delivered) >= 1, "every socket got live votes, not only its snapshot"
            print(f"\nFIGURES fan-out coalesce_ms={'default (50)' if coalesce_ms is None else coalesce_ms}: 50 sockets, {sum(kinds.values())} ops"
                  f" ({dict(kinds)}), votes messages per socket min/max/total"
                  f" {min(delivered)}/{max(delivered)}/{sum(delivered)}, final {store}")
        finally:
            await close_all(clients)


# -- --workers 2 ---------------------------------------------------------------------------


async def test_workers_share_one_port_fan_out_and_stop_on_sigterm(tmp_path: Path, redis_server: RedisServer) -> None:
    server = ServerProcess(
        "--workers", "2", "--data-dir", str(tmp_path / "host"), "--redis-url", redis_server.url, env=server_env()
    )
    await server.start()
    clients: list[LiveClient] = []
    try:
        assert server.process is not None

        async def both_listening() -> bool:
            return sum("listening on" in line for line in server.lines) == 2

        await wait_for(both_listening, timeout=20)
        workers = child_pids(server.process.pid)
        assert len(workers) == 2, workers
        alice = await sign_up(server, "alice")

        owner: dict[LiveClient, int] = {}
        while len(clients) < 10 or len(set(owner.values())) < 2:
            assert len(clients) < 40, f"40 sockets all landed on one process: {collections.Counter(owner.values())}"
            client = await welcomed(server, alice.access_token)
            clients.append(client)
            pid = socket_owner_of(workers, server.port, client)
            owner[client] = pid
        assert set(owner.values()) == set(workers)
        await asyncio.gather(*(subscribe(client, CHANNEL) for client in clients))

        async def all_counted() -> bool:
            response = await server.get("/api/stats")
            return response.status == 200 and response.json()["sockets"] == len(clients)

        await wait_for(all_counted, timeout=15)

        for worker, value in zip(workers, ("good", "bad")):
            voter = next(c for c in clients if owner[c] == worker)
            ack = await voter.request("vote", teacher=1, value=value)
            assert ack["type"] == "ack", ack

            async def everyone_saw(version: int = ack["version"]) -> bool:
                return all(teacher_view(c.messages, CHANNEL).get(1, (0, 0, 0))[2] >= version for c in clients)

            await wait_for(everyone_saw, timeout=5)
        print(f"\nFIGURES workers: {len(clients)} sockets per process {dict(collections.Counter(owner.values()))}")

        server.signal(signal.SIGTERM)
        assert await server.wait_exit(20) == 0
        codes = await asyncio.gather(*(client.wait_closed(5) for client in clients))
        assert set(codes) == {1001}, codes
        assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()], "a worker outlived the parent"
    finally:
        await close_all(clients)
        await server.stop()


def socket_owner_of(pids: list[int], port: int, client: LiveClient) -> int:
    pid = socket_owner(pids, port, client_port(client))
    assert pid is not None, "no worker holds this socket"
    return pid


# -- Redis fault ------------------------------------------------------------------------------


async def test_redis_fault_server_stays_up_and_sockets_converge_after_restart(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    server = await start_process(tmp_path / "host", redis_server.url)
    clients: list[LiveClient] = []
    stream: VoteStream | None = None
    try:
        voters = [await sign_up(server, f"rest{i}") for i in range(3)]
        watcher = await sign_up(server, "watcher")
        socket_voter = await welcomed(server, (await sign_up(server, "sockvoter")).access_token)
        clients.append(socket_voter)
        watchers = [await welcomed(server, watcher.access_token) for _ in range(8)]
        clients.extend(watchers)
        await asyncio.gather(*(subscribe(c, CHANNEL) for c in watchers))
        await asyncio.gather(*(subscribe(c, "dashboard") for c in watchers[::4]))
        subscribers = [(c, CHANNEL) for c in watchers] + [(c, "dashboard") for c in watchers[::4]]

        stream = VoteStream(voters, TEACHERS, tolerate=(OSError,))
        await stream.wait_votes("before", 30, acknowledged_only=True, timeout=15)

        stream.phase = "outage"  # what was sent before and is answered after the kill stays "before"
        await redis_server.kill()
        # Socket votes during the outage reach the store, and their events are lost with Redis:
        # only the snapshots sent after the reconnection can bring them to the subscribers.
        outage_acks = []
        for i in range(12):
            value = ("good", "bad", None)[(i // 3) % 3]
            reply = await socket_voter.request("vote", teacher=TEACHERS[i % 3], value=value)
            outage_acks.append(reply["type"])
        await stream.wait_votes("outage", 30, timeout=15)
        assert (await server.get("/healthz")).status == 200
        assert server.process is not None and server.process.returncode is None
        await stream.stop()
        missed = await store_counts(server)
        snapshots = [snapshot_count(c) for c in watchers]

        await redis_server.start()
        await server.wait_for_line("redis pub/sub reconnected", timeout=15)
        # No vote since the outage: nothing but the fresh snapshots can bring the watchers up to date.
        assert await wait_converged(subscribers, server, timeout=10) == missed
        assert all(snapshot_count(c) > n for c, n in zip(watchers, snapshots)), "a fresh snapshot after the gap"

        # The stream resumes on the restarted Redis (it came back empty: the voters log in again).
        after = VoteStream(voters, TEACHERS, phase="after", tolerate=(OSError,), log_in_again=True)
        await after.wait_votes("after", 30, acknowledged_only=True, timeout=15)
        await after.stop()
        store = await wait_converged(subscribers, server, timeout=10)
        assert not [c.close_code for c in watchers if c.closed], "the sockets stayed open through the outage"
        summary = {phase: dict(outcomes) for voting in (stream, after) for phase, outcomes in voting.outcomes.items()}
        print(f"\nFIGURES redis fault: REST outcomes per phase {summary}; socket votes during the outage"
              f" {dict(collections.Counter(outage_acks))}; state missed during the gap {missed}; final {store}")
        assert outage_acks == ["ack"] * 12, "socket votes go to the store while Redis is down"
        outage = stream.replies("outage")
        assert set(outage) <= {"REST 200", "REST 401", "REST 503"}, f"REST votes during the outage: {dict(outage)}"
    finally:
        if stream is not None:
            await stream.stop()
        await close_all(clients)
        await stop_process(server)


async def test_redis_fault_rest_votes_keep_succeeding(tmp_path: Path, redis_server: RedisServer) -> None:
    """Issue 4: "the server stays up, REST votes keep succeeding (they go to the store)"."""
    server = await start_process(tmp_path / "host", redis_server.url)
    try:
        voter = await sign_up(server, "alice")
        assert (await cast(voter, 1, "good"))[1].status == 200
        await redis_server.kill()
        statuses = []
        for teacher, value in ((1, "bad"), (2, "good"), (3, None), (3, "bad")):
            _, response = await cast(voter, teacher, value)
            statuses.append((response.status, response.json().get("title")))
        assert (await server.get("/healthz")).status == 200
        assert statuses == [(200, None)] * 4, f"REST votes while Redis is down answered {statuses}"
    finally:
        await stop_process(server)


async def test_redis_fault_requests_succeed_once_redis_is_back(tmp_path: Path, redis_server: RedisServer) -> None:
    """Once Redis answers again (and the broker has reconnected), requests that need it succeed:
    connections that died with the old redis-server must not fail the first requests after it."""
    server = await start_process(tmp_path / "host", redis_server.url)
    try:
        before = await asyncio.gather(*(server.get("/api/stats") for _ in range(8)))  # a few pooled connections
        assert {r.status for r in before} == {200}
        await redis_server.kill()
        await redis_server.start()
        await server.wait_for_line("redis pub/sub reconnected", timeout=15)
        after = await asyncio.gather(*(server.get("/api/stats") for _ in range(8)))
        failed = [(r.status, r.body) for r in after if r.status != 200]
        again = [r.status for r in await asyncio.gather(*(server.get("/api/stats") for _ in range(8)))]
        assert not failed, f"{len(failed)} of 8 GET /api/stats failed after Redis came back: {failed[0]}; then {again}"
    finally:
        await stop_process(server)


# -- slow consumers -------------------------------------------------------------------------------

MAX_PENDING = 16384
SLOW_CONFIG = {"ws.coalesce_ms": 0, "ws.max_pending": MAX_PENDING, "ws.rate_limit": 100000, "ws.rate_burst": 100000}
SLOW_CHANNELS = (CHANNEL, "teacher:1", "teacher:2", "teacher:3", "dashboard")
"""Every vote on teachers 1-3 is three frames for a socket on these channels (subject, teacher, dashboard)."""
PER_SOCKET_SLACK = 4096
"""Beyond max_pending a socket may hold one more broadcast (the one that crossed the limit, about
150 bytes here) and, once it fell behind, the catch-up snapshots of its 5 channels (under 1 KiB)."""
RSS_MARGIN_KIB = 8 * 1024
"""Noise that is not socket output: allocator arenas kept after a burst, Python objects of 10,000
votes in flight, SQLite and Redis client buffers. A warm-up flood runs first so that caches are at
their steady size; calibration runs on this machine grew 0.2-1.9 MiB with max_pending 16 KiB, while
the same flood with max_pending 100 MB (no bound) grew 82 MiB for 20 slow sockets."""


class Flood:
    """Vote changes through the socket vote op, pipelined: each voter alternates good and bad
    on each of teachers 1-3, so that every op after a voter's first three is a switch."""

    def __init__(self, voters: list[LiveClient]) -> None:
        self.voters = voters
        self.sent: collections.Counter[tuple[int, int]] = collections.Counter()

    async def __call__(self, count: int) -> int:
        per_voter = count // len(self.voters)

        async def run(index: int, client: LiveClient) -> None:
            last = ""
            for i in range(per_voter):
                teacher = TEACHERS[i % 3]
                last = client.send("vote", teacher=teacher, value=("good", "bad")[self.sent[index, teacher] % 2])
                self.sent[index, teacher] += 1
            await client.expect("ack", timeout=120, id=last)
            errors = [m for m in client.messages if m.get("type") == "error"]
            assert not errors, errors[:3]
            client.messages.clear()

        await asyncio.gather(*(run(index, client) for index, client in enumerate(self.voters)))
        return per_voter * len(self.voters)


async def voting_crowd(server: ServerProcess, clients: list[LiveClient], size: int = 20) -> tuple[list[UserClient], Flood]:
    """`size` users, each voting from a socket of its own (added to `clients`, to be closed)."""
    users = [await sign_up(server, f"voter{i}") for i in range(size)]
    voters = [await welcomed(server, user.access_token) for user in users]
    clients.extend(voters)
    return users, Flood(voters)


def converged(view: View, store: dict[int, Counts], totals: Any) -> bool:
    """The slow socket shows the store's state on every channel it holds."""
    if (view.subjects, view.votes_total) != totals:
        return False
    return view.teachers.get(CHANNEL) == store and all(
        view.teachers.get(f"teacher:{no}") == {no: store[no]} for no in TEACHERS
    )


async def test_slow_consumer_memory_stays_bounded_and_it_converges(tmp_path: Path, redis_server: RedisServer) -> None:
    """The slow sockets must outlast the flood however slow a loaded machine makes it: closing
    them for stalling is the next test's subject."""
    server = await start_process(tmp_path / "host", redis_server.url, **SLOW_CONFIG, **{"ws.stall_timeout": 600})
    assert server.process is not None
    pid = server.process.pid
    clients: list[LiveClient] = []
    slow: list[RawSocket] = []
    try:
        users, flood = await voting_crowd(server, clients)
        await flood(2000)  # warm-up: caches and allocator at their steady size

        reader = await welcomed(server, users[0].access_token)
        clients.append(reader)
        await subscribe(reader, CHANNEL)
        for i in range(12):
            raw = await RawSocket.connect(server.port, users[i].access_token)
            slow.append(raw)
            for channel in SLOW_CHANNELS:
                await raw.subscribe(channel)
        # From here on the slow sockets are not read until the flood is over.

        before = rss_kib(pid)
        loop = asyncio.get_running_loop()
        started = loop.time()
        published = await flood(10_000)
        # The kernel holds a few MB per socket; make sure the server had to hold or skip output
        # for every slow socket: its send queue stands still through a whole batch of votes.
        kernel_queues = [send_queue(server.port, raw.port) for raw in slow]
        while True:
            published += await flood(400)
            now = [send_queue(server.port, raw.port) for raw in slow]
            if now == kernel_queues:
                break
            assert published < 30_000, "the slow sockets never stalled"
            kernel_queues = now
        seconds = loop.time() - started
        after = rss_kib(pid)
        bound = (len(slow) * (MAX_PENDING + PER_SOCKET_SLACK)) // 1024 + RSS_MARGIN_KIB
        print(f"\nFIGURES slow consumer: {published} votes in {seconds:.1f} s ({published / seconds:.0f}/s);"
              f" server RSS {before} KiB -> {after} KiB (+{after - before} KiB, bound +{bound} KiB);"
              f" kernel send queue per slow socket ~{max(q or 0 for q in kernel_queues)} bytes")
        assert after - before <= bound, f"RSS grew {after - before} KiB, past the bound of {bound} KiB"

        store = await store_counts(server)
        totals = await store_totals(server)
        for raw in slow:
            subscribed = len(raw.messages)
            assert await raw.read_until(lambda: converged(raw.view, store, totals), timeout=20), (
                f"closed {raw.close_code} while draining"
            )
            later = raw.messages[subscribed:]
            got_votes = sum(1 for m in later if m["type"] == "votes")
            got_snapshots = sum(1 for m in later if m["type"] == "snapshot")
            assert got_snapshots >= 1 and got_votes < 3 * published, (
                "the socket never fell behind: the test did not exercise max_pending"
                f" ({got_votes} votes messages, {got_snapshots} snapshots)"
            )
        print(f"FIGURES slow consumer: each slow socket got {got_votes} of {3 * published} votes frames,"
              f" then {got_snapshots} catch-up snapshots, and converged")
        await wait_converged([(reader, CHANNEL)], server, timeout=10)
        print(f"FIGURES slow consumer: the reading socket got {votes_messages(reader.messages, CHANNEL)}"
              f" votes messages for {published} changes")
    finally:
        await asyncio.gather(*(raw.close() for raw in slow))
        await close_all(clients)
        await stop_process(server)


async def test_slow_consumer_stuck_past_stall_timeout_is_closed_4008(tmp_path: Path, redis_server: RedisServer) -> None:
    stall_timeout = 0.2
    server = await start_process(tmp_path / "host", redis_server.url, **SLOW_CONFIG, **{"ws.stall_timeout": stall_timeout})
    assert server.process is not None
    pid = server.process.pid
    clients: list[LiveClient] = []
    slow: list[RawSocket] = []
    try:
        users, flood = await voting_crowd(server, clients)
        await flood(1000)
        for i in range(4):
            raw = await RawSocket.connect(server.port, users[i].access_token)
            slow.append(raw)
            for channel in SLOW_CHANNELS:
                await raw.subscribe(channel)

        before = rss_kib(pid)
        loop = asyncio.get_running_loop()
        published = 0
        queues = [send_queue(server.port, raw.port) for raw in slow]
        stalled_at = None
        # Flood until the kernel takes nothing more for any slow socket (its send queue stood
        # still through a whole batch: from then on the server holds or skips its output),
        # then for a few stall timeouts more, so that a broadcast finds each one stuck too long.
        while stalled_at is None or loop.time() - stalled_at < 3 * stall_timeout:
            assert published < 30_000, "the slow sockets never stalled"
            published += await flood(400)
            now = [send_queue(server.port, raw.port) for raw in slow]
            if stalled_at is None and now == queues:
                stalled_at = loop.time()
            queues = now
        after = rss_kib(pid)
        bound = (len(slow) * (MAX_PENDING + PER_SOCKET_SLACK)) // 1024 + RSS_MARGIN_KIB
        print(f"\nFIGURES stalled consumer: {published} votes; server RSS {before} KiB -> {after} KiB"
              f" (+{after - before} KiB, bound +{bound} KiB); kernel send queues {queues}")
        assert after - before <= bound

        # Drained all at once: the server waits only so long for a closing handshake before it
        # drops the connection, and the close frame queued behind the backlog with it.
        still_open = await asyncio.gather(*(raw.read_until(lambda: False, timeout=10) for raw in slow))
        assert not any(still_open), "still open"
        codes = [raw.close_code for raw in slow]
        assert codes == [4008] * len(slow), codes

        # The client that was dropped reconnects and gets the current state.
        again = await welcomed(server, users[0].access_token)
        clients.append(again)
        await subscribe(again, CHANNEL)
        await wait_converged([(again, CHANNEL)], server, timeout=5)
    finally:
        await asyncio.gather(*(raw.close() for raw in slow))
        await close_all(clients)
        await stop_process(server)


# -- revocation across processes ------------------------------------------------------------------


async def test_logout_revokes_the_sessions_sockets_on_every_process(tmp_path: Path, redis_server: RedisServer) -> None:
    async with processes(2, tmp_path / "host", redis_server.url) as (first, second):
        alice = await sign_up(first, "alice")
        other_session = await log_in(second, "alice", alice.password)
        clients: list[LiveClient] = []
        try:
            doomed = [await welcomed(server, alice.access_token) for server in (first, second, first, second)]
            clients.extend(doomed)
            survivors = [await welcomed(server, other_session.access_token) for server in (first, second)]
            clients.extend(survivors)
            await asyncio.gather(*(subscribe(c, CHANNEL) for c in clients))

            loop = asyncio.get_running_loop()
            started = loop.time()
            response = await second.request("POST", "/api/auth/logout", json_body={"refresh_token": alice.refresh_token})
            assert response.status == 204

            async def revoked(client: LiveClient) -> tuple[int | None, float]:
                left = 1.0 - (loop.time() - started)
                message = await client.expect("revoked", timeout=max(left, 0.01))
                assert message["reason"]
                code = await client.wait_closed(max(1.0 - (loop.time() - started), 0.01))
                return code, loop.time() - started

            outcomes = await asyncio.gather(*(revoked(c) for c in doomed))
            print(f"\nFIGURES revocation: closed after {[round(t, 3) for _, t in outcomes]} s")
            assert [code for code, _ in outcomes] == [4003] * 4
            assert max(t for _, t in outcomes) <= 1.0

            for client in survivors:
                assert (await client.request("ping"))["type"] == "pong"
                assert not client.closed
            assert (await UserClient(first, "alice", "", other_session.pair).get("/api/auth/me")).status == 200
        finally:
            await close_all(clients)
