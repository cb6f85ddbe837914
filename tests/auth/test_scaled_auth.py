"""Scaled mode: sessions, throttling and revocation events shared through a real Redis."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from services.events import REVOKED
from tests.conftest import ServerFactory
from tests.harness.redis_server import RedisServer
from tests.harness.server import UserClient, assert_problem, sign_up, two_processes, wait_for
from tests.harness.tcp_proxy import TcpProxy
from tests.harness.ws_client import LiveClient


async def test_a_session_works_on_every_process(
    start_server: ServerFactory, redis_server: RedisServer, tmp_path: Path
) -> None:
    first, second = await two_processes(start_server, redis_server, tmp_path)
    alice = await sign_up(first, "alice")
    on_second = UserClient(second, alice.username, alice.password, alice.pair)
    assert (await on_second.get("/api/auth/me")).json()["user"]["username"] == "alice"
    rotated = await second.request("POST", "/api/auth/refresh", json_body={"refresh_token": alice.refresh_token})
    assert rotated.status == 200 and rotated.json()["refresh_token"]


async def test_logout_on_one_process_is_refused_and_announced_on_the_other(
    start_server: ServerFactory, redis_server: RedisServer, tmp_path: Path
) -> None:
    first, second = await two_processes(start_server, redis_server, tmp_path)
    alice = await sign_up(first, "alice")
    sid = (await alice.get("/api/auth/me")).json()["session"]
    announced: asyncio.Queue[bytes] = asyncio.Queue()
    assert second.services is not None
    await second.services.events.listen(REVOKED, lambda channel, data: announced.put_nowait(data))

    logout = await first.request("POST", "/api/auth/logout", json_body={"refresh_token": alice.refresh_token})
    assert logout.status == 204
    message = orjson.loads(await asyncio.wait_for(announced.get(), 1.0))
    assert message == {"sids": [sid]}
    assert_problem(await UserClient(second, "alice", "", alice.pair).get("/api/auth/me"), 401)


async def test_refresh_token_reuse_is_caught_across_processes(
    start_server: ServerFactory, redis_server: RedisServer, tmp_path: Path
) -> None:
    first, second = await two_processes(start_server, redis_server, tmp_path, auth__reuse_grace=0)
    alice = await sign_up(first, "alice")
    refresh = {"refresh_token": alice.refresh_token}
    assert (await first.request("POST", "/api/auth/refresh", json_body=refresh)).status == 200
    assert_problem(await second.request("POST", "/api/auth/refresh", json_body=refresh), 401)
    assert_problem(await alice.get("/api/auth/me"), 401)


async def test_login_throttle_counts_across_processes(
    start_server: ServerFactory, redis_server: RedisServer, tmp_path: Path
) -> None:
    first, second = await two_processes(start_server, redis_server, tmp_path, auth__login_attempts=4)
    await sign_up(first, "mallory")
    wrong = {"username": "mallory", "password": "wrong"}
    for server in (first, second, first, second):
        await server.request("POST", "/api/auth/login", json_body=wrong)
    for server in (first, second):
        blocked = await server.request("POST", "/api/auth/login", json_body=wrong)
        assert_problem(blocked, 429)


async def test_readiness_follows_redis(start_server: ServerFactory, redis_server: RedisServer, tmp_path: Path) -> None:
    server = await start_server(tmp_path / "one", redis__url=redis_server.url)
    assert (await server.get("/readyz")).status == 200
    await redis_server.kill()
    assert_problem(await server.get("/readyz"), 503)
    await redis_server.start()

    async def ready() -> bool:
        return (await server.get("/readyz")).status == 200

    await wait_for(ready, timeout=10)


async def test_known_sessions_keep_working_while_redis_is_down(
    start_server: ServerFactory, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Nothing can be revoked while Redis is down (logout needs it too), so a session this
    process saw active stays usable; one it never saw cannot be checked: 503, not 500."""
    server = await start_server(tmp_path / "one", redis__url=redis_server.url)
    alice = await sign_up(server, "alice")
    bob = await sign_up(server, "bob")
    assert (await alice.get("/api/auth/me")).status == 200
    await redis_server.kill()

    vote = await alice.request("PUT", "/api/teachers/1/vote", json_body={"value": "good"})
    assert vote.status == 200 and vote.json()["good_count"] == 1, "the vote went to the store"
    assert_problem(await bob.get("/api/auth/me"), 503)
    login = await server.request("POST", "/api/auth/login", json_body={"username": "bob", "password": bob.password})
    assert_problem(login, 503)

    await redis_server.start()

    async def logins_work_again() -> bool:
        body = {"username": "bob", "password": bob.password}
        return (await server.request("POST", "/api/auth/login", json_body=body)).status == 200

    await wait_for(logins_work_again, timeout=10)


async def test_a_revocation_announced_while_a_process_was_cut_off_still_closes_its_sockets(
    start_server: ServerFactory, redis_server: RedisServer, tmp_path: Path
) -> None:
    """The announcement is gone for a process that was partitioned from Redis when it was
    published; after the gap, that process reads its sessions again and closes the ended ones."""
    proxy = await TcpProxy(redis_server.port).start()
    try:
        first = await start_server(tmp_path / "host", redis__url=redis_server.url)
        second = await start_server(tmp_path / "host", redis__url=proxy.url)
        alice = await sign_up(first, "alice")
        client = await LiveClient.connect(second.base_url, alice.access_token)
        await client.expect("welcome")

        await proxy.cut()
        assert (await alice.request("POST", "/api/auth/logout-all")).status == 204
        proxy.restore()

        await client.expect("revoked", timeout=10)
        assert await client.wait_closed() == 4003
    finally:
        await proxy.stop()
