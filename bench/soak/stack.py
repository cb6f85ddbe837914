"""The deployment under soak, on free ports in one work dir: a Redis Cluster of 3 masters and 3
replicas, `python server.py --workers 3 --redis-cluster` (server.xheaders on) and nginx from
deploy/nginx.conf in front of it over TLS, and with --store postgresql a throwaway PostgreSQL
(its own temp dir, which the postgres user can reach); started, and stopped, whole."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness.environment import ONE_CLIENT_MANY_SOCKETS, server_env
from tests.harness.nginx import Nginx
from tests.harness.postgres_server import PostgresServer
from tests.harness.procfs import child_pids
from tests.harness.redis_cluster import ClusterServers
from tests.harness.server import wait_for
from tests.harness.server_process import ServerProcess, stop_process

WORKERS = 3


@dataclass
class Stack:
    work: Path
    store: str = "sqlite"
    cluster: ClusterServers | None = None
    postgres: PostgresServer | None = None
    server: ServerProcess | None = None
    nginx: Nginx | None = None
    server_exit: int | None = None
    """The supervisor's exit code after SIGTERM: whether each worker stopped cleanly."""

    async def start(self, accounts: int) -> None:
        """Everything, with room in the registration budget for `accounts` users."""
        print(f"work dir {self.work}", flush=True)
        self.cluster = await ClusterServers(self.work / "cluster").start()
        store: tuple[str, ...] = ()
        if self.store == "postgresql":
            self.postgres = PostgresServer()  # kept before it starts, so that an interrupted start is removed too
            await self.postgres.start()
            store = ("--store", await self.postgres.create_database("livevote"))
        env = server_env(**{"server.xheaders": "true", "auth.register_attempts": accounts + 10,
                            **ONE_CLIENT_MANY_SOCKETS})
        self.server = ServerProcess(  # kept before it starts, so that an interrupted start is stopped too
            "--data-dir", str(self.work / "data"), "--redis-url", self.cluster.url, "--redis-cluster",
            "--workers", str(WORKERS), *store, env=env,
        )
        await self.server.start(timeout=60)
        await wait_for(self._all_listening, timeout=60, what=f"{WORKERS} workers listening")
        (self.work / "nginx").mkdir()
        self.nginx = await Nginx(self.work / "nginx", [self.server.port]).start(timeout=20)
        postgres = f", PostgreSQL on {self.postgres.port}" if self.postgres is not None else ""
        print(f"cluster on {self.cluster.ports}{postgres}, server on {self.server.port} (workers {self.workers()}), "
              f"nginx on {self.nginx.port}", flush=True)

    def workers(self) -> list[int]:
        assert self.server is not None and self.server.process is not None
        return child_pids(self.server.process.pid)

    async def _all_listening(self) -> bool:
        return self.listening() >= WORKERS

    def listening(self) -> int:
        """How many workers have logged that they listen, since the start (killed ones included)."""
        assert self.server is not None
        return sum("listening on http://" in line for line in self.server.lines)

    async def stop(self) -> None:
        """nginx, the server, the cluster, PostgreSQL: whichever were started, whatever state they are in."""
        steps: list[Callable[[], Awaitable[Any]]] = []
        if self.nginx is not None:
            steps.append(self.nginx.stop)
        if self.server is not None:
            steps.append(self._stop_server)
        if self.cluster is not None:
            steps.append(self.cluster.stop)
        if self.postgres is not None:
            steps.append(self.postgres.destroy)
        for step in steps:
            with contextlib.suppress(Exception):
                await step()

    async def _stop_server(self) -> None:
        """SIGTERM to the supervisor, which stops its workers gracefully; its exit code says whether
        each of them stopped cleanly."""
        assert self.server is not None
        try:
            self.server_exit = await stop_process(self.server, timeout=25)
        finally:
            await self.server.stop()

    def server_problems(self) -> list[str]:
        """The server's log lines at ERROR level and the last line of each traceback."""
        assert self.server is not None
        lines, problems = self.server.lines, []
        for index, line in enumerate(lines):
            if " ERROR " in line:
                problems.append(line)
            elif line.startswith("Traceback"):
                end = next((i for i in range(index + 1, len(lines)) if lines[i] and not lines[i][0].isspace()), None)
                if end is not None:
                    problems.append("  " + lines[end])
        return problems
