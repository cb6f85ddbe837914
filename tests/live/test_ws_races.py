"""Races on one process that once lost live updates, replayed many times over real sockets."""

from __future__ import annotations

import pytest

from tests.conftest import ServerFactory
from tests.harness.live_views import subscribe
from tests.harness.redis_server import RedisServer
from tests.harness.server import sign_up
from tests.harness.ws_client import LiveClient

TRIES = 15


@pytest.mark.parametrize("leave", ["unsubscribe", "close"])
async def test_a_subscribe_while_the_last_other_channel_closes_still_gets_live_votes(
    start_server: ServerFactory, redis_or_none: RedisServer | None, leave: str
) -> None:
    """X is the process's only subscriber; Y subscribes while X leaves. Y must stay live:
    the votes subscription may not be dropped while Y's channel is being opened."""
    overrides = {"redis__url": redis_or_none.url} if redis_or_none else {}
    server = await start_server(ws__coalesce_ms=0, **overrides)
    viewer, voter = await sign_up(server, "viewer"), await sign_up(server, "voter")
    value = "good"
    for _ in range(TRIES):
        x = await LiveClient.connect(server.base_url, viewer.access_token)
        y = await LiveClient.connect(server.base_url, viewer.access_token)
        await subscribe(x, "subject:1")
        y_subscribed = y.send("subscribe", channel="subject:2")
        if leave == "close":
            x.connection.close()
        else:
            x.send("unsubscribe", channel="subject:1")
        await y.expect("ack", id=y_subscribed)
        await y.expect("snapshot", channel="subject:2")
        response = await voter.request("PUT", "/api/teachers/4/vote", json_body={"value": value})
        assert response.status == 200, response.body
        version = response.json()["version"]
        update = await y.expect("votes", channel="subject:2", timeout=3)
        counts = {k: response.json()[k] for k in ("good_count", "bad_count")}
        assert update["updates"] == [{"no": 4, **counts, "version": version}]
        value = "bad" if value == "good" else "good"
        await x.close()
        await y.close()
