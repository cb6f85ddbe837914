"""Votes travel on per-subject feeds: a process hears only the subjects its sockets watch.

Two processes of one host share a real Redis. Each watches one subject; votes on
both subjects reach the watchers, and each process receives (counts) the messages
of its own subject only. A dashboard switches its process to the all-subjects
feed without a gap, and back.
"""

from __future__ import annotations

from pathlib import Path

import redis.asyncio as redis

from tests.conftest import ServerFactory
from tests.harness.live_views import subscribe, wait_converged
from tests.harness.metrics import FEED_MESSAGES, metric
from tests.harness.redis_server import RedisServer
from tests.harness.server import UserClient, sign_up, wait_for
from tests.harness.ws_client import LiveClient

SUBJECT_1_TEACHERS = (1, 2, 3)
SUBJECT_2_TEACHERS = (4, 5, 6)


async def vote(voters: list[UserClient], teachers: tuple[int, ...], value: str) -> int:
    """Every voter votes `value` on every teacher; returns how many counts changed."""
    changed = 0
    for voter in voters:
        for teacher in teachers:
            response = await voter.request("PUT", f"/api/teachers/{teacher}/vote", json_body={"value": value})
            assert response.status == 200, response.body
            changed += 1
    return changed


async def test_a_process_receives_only_the_subjects_it_watches(
    start_server: ServerFactory, redis_server: RedisServer, tmp_path: Path
) -> None:
    first = await start_server(tmp_path / "host", redis__url=redis_server.url)
    second = await start_server(tmp_path / "host", redis__url=redis_server.url)
    voters = [await sign_up(first, f"voter{i}") for i in range(3)]
    on_first = await LiveClient.connect(first.base_url, voters[0].access_token)
    on_second = await LiveClient.connect(second.base_url, voters[0].access_token)
    await subscribe(on_first, "subject:1")
    await subscribe(on_second, "subject:2")
    heard = [await metric(first, FEED_MESSAGES), await metric(second, FEED_MESSAGES)]

    changes_1 = await vote(voters, SUBJECT_1_TEACHERS, "good")
    changes_2 = await vote(voters[:2], SUBJECT_2_TEACHERS, "bad")
    await wait_converged([(on_first, "subject:1")], first, teachers=SUBJECT_1_TEACHERS)
    await wait_converged([(on_second, "subject:2")], second, teachers=SUBJECT_2_TEACHERS)
    assert await metric(first, FEED_MESSAGES) - heard[0] == changes_1, "the first process heard only subject 1"
    assert await metric(second, FEED_MESSAGES) - heard[1] == changes_2, "the second process heard only subject 2"

    dashboard = await LiveClient.connect(second.base_url, voters[1].access_token)
    await subscribe(dashboard, "dashboard")
    heard = [await metric(first, FEED_MESSAGES), await metric(second, FEED_MESSAGES)]
    changes_1 = await vote(voters, SUBJECT_1_TEACHERS, "bad")
    await wait_converged([(dashboard, "dashboard"), (on_second, "subject:2")], second, teachers=SUBJECT_2_TEACHERS)
    await wait_converged([(on_first, "subject:1")], first, teachers=SUBJECT_1_TEACHERS)
    assert await metric(second, FEED_MESSAGES) - heard[1] == changes_1, "a dashboard hears every subject, once"
    assert await metric(first, FEED_MESSAGES) - heard[0] == changes_1

    await dashboard.close()
    await vote(voters, SUBJECT_2_TEACHERS, "good")
    await wait_converged([(on_second, "subject:2")], second, teachers=SUBJECT_2_TEACHERS)
    client = redis.Redis.from_url(redis_server.url)
    try:
        async def all_votes_dropped() -> bool:
            return dict(await client.pubsub_numsub("lv:votes:all")) == {b"lv:votes:all": 0}

        await wait_for(all_votes_dropped, 5)
    finally:
        await client.aclose()
    heard_after = await metric(second, FEED_MESSAGES)
    await vote(voters[:1], SUBJECT_1_TEACHERS, "good")
    await wait_converged([(on_first, "subject:1")], first, teachers=SUBJECT_1_TEACHERS)
    assert await metric(second, FEED_MESSAGES) == heard_after, (
        "without its dashboard the process is back to subject 2 only"
    )
    for client in (on_first, on_second):
        await client.close()
