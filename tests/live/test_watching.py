"""How many people watch each subject, live, counted across every process."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import ServerFactory
from tests.harness.redis_server import RedisServer
from tests.harness.server import LiveServer, sign_up
from tests.harness.ws_client import LiveClient

FAST = {"ws__watching_interval": 0.2}


async def watcher(server: LiveServer, token: str, channel: str) -> LiveClient:
    client = await LiveClient.connect(server.base_url, token)
    await client.expect("welcome")
    assert (await client.request("subscribe", channel=channel))["type"] == "ack"
    return client


async def test_a_subject_and_the_dashboard_are_told_how_many_watch(start_server: ServerFactory) -> None:
    server = await start_server(**FAST)
    token = (await sign_up(server, "alice")).access_token
    first = await watcher(server, token, "subject:1")
    snapshot = await first.expect("snapshot", channel="subject:1")
    assert snapshot["watching"] in (0, 1), "counted at the next report"
    others = [await watcher(server, token, "subject:1") for _ in range(2)]
    board = await watcher(server, token, "dashboard")
    teacher_page = await watcher(server, token, "teacher:4")  # subject 2's teacher page: not subject 2's watcher
    try:
        await first.expect("watching", channel="subject:1", watching=3)
        await board.expect("watching", channel="dashboard", watching={"1": 3})
        await others[0].close()
        await first.expect("watching", channel="subject:1", watching=2)
        await board.expect("watching", channel="dashboard", watching={"1": 2})
        assert not [message for message in teacher_page.messages if message["type"] == "watching"]
    finally:
        for client in (first, others[1], board, teacher_page):
            await client.close()


async def test_watchers_on_every_process_are_summed(
    start_server: ServerFactory, redis_server: RedisServer, tmp_path: Path
) -> None:
    shared = {"redis__url": redis_server.url, **FAST}
    servers = [await start_server(tmp_path / "host", **shared) for _ in range(2)]
    token = (await sign_up(servers[0], "alice")).access_token
    clients = [await watcher(servers[0], token, "subject:2")] + [
        await watcher(servers[1], token, "subject:2") for _ in range(2)
    ]
    try:
        for client in clients:
            await client.expect("watching", channel="subject:2", watching=3)
        stats = (await servers[1].get("/api/stats")).json()
        assert stats["sockets"] == 3
        await servers[1].stop()
        await clients[0].expect("watching", channel="subject:2", watching=1, timeout=5)
    finally:
        for client in clients:
            await client.close()
