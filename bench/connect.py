"""Connection storms and idle memory.

    python bench/connect.py [--storm 5000] [--idle 10000]

1. `--storm` sockets connect, authenticate and subscribe at once: the time until
   all are subscribed, failures, and per-socket connect latency.
2. `--idle` authenticated, subscribed sockets held open: RSS per socket.
The baseline in the same run is a bare `websockets` server (no auth, no
subscription): the same two measurements.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Process, livevote_process, percentile, prepare, report, table
from bench.httpload import sign_in
from bench.wsload import WsClient, connect, open_subscribed
from tests.harness.ports import free_port, wait_for_port
from tests.harness.procfs import rss_kib

COLUMNS = ["target", "sockets", "all subscribed s", "failures", "p50 ms", "p99 ms", "idle sockets", "RSS/socket KiB"]


async def storm(count: int, opener: Any) -> tuple[list[WsClient], dict[str, Any]]:
    latencies: list[float] = []
    clients: list[WsClient] = []
    failures = 0

    async def one() -> None:
        nonlocal failures
        started = time.perf_counter()
        try:
            clients.append(await opener())
        except (OSError, TimeoutError) as error:
            failures += 1
            if failures <= 3:
                print(f"  failed: {error!r}", flush=True)
            return
        latencies.append(time.perf_counter() - started)

    began = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return clients, {
        "all subscribed s": time.perf_counter() - began, "failures": failures,
        "p50 ms": 1000 * percentile(latencies, 0.5), "p99 ms": 1000 * percentile(latencies, 0.99),
    }


async def measure(name: str, process: Process, opener: Any, storm_size: int, idle: int) -> dict[str, Any]:
    before = rss_kib(process.pid)
    clients, row = await storm(storm_size, opener)
    more, _ = await storm(max(idle - len(clients), 0), opener)
    clients += more
    await asyncio.sleep(2.0)
    row.update({
        "target": name, "sockets": storm_size, "idle sockets": len(clients),
        "RSS/socket KiB": (rss_kib(process.pid) - before) / max(len(clients), 1),
    })
    for client in clients:
        client.close()
    print(table([row], COLUMNS), flush=True)
    return row


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storm", type=int, default=5000)
    parser.add_argument("--idle", type=int, default=10000)
    parser.add_argument("--redis", action="store_true", help="scaled mode (sessions in Redis)")
    options = parser.parse_args()
    work, redis_process, redis_url = await prepare("connect")
    rows = []
    try:
        port = free_port()
        server = livevote_process("livevote", work, port, redis_url if options.redis else None).start(work)
        await wait_for_port(port)
        token = await sign_in(port)
        rows.append(await measure("livevote", server, lambda: open_subscribed(port, token), options.storm,
                                  options.idle))
        server.stop()

        port = free_port()
        peer = Process("websockets", [sys.executable, "bench/peers/websockets_server.py", "--port", str(port),
                                      "--redis-url", redis_url]).start(work)
        await wait_for_port(port)
        rows.append(await measure("websockets", peer, lambda: connect(port, "/"), options.storm, options.idle))
        peer.stop()
    finally:
        redis_process.stop()
    report("connect", rows, COLUMNS)


if __name__ == "__main__":
    asyncio.run(main())
