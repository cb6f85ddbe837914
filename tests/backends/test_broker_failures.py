"""A vote whose publish fails is published again: subscribers converge even when their own
subscription never saw a gap to resync from."""

from __future__ import annotations

from pathlib import Path

import redis.asyncio as redis

from tests.conftest import ServerFactory
from tests.harness.redis_server import RedisServer
from tests.harness.server import sign_up
from tests.harness.ws_client import LiveClient


async def test_a_vote_whose_publish_timed_out_still_reaches_subscribers(
    start_server: ServerFactory, redis_server: RedisServer, tmp_path: Path
) -> None:
    shared = {"redis__url": redis_server.url}
    voting = await start_server(tmp_path / "host", **shared)
    watching = await start_server(tmp_path / "host", **shared)
    alice = await sign_up(voting, "alice")
    bob = await sign_up(watching, "bob")
    watcher = await LiveClient.connect(watching.base_url, bob.access_token)
    await watcher.request("subscribe", channel="subject:1")
    await watcher.expect("snapshot")

    operator = redis.Redis.from_url(redis_server.url)
    try:
        # Redis holds every write (PUBLISH included) for 2.5 s: the publisher times out after
        # 1 s and drops its connection, so that PUBLISH is never run; subscriptions stay up.
        await operator.execute_command("CLIENT", "PAUSE", 2500, "WRITE")
        vote = await alice.request("PUT", "/api/teachers/1/vote", json_body={"value": "good"})
        assert vote.status == 200 and vote.json()["version"] == 1, "the vote stands without its event"
        update = await watcher.expect("votes", timeout=15)
        assert update["updates"] == [{"no": 1, "good_count": 1, "bad_count": 0, "version": 1}]
    finally:
        await operator.execute_command("CLIENT", "UNPAUSE")
        await operator.aclose()
        await watcher.close()
