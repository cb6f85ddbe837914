"""/metrics: Prometheus text, counting events once, not once per socket."""

from __future__ import annotations

import gc

from tests.conftest import ServerFactory
from tests.harness.metrics import find_sample, sample
from tests.harness.server import LiveServer, UserClient
from tests.harness.ws_client import LiveClient


async def test_metrics_count_sockets_votes_and_broadcasts(api: LiveServer, user: UserClient) -> None:
    clients = [await LiveClient.connect(api.base_url, user.access_token) for _ in range(3)]
    for client in clients:
        await client.expect("welcome")
        await client.request("subscribe", channel="subject:1")
    await user.request("PUT", "/api/teachers/1/vote", json_body={"value": "good"})
    for client in clients:
        await client.expect("votes")
    response = await api.get("/metrics")
    assert response.status == 200 and response.content_type.startswith("text/plain")
    text = response.body.decode()
    assert sample(text, "livevote_sockets_open") == 3
    assert sample(text, "livevote_vote_changes_total") == 1
    assert sample(text, "livevote_broadcasts_total") == 1, "one broadcast reached three sockets"
    assert sample(text, "livevote_event_loop_lag_seconds_count") >= 0
    for client in clients:
        await client.close()


async def test_metrics_can_be_turned_off(start_server: ServerFactory) -> None:
    server = await start_server(server__metrics=False)
    assert (await server.get("/metrics")).status == 404


async def test_metrics_time_each_garbage_collection(start_server: ServerFactory) -> None:
    installed = len(gc.callbacks)
    server = await start_server()
    full = 'livevote_gc_pause_seconds_count{generation="2"}'
    before = (await server.get("/metrics")).body.decode()
    gc.collect()
    text = (await server.get("/metrics")).body.decode()
    assert sample(text, full) >= (find_sample(before, full) or 0) + 1
    assert sample(text, 'livevote_gc_pause_seconds_sum{generation="2"}') > 0
    assert len(gc.callbacks) == installed + 1
    await server.stop()
    assert len(gc.callbacks) == installed, "a stopped server leaves no callback behind"
