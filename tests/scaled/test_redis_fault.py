"""A Redis outage under a scaled-mode process (real `python server.py`, a real redis-server killed
and started again): the server stays up, REST votes go to the store, requests succeed once Redis
is back, and every socket converges on the store after the gap.
"""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path

from tests.harness.live_views import CHANNEL, TEACHERS, close_all, store_counts, subscribe, wait_converged
from tests.harness.redis_server import RedisServer
from tests.harness.server import sign_up
from tests.harness.server_process import start_process, stop_process
from tests.harness.voting import VoteStream, cast
from tests.harness.ws_client import LiveClient, welcomed


def snapshot_count(client: LiveClient, channel: str = CHANNEL) -> int:
    return sum(1 for m in client.messages if m.get("type") == "snapshot" and m.get("channel") == channel)


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
        assert all(snapshot_count(c) > n for c, n in zip(watchers, snapshots, strict=True)), (
            "a fresh snapshot after the gap"
        )

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
