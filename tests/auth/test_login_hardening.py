"""The login path under attack: concurrent guessing within the per-account and per-IP budgets,
and an unknown user costing the same argon2 work (and time) as a wrong password.

Every case runs against the real server; where the behaviour depends on where the counters
live it runs in embedded mode and against a real redis-server. Registrations and the password
rule: tests/auth/test_registration_hardening.py; look-alike usernames:
tests/auth/test_username_normalization.py.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from pathlib import Path

from tests.conftest import ServerFactory
from tests.harness.accounts import all_at_once, login, start_in_mode
from tests.harness.redis_server import RedisServer
from tests.harness.server import assert_problem, sign_up

DEFAULT_ARGON2 = {"auth__argon2_time_cost": 3, "auth__argon2_memory_kib": 65536, "auth__argon2_parallelism": 4}
"""The shipped cost (config.yaml)."""


# -- the budget holds under concurrency -------------------------------------------------------


async def test_concurrent_guesses_check_at_most_the_budget(
    start_server: ServerFactory, redis_or_none: RedisServer | None
) -> None:
    server = await start_in_mode(start_server, redis_or_none)
    victim = await sign_up(server, "victim")
    attempts = server.config.auth.login_attempts
    assert attempts == 10

    guesses = [{"username": "victim", "password": f"guess {i}"} for i in range(60)]
    replies = await all_at_once(server, "/api/auth/login", guesses)

    assert Counter(reply.status for reply in replies) == {401: attempts, 429: 60 - attempts}
    for reply in replies:
        if reply.status == 429:
            assert_problem(reply, 429)
            assert 0 < int(reply.headers["Retry-After"]) <= server.config.auth.login_window
    assert_problem(await login(server, "victim", victim.password), 429)


# -- one account under attack, and the address's own budget ----------------------------------


async def test_an_attacked_account_does_not_lock_others_out_of_the_address(
    start_server: ServerFactory, redis_or_none: RedisServer | None
) -> None:
    server = await start_in_mode(start_server, redis_or_none)
    alice = await sign_up(server, "alice")
    bob = await sign_up(server, "bob")
    for _ in range(server.config.auth.login_attempts):
        assert_problem(await login(server, "alice", "wrong"), 401)
    assert_problem(await login(server, "alice", alice.password), 429)
    assert (await login(server, "bob", bob.password)).status == 200
    assert_problem(await login(server, "bob", "wrong"), 401)


async def test_the_address_has_a_larger_budget_of_its_own_that_correct_logins_leave_alone(
    start_server: ServerFactory, redis_or_none: RedisServer | None
) -> None:
    server = await start_in_mode(start_server, redis_or_none, auth__login_ip_attempts=40)
    auth = server.config.auth
    assert auth.login_ip_attempts == 40 and auth.login_ip_attempts > auth.login_attempts
    pupils = [await sign_up(server, f"pupil{i}") for i in range(15)]

    correct = await all_at_once(
        server, "/api/auth/login", [{"username": p.username, "password": p.password} for p in pupils]
    )
    assert {reply.status for reply in correct} == {200}
    wrong = await all_at_once(
        server, "/api/auth/login", [{"username": f"user{i}", "password": "x"} for i in range(auth.login_ip_attempts)]
    )
    assert {reply.status for reply in wrong} == {401}, "the correct logins took nothing from the address"

    blocked = await login(server, "pupil0", pupils[0].password)
    assert_problem(blocked, 429)
    assert 0 < int(blocked.headers["Retry-After"]) <= auth.login_window


async def test_parallel_logins_of_several_users_from_one_address(
    start_server: ServerFactory, redis_or_none: RedisServer | None
) -> None:
    """Right and wrong passwords of six users at once, within each account's budget:
    every right one gets in, every wrong one is refused as wrong, none is throttled."""
    server = await start_in_mode(start_server, redis_or_none)
    users = [await sign_up(server, f"member{i}") for i in range(6)]
    attempts = [(user, attempt % 3 == 0) for attempt in range(9) for user in users]
    replies = await all_at_once(server, "/api/auth/login", [
        {"username": user.username, "password": user.password if right else "wrong password"}
        for user, right in attempts
    ])
    for (user, right), reply in zip(attempts, replies, strict=True):
        assert reply.status == (200 if right else 401), (user.username, right, reply.body)
        if right:
            assert reply.json()["user"]["username"] == user.username


async def test_processes_sharing_redis_share_the_budget_under_concurrency(
    start_server: ServerFactory, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Two processes of one host (one SQLite file, one Redis): guesses arriving at both at
    once are checked no more often than the account's budget allows."""
    first = await start_server(tmp_path / "host", redis__url=redis_server.url)
    second = await start_server(tmp_path / "host", redis__url=redis_server.url)
    await sign_up(first, "victim")
    bodies = [{"username": "victim", "password": f"guess {i}"} for i in range(20)]
    on_first, on_second = await asyncio.gather(
        all_at_once(first, "/api/auth/login", bodies), all_at_once(second, "/api/auth/login", bodies)
    )
    attempts = first.config.auth.login_attempts
    assert Counter(reply.status for reply in on_first + on_second) == {401: attempts, 429: 40 - attempts}


# -- unknown users cost the same argon2 work as wrong passwords -------------------------------


async def test_an_unknown_user_takes_as_long_as_a_wrong_password(start_server: ServerFactory) -> None:
    server = await start_server(**DEFAULT_ARGON2)
    await sign_up(server, "kate")
    unknown: list[float] = []
    wrong: list[float] = []
    for round_ in range(5):
        for username, samples in (("kate", wrong), (f"nobody{round_}", unknown)):
            began = time.perf_counter()
            assert_problem(await login(server, username, "not the password"), 401)
            samples.append(time.perf_counter() - began)
    ratio = statistics.median(unknown) / statistics.median(wrong)
    print(f"\nlogin medians: unknown user {statistics.median(unknown) * 1000:.0f} ms,"
          f" wrong password {statistics.median(wrong) * 1000:.0f} ms, ratio {ratio:.2f}")
    assert ratio >= 0.5
