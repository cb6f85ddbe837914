"""Viewer tokens: live counts without an account, and nothing else."""

from __future__ import annotations

import time

import jwt
import pytest

from tests.conftest import ServerFactory
from tests.harness.redis_server import RedisServer
from tests.harness.server import LiveServer, UserClient, assert_problem, sign_up, viewer_token
from tests.harness.ws_client import LiveClient


async def watching(server: LiveServer) -> LiveClient:
    client = await LiveClient.connect(server.base_url, await viewer_token(server))
    welcome = await client.expect("welcome")
    assert welcome["user"] is None and welcome["session"] is None and welcome["role"] == "viewer"
    client.welcome = welcome
    return client


async def test_a_viewer_token_names_no_user_and_no_session(api: LiveServer) -> None:
    claims = jwt.decode(await viewer_token(api), options={"verify_signature": False})
    assert claims["role"] == "viewer"
    assert "sub" not in claims and "sid" not in claims
    assert claims["exp"] - claims["iat"] == 300


async def test_no_rest_route_takes_a_viewer_token(api: LiveServer) -> None:
    viewer = UserClient(api, "viewer", "", {"access_token": await viewer_token(api)})
    for method, path, body in (
        ("GET", "/api/auth/me", None),
        ("PUT", "/api/teachers/1/vote", {"value": "good"}),
        ("GET", "/api/teachers/1/vote", None),
        ("POST", "/api/auth/logout-all", None),
        ("POST", "/api/subjects/", {"name": "x"}),
    ):
        problem = assert_problem(await viewer.request(method, path, json_body=body), 401)
        assert "viewer" in problem["detail"], (method, path, problem)


async def test_a_viewer_socket_watches_every_kind_of_channel_and_does_nothing_else(api: LiveServer) -> None:
    client = await watching(api)
    try:
        for channel in ("subject:1", "teacher:2", "dashboard"):
            assert (await client.request("subscribe", channel=channel))["type"] == "ack"
            await client.expect("snapshot", channel=channel)
        for op, fields in (
            ("vote", {"teacher": 1, "value": "good"}),
            ("auth", {"access_token": "x"}),
            ("refresh", {"refresh_token": "x"}),
        ):
            reply = await client.request(op, **fields)
            assert reply["type"] == "error" and reply["code"] == "forbidden", (op, reply)
        assert (await client.request("ping"))["type"] == "pong"

        alice = await sign_up(api, "alice")
        assert (await alice.request("PUT", "/api/teachers/2/vote", json_body={"value": "good"})).status == 200
        update = await client.expect("votes", channel="teacher:2")
        assert update["updates"][0]["good_count"] == 1
        assert (await client.request("unsubscribe", channel="teacher:2"))["type"] == "ack"
        assert not client.closed
    finally:
        await client.close()


async def test_a_viewer_socket_gets_its_next_token_pushed_and_lives_past_the_first(
    start_server: ServerFactory,
) -> None:
    server = await start_server(auth__viewer_ttl=3, auth__refresh_ahead=1, auth__leeway=0)
    client = await watching(server)
    try:
        pushed = await client.expect("token", timeout=5)
        claims = jwt.decode(pushed["access_token"], options={"verify_signature": False})
        assert claims["role"] == "viewer" and "sid" not in claims
        await client.expect("token", timeout=5)
        assert time.time() > client.welcome["expires_at"], "the second push comes after the first token expired"
        assert not client.closed
        assert (await client.request("ping"))["type"] == "pong"
    finally:
        await client.close()


async def test_viewer_tokens_are_rationed_per_address(
    start_server: ServerFactory, redis_or_none: RedisServer | None
) -> None:
    """In scaled mode the budget is shared by every process."""
    shared = {"auth__viewer_attempts": 3, **({"redis__url": redis_or_none.url} if redis_or_none else {})}
    first = await start_server(**shared)
    second = await start_server(first.config.server.data_dir, **shared) if redis_or_none else first
    for server in (first, second, first):
        await viewer_token(server)
    response = await second.request("POST", "/api/auth/viewer")
    assert_problem(response, 429)
    assert int(response.headers["Retry-After"]) >= 1


@pytest.mark.parametrize("claims", [
    {"role": "user"},
    {"role": "user", "sub": "1"},
    {"role": "admin", "sid": "x"},
])
async def test_a_user_token_without_its_user_or_session_is_refused(api: LiveServer, claims: dict[str, str]) -> None:
    """Only the viewer role may go without sub and sid: a forged-looking admin token without them is nothing."""
    secret = api.config.auth.secret
    now = int(time.time())
    token = jwt.encode(
        {"iss": "livevote", "aud": "livevote", "jti": "j", "iat": now, "exp": now + 60, **claims},
        secret, algorithm="HS256", headers={"typ": "at+jwt"},
    )
    forged = UserClient(api, "x", "", {"access_token": token})
    assert_problem(await forged.get("/api/auth/me"), 401)
