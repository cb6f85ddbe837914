"""One normalization of usernames for registration, login and lookups: a look-alike name (Kelvin
sign, long s, fullwidth, ligatures) is the plain name, dotted and dotless i are no name at all,
accounts of databases written before keep working, and registration and login agree on whatever
text they are given (generated). Against the real server.
"""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from hypothesis import given
from hypothesis import strategies as st

from services.schemas import USERNAME_RULE, username_key
from tests.conftest import ServerFactory
from tests.harness.accounts import STRONG, login, register
from tests.harness.server import LiveServer, assert_problem, sign_up


@pytest.mark.parametrize("look_alike, plain", [
    ("\u212aate", "kate"),          # Kelvin sign
    ("\u017ftella", "stella"),      # long s
    ("\uff4b\uff41\uff54\uff45", "kate"),  # fullwidth
    ("\uff33\uff34\uff25\uff2c\uff2c\uff21", "stella"),
    ("\ufb00ion", "ffion"),         # ff ligature
])
async def test_a_look_alike_name_is_the_plain_name(api: LiveServer, look_alike: str, plain: str) -> None:
    """Registration folds it to the plain name's key: taken (409) when that account exists;
    login with it therefore signs in to that very account, as registration decided."""
    account = await sign_up(api, plain)
    assert_problem(await register(api, look_alike), 409)
    response = await login(api, look_alike, account.password)
    assert response.status == 200 and response.json()["user"]["username"] == plain
    assert_problem(await login(api, look_alike, "wrong password"), 401)


async def test_a_new_look_alike_name_is_stored_plain(api: LiveServer) -> None:
    response = await register(api, "\u212aelvin")
    assert response.status == 201 and response.json()["username"] == "kelvin"
    look_alikes = ("\u212aelvin", "kelvin", "KELVIN", "\uff4belvin")
    ids = {(await login(api, name, STRONG)).json()["user"]["id"] for name in look_alikes}
    assert ids == {response.json()["id"]}


@pytest.mark.parametrize("outside", ["\u0130nan", "\u0131nan"])
async def test_dotted_and_dotless_i_are_no_name_at_all(api: LiveServer, outside: str) -> None:
    """U+0130 folds to i plus a combining dot, U+0131 stays itself: neither can be registered,
    and neither signs in to "inan"."""
    inan = await sign_up(api, "inan")
    problem = assert_problem(await register(api, outside), 422)
    assert [error["field"] for error in problem["errors"]] == ["username"]
    assert_problem(await login(api, outside, inan.password), 401)


async def test_databases_written_before_keep_their_accounts(start_server: ServerFactory, tmp_path: Path) -> None:
    """Keys used to be the casefold of an ASCII name: the same as username_key() gives, so no migration."""
    data = tmp_path / "old"
    await (await start_server(data)).stop()
    with sqlite3.connect(data / "livevote.db") as db:
        password_hash = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(STRONG)
        db.execute("INSERT INTO users (username, username_key, password_hash, role, created_at)"
                   " VALUES (?, ?, ?, 'user', 0)",
                   ("Old.Timer", "Old.Timer".casefold(), password_hash))
    db.close()
    server = await start_server(data)
    response = await login(server, "\uff2f\uff2c\uff24.timer", STRONG)
    assert response.status == 200 and response.json()["user"]["username"] == "Old.Timer"
    assert_problem(await register(server, "old.TIMER"), 409)


CONFUSABLE = st.text(
    alphabet=st.sampled_from("kKateSsz0_.-\u212a\u017f\uff4b\uff41\u0130\u0131\ufb00\u1e9e\u0307 \u00df"), max_size=36
)
ANY_NAME = st.one_of(st.text(max_size=40), CONFUSABLE)
ADDRESSES = itertools.count(1)


@given(text=ANY_NAME)
def test_username_key_is_idempotent_and_within_the_rule(text: str) -> None:
    key = username_key(text)
    if key is not None:
        assert USERNAME_RULE.fullmatch(key)
        assert username_key(key) == key


@pytest.fixture
async def proxied(start_server: ServerFactory) -> LiveServer:
    """Behind a proxy: each example below can come from an address of its own."""
    return await start_server(server__xheaders=True)


@given(text=ANY_NAME)
async def test_registration_and_login_agree(proxied: LiveServer, text: str) -> None:
    """Whatever registration makes of a name, login with the same text reaches that account.
    No budget interferes (a new address each time), and the password has no character a
    username can have, so it never contains one."""
    number = next(ADDRESSES)
    client = {"X-Forwarded-For": f"10.{number >> 16 & 255}.{number >> 8 & 255}.{number & 255}"}
    password = "茶壶 ☂ 雪花 ∞ 夜"
    registered = await register(proxied, text, password, headers=client)
    signed_in = await login(proxied, text, password, headers=client)
    key = username_key(text)
    if key is None:
        assert registered.status == 422 and signed_in.status == (401 if text else 422)
        return
    assert registered.status in (201, 409), registered.body
    assert signed_in.status == 200, signed_in.body
    assert username_key(signed_in.json()["user"]["username"]) == key
    if registered.status == 201:
        assert signed_in.json()["user"]["id"] == registered.json()["id"]
