"""Access tokens over the socket: pushed before expiry, or the socket closes."""

from __future__ import annotations

import time

from tests.conftest import ServerFactory
from tests.harness.server import LiveServer, UserClient, sign_up
from tests.harness.ws_client import LiveClient

SHORT = {"auth__access_ttl": 3, "auth__refresh_ahead": 1, "auth__leeway": 0}


async def connected(start_server: ServerFactory, **overrides: object) -> tuple[UserClient, LiveClient]:
    server = await start_server(**{**SHORT, **overrides})
    alice = await sign_up(server, "alice")
    client = await LiveClient.connect(server.base_url, alice.access_token)
    client.welcome = await client.expect("welcome")
    return alice, client


async def test_a_socket_lives_across_three_expiries_on_pushed_tokens(start_server: ServerFactory) -> None:
    alice, client = await connected(start_server)
    expiries = []
    for _ in range(3):
        token = await client.expect("token", timeout=5)
        assert token["expires_in"] == 3 and token["expires_at"] > time.time()
        expiries.append(token["expires_at"])
        fresh = UserClient(alice.server, "alice", "", {**alice.pair, "access_token": token["access_token"]})
        assert (await fresh.get("/api/auth/me")).status == 200, "the pushed token works for REST too"
    assert expiries == sorted(expiries) and expiries[-1] - expiries[0] >= 1
    assert (await client.request("ping"))["type"] == "pong"
    assert not client.closed
    await client.close()


async def test_pushes_are_jittered_within_the_refresh_window(start_server: ServerFactory) -> None:
    _, client = await connected(start_server, auth__access_ttl=4, auth__refresh_ahead=2)
    expires_at = client.welcome["expires_at"]
    await client.expect("token", timeout=5)
    pushed_at = time.time()
    assert expires_at - 2 - 0.1 <= pushed_at <= expires_at - 1 + 0.9, "in the earlier half of the window"
    await client.close()


async def test_after_logout_the_socket_is_revoked(start_server: ServerFactory) -> None:
    alice, client = await connected(start_server)
    await alice.server.request("POST", "/api/auth/logout", json_body={"refresh_token": alice.refresh_token})
    await client.expect("revoked", timeout=1)
    assert await client.wait_closed(timeout=1) == 4003


async def test_without_pushes_the_socket_closes_4001_at_expiry(start_server: ServerFactory) -> None:
    _, client = await connected(start_server, auth__push_tokens=False)
    assert await client.wait_closed(timeout=6) == 4001
    assert not [m for m in client.messages if m["type"] == "token"]


async def test_without_pushes_the_auth_op_keeps_the_socket(start_server: ServerFactory) -> None:
    alice, client = await connected(start_server, auth__push_tokens=False, auth__access_ttl=4)
    refreshed = await alice.server.request(
        "POST", "/api/auth/refresh", json_body={"refresh_token": alice.refresh_token}
    )
    time_of_refresh = time.time()
    reply = await client.request("auth", access_token=refreshed.json()["access_token"])
    assert reply["type"] == "ack"
    assert await client.wait_closed(timeout=8) == 4001
    assert time.time() - time_of_refresh >= 3, "it lived on the newer token, not the first"


async def test_a_session_revoked_without_an_event_is_caught_at_the_next_push(start_server: ServerFactory) -> None:
    """If the revocation event was lost (broker down), the push still checks the session."""
    alice, client = await connected(start_server)
    sid = (await alice.get("/api/auth/me")).json()["session"]
    server = alice.server
    assert isinstance(server, LiveServer) and server.services is not None
    await server.services.backends.session_store.revoke(sid)
    await client.expect("revoked", timeout=5)
    assert await client.wait_closed() == 4003
