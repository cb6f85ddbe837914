from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from services.config import ServerConfig
from tests.harness.ports import held_busy
from tests.harness.postgres_server import POSTGRES
from tests.harness.redis_cluster import ClusterServers
from tests.harness.redis_server import RedisServer, RedisTarget
from tests.harness.server import LiveServer, UserClient, make_config, sign_up, sign_up_admin

ServerFactory = Callable[..., Awaitable[LiveServer]]

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
settings.register_profile("ci", max_examples=40, deadline=None, suppress_health_check=_SLOW_OK, print_blob=True)
settings.register_profile("long", max_examples=1000, deadline=None, suppress_health_check=_SLOW_OK, print_blob=True)
settings.load_profile("ci")
"""Property-based suites talk to a real server, so no per-example deadline; CI runs a fixed
budget, `--hypothesis-profile=long` a deeper hunt. Suites that need another budget scale it."""


@pytest.fixture(scope="session", autouse=True)
def default_port_busy() -> Iterator[None]:
    """The default port (where the README's own server listens) is held busy for the whole run:
    a test that forgets to pick a free port fails here, every time, not only on the machine of
    someone who happens to run that server."""
    with held_busy(ServerConfig().port):
        yield


@pytest.fixture
async def start_server(tmp_path: Path) -> AsyncIterator[ServerFactory]:
    """Start the real app; keyword arguments are config overrides (`auth__access_ttl=3`)."""
    started: list[LiveServer] = []

    async def start(data_dir: Path | None = None, **overrides: Any) -> LiveServer:
        server = await LiveServer(make_config(data_dir or tmp_path / "data", **overrides)).start()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        await server.stop()


@pytest.fixture
async def api(start_server: ServerFactory) -> LiveServer:
    """A seeded server in embedded mode."""
    return await start_server()


@pytest.fixture
async def admin(api: LiveServer) -> UserClient:
    return await sign_up_admin(api)


@pytest.fixture
async def user(api: LiveServer) -> UserClient:
    return await sign_up(api, "alice")


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A fresh redis-server of our own on a free port, stopped by its pid afterwards."""
    server = await RedisServer(tmp_path / "redis").start()
    yield server
    await server.stop()


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """The URL of a new, empty database on a real PostgreSQL server started once for the run
    (tests/harness/postgres_server.py), dropped afterwards. Fault tests start servers of their own."""
    name = f"livevote_{uuid.uuid4().hex[:16]}"
    yield await asyncio.to_thread(POSTGRES.database, name)
    await POSTGRES.drop([name])


@pytest.fixture(params=["embedded", "redis"])
def redis_or_none(request: pytest.FixtureRequest) -> RedisServer | None:
    """Run a test in both modes: None in embedded mode, a redis-server of its own in scaled mode.

    A plain fixture, since an async one cannot ask for `redis_server` only when needed.
    """
    return request.getfixturevalue("redis_server") if request.param == "redis" else None


@pytest.fixture
async def redis_cluster(tmp_path: Path) -> AsyncIterator[ClusterServers]:
    """A fresh Redis Cluster of our own, 3 masters and 3 replicas on free ports (tests/harness/redis_cluster.py),
    healthy when the test starts, every node stopped by its pid afterwards."""
    cluster = await ClusterServers(tmp_path / "redis-cluster").start()
    yield cluster
    await cluster.stop()


@pytest.fixture(scope="session")
def run_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterServers]:
    """The run's one Redis Cluster (see `shared_cluster`), started on first use. Its processes
    belong to a loop of its own, run only to start and stop them."""
    loop = asyncio.new_event_loop()
    cluster = ClusterServers(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield loop.run_until_complete(cluster.start())
    finally:
        loop.run_until_complete(cluster.stop())
        loop.close()


@pytest.fixture
def shared_cluster(run_cluster: ClusterServers) -> ClusterServers:
    """A Redis Cluster for a test that never faults it: the run's one, emptied first (no key, no
    script: as a new one would be). A cluster takes over 2 s to start, and the store contracts
    alone ask for one 27 times; a test that kills or restarts nodes asks for `redis_cluster`."""
    run_cluster.empty()
    return run_cluster


@pytest.fixture(params=["embedded", "redis", "cluster"])
def redis_target(request: pytest.FixtureRequest) -> RedisTarget | None:
    """Run a store's test in all three modes: None embedded, a redis-server of its own, or the
    run's shared Redis Cluster (`shared_cluster`)."""
    if request.param == "embedded":
        return None
    if request.param == "redis":
        return RedisTarget(request.getfixturevalue("redis_server").url, cluster=False)
    return RedisTarget(request.getfixturevalue("shared_cluster").url, cluster=True)
