"""Live handshakes take turns (ws.max_handshakes at once), first come first served, and a client
that hangs up while it waits gives its turn back."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import ServerFactory
from tests.harness.raw_socket import RawSocket
from tests.harness.server import sign_up, wait_for
from tests.harness.sse_client import EventStreamClient
from tests.harness.ws_client import LiveClient


async def test_handshakes_wait_their_turn_in_arrival_order_and_hang_ups_give_it_back(
    start_server: ServerFactory,
) -> None:
    server = await start_server(ws__max_handshakes=1)
    viewer = await sign_up(server, "viewer")
    assert server.services is not None
    services = server.services
    store = services.backends.session_store
    read_session = store.get
    held = asyncio.Event()

    async def held_read(*args: Any, **kwargs: Any) -> Any:
        await held.wait()  # the first handshake's session read, until the others queue behind it
        return await read_session(*args, **kwargs)

    store.get = held_read  # type: ignore[method-assign]
    first = asyncio.ensure_future(LiveClient.connect(server.base_url, viewer.access_token))
    await wait_for(lambda: _true(services.handshakes.waiting == 0 and not first.done()), what="the first admitted")
    served: list[asyncio.Future[LiveClient]] = []
    hung_up: list[asyncio.Future[RawSocket]] = []
    for index in range(6):  # in turn: one to be served, one that hangs up while it waits
        if index % 2:
            hung_up.append(asyncio.ensure_future(RawSocket.connect(server.port, viewer.access_token)))
        else:
            served.append(asyncio.ensure_future(LiveClient.connect(server.base_url, viewer.access_token)))
        await wait_for(lambda index=index: _true(services.handshakes.waiting == index + 1), what=f"{index + 1} waiting")
    stream = asyncio.ensure_future(EventStreamClient.open(server.base_url, ["subject:1"], token=viewer.access_token))
    await wait_for(lambda: _true(services.handshakes.waiting == 7), what="the stream waiting too")
    for raw in hung_up:
        raw.cancel()  # closes its socket
    store.get = read_session  # type: ignore[method-assign]
    held.set()
    clients = [await first, *[await client for client in served]]
    welcomes = [await client.expect("welcome") for client in clients]
    times = [welcome["server_time"] for welcome in welcomes]
    assert times == sorted(times), "handshakes were not admitted in the order they came"
    events = await stream
    await events.expect("welcome")
    late = await asyncio.wait_for(LiveClient.connect(server.base_url, viewer.access_token), 5)
    await late.expect("welcome")  # with one turn at a time, a turn lost to a hang-up would block it
    assert services.handshakes.waiting == 0
    await events.close()
    for client in [*clients, late]:
        await client.close()


async def _true(value: bool) -> bool:
    return value
