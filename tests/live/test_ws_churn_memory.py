"""Sockets that come, subscribe and go leave nothing behind: after many cycles of connecting,
subscribing and closing, the server holds no more memory than after the first.

Measured with tracemalloc in this process, where the real server runs: Python's allocations,
exact, where RSS would blur a few hundred bytes per socket into the allocator's noise. The
clients are raw sockets whose objects go with them.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc

from tests.conftest import ServerFactory
from tests.harness.raw_socket import RawSocket
from tests.harness.server import LiveServer, sign_up, wait_for

SOCKETS = 200
CYCLES = 6
BYTES_PER_CLOSED_SOCKET = 150
"""Growth allowed per socket closed after the first cycle. Token deadlines kept until expiry
came to ~380 bytes; what is left (~50) is caches and tables that grow by steps."""


async def cycle(server: LiveServer, token: str) -> None:
    sockets = await asyncio.gather(*(RawSocket.connect(server.port, token) for _ in range(SOCKETS)))
    try:
        await asyncio.gather(*(sock.subscribe("subject:1") for sock in sockets))
    finally:
        await asyncio.gather(*(sock.close() for sock in sockets))
    assert server.services is not None
    hub = server.services.hub

    async def all_gone() -> bool:
        return hub.peer_count == 0

    await wait_for(all_gone, timeout=10, what="every socket leaving the hub")


def traced_after_collecting() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def test_connect_subscribe_close_cycles_do_not_grow_memory(start_server: ServerFactory) -> None:
    caps = SOCKETS * CYCLES  # one token from one address, as no real client would
    server = await start_server(
        ws__rate_limit=1000, ws__rate_burst=1000, ws__max_sockets_per_address=caps, ws__max_sockets_per_token=caps,
    )
    token = (await sign_up(server, "churner")).access_token
    tracemalloc.start()
    try:
        await cycle(server, token)
        first = traced_after_collecting()
        for _ in range(CYCLES - 1):
            await cycle(server, token)
        last = traced_after_collecting()
    finally:
        tracemalloc.stop()
    closed_since = SOCKETS * (CYCLES - 1)
    assert last - first <= BYTES_PER_CLOSED_SOCKET * closed_since, (
        f"{(last - first) / closed_since:.0f} bytes more per socket closed after the first cycle"
    )
