"""How many people watch each subject, live, counted across every process: each user, and each
viewer token, once however many sockets it has open."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ServerFactory
from tests.harness.redis_server import RedisServer
from tests.harness.server import LiveServer, log_in, sign_up, viewer_token
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
    viewers = [await viewer_token(server) for _ in range(3)]
    first = await watcher(server, viewers[0], "subject:1")
    snapshot = await first.expect("snapshot", channel="subject:1")
    assert snapshot["watching"] in (0, 1), "counted at the next report"
    others = [await watcher(server, viewer, "subject:1") for viewer in viewers[1:]]
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
    tokens = [(await sign_up(servers[0], name)).access_token for name in ("alice", "bob", "carol")]
    clients = [await watcher(servers[0], tokens[0], "subject:2")] + [
        await watcher(servers[1], token, "subject:2") for token in tokens[1:]
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


PEOPLE: dict[str, tuple[list[str], int]] = {
    "one user, three sockets": (["alice", "alice", "alice"], 1),
    "one user, two sessions": (["alice", "alice on her phone"], 1),
    "one viewer token, three sockets": (["viewer", "viewer", "viewer"], 1),
    "two viewer tokens": (["viewer", "another viewer"], 2),
    "two users and a viewer, with two sockets each": (["alice", "bob", "viewer"] * 2, 3),
}
"""Whose sockets watch one subject, and how many people that is."""


@pytest.mark.parametrize("case", PEOPLE)
async def test_watching_counts_people_not_sockets(start_server: ServerFactory, case: str) -> None:
    sockets, people = PEOPLE[case]
    server = await start_server(**FAST)
    alice = await sign_up(server, "alice")
    tokens = {
        "alice": alice.access_token,
        "alice on her phone": (await log_in(server, "alice", alice.password)).access_token,
        "bob": (await sign_up(server, "bob")).access_token,
        "viewer": await viewer_token(server),
        "another viewer": await viewer_token(server),
    }
    clients = [await watcher(server, tokens[who], "subject:3") for who in sockets]
    try:
        stats = (await server.get("/api/stats")).json()  # a report now, with every socket in it
        assert stats["sockets"] == len(sockets), "sockets are still counted as sockets"
        await clients[0].expect("snapshot", channel="subject:3")
        assert (await clients[0].request("subscribe", channel="subject:3"))["type"] == "ack"
        snapshot = await clients[0].expect("snapshot", channel="subject:3")
        assert snapshot["watching"] == people, snapshot
    finally:
        for client in clients:
            await client.close()
