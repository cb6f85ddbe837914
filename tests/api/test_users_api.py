"""PATCH /api/users/{id}: an administrator changes an account's role.

Who may (an administrator now: 401 without a token, 403 for a plain user), what it takes (exactly
{"role": "user" | "admin"}, else a problem+json), and what it changes: the account as the store
has it, which admin routes go by at once. (Tokens minted after a change carry the new role:
tests/auth/test_account_changes.py.)
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from handlers.headers import is_json_media_type
from tests.api.test_rest_properties import CONTENT_TYPES, answered, bodies, record_or_any_id
from tests.harness.server import LiveServer, UserClient, assert_problem, sign_up
from tests.harness.strategies import examples


def role_path(user: UserClient | int) -> str:
    return f"/api/users/{user if isinstance(user, int) else user.pair['user']['id']}"


async def role_of(api: LiveServer, user: UserClient) -> str:
    assert api.services is not None
    return (await api.services.backends.store.get_user(int(user.pair["user"]["id"]))).role


async def test_an_admin_promotes_and_demotes(api: LiveServer, admin: UserClient, user: UserClient) -> None:
    for role in ("admin", "user", "user"):
        response = await admin.request("PATCH", role_path(user), json_body={"role": role})
        assert response.status == 200 and response.content_type == "application/json", response.body
        assert response.json() == {**user.pair["user"], "role": role}
        assert await role_of(api, user) == role
        created = await user.request("POST", "/api/subjects/", json_body={"name": f"By a {role}"})
        assert created.status == (201 if role == "admin" else 403), "admin routes go by the role at once"


async def test_only_an_administrator_may(api: LiveServer, admin: UserClient, user: UserClient) -> None:
    other = await sign_up(api, "bob")
    assert_problem(await api.request("PATCH", role_path(other), json_body={"role": "admin"}), 401)
    assert_problem(await user.request("PATCH", role_path(other), json_body={"role": "admin"}), 403)
    assert_problem(await user.request("PATCH", role_path(user), json_body={"role": "admin"}), 403)
    assert await role_of(api, other) == "user" and await role_of(api, user) == "user"


@pytest.mark.parametrize("path", ["/api/users/4242", "/api/users/0", "/api/users/01", "/api/users/" + "9" * 30])
async def test_no_such_user_is_404(admin: UserClient, path: str) -> None:
    assert_problem(await admin.request("PATCH", path, json_body={"role": "admin"}), 404)


@pytest.mark.parametrize("body, status", [
    (b"{}", 422), (b'{"role": "root"}', 422), (b'{"role": null}', 422), (b'{"role": "Admin"}', 422),
    (b'{"role": "admin", "extra": 1}', 422), (b'["admin"]', 422), (b'{"role": "admin"', 400),
    (b'{"role": "user", "role": "admin"}', 400), (b"", 400),
])
async def test_bad_bodies_are_problems_and_change_nothing(
    api: LiveServer, admin: UserClient, user: UserClient, body: bytes, status: int
) -> None:
    response = await admin.request("PATCH", role_path(user), body=body, headers={"Content-Type": "application/json"})
    problem = assert_problem(response, status)
    if status == 422:
        assert problem["errors"], problem
    assert await role_of(api, user) == "user"


@examples(4)
@given(data=st.data())
async def test_any_input_is_answered_and_only_a_role_is_taken(
    api: LiveServer, admin: UserClient, user: UserClient, data: st.DataObject
) -> None:
    """Never a 5xx, every error a problem; the user's role changes exactly when the body is one
    role, the Content-Type JSON and the id theirs. (The admin's own id is not drawn.)"""
    mine, theirs = str(admin.pair["user"]["id"]), str(user.pair["user"]["id"])
    target = data.draw(st.just(theirs) | record_or_any_id().filter(lambda drawn: drawn != mine), label="id")
    body = data.draw(bodies(("role",)), label="body")
    content_type = data.draw(CONTENT_TYPES, label="content type")
    before = await role_of(api, user)
    response = await admin.request("PATCH", f"/api/users/{target}", body=body, headers={"Content-Type": content_type})
    event(f"PATCH /api/users/{{id}} -> {response.status}")
    result = answered(response, f"PATCH /api/users/{target} {body!r:.300}")
    wanted = role_in(body) if is_json_media_type(content_type) and target == theirs else None
    assert (response.status == 200) == (wanted is not None), (target, body, content_type, response.body)
    if wanted is not None:
        assert result == {**user.pair["user"], "role": wanted}
    assert await role_of(api, user) == (wanted or before)


def role_in(body: bytes) -> str | None:
    """The role a body asks for, if it is exactly one valid RoleChange."""
    try:
        pairs = json.loads(body, object_pairs_hook=list)
    except ValueError:
        return None
    parsed: Any = dict(pairs) if isinstance(pairs, list) and all(isinstance(p, tuple) for p in pairs) else None
    if parsed is None or len(pairs) != 1 or list(parsed) != ["role"] or parsed["role"] not in ("user", "admin"):
        return None
    return str(parsed["role"])
