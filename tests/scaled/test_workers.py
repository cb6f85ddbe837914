"""`--workers N` heals: the parent replaces a worker that dies, gives up past its bound of
restarts, stops every worker on SIGTERM, and no worker outlives it. Real `python server.py
--workers 2` processes on a real redis-server, real kill -9, /proc for who holds what.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

from services.workers import MAX_RESTARTS, RESTART_WINDOW, RestartBudget
from tests.harness.procfs import alive, child_pids, socket_owner
from tests.harness.redis_server import RedisServer
from tests.harness.server import wait_for
from tests.harness.server_process import ServerProcess, start_process, stop_process

REPLACED_WITHIN = 2.0
"""Seconds from kill -9 of a worker until a new one answers requests."""


async def start_workers(tmp_path: Path, redis_server: RedisServer) -> ServerProcess:
    """`python server.py --workers 2`, once both workers listen."""
    server = await start_process(tmp_path / "host", redis_server.url, "--workers", "2")
    await wait_for(lambda: listening(server, 2), timeout=20)
    return server


async def listening(server: ServerProcess, count: int) -> bool:
    return sum("listening on" in line for line in server.lines) >= count


def workers_of(server: ServerProcess) -> list[int]:
    assert server.process is not None
    return child_pids(server.process.pid)


async def kill_and_wait_reaped(server: ServerProcess, pid: int) -> None:
    """kill -9 one worker and wait until the parent has reaped it (so it can accept nothing more)."""
    os.kill(pid, signal.SIGKILL)

    async def reaped() -> bool:
        return server.process is not None and (server.process.returncode is not None or pid not in workers_of(server))

    await wait_for(reaped, timeout=5, interval=0.005)


async def healthz_on_own_connection(port: int) -> tuple[int, asyncio.StreamWriter]:
    """GET /healthz on a new keep-alive connection, left open so /proc can tell which process holds it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    status = await asyncio.wait_for(reader.readline(), 5)
    assert status.startswith(b"HTTP/1.1 200"), status
    return int(writer.get_extra_info("sockname")[1]), writer


async def test_a_killed_worker_is_replaced_and_serves_within_2_s(tmp_path: Path, redis_server: RedisServer) -> None:
    server = await start_workers(tmp_path, redis_server)
    connections: list[asyncio.StreamWriter] = []
    try:
        before = workers_of(server)
        assert len(before) == 2, before
        victim, survivor = before

        killed_at = time.monotonic()
        await kill_and_wait_reaped(server, victim)
        for _ in range(50):
            assert (await server.get("/healthz")).status == 200, "requests keep succeeding on the survivor"

        async def replaced() -> list[int]:
            return [pid for pid in workers_of(server) if pid not in before]

        (new,) = await wait_for(replaced, timeout=REPLACED_WITHIN, interval=0.01)

        async def new_worker_answers() -> bool:
            port, writer = await healthz_on_own_connection(server.port)
            connections.append(writer)
            assert len(connections) < 200, "200 connections and none served by the new worker"
            return socket_owner([survivor, new], server.port, port) == new

        await wait_for(new_worker_answers, timeout=REPLACED_WITHIN, interval=0.01)
        serving_after = time.monotonic() - killed_at
        print(f"\nFIGURES kill -9 to the new worker answering: {serving_after * 1000:.0f} ms"
              f" ({len(connections)} connection(s) until one landed on it)")
        assert serving_after < REPLACED_WITHIN
        assert workers_of(server) == sorted([survivor, new])
        await server.wait_for_line(f"worker {victim} died: killed by SIGKILL")
        await server.wait_for_line(f"worker {new} started in place of {victim}")

        for writer in connections:
            writer.close()
            await writer.wait_closed()
        connections.clear()
        assert await stop_process(server, timeout=10) == 0
        outlived = [pid for pid in (victim, survivor, new) if Path(f"/proc/{pid}").exists()]
        assert not outlived, "a worker outlived the parent"
        assert sum("started in place of" in line for line in server.lines) == 1, "no restarts while stopping"
    finally:
        for writer in connections:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        await server.stop()


async def test_the_parent_gives_up_past_the_bound_of_restarts(tmp_path: Path, redis_server: RedisServer) -> None:
    server = await start_workers(tmp_path, redis_server)
    try:
        victims: list[int] = []
        for death in range(1, MAX_RESTARTS + 2):
            victim = next(pid for pid in workers_of(server) if pid not in victims)
            victims.append(victim)
            await kill_and_wait_reaped(server, victim)
            if death <= MAX_RESTARTS:

                async def replaced() -> bool:
                    return len(workers_of(server)) == 2

                await wait_for(replaced, timeout=REPLACED_WITHIN)

        assert await server.wait_exit(15) == 1
        assert len([line for line in server.lines if "started in place of" in line]) == MAX_RESTARTS
        (line,) = [line for line in server.lines if "giving up" in line]
        assert f"after {MAX_RESTARTS} restarts within {RESTART_WINDOW:.0f} s" in line
        assert "ERROR" in line
        assert not [pid for pid in victims if alive(pid)]
        assert not [line for line in server.lines if "Traceback" in line]
    finally:
        await server.stop()


async def test_a_worker_stopped_on_purpose_is_not_replaced(tmp_path: Path, redis_server: RedisServer) -> None:
    """Exit 0 is a deliberate stop (tornado's rule too): the parent runs on with the rest."""
    server = await start_workers(tmp_path, redis_server)
    try:
        stopped, other = workers_of(server)
        os.kill(stopped, signal.SIGTERM)
        await server.wait_for_line(f"worker {stopped} exited 0 on its own; not replaced (1 left)")
        assert workers_of(server) == [other]
        assert (await server.get("/healthz")).status == 200
        assert await stop_process(server, timeout=10) == 0
        assert not alive(other)
    finally:
        await server.stop()


async def test_workers_die_with_the_parent(tmp_path: Path, redis_server: RedisServer) -> None:
    """Even kill -9 of the parent, which forwards nothing, leaves no worker serving (PR_SET_PDEATHSIG)."""
    server = await start_workers(tmp_path, redis_server)
    try:
        workers = workers_of(server)
        await server.stop()  # SIGKILL

        async def all_gone() -> bool:
            return not any(alive(pid) for pid in workers)

        await wait_for(all_gone, timeout=5)
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        except ConnectionRefusedError:
            pass
        else:
            writer.close()
            raise AssertionError("the port still accepts connections")
    finally:
        await server.stop()


def test_restart_budget_is_a_sliding_window() -> None:
    budget = RestartBudget(limit=2, window=10.0)
    assert budget.take(0.0) and budget.take(1.0)
    assert not budget.take(9.0), "a third within 10 s"
    assert budget.take(10.0), "the one at 0.0 has left the window"
    assert not budget.take(10.5)
    assert budget.take(11.0) and not budget.take(11.0)
