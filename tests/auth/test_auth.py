"""Accounts, login, refresh rotation, reuse detection, logout, embedded mode."""

from __future__ import annotations

import asyncio
from http.cookies import SimpleCookie

import pytest

from tests.conftest import ServerFactory
from tests.harness.server import LiveServer, UserClient, assert_problem, log_in, sign_up


def refresh_cookie(response_headers: object) -> SimpleCookie:
    cookie: SimpleCookie = SimpleCookie()
    for header in response_headers.get_list("Set-Cookie"):  # type: ignore[attr-defined]
        cookie.load(header)
    return cookie


async def test_register_returns_the_user_without_secrets(api: LiveServer) -> None:
    response = await api.request(
        "POST", "/api/auth/register", json_body={"username": "Bob.Smith", "password": "long enough"}
    )
    assert response.status == 201
    body = response.json()
    assert body == {"id": body["id"], "username": "Bob.Smith", "role": "user"}


async def test_usernames_are_unique_ignoring_case(api: LiveServer) -> None:
    await sign_up(api, "Carol")
    response = await api.request(
        "POST", "/api/auth/register", json_body={"username": "cAROL", "password": "other password"}
    )
    assert_problem(response, 409)


@pytest.mark.parametrize("body, field", [
    ({"username": "ab", "password": "long enough"}, "username"),
    ({"username": "has space", "password": "long enough"}, "username"),
    ({"username": "x" * 33, "password": "long enough"}, "username"),
    ({"username": "<script>", "password": "long enough"}, "username"),
    ({"username": "dave", "password": "short"}, "password"),
    ({"username": "dave", "password": "long enough", "role": "admin"}, "role"),
])
async def test_registration_is_validated(api: LiveServer, body: dict[str, str], field: str) -> None:
    problem = assert_problem(await api.request("POST", "/api/auth/register", json_body=body), 422)
    assert field in [error["field"] for error in problem["errors"]]


async def test_login_returns_a_token_pair_and_a_strict_cookie(api: LiveServer) -> None:
    await sign_up(api, "erin", "pale blue teapot")
    response = await api.request(
        "POST", "/api/auth/login", json_body={"username": "ERIN", "password": "pale blue teapot"}
    )
    assert response.status == 200
    pair = response.json()
    assert set(pair) == {"access_token", "token_type", "expires_in", "refresh_token", "refresh_expires_in", "user"}
    assert pair["token_type"] == "Bearer" and pair["expires_in"] == api.config.auth.access_ttl
    assert pair["refresh_expires_in"] == api.config.auth.refresh_ttl
    assert pair["user"]["username"] == "erin" and pair["user"]["role"] == "user"
    cookie = refresh_cookie(response.headers)["livevote_refresh"]
    assert cookie.value == pair["refresh_token"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/api/auth"
    assert not cookie["secure"], "plain http here; Secure is set behind https"


async def test_unknown_user_and_wrong_password_look_the_same(api: LiveServer) -> None:
    await sign_up(api, "frank", "seven silver spoons")
    wrong = await api.request("POST", "/api/auth/login", json_body={"username": "frank", "password": "guess"})
    unknown = await api.request("POST", "/api/auth/login", json_body={"username": "nobody", "password": "guess"})
    assert assert_problem(wrong, 401)["detail"] == assert_problem(unknown, 401)["detail"]


async def test_me_names_the_user_and_session(user: UserClient) -> None:
    me = (await user.get("/api/auth/me")).json()
    assert me["user"]["username"] == "alice" and len(me["session"]) >= 16


async def test_refresh_rotates(user: UserClient) -> None:
    response = await user.server.request("POST", "/api/auth/refresh", json_body={"refresh_token": user.refresh_token})
    pair = response.json()
    assert response.status == 200 and pair["refresh_token"] not in (None, user.refresh_token)
    assert pair["access_token"] != user.access_token
    fresh = UserClient(user.server, user.username, user.password, pair)
    assert (await fresh.get("/api/auth/me")).json()["session"] == (await user.get("/api/auth/me")).json()["session"]


async def test_replay_within_grace_gets_an_access_token_only(user: UserClient) -> None:
    first = await user.server.request("POST", "/api/auth/refresh", json_body={"refresh_token": user.refresh_token})
    again = await user.server.request("POST", "/api/auth/refresh", json_body={"refresh_token": user.refresh_token})
    assert again.status == 200
    assert again.json()["refresh_token"] is None and again.json()["refresh_expires_in"] is None
    assert "livevote_refresh" not in refresh_cookie(again.headers), "the cookie is left as it is"
    newest = UserClient(user.server, user.username, user.password, first.json())
    assert (await newest.get("/api/auth/me")).status == 200, "the grace replay revoked nothing"
    replayed = UserClient(user.server, user.username, user.password, {**again.json(), "refresh_token": ""})
    assert (await replayed.get("/api/auth/me")).status == 200


async def test_reuse_after_grace_revokes_the_session(start_server: ServerFactory) -> None:
    server = await start_server(auth__reuse_grace=0)
    alice = await sign_up(server, "alice")
    original = {"refresh_token": alice.refresh_token}
    rotated = (await server.request("POST", "/api/auth/refresh", json_body=original)).json()
    reuse = await server.request("POST", "/api/auth/refresh", json_body=original)
    assert_problem(reuse, 401)
    newest = await server.request("POST", "/api/auth/refresh", json_body={"refresh_token": rotated["refresh_token"]})
    assert_problem(newest, 401)
    assert_problem(await alice.get("/api/auth/me"), 401)
    assert_problem(await UserClient(server, "alice", "", rotated).get("/api/auth/me"), 401)


async def test_twenty_concurrent_refreshes_rotate_exactly_once(user: UserClient) -> None:
    responses = await asyncio.gather(*(
        user.server.request("POST", "/api/auth/refresh", json_body={"refresh_token": user.refresh_token})
        for _ in range(20)
    ))
    assert [r.status for r in responses] == [200] * 20
    rotated = [r.json()["refresh_token"] for r in responses if r.json()["refresh_token"] is not None]
    assert len(rotated) == 1
    next_pair = await user.server.request("POST", "/api/auth/refresh", json_body={"refresh_token": rotated[0]})
    assert next_pair.status == 200 and next_pair.json()["refresh_token"]


async def test_unknown_refresh_token_is_401(api: LiveServer) -> None:
    assert_problem(await api.request("POST", "/api/auth/refresh", json_body={"refresh_token": "x" * 43}), 401)
    assert_problem(await api.request("POST", "/api/auth/refresh", json_body={}), 401)


async def test_logout_ends_only_that_session(api: LiveServer) -> None:
    laptop = await sign_up(api, "grace")
    phone = await log_in(api, "grace", laptop.password)
    response = await api.request("POST", "/api/auth/logout", json_body={"refresh_token": laptop.refresh_token})
    assert response.status == 204
    assert_problem(await laptop.get("/api/auth/me"), 401)
    refreshed = await api.request("POST", "/api/auth/refresh", json_body={"refresh_token": laptop.refresh_token})
    assert_problem(refreshed, 401)
    assert (await phone.get("/api/auth/me")).status == 200
    again = await api.request("POST", "/api/auth/logout", json_body={"refresh_token": laptop.refresh_token})
    assert again.status == 204, "logging out twice is harmless"


async def test_logout_all_ends_every_session_of_the_user_only(api: LiveServer) -> None:
    laptop = await sign_up(api, "heidi")
    phone = await log_in(api, "heidi", laptop.password)
    other = await sign_up(api, "ivan")
    assert (await laptop.request("POST", "/api/auth/logout-all")).status == 204
    for client in (laptop, phone):
        assert_problem(await client.get("/api/auth/me"), 401)
    refreshed = await api.request("POST", "/api/auth/refresh", json_body={"refresh_token": phone.refresh_token})
    assert_problem(refreshed, 401)
    assert (await other.get("/api/auth/me")).status == 200


async def test_cookie_refresh_needs_an_allowed_origin(api: LiveServer) -> None:
    alice = await sign_up(api, "judy")
    cookie = {"Cookie": f"livevote_refresh={alice.refresh_token}"}
    foreign = await api.request("POST", "/api/auth/refresh", headers={**cookie, "Origin": "https://evil.example"})
    assert_problem(foreign, 403)
    missing = await api.request("POST", "/api/auth/refresh", headers=cookie)
    assert_problem(missing, 403)
    own = await api.request("POST", "/api/auth/refresh", headers={**cookie, "Origin": api.base_url})
    assert own.status == 200
    assert refresh_cookie(own.headers)["livevote_refresh"].value == own.json()["refresh_token"]


async def test_allowed_origins_are_configurable(start_server: ServerFactory) -> None:
    server = await start_server(server__allowed_origins=["https://vote.example"])
    alice = await sign_up(server, "kim")
    response = await server.request("POST", "/api/auth/logout", headers={
        "Cookie": f"livevote_refresh={alice.refresh_token}", "Origin": "https://vote.example"})
    assert response.status == 204
    assert "livevote_refresh=;" in response.headers.get("Set-Cookie", "").replace('""', "")
    assert_problem(await alice.get("/api/auth/me"), 401)


async def test_brute_force_is_throttled_per_username(start_server: ServerFactory) -> None:
    server = await start_server(auth__login_attempts=3)
    mallory = await sign_up(server, "mallory", "the real password")
    for _ in range(3):
        guess = await server.request("POST", "/api/auth/login", json_body={"username": "mallory", "password": "x"})
        assert_problem(guess, 401)
    right = {"username": "Mallory", "password": mallory.password}
    blocked = await server.request("POST", "/api/auth/login", json_body=right)
    assert_problem(blocked, 429)
    assert 0 < int(blocked.headers["Retry-After"]) <= 900


async def test_behind_a_proxy_the_forwarded_scheme_and_client_count(start_server: ServerFactory) -> None:
    """server.xheaders: the cookie is Secure when the proxy says https, and throttling counts
    the forwarded client, not the proxy's own address."""
    server = await start_server(server__xheaders=True)
    alice = await sign_up(server, "alice", "seven silver spoons")
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
    login = await server.request("POST", "/api/auth/login", headers=forwarded,
                                 json_body={"username": "alice", "password": alice.password})
    assert refresh_cookie(login.headers)["livevote_refresh"]["secure"]
    ip_budget = server.config.auth.login_ip_attempts
    await asyncio.gather(*(
        server.request("POST", "/api/auth/login", headers=forwarded, json_body={"username": f"u{i}", "password": "x"})
        for i in range(ip_budget)
    ))
    blocked = await server.request("POST", "/api/auth/login", headers=forwarded,
                                   json_body={"username": "alice", "password": alice.password})
    assert_problem(blocked, 429)
    other_client = {"X-Forwarded-For": "198.51.100.9"}
    response = await server.request("POST", "/api/auth/login", headers=other_client,
                                    json_body={"username": "alice", "password": alice.password})
    assert response.status == 200


async def test_a_cookie_whose_session_ended_is_cleared_and_its_presence_can_be_asked(api: LiveServer) -> None:
    """A public page asks whether there is a cookie (always 200), and a cookie that no longer
    refreshes is cleared, so that the next visit does not ask with it again."""
    assert (await api.get("/api/auth/session")).json() == {"cookie": False}
    alice = await sign_up(api, "lena")
    cookie = {"Cookie": f"livevote_refresh={alice.refresh_token}", "Origin": api.base_url}
    assert (await api.get("/api/auth/session", headers=cookie)).json() == {"cookie": True}
    assert (await alice.request("POST", "/api/auth/logout-all")).status == 204
    ended = await api.request("POST", "/api/auth/refresh", headers=cookie)
    assert_problem(ended, 401)
    assert refresh_cookie(ended.headers)["livevote_refresh"].value == "", "cleared"
