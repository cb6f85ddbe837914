"""Live handshakes take turns (ws.max_handshakes at once), first come first served. While as many
wait as are under way, new connections wait in the kernel's accept queue, in order, and the
connections already taken are served meanwhile. A client that hangs up while it waits gives its
turn back."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import ServerFactory
from tests.harness.raw_socket import RawSocket
from tests.harness.server import LiveServer, sign_up, wait_for
from tests.harness.ws_client import LiveClient

HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


async def healthz(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
    """One GET /healthz on an open connection, kept open: the status."""
    writer.write(HEALTHZ)
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    length = next(int(line.split(":")[1]) for line in head if line.lower().startswith("content-length"))
    await reader.readexactly(length)
    return int(head[0].split()[1])


async def healthz_on_a_new_connection(server: LiveServer) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        return await healthz(reader, writer)
    finally:
        writer.close()


async def test_handshakes_take_turns_in_arrival_order_and_new_connections_wait_while_they_do(
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

    async def waiting(count: int) -> bool:
        return services.handshakes.waiting == count

    kept_open = await asyncio.open_connection("127.0.0.1", server.port)  # taken before the storm
    store.get = held_read  # type: ignore[method-assign]
    first = asyncio.ensure_future(LiveClient.connect(server.base_url, viewer.access_token))
    hangs_up = asyncio.ensure_future(RawSocket.connect(server.port, viewer.access_token))
    await wait_for(lambda: waiting(1), what="the second handshake waiting its turn")
    # As many wait as are under way: these wait in the kernel's accept queue, in order.
    later = asyncio.ensure_future(LiveClient.connect(server.base_url, viewer.access_token))
    probe = asyncio.ensure_future(healthz_on_a_new_connection(server))
    for _ in range(50):  # the connections already taken are served meanwhile, turn after turn
        assert await healthz(*kept_open) == 200
    assert not probe.done() and not later.done() and services.handshakes.waiting == 1

    hangs_up.cancel()  # closes its socket while it waits: the 499 path gives its turn back
    store.get = read_session  # type: ignore[method-assign]
    held.set()
    clients = [await first, await later]
    welcomes = [await client.expect("welcome") for client in clients]
    assert welcomes[0]["server_time"] <= welcomes[1]["server_time"]
    assert await probe == 200
    late = await asyncio.wait_for(LiveClient.connect(server.base_url, viewer.access_token), 5)
    await late.expect("welcome")  # with one turn at a time, a turn lost to the hang-up would block it
    assert services.handshakes.waiting == 0
    kept_open[1].close()
    for client in [*clients, late]:
        await client.close()
