"""WebSocket protocol v1 (docs/protocol.md) against the real server, in embedded and scaled mode."""

from __future__ import annotations

import asyncio
import gc
import json
import signal
import socket
import time
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from tests.conftest import ServerFactory
from tests.harness.environment import TEST_SECRET, server_env
from tests.harness.raw_socket import RawSocket
from tests.harness.redis_server import RedisServer
from tests.harness.server import LiveServer, UserClient, log_in, sign_up, wait_for
from tests.harness.server_process import ServerProcess
from tests.harness.ws_client import LiveClient, refused_status, welcomed


@pytest.fixture
async def server(start_server: ServerFactory, redis_or_none: RedisServer | None) -> LiveServer:
    """The same server in both modes: LocalBroker and SQLite sessions, or Redis."""
    return await start_server(**({"redis__url": redis_or_none.url} if redis_or_none else {}))


@pytest.fixture
async def alice(server: LiveServer) -> UserClient:
    return await sign_up(server, "alice")


@pytest.fixture
async def live(server: LiveServer, alice: UserClient) -> AsyncIterator[LiveClient]:
    client = await LiveClient.connect(server.base_url, alice.access_token)
    await client.expect("welcome")
    yield client
    await client.close()


def view_of(messages: list[dict[str, Any]]) -> dict[int, tuple[int, int, int]]:
    """Per teacher, the counts with the highest version seen: what a client shows."""
    view: dict[int, tuple[int, int, int]] = {}
    for message in messages:
        for item in message.get("teachers", []) + message.get("updates", []):
            if item["no"] not in view or view[item["no"]][2] < item["version"]:
                view[item["no"]] = (item["good_count"], item["bad_count"], item["version"])
    return view


# -- handshake ------------------------------------------------------------------


async def test_welcome_comes_first_with_user_session_and_expiry(server: LiveServer, alice: UserClient) -> None:
    client = await LiveClient.connect(server.base_url, alice.access_token)
    welcome = await client.expect("welcome")
    claims = jwt.decode(alice.access_token, options={"verify_signature": False})
    assert welcome["user"] == alice.pair["user"]
    assert welcome["session"] == claims["sid"] and welcome["expires_at"] == claims["exp"]
    assert abs(welcome["server_time"] - time.time()) < 5
    assert client.connection.selected_subprotocol == "livevote.v1"
    assert alice.access_token not in str(list(client.connection.headers.get_all()))
    await client.close()


async def test_authorization_header_works_too(server: LiveServer, alice: UserClient) -> None:
    client = await LiveClient.connect(server.base_url, alice.access_token, via="header")
    assert (await client.expect("welcome"))["user"]["username"] == "alice"
    await client.close()


@pytest.mark.parametrize("case", ["none", "garbage", "expired", "refresh token"])
async def test_bad_tokens_are_refused_before_the_upgrade(server: LiveServer, alice: UserClient, case: str) -> None:
    claims = jwt.decode(alice.access_token, options={"verify_signature": False})
    expired = jwt.encode({**claims, "iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600},
                         TEST_SECRET, algorithm="HS256", headers={"typ": "at+jwt"})
    token = {"none": None, "garbage": "x.y.z", "expired": expired, "refresh token": alice.refresh_token}[case]
    assert await refused_status(server.base_url, token) == 401


async def test_a_token_in_the_url_is_not_accepted(server: LiveServer, alice: UserClient) -> None:
    url = f"{server.base_url.replace('http', 'ws', 1)}/ws?access_token={alice.access_token}&token={alice.access_token}"
    with pytest.raises(HTTPClientError) as caught:
        await websocket_connect(HTTPRequest(url), subprotocols=["livevote.v1"])
    assert caught.value.code == 401


async def test_revoked_session_is_refused(server: LiveServer, alice: UserClient) -> None:
    await server.request("POST", "/api/auth/logout", json_body={"refresh_token": alice.refresh_token})
    assert await refused_status(server.base_url, alice.access_token) == 401


@pytest.mark.parametrize("origin", ["https://evil.example", "http://[::1", "A://["])
async def test_foreign_or_malformed_origin_is_refused(server: LiveServer, alice: UserClient, origin: str) -> None:
    assert await refused_status(server.base_url, alice.access_token, headers={"Origin": origin}) == 403


async def test_own_origin_is_accepted(server: LiveServer, alice: UserClient) -> None:
    own = await LiveClient.connect(server.base_url, alice.access_token, headers={"Origin": server.base_url})
    await own.expect("welcome")
    await own.close()


# -- channels ---------------------------------------------------------------------


async def test_subscribe_acks_then_snapshots_the_store(server: LiveServer, live: LiveClient) -> None:
    reply = await live.request("subscribe", channel="subject:2")
    assert reply == {"type": "ack", "id": reply["id"], "channel": "subject:2"}
    snapshot = await live.expect("snapshot", channel="subject:2")
    assert snapshot["subject"] == (await server.get("/api/subjects/2/")).json()
    assert snapshot["teachers"] == (await server.get("/api/subjects/2/teachers/")).json()


async def test_votes_reach_every_subscriber_of_every_matching_channel(server: LiveServer, live: LiveClient) -> None:
    bob = await sign_up(server, "bob")
    watcher = await LiveClient.connect(server.base_url, bob.access_token)
    for channel in ("teacher:5", "dashboard"):
        await watcher.request("subscribe", channel=channel)
        await watcher.expect("snapshot", channel=channel)
    await live.request("subscribe", channel="subject:2")
    await live.expect("snapshot")

    ack = await live.request("vote", teacher=5, value="good")
    assert (ack["type"], ack["teacher"], ack["value"], ack["good_count"], ack["version"]) == ("ack", 5, "good", 1, 1)
    update = {"no": 5, "good_count": 1, "bad_count": 0, "version": 1}
    assert (await live.expect("votes", channel="subject:2"))["updates"] == [update]
    assert (await watcher.expect("votes", channel="teacher:5"))["updates"] == [update]
    dashboard = await watcher.expect("votes", channel="dashboard")
    assert dashboard["votes_total"] == 1 and dashboard["subjects"][0]["no"] == 2
    assert dashboard["subjects"][0]["good_count"] == 1

    await bob.request("PUT", "/api/teachers/5/vote", json_body={"value": "bad"})
    assert (await live.expect("votes"))["updates"] == [{"no": 5, "good_count": 1, "bad_count": 1, "version": 2}]
    await watcher.close()


async def test_dashboard_snapshot_has_every_subject_with_names(server: LiveServer, live: LiveClient) -> None:
    await live.request("subscribe", channel="dashboard")
    snapshot = await live.expect("snapshot", channel="dashboard")
    subjects = (await server.get("/api/subjects/")).json()
    assert [(s["no"], s["name"]) for s in snapshot["subjects"]] == [(s["no"], s["name"]) for s in subjects]
    assert snapshot["votes_total"] == 0


async def test_unsubscribe_stops_the_updates(server: LiveServer, live: LiveClient) -> None:
    await live.request("subscribe", channel="subject:1")
    await live.request("subscribe", channel="subject:2")
    assert (await live.request("unsubscribe", channel="subject:1"))["type"] == "ack"
    await live.request("vote", teacher=1, value="good")
    await live.request("vote", teacher=4, value="good")
    await live.expect("votes", channel="subject:2")
    assert not [m for m in live.messages if m.get("channel") == "subject:1" and m["type"] == "votes"]


@pytest.mark.parametrize("channel, code", [
    ("subjects:1", "bad_channel"), ("subject:x", "bad_channel"), ("", "bad_channel"), ("subject:0", "bad_channel"),
    ("subject:999", "not_found"), ("teacher:999", "not_found"),
])
async def test_bad_channels(live: LiveClient, channel: str, code: str) -> None:
    reply = await live.request("subscribe", channel=channel)
    assert (reply["type"], reply["code"]) == ("error", code)
    assert not live.closed


async def test_subscriptions_per_socket_are_bounded(start_server: ServerFactory) -> None:
    server = await start_server(ws__max_subscriptions=2)
    alice = await sign_up(server, "alice")
    client = await LiveClient.connect(server.base_url, alice.access_token)
    for channel in ("subject:1", "subject:2", "subject:1"):
        assert (await client.request("subscribe", channel=channel))["type"] == "ack"
    reply = await client.request("subscribe", channel="subject:3")
    assert (reply["type"], reply["code"]) == ("error", "invalid")
    await client.close()


# -- ops ----------------------------------------------------------------------------


async def test_vote_op_follows_rest_semantics(live: LiveClient) -> None:
    assert (await live.request("vote", teacher=3, value="good"))["version"] == 1
    assert (await live.request("vote", teacher=3, value="good"))["version"] == 1
    switched = await live.request("vote", teacher=3, value="bad")
    assert (switched["good_count"], switched["bad_count"], switched["version"]) == (0, 1, 2)
    withdrawn = await live.request("vote", teacher=3, value=None)
    assert (withdrawn["value"], withdrawn["bad_count"], withdrawn["version"]) == (None, 0, 3)


@pytest.mark.parametrize("fields, code", [
    ({"teacher": 999, "value": "good"}, "not_found"),
    ({"teacher": 1, "value": "great"}, "invalid"),
    ({"teacher": "1", "value": "good"}, "invalid"),
    ({"value": "good"}, "invalid"),
    ({"teacher": 1, "value": "good", "extra": 1}, "invalid"),
])
async def test_bad_vote_fields(live: LiveClient, fields: dict[str, Any], code: str) -> None:
    reply = await live.request("vote", **fields)
    assert (reply["type"], reply["code"]) == ("error", code) and reply["message"]


async def test_ping_pong(live: LiveClient) -> None:
    assert (await live.request("ping"))["type"] == "pong"


async def test_bad_json_and_unknown_ops_keep_the_socket(live: LiveClient) -> None:
    for raw in ("{not json", "[1, 2]", '"hello"', "null"):
        live.connection.write_message(raw)
    codes = [(await live.expect("error"))["code"] for _ in range(4)]
    assert codes == ["bad_json", "unknown_op", "unknown_op", "unknown_op"]
    assert (await live.request("dance"))["code"] == "unknown_op"
    assert (await live.request("ping"))["type"] == "pong"


async def test_refresh_op_rotates(server: LiveServer, alice: UserClient, live: LiveClient) -> None:
    reply = await live.request("refresh", refresh_token=alice.refresh_token)
    assert reply["type"] == "tokens" and reply["refresh_token"] not in (None, alice.refresh_token)
    assert reply["user"]["username"] == "alice"
    fresh = UserClient(server, "alice", "", reply)
    assert (await fresh.get("/api/auth/me")).status == 200
    bad = await live.request("refresh", refresh_token="x" * 43)
    assert (bad["type"], bad["code"]) == ("error", "unauthorized")


async def test_auth_op_takes_a_newer_token_of_the_same_user_only(
    server: LiveServer, alice: UserClient, live: LiveClient
) -> None:
    newer = await log_in(server, "alice", alice.password)
    reply = await live.request("auth", access_token=newer.access_token)
    assert reply["type"] == "ack" and reply["expires_at"] >= jwt.decode(
        alice.access_token, options={"verify_signature": False})["exp"]
    bob = await sign_up(server, "bob")
    assert (await live.request("auth", access_token=bob.access_token))["code"] == "invalid"
    assert (await live.request("auth", access_token="x.y.z"))["code"] == "unauthorized"
    assert not live.closed


# -- limits ---------------------------------------------------------------------------


async def test_a_frame_over_the_limit_closes_1009(start_server: ServerFactory) -> None:
    server = await start_server(ws__max_message_size=1024)
    alice = await sign_up(server, "alice")
    client = await LiveClient.connect(server.base_url, alice.access_token)
    await client.expect("welcome")
    client.connection.write_message(json.dumps({"op": "ping", "pad": "x" * 2048}))
    assert await client.wait_closed() == 1009


async def test_a_flood_is_told_then_closed_4029(start_server: ServerFactory) -> None:
    server = await start_server(ws__rate_limit=5, ws__rate_burst=10)
    alice = await sign_up(server, "alice")
    client = await LiveClient.connect(server.base_url, alice.access_token)
    await client.expect("welcome")
    for _ in range(30):
        client.connection.write_message('{"op": "ping"}')
    assert await client.wait_closed() == 4029
    assert any(m.get("code") == "rate_limited" for m in client.messages)


async def test_revocation_closes_the_sessions_sockets_4003(
    server: LiveServer, alice: UserClient, live: LiveClient
) -> None:
    other_device = await log_in(server, "alice", alice.password)
    second = await LiveClient.connect(server.base_url, other_device.access_token)
    await second.expect("welcome")
    started = time.monotonic()
    await server.request("POST", "/api/auth/logout", json_body={"refresh_token": alice.refresh_token})
    assert (await live.expect("revoked", timeout=1.0))["reason"]
    assert await live.wait_closed(timeout=1.0) == 4003
    assert time.monotonic() - started < 1.0
    assert (await second.request("ping"))["type"] == "pong", "another session of the same user lives on"
    await second.close()


async def test_coalescing_sends_fewer_messages_and_the_latest_state(start_server: ServerFactory) -> None:
    server = await start_server(ws__coalesce_ms=300)
    voters = [await sign_up(server, f"voter{i}") for i in range(10)]
    watcher = await LiveClient.connect(server.base_url, voters[0].access_token)
    await watcher.request("subscribe", channel="subject:1")
    await watcher.expect("snapshot")
    started = time.monotonic()
    await voters[0].request("PUT", "/api/teachers/1/vote", json_body={"value": "good"})
    await watcher.expect("votes", timeout=5)
    first_delay = time.monotonic() - started
    await asyncio.gather(*(v.request("PUT", f"/api/teachers/{1 + i % 3}/vote", json_body={"value": "bad"})
                           for i, v in enumerate(voters)))

    async def converged() -> bool:
        stored = {t["no"]: t for t in (await server.get("/api/subjects/1/teachers/")).json()}
        view = view_of(watcher.messages)
        return all(view.get(no, (0, 0, 0))[2] == t["version"] for no, t in stored.items() if t["version"])

    await wait_for(converged, timeout=5)
    assert first_delay < 0.3 + 1.0, "the first change after a quiet period is not held back"
    votes_messages = [m for m in watcher.messages if m["type"] == "votes"]
    assert len(votes_messages) < 11, "eleven changes were coalesced into fewer messages"
    stored = {t["no"]: (t["good_count"], t["bad_count"], t["version"])
              for t in (await server.get("/api/subjects/1/teachers/")).json()}
    final_view = view_of(watcher.messages)
    assert {no: final_view[no] for no in stored if no in final_view} == {
        no: counts for no, counts in stored.items() if no in final_view}
    await watcher.close()


async def test_shutdown_closes_sockets_1001(tmp_path: Path) -> None:
    process = await ServerProcess("--data-dir", str(tmp_path), env=server_env()).start()
    try:
        alice = await sign_up(process, "alice")
        client = await LiveClient.connect(process.base_url, alice.access_token)
        await client.expect("welcome")
        process.signal(signal.SIGTERM)
        assert await client.wait_closed() == 1001
        assert await process.wait_exit() == 0
    finally:
        await process.stop()


async def test_a_peer_that_stops_answering_pings_is_dropped(start_server: ServerFactory) -> None:
    """A client that reads nothing answers no ping: after one ping interval with no pong it is
    gone, while one that answers is pinged again and again and stays (services/live/heartbeat.py)."""
    server = await start_server(ws__ping_interval=0.5)
    alice = await sign_up(server, "alice")
    assert server.services is not None
    hub = server.services.hub
    silent = await RawSocket.connect(server.port, alice.access_token)
    answering = await RawSocket.connect(server.port, alice.access_token)
    assert hub.peer_count == 2
    assert await answering.read_until(lambda: answering.pings >= 4, timeout=10), f"closed {answering.close_code}"
    assert hub.peer_count == 1, "the silent one was dropped"
    await answering.send("ping", id=1)
    assert await answering.read_until(lambda: answering.messages[-1].get("type") == "pong", timeout=5)
    assert len(server.services.heartbeat) == 1, "the dropped socket left the wheel"
    await answering.close()
    await silent.close()

    async def none_left() -> bool:
        assert server.services is not None
        return len(server.services.heartbeat) == 0

    await wait_for(none_left, timeout=5)


async def test_a_closed_socket_is_freed_at_once(server: LiveServer) -> None:
    """Nothing the server keeps per socket outlives it: not the token clock's deadlines (until
    the token would expire), not the ping wheel, not the hub. Found by measuring memory under
    reconnect churn: closed sockets stayed up to their token's 15 minutes."""
    assert server.services is not None
    alice = await sign_up(server, "alice")
    client = await LiveClient.connect(server.base_url, alice.access_token)
    await client.expect("welcome")
    await client.request("subscribe", channel="subject:1")
    [peers] = server.services.hub._peers_by_sid.values()
    handler = weakref.ref(next(iter(peers)).transport)
    del peers
    await client.close()

    async def freed() -> bool:
        gc.collect()
        return handler() is None

    await wait_for(freed, timeout=5, what="the closed socket's handler to be freed")


async def test_broadcasts_go_straight_to_a_plain_socket(server: LiveServer) -> None:
    """The hub's fast path (services/live/peer.py): a socket that keeps up is written with one
    send() on the raw socket. Lost once when accepted connections got a stream class of their
    own, which the transport did not take for a plain TCP stream: every frame then went
    through the stream's queue."""
    assert server.services is not None
    alice = await sign_up(server, "alice")
    client = await welcomed(server, alice.access_token)
    try:
        [peers] = server.services.hub._peers_by_sid.values()
        [peer] = peers
        assert isinstance(peer.transport.sink(), socket.socket)
        assert isinstance(peer.direct, socket.socket)
    finally:
        await client.close()
