"""The live channel in scaled mode: real `python server.py` processes on one real redis-server
and one SQLite data dir, real sockets. Votes cast through any process reach the sockets of every
process (also of `--workers 2` sharing one port), and a logout closes the session's sockets on
every process.

Every test ends on the convergence invariant: when votes stop, every subscriber's view of every
teacher (the highest version seen in snapshots and votes) equals the store's counts. The Redis
outage is tests/scaled/test_redis_fault.py's subject, slow readers tests/scaled/test_slow_consumers.py's.
"""

from __future__ import annotations

import asyncio
import collections
import random
import signal
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.harness.environment import server_env
from tests.harness.live_views import (
    CHANNEL,
    TEACHERS,
    Counts,
    close_all,
    store_counts,
    subscribe,
    teacher_view,
    votes_messages,
    wait_converged,
)
from tests.harness.procfs import child_pids, socket_owner
from tests.harness.redis_server import RedisServer
from tests.harness.server import UserClient, log_in, sign_up, wait_for
from tests.harness.server_process import ServerProcess, processes
from tests.harness.voting import VALUES, Script, Value, vote_all
from tests.harness.ws_client import LiveClient, client_port, welcomed

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
            coalesce = "default (50)" if coalesce_ms is None else coalesce_ms
            print(f"\nFIGURES fan-out coalesce_ms={coalesce}: 50 sockets, {sum(kinds.values())} ops"
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

        for worker, value in zip(workers, ("good", "bad"), strict=True):
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
            response = await second.request(
                "POST", "/api/auth/logout", json_body={"refresh_token": alice.refresh_token}
            )
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
