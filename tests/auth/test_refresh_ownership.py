"""The socket's `refresh` op with a refresh token of another user is refused before anything of
that user's session changes: whichever of the victim's tokens it is (the current one, or one just
replaced, which a rotation would have taken as a grace replay or as reuse), the victim's session
stays active and their current token still rotates, with a new refresh token."""

from __future__ import annotations

import pytest

from tests.conftest import ServerFactory
from tests.harness.server import sign_up
from tests.harness.ws_client import welcomed


@pytest.mark.parametrize("presented, grace", [("current", 10), ("current", 0), ("replaced", 10), ("replaced", 0)])
async def test_another_users_refresh_token_is_refused_untouched(
    start_server: ServerFactory, presented: str, grace: int
) -> None:
    server = await start_server(auth__reuse_grace=grace)
    alice, bob = await sign_up(server, "alice"), await sign_up(server, "bob")
    current = bob.refresh_token
    if presented == "replaced":
        rotated = await server.request("POST", "/api/auth/refresh", json_body={"refresh_token": current})
        current = rotated.json()["refresh_token"]
    stolen = current if presented == "current" else bob.refresh_token
    socket = await welcomed(server, alice.access_token)

    reply = await socket.request("refresh", refresh_token=stolen)
    assert (reply["type"], reply["code"]) == ("error", "invalid"), reply
    assert (await socket.request("ping"))["type"] == "pong", "alice's socket lives on, on her token"

    assert (await bob.get("/api/auth/me")).status == 200, "bob's session was not revoked"
    again = await server.request("POST", "/api/auth/refresh", json_body={"refresh_token": current})
    assert again.status == 200, again.body
    assert again.json()["refresh_token"] not in (None, current), "a full rotation, not a grace replay"
    assert again.json()["user"]["username"] == "bob"
    await socket.close()
