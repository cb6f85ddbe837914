"""The soak's faults, one every --fault-every s, the kinds in a new shuffled order each round: kill -9
of a worker, kill -9 of a Redis master, SIGHUP to nginx, and on a PostgreSQL store a restart of
PostgreSQL; each done when the deployment recovered."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
from dataclasses import dataclass, field
from time import monotonic as now

from bench.soak.probes import SpublishCalls, WorkerFeeds
from bench.soak.stack import WORKERS, Stack
from tests.harness.procfs import child_pids
from tests.harness.server import wait_for

POSTGRES_FAULT = "postgres"
FAULT_KINDS = ("worker", "redis", "nginx", POSTGRES_FAULT)
FAULT_TIMEOUT = 90.0
"""A fault not recovered by then is reported as failed (and fails the run)."""
NO_FAULT_TAIL = 5.0
"""No fault starts this close to the end of the voting time."""


@dataclass
class Fault:
    kind: str
    started: float
    target: str = ""
    recovered: float | None = None
    error: str | None = None


@dataclass
class Faults:
    """Injects the faults into `stack` and keeps what happened to each."""

    stack: Stack
    every: float
    kinds: tuple[str, ...]
    injected: list[Fault] = field(default_factory=list)

    async def run(self, start: float, end: float, feeds: WorkerFeeds, spublish: SpublishCalls) -> None:
        order: list[str] = []
        number = 1
        while (due := start + number * self.every) < end - NO_FAULT_TAIL:
            await asyncio.sleep(max(due - now(), 0))
            if not order:
                order = random.sample(self.kinds, len(self.kinds))
            fault = Fault(order.pop(), now())
            self.injected.append(fault)
            inject = {"worker": self.kill_worker, "redis": self.kill_master, "nginx": self.reload_nginx,
                      POSTGRES_FAULT: self.restart_postgres}[fault.kind]
            try:
                await asyncio.wait_for(inject(fault, feeds, spublish), FAULT_TIMEOUT)
            except Exception as error:
                fault.error = f"{type(error).__name__}: {error}"
            fault.recovered = now()
            print(f"  {fault.started - start:6.1f} s  {fault.kind:6}  {fault.target}: "
                  f"{'recovered' if fault.error is None else 'FAILED ' + fault.error} "
                  f"in {fault.recovered - fault.started:.2f} s", flush=True)
            number += 1

    async def kill_worker(self, fault: Fault, feeds: WorkerFeeds, _spublish: SpublishCalls) -> None:
        victim = random.choice(self.stack.workers())
        fault.target = f"worker {victim}"
        await feeds.scrape()  # its count of feed messages, up to now
        listening = self.stack.listening()
        os.kill(victim, signal.SIGKILL)

        async def replaced() -> list[int]:
            workers = self.stack.workers()
            ok = victim not in workers and len(workers) == WORKERS and self.stack.listening() > listening
            return workers if ok else []

        workers = await wait_for(replaced, timeout=30, what="a new worker in place of the killed one")
        fault.target += f" -> {sorted(set(workers) - set(feeds.connections))}"
        await feeds.connect(workers)

    async def kill_master(self, fault: Fault, _feeds: WorkerFeeds, spublish: SpublishCalls) -> None:
        cluster = self.stack.cluster
        assert cluster is not None
        masters = [node for node in await cluster.nodes() if node.role == "master" and node.running and node.slots]
        victim = random.choice(masters)
        fault.target = f"master :{victim.port}"
        await spublish.scrape()
        await cluster.kill(victim.port)
        successor = await cluster.wait_failover(victim.port, victim.slots[0][0], timeout=30)
        fault.target += f" -> :{successor}, rejoined as replica"
        await cluster.restart(victim.port, timeout=30)

    async def reload_nginx(self, fault: Fault, _feeds: WorkerFeeds, _spublish: SpublishCalls) -> None:
        nginx = self.stack.nginx
        assert nginx is not None and nginx.process is not None
        master = nginx.process.pid
        before = set(child_pids(master))
        fault.target = f"nginx {master} (SIGHUP)"
        os.kill(master, signal.SIGHUP)

        async def reloaded() -> bool:
            if not set(child_pids(master)) - before:
                return False
            with contextlib.suppress(Exception):
                return (await nginx.get("/healthz", request_timeout=2)).status == 200
            return False

        await wait_for(reloaded, timeout=30, what="nginx reloaded")

    async def restart_postgres(self, fault: Fault, _feeds: WorkerFeeds, _spublish: SpublishCalls) -> None:
        """A planned restart (clients disconnected, a checkpoint): every pooled connection breaks, so
        requests meanwhile are 503s until the pools reconnect; done when /readyz, which pings the
        store, answers 200 through nginx again."""
        postgres, nginx = self.stack.postgres, self.stack.nginx
        assert postgres is not None and nginx is not None
        fault.target = f"postgresql :{postgres.port} (stop -m fast, start)"
        await postgres.stop("fast")
        await postgres.start()

        async def ready() -> bool:
            with contextlib.suppress(Exception):
                return (await nginx.get("/readyz", request_timeout=2)).status == 200
            return False

        await wait_for(ready, timeout=30, what="/readyz 200 after the PostgreSQL restart")
