"""What the soak reads while it runs: each worker's feed messages (/metrics on a connection /proc
says it holds), each cluster node's SPUBLISH calls, and the workers' memory."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from time import monotonic as now

import redis.asyncio as redis

from bench.httpload import HttpConnection
from tests.harness.metrics import FEED_MESSAGES, find_sample
from tests.harness.procfs import rss_kib, socket_owner
from tests.harness.redis_cluster import ClusterServers


class WorkerFeeds:
    """livevote_vote_feed_messages_total of each worker, each asked on a connection it holds:
    the workers share one port, so /proc tells which one accepted which connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connections: dict[int, HttpConnection] = {}
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.counting = False

    async def connect(self, pids: list[int], timeout: float = 20.0) -> None:
        deadline = now() + timeout
        while missing := set(pids) - set(self.connections):
            if now() > deadline:
                raise TimeoutError(f"no connection landed on worker(s) {sorted(missing)} within {timeout} s")
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            connection = HttpConnection(reader, writer, self.port)
            owner = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.request("GET", "/healthz"), 5)
                owner = socket_owner(sorted(missing), self.port, int(writer.get_extra_info("sockname")[1]))
            if owner is None:
                await _close(connection)
            else:
                self.connections[owner] = connection

    async def scrape(self) -> None:
        """Each worker's count; a connection its worker closed meanwhile (server.idle_timeout, 60 s,
        no longer than the time between two faults) is opened again and asked again, else that
        worker's count would stay where it was."""
        closed = [pid for pid in list(self.connections) if not await self._scrape(pid)]
        alive = [pid for pid in closed if Path(f"/proc/{pid}").exists()]
        with contextlib.suppress(TimeoutError):
            await self.connect(alive)
        for pid in alive:
            await self._scrape(pid)

    async def _scrape(self, pid: int) -> bool:
        """False when the connection failed (it is then dropped)."""
        connection = self.connections.get(pid)
        if connection is None:
            return False
        try:
            status, body = await asyncio.wait_for(connection.request("GET", "/metrics"), 5)
            value = find_sample(body.decode(), FEED_MESSAGES)
        except Exception:
            del self.connections[pid]
            await _close(connection)
            return False
        if status == 200 and value is not None:
            self.last[pid] = value
            if pid not in self.first:
                self.first[pid] = 0.0 if self.counting else value  # a worker started during the run counts from 0
        return True

    @property
    def total(self) -> float:
        return sum(self.last[pid] - self.first[pid] for pid in self.last)

    async def close(self) -> None:
        for connection in self.connections.values():
            await _close(connection)
        self.connections.clear()


async def _close(connection: HttpConnection) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(connection.close(), 2)


class SpublishCalls:
    """cmdstat_spublish calls of every node, by (port, run_id): a restarted node starts from 0."""

    def __init__(self, cluster: ClusterServers) -> None:
        self.cluster = cluster
        self.first: dict[tuple[int, str], int] = {}
        self.last: dict[tuple[int, str], int] = {}
        self.counting = False

    async def scrape(self) -> None:
        for port in self.cluster.running_ports:
            client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2)
            try:
                server = await client.info("server")
                stats = await client.info("commandstats")
            except (redis.RedisError, OSError):
                continue
            finally:
                await client.aclose()
            key = (port, str(server["run_id"]))
            calls = int(stats.get("cmdstat_spublish", {}).get("calls", 0))
            self.last[key] = calls
            if key not in self.first:
                self.first[key] = 0 if self.counting else calls

    @property
    def total(self) -> int:
        return sum(self.last[key] - self.first[key] for key in self.last)


async def sample_rss(workers: Callable[[], list[int]], samples: list[tuple[float, int, int]]) -> None:
    """(when, pid, VmRSS in KiB) of each worker, every second, until cancelled."""
    while True:
        at = now()
        for pid in workers():
            with contextlib.suppress(OSError, AssertionError):
                samples.append((at, pid, rss_kib(pid)))
        await asyncio.sleep(1.0)
