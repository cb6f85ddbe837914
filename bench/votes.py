"""Vote ingestion: votes per second one process accepts, over REST and over the socket.

    python bench/votes.py [--clients 50] [--seconds 5]

Each client is one user on one keep-alive connection, voting in a loop (good,
bad, withdraw, on teachers in turn, so that every vote changes a count and is
committed). Measured in embedded mode (SQLite sessions, in-process broker) and
scaled mode (Redis). The baseline in the same run is GET /healthz on the same
server and connections: the HTTP ceiling that a vote's work is compared with.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CpuMeter, livevote_process, percentile, prepare, report, table
from bench.httpload import HttpConnection, sign_in
from bench.wsload import connect
from tests.harness.ports import free_port, wait_for_port

VALUES = ("good", "bad", None)
TEACHERS = range(1, 16)
COLUMNS = ["mode", "via", "clients", "ops/s", "ratio to healthz", "p50 ms", "p99 ms", "errors", "server cpu %",
           "client cpu %"]

Operation = Callable[[int], Awaitable[bool]]


async def rest_client(port: int, token: str, vote: bool) -> tuple[Operation, Callable[[], Awaitable[None]]]:
    connection = await HttpConnection.open(port)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    async def operation(step: int) -> bool:
        if not vote:
            status, _ = await connection.request("GET", "/healthz")
            return status == 200
        teacher, value = TEACHERS[step // 3 % len(TEACHERS)], VALUES[step % 3]
        if value is None:
            status, _ = await connection.request("DELETE", f"/api/teachers/{teacher}/vote", b"", headers)
        else:
            body = orjson.dumps({"value": value})
            status, _ = await connection.request("PUT", f"/api/teachers/{teacher}/vote", body, headers)
        return status == 200

    return operation, connection.close


async def socket_client(port: int, token: str) -> tuple[Operation, Callable[[], Awaitable[None]]]:
    client = await connect(port, "/ws", {"Sec-WebSocket-Protocol": f"livevote.v1, bearer.{token}"})
    replies: asyncio.Queue[bytes] = asyncio.Queue()
    client.on_text = lambda payload: None if payload.startswith(b'{"type":"welcome"') else replies.put_nowait(payload)

    async def operation(step: int) -> bool:
        teacher, value = TEACHERS[step // 3 % len(TEACHERS)], VALUES[step % 3]
        client.send_text(orjson.dumps({"op": "vote", "id": step, "teacher": teacher, "value": value}))
        return (await replies.get()).startswith(b'{"type":"ack"')

    async def close() -> None:
        client.close()

    return operation, close


async def run(clients: list[Operation], seconds: float, server_pid: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def loop(operation: Operation) -> None:
        nonlocal errors
        for step in itertools.count():
            if time.perf_counter() >= stop_at:
                return
            started = time.perf_counter()
            ok = await operation(step)
            latencies.append(time.perf_counter() - started)
            errors += not ok

    server_cpu, client_cpu = CpuMeter(server_pid), CpuMeter(os.getpid())
    server_cpu.start()
    client_cpu.start()
    began = time.perf_counter()
    await asyncio.gather(*(loop(operation) for operation in clients))
    elapsed = time.perf_counter() - began
    return {
        "ops/s": len(latencies) / elapsed, "p50 ms": 1000 * percentile(latencies, 0.5),
        "p99 ms": 1000 * percentile(latencies, 0.99), "errors": errors,
        "server cpu %": server_cpu.stop(), "client cpu %": client_cpu.stop(),
    }


async def measure_mode(
    mode: str, work: Path, redis_url: str | None, clients: int, seconds: float
) -> list[dict[str, Any]]:
    port = free_port()
    server = livevote_process(f"votes-{mode}", work, port, redis_url, ws__rate_limit=100000, ws__rate_burst=100000,
                              auth__argon2_memory_kib=8192, auth__argon2_time_cost=1).start(work)
    rows = []
    try:
        await wait_for_port(port)
        tokens = [await sign_in(port, f"bench{index}") for index in range(clients)]
        plans: list[tuple[str, Callable[[str], Awaitable[tuple[Operation, Callable[[], Awaitable[None]]]]]]] = [
            ("healthz", lambda token: rest_client(port, token, vote=False)),
            ("REST PUT/DELETE", lambda token: rest_client(port, token, vote=True)),
            ("socket vote op", lambda token: socket_client(port, token)),
        ]
        baseline = None
        for via, make in plans:
            opened = [await make(token) for token in tokens]
            result = await run([operation for operation, _ in opened], seconds, server.pid)
            for _, close in opened:
                await close()
            baseline = baseline or result["ops/s"]
            row = {"mode": mode, "via": via, "clients": clients, "ratio to healthz": result["ops/s"] / baseline,
                   **result}
            print(table([row], COLUMNS), flush=True)
            rows.append(row)
    finally:
        server.stop()
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    options = parser.parse_args()
    work, redis_process, redis_url = await prepare("votes")
    try:
        rows = await measure_mode("embedded", work, None, options.clients, options.seconds)
        rows += await measure_mode("redis", work, redis_url, options.clients, options.seconds)
    finally:
        redis_process.stop()
    report("votes", rows, COLUMNS)


if __name__ == "__main__":
    asyncio.run(main())
