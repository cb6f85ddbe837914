"""The caps on live connections per client address and per token: the one past a cap gets 429
before any upgrade, and every way a socket or a handshake ends gives its place back."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Awaitable, Callable

import pytest
from tornado.httpclient import HTTPClientError

from tests.conftest import ServerFactory
from tests.harness.raw_socket import RawSocket
from tests.harness.server import LiveServer, Response, assert_problem, log_in, sign_up, viewer_token, wait_for
from tests.harness.ws_client import LiveClient, welcomed

CAP = 3
ROOMY = 100


async def refused_429(server: LiveServer, token: str) -> dict[str, object]:
    """The handshake is refused 429 with Retry-After, as problem+json; its body."""
    with pytest.raises(HTTPClientError) as refused:
        client = await LiveClient.connect(server.base_url, token)
        await client.close()
    response = refused.value.response
    assert response is not None and refused.value.code == 429, refused.value
    assert int(response.headers["Retry-After"]) >= 1
    return assert_problem(Response(429, response.headers, response.body), 429)


def refusals(metrics: str, limit: str) -> float:
    match = re.search(rf'^livevote_live_refused_total{{limit="{limit}"}} (\S+)$', metrics, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


TokenSource = Callable[[LiveServer], Awaitable[Callable[[], Awaitable[str]]]]


async def one_viewer_token(server: LiveServer) -> Callable[[], Awaitable[str]]:
    token = await viewer_token(server)

    async def same() -> str:
        return token

    return same


async def one_session(server: LiveServer) -> Callable[[], Awaitable[str]]:
    """Every socket with a new access token of one session: the session is what counts."""
    user = await sign_up(server, "alice")

    async def refreshed() -> str:
        response = await server.request("POST", "/api/auth/refresh", json_body={"refresh_token": user.refresh_token})
        assert response.status == 200, response.body
        user.pair = response.json()
        return user.access_token

    return refreshed


async def new_viewer_tokens(server: LiveServer) -> Callable[[], Awaitable[str]]:
    async def fresh() -> str:
        return await viewer_token(server)

    return fresh


async def new_users(server: LiveServer) -> Callable[[], Awaitable[str]]:
    names = iter(f"user{number}" for number in range(CAP + 2))

    async def fresh() -> str:
        return (await sign_up(server, next(names))).access_token

    return fresh


CASES: dict[str, tuple[TokenSource, str]] = {
    "one viewer token": (one_viewer_token, "token"),
    "one user session, its token renewed each time": (one_session, "token"),
    "a new viewer token each time, one address": (new_viewer_tokens, "address"),
    "a new user each time, one address": (new_users, "address"),
}


@pytest.mark.parametrize("case", CASES)
async def test_the_socket_past_a_cap_is_refused_429_before_the_upgrade(
    start_server: ServerFactory, case: str
) -> None:
    source, limit = CASES[case]
    caps = {"token": (ROOMY, CAP), "address": (CAP, ROOMY)}[limit]
    server = await start_server(ws__max_sockets_per_address=caps[0], ws__max_sockets_per_token=caps[1])
    next_token = await source(server)
    clients = [await welcomed(server, await next_token()) for _ in range(CAP)]
    try:
        problem = await refused_429(server, await next_token())
        assert f"This {limit} holds {CAP} live connections" in str(problem["detail"]), problem
        metrics = (await server.get("/metrics")).body.decode()
        assert refusals(metrics, limit) == 1 and refusals(metrics, {"token": "address", "address": "token"}[limit]) == 0
        await clients.pop().close()
        clients.append(await _welcomed_once_released(server, await next_token()))
    finally:
        for client in clients:
            await client.close()


async def _welcomed_once_released(server: LiveServer, token: str) -> LiveClient:
    """A socket closed by its client is released when the server sees the close: wait for that."""

    async def opened() -> LiveClient | None:
        with contextlib.suppress(HTTPClientError):
            return await welcomed(server, token)
        return None

    return await wait_for(opened, what="a place given back")


async def end_closed_by_the_client(server: LiveServer, token: str) -> None:
    await (await welcomed(server, token)).close()


async def end_dropped_without_a_close(server: LiveServer, token: str) -> None:
    sock = await RawSocket.connect(server.port, token)
    sock.sock.close()


async def end_not_an_upgrade(server: LiveServer, token: str) -> None:
    response = await server.get("/ws", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 400, response.status


async def end_another_websocket_version(server: LiveServer, token: str) -> None:
    response = await server.get("/ws", headers={
        "Authorization": f"Bearer {token}", "Upgrade": "websocket", "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "8",
    })
    assert response.status == 426, response.status


async def end_closed_by_the_server(server: LiveServer, token: str) -> None:
    client = await welcomed(server, token)
    for _ in range(60):  # past ws.rate_burst: rate_limited, then 4029
        client.send("ping")
    assert await client.wait_closed() == 4029


ENDINGS: dict[str, Callable[[LiveServer, str], Awaitable[None]]] = {
    "closed by the client": end_closed_by_the_client,
    "dropped without a close frame": end_dropped_without_a_close,
    "not an upgrade (400)": end_not_an_upgrade,
    "another WebSocket version (426)": end_another_websocket_version,
    "closed by the server (4029)": end_closed_by_the_server,
}


@pytest.mark.parametrize("ending", ENDINGS)
async def test_every_way_a_socket_ends_gives_its_place_back(start_server: ServerFactory, ending: str) -> None:
    """More endings than the cap allows sockets, then exactly CAP sockets still open, and no more."""
    server = await start_server(ws__max_sockets_per_token=CAP)
    token = await viewer_token(server)
    for _ in range(CAP + 2):
        await ENDINGS[ending](server, token)
    clients = [await _welcomed_once_released(server, token) for _ in range(CAP)]
    try:
        await refused_429(server, token)
    finally:
        for client in clients:
            await client.close()


async def test_the_caps_count_each_token_apart(start_server: ServerFactory) -> None:
    """A token at its cap leaves room for the next token, and for the same user's other session."""
    server = await start_server(ws__max_sockets_per_token=1)
    first = await sign_up(server, "alice")
    second_session = await log_in(server, "alice", "correct horse battery")
    clients = [await welcomed(server, token) for token in (first.access_token, second_session.access_token,
                                                           await viewer_token(server))]
    try:
        await refused_429(server, first.access_token)
    finally:
        for client in clients:
            await client.close()
