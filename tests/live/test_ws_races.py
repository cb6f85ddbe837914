"""Races on one process that once lost live updates, replayed many times over real sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tornado.httpclient import HTTPClientError

from tests.conftest import ServerFactory
from tests.harness.live_views import subscribe
from tests.harness.redis_server import RedisServer
from tests.harness.server import LiveServer, log_in, sign_up
from tests.harness.strategies import examples
from tests.harness.ws_client import LiveClient, refused_status

TRIES = 15


@pytest.mark.parametrize("leave", ["unsubscribe", "close"])
async def test_a_subscribe_while_the_last_other_channel_closes_still_gets_live_votes(
    start_server: ServerFactory, redis_or_none: RedisServer | None, leave: str
) -> None:
    """X is the process's only subscriber; Y subscribes while X leaves. Y must stay live:
    the votes subscription may not be dropped while Y's channel is being opened."""
    overrides = {"redis__url": redis_or_none.url} if redis_or_none else {}
    server = await start_server(ws__coalesce_ms=0, **overrides)
    viewer, voter = await sign_up(server, "viewer"), await sign_up(server, "voter")
    value = "good"
    for _ in range(TRIES):
        x = await LiveClient.connect(server.base_url, viewer.access_token)
        y = await LiveClient.connect(server.base_url, viewer.access_token)
        await subscribe(x, "subject:1")
        y_subscribed = y.send("subscribe", channel="subject:2")
        if leave == "close":
            x.connection.close()
        else:
            x.send("unsubscribe", channel="subject:1")
        await y.expect("ack", id=y_subscribed)
        await y.expect("snapshot", channel="subject:2")
        response = await voter.request("PUT", "/api/teachers/4/vote", json_body={"value": value})
        assert response.status == 200, response.body
        version = response.json()["version"]
        update = await y.expect("votes", channel="subject:2", timeout=3)
        counts = {k: response.json()[k] for k in ("good_count", "bad_count")}
        assert update["updates"] == [{"no": 4, **counts, "version": version}]
        value = "bad" if value == "good" else "good"
        await x.close()
        await y.close()


@pytest.mark.parametrize("sockets", [2, 50])
async def test_subscribes_of_one_new_channel_at_once_read_it_once_and_all_go_live(
    start_server: ServerFactory, redis_or_none: RedisServer | None, sockets: int
) -> None:
    """A reconnect storm in small: every socket subscribes to a channel nobody holds yet, all at
    once. The subject is read from the store once (a subscriber that waited joins the channel
    the first opened), every socket gets the same snapshot, and a vote then reaches them all."""
    overrides = {"redis__url": redis_or_none.url} if redis_or_none else {}
    server = await start_server(ws__coalesce_ms=0, **overrides)
    viewer, voter = await sign_up(server, "viewer"), await sign_up(server, "voter")
    assert server.services is not None
    store = server.services.backends.store
    reads = 0
    read_teachers = store.list_teachers

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        reads += 1
        return await read_teachers(*args, **kwargs)

    store.list_teachers = counted  # type: ignore[method-assign]
    clients = await asyncio.gather(*(LiveClient.connect(server.base_url, viewer.access_token) for _ in range(sockets)))
    sent = [client.send("subscribe", channel="subject:2") for client in clients]
    snapshots = await asyncio.gather(*(client.expect("snapshot", channel="subject:2") for client in clients))
    for client, op in zip(clients, sent, strict=True):
        await client.expect("ack", id=op)
    assert reads == 1, f"subject 2 was read {reads} times for {sockets} subscribes"
    assert len({str(snapshot["teachers"]) for snapshot in snapshots}) == 1
    response = await voter.request("PUT", "/api/teachers/4/vote", json_body={"value": "good"})
    assert response.status == 200, response.body
    version = response.json()["version"]
    for client in clients:
        update = await client.expect("votes", channel="subject:2", timeout=5)
        assert [counts["version"] for counts in update["updates"]] == [version]
        await client.close()


async def test_handshakes_of_one_session_at_once_read_the_session_and_the_user_once(
    start_server: ServerFactory,
) -> None:
    """A reconnect storm in small: 100 sockets of one session open at once, none of it in the
    process's memory yet. The session and the user are each read once, shared by every
    handshake that came while the read was under way, and every socket is welcomed."""
    server = await start_server(ws__max_sockets_per_token=100)
    viewer = await sign_up(server, "viewer")
    assert server.services is not None
    backends = server.services.backends
    reads: dict[str, int] = {"session": 0, "user": 0}

    def counted(name: str, read: Any) -> Any:
        async def counting(*args: Any, **kwargs: Any) -> Any:
            reads[name] += 1
            await asyncio.sleep(0.05)  # a store under load: the other handshakes arrive meanwhile
            return await read(*args, **kwargs)
        return counting

    backends.session_store.get = counted("session", backends.session_store.get)  # type: ignore[method-assign]
    backends.store.get_user = counted("user", backends.store.get_user)  # type: ignore[method-assign]
    clients = await asyncio.gather(*(LiveClient.connect(server.base_url, viewer.access_token) for _ in range(100)))
    welcomes = await asyncio.gather(*(client.expect("welcome") for client in clients))
    assert reads == {"session": 1, "user": 1}, reads
    assert {welcome["user"]["username"] for welcome in welcomes} == {viewer.username}
    for client in clients:
        await client.close()


async def test_a_revocation_that_lands_while_the_session_is_read_is_not_undone_by_the_read(
    start_server: ServerFactory,
) -> None:
    """A handshake reads the session as active; before the answer lands, the session is revoked
    and this process hears of it. The stale answer must not make the session active again:
    the handshake is refused, and so is the next one."""
    server = await start_server()
    user = await sign_up(server, "revoked-midway")
    assert server.services is not None
    store = server.services.backends.session_store
    read_session = store.get
    landed = asyncio.Event()
    revoked = asyncio.Event()

    async def stale_read(*args: Any, **kwargs: Any) -> Any:
        session = await read_session(*args, **kwargs)  # read while still active ...
        landed.set()
        await revoked.wait()  # ... and answered only after the revocation was heard
        return session

    store.get = stale_read  # type: ignore[method-assign]
    handshake = asyncio.ensure_future(refused_status(server.base_url, user.access_token))
    await asyncio.wait_for(landed.wait(), 5)
    store.get = read_session  # type: ignore[method-assign]
    elsewhere = await log_in(server, user.username, user.password)  # another session: its check reads apart
    assert (await elsewhere.request("POST", "/api/auth/logout-all")).status == 204
    revoked.set()
    assert await asyncio.wait_for(handshake, 5) == 401
    assert await refused_status(server.base_url, user.access_token) == 401


READ_DELAYS = st.lists(st.tuples(st.sampled_from([0, 0.002, 0.01, 0.03]), st.sampled_from([0, 0.002, 0.01, 0.03])),
                       min_size=1, max_size=8)
"""(before, after) a session read's answer: the read itself may see the store before or after a revocation."""


@examples(0.5)
@given(delays=READ_DELAYS, handshakes=st.integers(1, 8), revoke_after=st.integers(0, 8))
async def test_no_handshake_outlives_a_revocation_however_its_session_reads_interleave(
    api: LiveServer, delays: list[tuple[float, float]], handshakes: int, revoke_after: int
) -> None:
    """Handshakes of one session open at once, their session reads slowed before and after the
    store answers; the session is revoked from another session after `revoke_after` of them
    started. Whatever the interleaving, once the revocation is done every one of them was refused
    (401) or is closed as revoked (4003), and the next handshake is refused."""
    user = await sign_up(api, f"racer{next(RACERS)}")
    elsewhere = await log_in(api, user.username, user.password)
    assert api.services is not None
    store = api.services.backends.session_store
    read_session = store.get
    reads = iter(delays * 16)

    async def slowed(*args: Any, **kwargs: Any) -> Any:
        before, after = next(reads, (0, 0))
        await asyncio.sleep(before)
        session = await read_session(*args, **kwargs)
        await asyncio.sleep(after)
        return session

    store.get = slowed  # type: ignore[method-assign]
    try:
        started = [asyncio.ensure_future(_admitted_or_refused(api, user.access_token)) for _ in range(revoke_after)]
        assert (await elsewhere.request("POST", "/api/auth/logout-all")).status == 204
        started += [asyncio.ensure_future(_admitted_or_refused(api, user.access_token))
                    for _ in range(handshakes - revoke_after)]
        for outcome in await asyncio.gather(*started):
            if isinstance(outcome, LiveClient):
                assert await outcome.wait_closed() == 4003, "a socket of a revoked session stayed open"
            else:
                assert outcome == 401
    finally:
        store.get = read_session  # type: ignore[method-assign]
    assert await refused_status(api.base_url, user.access_token) == 401


RACERS = iter(range(1_000_000))


async def _admitted_or_refused(server: LiveServer, token: str) -> LiveClient | int:
    """The socket, once welcomed, or the status it was refused with."""
    try:
        client = await LiveClient.connect(server.base_url, token)
    except HTTPClientError as exc:
        return exc.code
    await client.expect("welcome")
    return client
