"""The socket's session under `auth` and `refresh` ops: the op moves the socket to the new session,
so that logging out that session closes it (`revoked`, 4003, within 1 s) and logging out the old
one no longer does; and with several sessions and sockets sending `auth` with each other's tokens
at once (generated plans, a logout maybe in the middle), each socket ends on its newest accepted
session and only its revocation closes it. Rig: tests/harness/ws_probe.py. With the `ci`
profile: 40 generated plans, and 3 fixed session switches.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from tests.harness.server import LiveServer, UserClient, log_in
from tests.harness.ws_contract import ALL_CODES
from tests.harness.ws_probe import PASSWORD, Env, ProbeSocket, new_user, ws_examples


async def logout(server: LiveServer, refresh_token: str) -> None:
    response = await server.request("POST", "/api/auth/logout", json_body={"refresh_token": refresh_token})
    assert response.status == 204, response.body


async def revoked_within(sock: ProbeSocket, started: float, limit: float = 1.0) -> None:
    """The socket gets `revoked`, then close 4003, within `limit` seconds of `started`."""
    left = max(0.0, started + limit - time.monotonic())
    got = await sock.until(lambda: sock.find(0, type="revoked") is not None, left)
    assert got, f"no `revoked` within {limit} s (closed: {sock.closed}, code {sock.close_code})"
    try:
        code = await sock.wait_closed(max(0.0, started + limit - time.monotonic()))
    except TimeoutError:
        raise AssertionError(f"`revoked` arrived but the socket was still open {limit} s after the logout") from None
    assert code == 4003, f"closed with {code}, not 4003"


async def socket_of_one_of_two_sessions(env: Env, prefix: str) -> tuple[UserClient, UserClient, ProbeSocket]:
    """A new user logged in twice (sessions 1 and 2), and a socket on session 1."""
    name = env.username(prefix)
    first = await new_user(env.server, name)
    second = await log_in(env.server, name, PASSWORD)
    return first, second, await ProbeSocket.open(env.server.base_url, first.access_token)


def test_auth_op_moves_the_socket_to_the_new_session(env: Env) -> None:
    """Socket on session 1, `auth` with session 2's token, log out session 2: revoked and 4003 within 1 s."""

    async def example() -> None:
        _, second, sock = await socket_of_one_of_two_sessions(env, "switch")
        reply = await sock.request(op="auth", access_token=second.access_token)
        assert reply["type"] == "ack", reply
        started = time.monotonic()
        await logout(env.server, second.refresh_token)
        await revoked_within(sock, started)

    env.run(example())


def test_refresh_op_moves_the_socket_to_the_refreshed_session(env: Env) -> None:
    """Socket on session 1, `refresh` with session 2's refresh token, log out session 2
    (with the rotated refresh token): revoked and 4003 within 1 s."""

    async def example() -> None:
        _, second, sock = await socket_of_one_of_two_sessions(env, "rotate")
        reply = await sock.request(op="refresh", refresh_token=second.refresh_token)
        assert reply["type"] == "tokens" and reply["refresh_token"], reply
        started = time.monotonic()
        await logout(env.server, reply["refresh_token"])
        await revoked_within(sock, started)

    env.run(example())


def test_after_auth_the_old_session_no_longer_owns_the_socket(env: Env) -> None:
    """Socket moved from session 1 to 2 by `auth`: logging out session 1 closes session 1's
    other sockets (the witness, waited for), and leaves this one answering."""

    async def example() -> None:
        first, second, sock = await socket_of_one_of_two_sessions(env, "leave")
        witness = await ProbeSocket.open(env.server.base_url, first.access_token)
        assert (await sock.request(op="auth", access_token=second.access_token))["type"] == "ack"
        started = time.monotonic()
        await logout(env.server, first.refresh_token)
        await revoked_within(witness, started)
        assert not sock.closed, f"closed {sock.close_code} by the logout of the session it left"
        assert (await sock.request(op="ping"))["type"] == "pong"
        await sock.close()

    env.run(example())


@dataclass
class AuthPlan:
    sessions: int
    sockets: list[tuple[int, list[int | str]]]
    """Per socket: the session it opens on, then the tokens it sends in `auth` ops:
    a session index, "stranger" (another user's token) or "garbage"."""
    revoke_order: list[int]
    revoke_during: int | None
    """If set, the first session of revoke_order is logged out while the `auth` ops are still
    being sent: just before round `revoke_during` goes out (after the last, if past it)."""


@st.composite
def auth_plans(draw: st.DrawFn) -> AuthPlan:
    sessions = draw(st.integers(2, 4))
    choice = st.one_of(st.integers(0, sessions - 1), st.sampled_from(["stranger", "garbage"]))
    sockets = draw(st.lists(st.tuples(st.integers(0, sessions - 1), st.lists(choice, min_size=1, max_size=6)),
                            min_size=2, max_size=6))
    rounds = max(len(ops) for _, ops in sockets)
    return AuthPlan(sessions, sockets, draw(st.permutations(range(sessions))),
                    draw(st.none() | st.integers(0, rounds)))


@ws_examples(1)
@given(plan=auth_plans())
def test_parallel_auth_ops_leave_each_socket_on_its_newest_accepted_session(env: Env, plan: AuthPlan) -> None:
    """One user, several sessions, sockets sending `auth` with each other's tokens all at once
    (and maybe a logout in the middle of it): every reply is an ack or an error (never an ack
    of another user's token or of garbage); a socket closes only if a session it was on ended;
    and revoking a session closes (revoked, 4003, within 1 s) every socket whose newest accepted
    token is of that session, plus a witness socket per session, and no other socket."""

    async def example() -> None:
        name = env.username("para")
        logins = [await new_user(env.server, name)]
        for _ in range(plan.sessions - 1):
            logins.append(await log_in(env.server, name, PASSWORD))

        def token(choice: int | str) -> str:
            if choice == "garbage":
                return "x.y.z"
            if choice == "stranger":
                return env.stranger.access_token
            return logins[int(choice)].access_token

        sockets = list(await asyncio.gather(
            *(ProbeSocket.open(env.server.base_url, logins[first].access_token) for first, _ in plan.sockets)))
        witnesses = await asyncio.gather(
            *(ProbeSocket.open(env.server.base_url, login.access_token) for login in logins))
        early = plan.revoke_order[0] if plan.revoke_during is not None else None
        logging_out: asyncio.Future[None] | None = None
        rounds = max(len(ops) for _, ops in plan.sockets)
        for round_ in range(rounds + 1):
            if round_ == plan.revoke_during:
                assert early is not None
                logging_out = asyncio.ensure_future(logout(env.server, logins[early].refresh_token))
            for sock, (_, ops) in zip(sockets, plan.sockets, strict=True):
                if round_ < len(ops):
                    sock.send(op="auth", id=f"a{round_}", access_token=token(ops[round_]))
        revoked_at = 0.0
        if logging_out is not None:
            await logging_out
            revoked_at = time.monotonic()

        histories: list[list[int]] = []
        """Per socket: the session it opened on, then that of every accepted token, in reply order."""
        for index, (sock, (first, ops)) in enumerate(zip(sockets, plan.sockets, strict=True)):
            wanted = {f"a{i}" for i in range(len(ops))}

            def all_answered(sock: ProbeSocket = sock, wanted: set[str] = wanted) -> bool:
                return {m.get("id") for m in sock.decoded()} >= wanted

            answered = await sock.until(all_answered, 10)
            assert answered or sock.closed, f"socket {index} left auth ops unanswered: {sock.messages}"
            history = [first]
            for message in sock.decoded():
                if message.get("id") not in wanted:
                    continue
                choice = ops[int(message["id"][1:])]
                assert message["type"] in ("ack", "error"), f"socket {index}: {message}"
                if message["type"] == "error":
                    assert message["code"] in ALL_CODES and message["message"], f"socket {index}: {message}"
                    continue
                assert choice not in ("stranger", "garbage"), (
                    f"socket {index}: a {choice} token was accepted: {message}"
                )
                history.append(int(choice))
            histories.append(history)

        def describe(index: int) -> str:
            return f"socket {index} (sessions it was on: {histories[index]}, plan {plan.sockets[index]})"

        open_sockets = dict(enumerate(sockets))
        if early is not None:
            await revoked_within(witnesses[early], revoked_at)
            for index in list(open_sockets):
                sock = open_sockets[index]
                if histories[index][-1] == early:
                    try:
                        await revoked_within(open_sockets.pop(index), revoked_at)
                    except AssertionError as exc:
                        raise AssertionError(f"{describe(index)}, session {early} logged out mid-way: {exc}") from None
                elif sock.closed:
                    assert early in histories[index] and sock.close_code == 4003, (
                        f"{describe(index)} closed {sock.close_code} when session {early} was logged out")
                    del open_sockets[index]

        for revoked in plan.revoke_order[1:] if early is not None else plan.revoke_order:
            for index, sock in open_sockets.items():
                assert not sock.closed, f"{describe(index)} closed {sock.close_code} before its session ended"
                assert (await sock.request(op="ping"))["type"] == "pong"
            started = time.monotonic()
            await logout(env.server, logins[revoked].refresh_token)
            await revoked_within(witnesses[revoked], started)
            for index in [i for i in open_sockets if histories[i][-1] == revoked]:
                try:
                    await revoked_within(open_sockets.pop(index), started)
                except AssertionError as exc:
                    raise AssertionError(f"{describe(index)}, session {revoked} logged out: {exc}") from None
        for sock in sockets:
            await sock.close()

    env.run(example(), timeout=120)
