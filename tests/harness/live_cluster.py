"""livevote processes on one Redis Cluster, and a logout-all that must close sockets on all of them.

Each process is started on another node's URL (any node will do: the client discovers the rest).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from tests.harness.redis_cluster import ClusterServers
from tests.harness.server import UserClient
from tests.harness.server_process import ServerProcess, start_process, stop_process
from tests.harness.ws_client import LiveClient

FAST_VOTERS = {"ws.rate_limit": 10000, "ws.rate_burst": 10000}
"""Socket voters vote back to back, far above the default 20 ops/s of a page."""

PREFIX = "lv:"
"""The broker's key prefix: a subject's feed is the sharded channel lv:votes:{<sno>}."""


@contextlib.asynccontextmanager
async def cluster_processes(
    count: int, data_dir: Path, cluster: ClusterServers, nodes: Sequence[int] = (), /, **config: object
) -> AsyncIterator[list[ServerProcess]]:
    """`count` processes on one data dir and one cluster, each given another node's URL (any node
    will do: the client discovers the rest), or the node of `nodes` (ports) at its index. The
    first creates and seeds the store; the others start together once it has."""
    ports = [*nodes, *(port for port in cluster.running_ports if port not in nodes)]
    urls = [f"redis://127.0.0.1:{port}/0" for port in ports]
    started: list[ServerProcess] = []

    async def start(index: int) -> ServerProcess:
        server = await start_process(data_dir, urls[index % len(urls)], "--redis-cluster", **config)
        started.append(server)
        return server

    try:
        first = await start(0)
        rest = await asyncio.gather(*(start(index) for index in range(1, count)))
        yield [first, *rest]
    finally:
        await asyncio.gather(*(stop_process(server) for server in started))


async def log_out_everywhere(session: UserClient, sockets: Sequence[LiveClient]) -> tuple[float, list[float]]:
    """POST /api/auth/logout-all with this session's token: within 1 s of the response, each of
    `sockets` must get `revoked` and close 4003. Returns when the response came and when each
    socket closed, in seconds from the request."""
    loop = asyncio.get_running_loop()

    async def revoked(client: LiveClient) -> tuple[int | None, float]:
        message = await client.expect("revoked", timeout=30)
        assert message["reason"], message
        return await client.wait_closed(30), loop.time()

    watching = [asyncio.create_task(revoked(client)) for client in sockets]
    sent = loop.time()
    response = await session.request("POST", "/api/auth/logout-all")
    answered = loop.time()
    assert response.status == 204, response.body
    _, pending = await asyncio.wait(watching, timeout=max(answered + 1.0 - loop.time(), 0.0))
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    late = [index for index, task in enumerate(watching) if task in pending]
    assert not late, f"sockets {late} of {len(sockets)} were not revoked and closed within 1 s of the response"
    closed = [task.result() for task in watching]
    assert [code for code, _ in closed] == [4003] * len(sockets), closed
    assert max(at for _, at in closed) - answered < 1.0
    return answered - sent, [at - sent for _, at in closed]
