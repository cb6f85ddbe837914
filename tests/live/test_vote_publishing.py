"""Counts go out after the votes' answers, in batches (services/votes.py): a watcher with
coalescing off still gets every change of every teacher, once each, in the order stored."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from tests.conftest import ServerFactory
from tests.harness.redis_server import RedisServer
from tests.harness.server import sign_up
from tests.harness.ws_client import LiveClient

TEACHERS = (1, 2, 3)


async def test_votes_answered_together_reach_a_watcher_each_once_in_order(
    start_server: ServerFactory, redis_or_none: RedisServer | None, tmp_path: Path
) -> None:
    config: dict[str, object] = {"ws__coalesce_ms": 0}
    if redis_or_none is not None:
        config["redis__url"] = redis_or_none.url
    server = await start_server(tmp_path / "host", **config)
    voters = await asyncio.gather(*(sign_up(server, f"voter{i}") for i in range(24)))
    watcher = await LiveClient.connect(server.base_url, voters[0].access_token)
    await watcher.expect("welcome")
    await watcher.request("subscribe", channel="subject:1")
    await watcher.expect("snapshot")
    rng = random.Random(3)

    async def vote_often(index: int) -> None:
        for _ in range(6):
            teacher, value = rng.choice(TEACHERS), rng.choice(["good", "bad", None])
            method, body = ("DELETE", None) if value is None else ("PUT", {"value": value})
            response = await voters[index].request(method, f"/api/teachers/{teacher}/vote", json_body=body)
            assert response.status == 200, response.body

    await asyncio.gather(*(vote_often(index) for index in range(len(voters))))
    final = {no: (await server.get(f"/api/teachers/{no}/")).json()["version"] for no in TEACHERS}

    seen: dict[int, list[int]] = {no: [] for no in TEACHERS}
    while any(len(seen[no]) < final[no] for no in TEACHERS):
        for update in (await watcher.expect("votes", timeout=15))["updates"]:
            seen[update["no"]].append(update["version"])
    assert seen == {no: list(range(1, final[no] + 1)) for no in TEACHERS}
    await watcher.close()
