"""An account that changes under its tokens: a new role, or its row removed from the store.

Every way an access token gets minted (a REST refresh, the socket's `refresh` op, a token pushed
over the socket) carries the role the store has at that moment, however the role was changed (SQL
behind the server's back, PATCH /api/users/{id}, `server.py set-role`); every admin route goes by
the role the store has now, whatever the token says. A user removed from the store gets no 500 on
any authenticated route, and their sessions end (their sockets close).
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jwt
import pytest

from services.backends.store_sqlite import SqliteStore
from tests.conftest import ServerFactory
from tests.harness.cli import run_server_py
from tests.harness.redis_server import RedisServer
from tests.harness.server import (
    LiveServer,
    Response,
    UserClient,
    assert_problem,
    log_in,
    sign_up_admin,
    two_processes,
    wait_for,
)
from tests.harness.ws_client import LiveClient, welcomed

PASSWORD = "admin password"
SHORT = {"auth__access_ttl": 3, "auth__refresh_ahead": 1, "auth__leeway": 0}
"""Tokens pushed within about two seconds of a socket's opening."""


def role_of(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["role"])


def user_id(client: UserClient) -> int:
    return int(client.pair["user"]["id"])


async def account(server: LiveServer, name: str, role: str) -> UserClient:
    """An account made by the operator with this role, logged in."""
    assert server.services is not None
    await server.services.accounts.register({"username": name, "password": PASSWORD}, role=role)
    return await log_in(server, name, PASSWORD)


async def behind_the_servers_back(server: LiveServer, sql: str, *params: Any) -> None:
    """A change to the store made as an operator's SQL would make it, not through the server."""
    assert server.services is not None
    store = server.services.backends.store
    assert isinstance(store, SqliteStore)
    await store.database.write(lambda conn: conn.execute(sql, params))


# -- how a role is changed, and how a token is minted -------------------------------------------


async def by_sql(server: LiveServer, who: UserClient, role: str) -> None:
    await behind_the_servers_back(server, "UPDATE users SET role = ? WHERE id = ?", role, user_id(who))


async def by_api(server: LiveServer, who: UserClient, role: str) -> None:
    root = await sign_up_admin(server)
    response = await root.request("PATCH", f"/api/users/{user_id(who)}", json_body={"role": role})
    assert response.status == 200 and response.json() == {**who.pair["user"], "role": role}, response.body


async def by_command(server: LiveServer, who: UserClient, role: str) -> None:
    """`python server.py set-role` on the running server's data directory, as an operator types it."""
    finished = await run_server_py("set-role", who.username, role, "--data-dir", str(server.config.server.data_dir))
    assert finished.code == 0, finished.stderr
    assert finished.stdout.strip() == f"{who.username} (id {user_id(who)}) is now {role}"


CHANGES: dict[str, Callable[[LiveServer, UserClient, str], Awaitable[None]]] = {
    "sql": by_sql, "PATCH /api/users/{id}": by_api, "server.py set-role": by_command,
}


async def rest_refresh(who: UserClient, socket: LiveClient, changed_at: float) -> str:
    response = await who.server.request("POST", "/api/auth/refresh", json_body={"refresh_token": who.refresh_token})
    assert response.status == 200, response.body
    return str(response.json()["access_token"])


async def socket_refresh_op(who: UserClient, socket: LiveClient, changed_at: float) -> str:
    reply = await socket.request("refresh", refresh_token=who.refresh_token)
    assert reply["type"] == "tokens", reply
    return str(reply["access_token"])


async def pushed_token(who: UserClient, socket: LiveClient, changed_at: float) -> str:
    """The first token pushed after the change (`iat` is in whole seconds: one minted in the
    second of the change is passed over too)."""
    while True:
        token = str((await socket.expect("token", timeout=5))["access_token"])
        if jwt.decode(token, options={"verify_signature": False})["iat"] > changed_at:
            return token


MINTS: dict[str, Callable[[UserClient, LiveClient, float], Awaitable[str]]] = {
    "REST refresh": rest_refresh, "socket refresh op": socket_refresh_op, "pushed token": pushed_token,
}


@pytest.mark.parametrize("before, after", [("admin", "user"), ("user", "admin")])
@pytest.mark.parametrize("mint", sorted(MINTS))
@pytest.mark.parametrize("change", sorted(CHANGES))
async def test_every_new_access_token_carries_the_role_the_store_has_now(
    start_server: ServerFactory, change: str, mint: str, before: str, after: str
) -> None:
    """The process has met the user (a socket's welcome, /me) before the role changes."""
    server = await start_server(**SHORT)
    who = await account(server, "carol", before)
    socket = await welcomed(server, who.access_token)
    assert (await who.get("/api/auth/me")).json()["user"]["role"] == before
    await CHANGES[change](server, who, after)
    assert role_of(await MINTS[mint](who, socket, time.time())) == after
    await socket.close()


async def bearer_operations(server: LiveServer, status: str) -> list[tuple[str, str]]:
    """(method, path) of every API operation that takes a bearer token and may answer `status`,
    as the served document says."""
    document = (await server.get("/api/openapi.json")).json()
    return [
        (method.upper(), path) for path, item in document["paths"].items() if path.startswith("/api/")
        for method, operation in item.items() if "security" in operation and status in operation["responses"]
    ]


async def call(who: UserClient, method: str, path: str, number: int) -> Response:
    """The operation on record `number`, with a body it accepts where it reads one."""
    concrete = re.sub(r"\{\w+\}", str(number), path)
    body: dict[str, Any] | None = {"value": "good"} if path.endswith("/vote") and method == "PUT" else None
    if method in ("POST", "PUT", "PATCH") and body is None:
        body = {"refresh_token": who.refresh_token} if path == "/api/auth/refresh" else {}
    return await who.request(method, concrete, json_body=body)


@pytest.mark.parametrize("change", sorted(CHANGES))
async def test_a_demoted_admins_token_opens_no_admin_route(start_server: ServerFactory, change: str) -> None:
    """Every operation that may answer 403 for want of an administrator, with a token minted while
    its user was one: 403 once the role is gone."""
    server = await start_server()
    demoted = await account(server, "dora", "admin")
    assert (await demoted.request("POST", "/api/subjects/", json_body={"name": "Before"})).status == 201
    await CHANGES[change](server, demoted, "user")
    operations = await bearer_operations(server, "403")
    assert ("PATCH", "/api/users/{id}") in operations and ("POST", "/api/subjects/") in operations
    for method, path in operations:
        response = await call(demoted, method, path, 1)
        assert response.status == 403, (method, path, response.status, response.body)


async def test_a_promoted_users_token_opens_admin_routes_at_once(start_server: ServerFactory) -> None:
    server = await start_server()
    promoted = await account(server, "edith", "user")
    assert (await promoted.request("POST", "/api/subjects/", json_body={"name": "No"})).status == 403
    await by_sql(server, promoted, "admin")
    assert (await promoted.request("POST", "/api/subjects/", json_body={"name": "Yes"})).status == 201


# -- a user removed from the store ----------------------------------------------------------------


async def first_teacher(server: LiveServer) -> int:
    subject = (await server.get("/api/subjects/")).json()[0]["no"]
    return int((await server.get(f"/api/teachers/?sno={subject}")).json()["teachers"][0]["no"])


async def sessions_ended(server: LiveServer, *clients: UserClient) -> bool:
    assert server.services is not None
    for client in clients:
        sid = jwt.decode(client.access_token, options={"verify_signature": False})["sid"]
        session = await server.services.backends.session_store.get(sid)
        if session is None or not session.revoked:
            return False
    return True


async def refused_without_fault(who: UserClient, method: str, path: str, number: int) -> bool:
    """Whether the operation answers 401; never with a 5xx, and any error as problem+json."""
    response = await call(who, method, path, number)
    assert response.status < 500, (method, path, response.status, response.body)
    if response.status >= 400:
        assert_problem(response, response.status)
    return response.status == 401


@pytest.mark.parametrize("met", [False, True], ids=["first use", "user in memory"])
async def test_a_deleted_user_gets_no_500_on_any_authenticated_route_and_their_sessions_end(
    start_server: ServerFactory, met: bool
) -> None:
    """Every operation that takes a bearer token, and refresh, for an administrator (so that no
    route refuses them for their role) whose row is deleted by SQL, logged in on two devices.
    Used first after the deletion: 401 problem+json at once. Met by the process just before (a
    socket's welcome read the user): never a 500, any error as problem+json, 401 within seconds,
    and the socket closes. Either way every session of theirs ends."""
    server = await start_server()
    operations = [*await bearer_operations(server, "401"), ("POST", "/api/auth/refresh")]
    assert ("PUT", "/api/teachers/{no}/vote") in operations and ("PATCH", "/api/users/{id}") in operations
    teacher = await first_teacher(server)
    for index, (method, path) in enumerate(operations):
        where = f"{method} {path}"
        gone = await account(server, f"gone{index}", "admin")
        other_device = await log_in(server, gone.username, PASSWORD)
        socket = await welcomed(server, other_device.access_token) if met else None
        await behind_the_servers_back(server, "DELETE FROM users WHERE id = ?", user_id(gone))
        answer = functools.partial(refused_without_fault, gone, method, path, teacher)
        if socket is None:
            assert await answer(), where
        else:
            await wait_for(answer, timeout=5, what=f"401 on {where}")
            assert await socket.wait_closed() == 4003, where
        assert await sessions_ended(server, gone, other_device), where
        refreshed = await server.request(
            "POST", "/api/auth/refresh", json_body={"refresh_token": other_device.refresh_token})
        assert_problem(refreshed, 401)


async def test_a_deleted_users_socket_gets_no_failed_op_and_closes_at_its_next_token(
    start_server: ServerFactory,
) -> None:
    """The socket's user is in memory (its welcome): a vote op is refused as not found or
    unauthorized, not `failed`, and the next token push ends the session (revoked, 4003)."""
    server = await start_server(**SHORT)
    gone = await account(server, "ghost", "user")
    socket = await welcomed(server, gone.access_token)
    teacher = await first_teacher(server)
    await behind_the_servers_back(server, "DELETE FROM users WHERE id = ?", user_id(gone))
    reply = await socket.request("vote", teacher=teacher, value="good")
    assert reply["type"] == "error" and reply["code"] in ("not_found", "unauthorized"), reply
    await socket.expect("revoked", timeout=5)
    assert await socket.wait_closed() == 4003
    assert await sessions_ended(server, gone)


# -- set-role on the command line -------------------------------------------------------------------


@pytest.mark.parametrize("args, code, message", [
    (["nobody", "admin"], 1, "livevote: There is no user 'nobody'."),
    (["carol", "root"], 2, "livevote: ROLE is user or admin, not 'root'"),
    (["carol", ""], 2, "livevote: ROLE is user or admin, not ''"),
])
async def test_set_role_refuses_in_one_line(
    start_server: ServerFactory, args: list[str], code: int, message: str
) -> None:
    server = await start_server()
    carol = await account(server, "carol", "user")
    finished = await run_server_py("set-role", *args, "--data-dir", str(server.config.server.data_dir))
    assert (finished.code, finished.stderr.strip(), finished.stdout) == (code, message, "")
    assert (await carol.get("/api/auth/me")).json()["user"]["role"] == "user"


# -- across processes ---------------------------------------------------------------------------------


async def test_a_removed_account_ends_on_every_process(
    start_server: ServerFactory, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Used on one process after its removal, the account's socket on the other is revoked."""
    first, second = await two_processes(start_server, redis_server, tmp_path)
    gone = await account(first, "ghost", "user")
    socket = await welcomed(second, gone.access_token)
    await behind_the_servers_back(first, "DELETE FROM users WHERE id = ?", user_id(gone))
    assert_problem(await gone.get("/api/auth/me"), 401)
    await socket.expect("revoked", timeout=5)
    assert await socket.wait_closed() == 4003


async def test_a_role_changed_through_one_process_is_what_the_other_mints(
    start_server: ServerFactory, redis_server: RedisServer, tmp_path: Path
) -> None:
    first, second = await two_processes(start_server, redis_server, tmp_path)
    carol = await account(first, "carol", "admin")
    socket = await welcomed(second, carol.access_token)
    await by_api(first, carol, "user")
    assert role_of(await socket_refresh_op(carol, socket, time.time())) == "user"
    on_second = UserClient(second, carol.username, carol.password, carol.pair)
    assert_problem(await on_second.request("POST", "/api/subjects/", json_body={"name": "No"}), 403)
    await socket.close()
