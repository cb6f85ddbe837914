"""Open sockets are frozen out of the collector's sight, and what closes is still freed.

A frozen object is never collected as part of a cycle: were a closed connection to leave one,
it would stay for good. `test_a_closed_connection_leaves_no_cycle` asks the collector of this
process, for each way a connection ends (closed by the client, cut, reset, rate-limited,
revoked, dropped for unanswered pings, event streams, handshakes refused), what it would free
of the server's; the property test mixes them, several at once. The churn runs
`python server.py`, which freezes as it goes, against every kind of connection at once: after
it, the frozen count must come back to what it was after warming up.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import struct
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.gc_pauses import Freezer
from services.live.messages import CLOSE_RATE_LIMITED, CLOSE_REVOKED
from tests.conftest import ServerFactory
from tests.harness.environment import server_env
from tests.harness.metrics import metric
from tests.harness.raw_socket import RawSocket
from tests.harness.server import JsonClient, LiveServer, UserClient, log_in, sign_up, wait_for
from tests.harness.server_process import ServerProcess
from tests.harness.sse_client import EventStreamClient, StreamRefused

WARM_UP = 3
ROUNDS = 6
SOCKETS = 100
FROZEN_PER_CONNECTION = 0.5
"""Frozen objects allowed to stay per connection closed after warming up: none should, but a
few may be in flight when the count is read."""


class Node:
    """A reference cycle: only the cycle collector frees it."""

    def __init__(self) -> None:
        self.me = self


def collected(thing: object) -> bool:
    """Whether a full collection would walk `thing` (it is not frozen)."""
    return any(each is thing for each in gc.get_objects())


def test_start_up_garbage_is_collected_and_the_rest_frozen() -> None:
    garbage = weakref.ref(Node())
    kept = Node()
    assert garbage() is not None, "a cycle outlives its last reference until a collection"
    freezer = Freezer()
    freezer.start()
    try:
        assert garbage() is None, "frozen, the cycle would have stayed for good"
        assert gc.is_tracked(kept) and not collected(kept), "what lives on is frozen"
    finally:
        freezer.stop()
    assert collected(kept), "stopped, the freezer gives everything back"


def test_what_lives_through_the_young_generations_is_frozen() -> None:
    freezer = Freezer()
    freezer.start()
    try:
        garbage, kept = weakref.ref(Node()), Node()
        gc.collect(0)
        assert collected(kept), "one young collection: still young"
        gc.collect(1)
        assert garbage() is None, "a cycle that died young is collected"
        assert not collected(kept), "through the middle generation: frozen"
    finally:
        freezer.stop()


AT_ONCE = 5
"""Connections of one kind that come and go together, in each of ROUNDS_EACH rounds."""
ROUNDS_EACH = 3


async def all_closed(server: JsonClient) -> None:
    async def closed() -> bool:
        return await metric(server, "livevote_connections_open") <= 1  # this /metrics request

    await wait_for(closed, timeout=20, what="the connections closing")


@dataclass
class Visitor:
    """Who opens the connections: a signed-in user, signed in again once a round ended its session."""

    server: LiveServer
    user: UserClient

    async def subscribed(self) -> list[RawSocket]:
        sockets = await asyncio.gather(*(RawSocket.connect(self.server.port, self.user.access_token)
                                         for _ in range(AT_ONCE)))
        await asyncio.gather(*(sock.subscribe("subject:1") for sock in sockets))
        return list(sockets)


async def closed_by_the_client(visitor: Visitor) -> None:
    await asyncio.gather(*(sock.close() for sock in await visitor.subscribed()))


async def cut(visitor: Visitor) -> None:
    """Closed without a close frame."""
    for sock in await visitor.subscribed():
        sock.sock.close()


async def reset(visitor: Visitor) -> None:
    """Closed with a TCP reset (as a phone that lost its network does, once it is back)."""
    for sock in await visitor.subscribed():
        sock.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.sock.close()


async def closed_by_the_server(sockets: list[RawSocket], code: int) -> None:
    for sock in sockets:
        assert not await sock.read_until(lambda: False, timeout=10), "still open"
        assert sock.close_code == code
        sock.sock.close()


async def rate_limited(visitor: Visitor) -> None:
    sockets = await visitor.subscribed()
    for sock in sockets:
        for number in range(3):
            await sock.send("ping", id=number)
    await closed_by_the_server(sockets, CLOSE_RATE_LIMITED)


async def revoked(visitor: Visitor) -> None:
    sockets = await visitor.subscribed()
    assert (await visitor.user.request("POST", "/api/auth/logout-all")).status == 204
    await closed_by_the_server(sockets, CLOSE_REVOKED)
    visitor.user = await log_in(visitor.server, visitor.user.username, visitor.user.password)


async def unanswered_pings(visitor: Visitor) -> None:
    """Sockets that read nothing, so answer no ping: dropped."""
    sockets = await visitor.subscribed()
    await all_closed(visitor.server)
    for sock in sockets:
        sock.sock.close()


async def event_streams(visitor: Visitor) -> None:
    streams = await asyncio.gather(*(
        EventStreamClient.open(visitor.server.base_url, ["subject:1"], token=visitor.user.access_token)
        for _ in range(AT_ONCE)
    ))
    await asyncio.gather(*(stream.close() for stream in streams))


async def refused_handshakes(visitor: Visitor) -> None:
    await asyncio.gather(*(refused(visitor.server.port) for _ in range(AT_ONCE)))


ENDINGS: dict[str, Callable[[Visitor], Awaitable[None]]] = {
    "closed by the client": closed_by_the_client, "cut": cut, "reset": reset, "rate limited": rate_limited,
    "revoked": revoked, "pings unanswered": unanswered_pings, "event streams": event_streams,
    "refused": refused_handshakes,
}
CONFIG: dict[str, dict[str, float]] = {
    "rate limited": {"ws__rate_limit": 1, "ws__rate_burst": 2},  # the subscribe, one ping, then too many
    "pings unanswered": {"ws__ping_interval": 0.05},
}
SERVER_SIDE = ("handlers.", "services.", "tornado.")


def server_garbage() -> list[str]:
    """What a collection would free that the server made (the test's own clients leave some)."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        return [f"{type(each).__module__}.{type(each).__qualname__}" for each in gc.garbage
                if type(each).__module__.startswith(SERVER_SIDE)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


@pytest.mark.parametrize("ending", ENDINGS)
async def test_a_closed_connection_leaves_no_cycle(start_server: ServerFactory, ending: str) -> None:
    """Reference counting alone frees what a connection held, once it has closed, however it
    ended: a cycle would stay frozen for good."""
    caps = {"ws__max_sockets_per_address": 100, "ws__max_sockets_per_token": 100}
    server = await start_server(**caps, **CONFIG.get(ending, {}))
    visitor = Visitor(server, await sign_up(server, "watcher"))

    async def come_and_go() -> None:
        await ENDINGS[ending](visitor)
        await all_closed(server)

    await come_and_go()  # once first: what is built on first use stays
    gc.collect()
    gc.disable()
    try:
        for _ in range(ROUNDS_EACH):
            await come_and_go()
        assert server_garbage() == []
    finally:
        gc.enable()


MIXED = {"ws__rate_limit": 1, "ws__rate_burst": 2, "ws__ping_interval": 0.5}
"""Every ending's config at once: the unanswered pings take a second, no socket's subscribe
and two pings run out of it meanwhile."""


@pytest.fixture
async def mixed(start_server: ServerFactory) -> Visitor:
    server = await start_server(ws__max_sockets_per_address=100, ws__max_sockets_per_token=100, **MIXED)
    visitor = Visitor(server, await sign_up(server, "watcher"))
    for ending in ENDINGS.values():  # once first: what is built on first use stays
        await ending(visitor)
    await all_closed(server)
    return visitor


@settings(max_examples=8)
@given(endings=st.lists(st.sampled_from(sorted(ENDINGS)), min_size=2, max_size=5))
async def test_connections_ending_every_way_at_once_leave_no_cycle(mixed: Visitor, endings: list[str]) -> None:
    """The endings above, several at once in any mix: no cycle between connections either."""
    gc.collect()
    gc.disable()
    try:
        await asyncio.gather(*(ENDINGS[name](mixed) for name in endings if name != "revoked"))
        if "revoked" in endings:  # last: it ends every socket of the session, the others' too
            await revoked(mixed)
        await all_closed(mixed.server)
        assert server_garbage() == []
    finally:
        gc.enable()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    caps = {"ws.max_sockets_per_address": 10_000, "ws.max_sockets_per_token": 10_000, "ws.rate_burst": 1000}
    process = await ServerProcess("--data-dir", str(tmp_path), env=server_env(**caps)).start()
    yield process
    await process.stop()


async def refused(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key:"
        b" dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer nope\r\n\r\n"
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 401"), head
    writer.close()


async def one_round(server: ServerProcess, token: str) -> int:
    """Every kind of connection, at once; returns how many there were."""
    sockets = await asyncio.gather(*(RawSocket.connect(server.port, token) for _ in range(SOCKETS)))
    await asyncio.gather(*(sock.subscribe("subject:1") for sock in sockets))
    streams = await asyncio.gather(
        *(EventStreamClient.open(server.base_url, ["subject:1"], token=token) for _ in range(SOCKETS // 4))
    )
    await asyncio.gather(*(refused(server.port) for _ in range(SOCKETS // 4)))
    for status in await asyncio.gather(*(server.get("/api/subjects") for _ in range(SOCKETS // 4))):
        assert status.status == 200
    with pytest.raises(StreamRefused):
        await EventStreamClient.open(server.base_url, ["subject:1"], token="nope")
    half = SOCKETS // 2
    await asyncio.gather(*(sock.close() for sock in sockets[:half]))
    for sock in sockets[half:]:  # cut, no close frame
        sock.sock.close()
    await asyncio.gather(*(stream.close() for stream in streams))
    await all_closed(server)
    return SOCKETS + len(streams) + 3 * (SOCKETS // 4) + 1


async def test_connections_that_came_and_went_leave_nothing_frozen(server: ServerProcess) -> None:
    token = (await sign_up(server, "churner")).access_token
    for _ in range(WARM_UP):  # the first rounds fill caches and import what is imported on first use
        await one_round(server, token)
    first = await metric(server, "livevote_gc_frozen_objects")
    closed = 0
    for _ in range(ROUNDS):
        closed += await one_round(server, token)
    last = await metric(server, "livevote_gc_frozen_objects")
    assert last - first <= FROZEN_PER_CONNECTION * closed, (
        f"{(last - first) / closed:.1f} frozen objects stayed per connection closed after warming up"
    )
