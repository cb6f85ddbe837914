"""End to end: a vote cast over a socket until every subscriber has it, embedded and Redis modes.

    python bench/e2e.py [--sockets 1000] [--rates 50,100,200,400]

One voter socket switches teacher 1 between good and bad at a steady rate;
each vote bumps the teacher's version by one, so the version names the vote
and the client times it from the moment it was sent to its arrival on a
sample of the C subscribed sockets. Unlike bench/fanout.py (updates put
straight onto Redis) this includes the store's commit and the publish, and it
runs in embedded mode too, with the in-process broker.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CpuMeter, livevote_process, percentile, prepare, report, table
from bench.fanout import SAMPLED
from bench.httpload import sign_in
from bench.wsload import WsClient, connect
from tests.harness.ports import free_port, wait_for_port

COLUMNS = ["mode", "sockets", "rate", "delivered/s", "delivered %", "p50 ms", "p99 ms", "server cpu %"]


async def subscriber(port: int, token: str, on_version: Callable[[int], None]) -> tuple[WsClient, int]:
    """A socket on teacher:1, and the version its snapshot showed."""
    client = await connect(port, "/ws", {"Sec-WebSocket-Protocol": f"livevote.v1, bearer.{token}"})
    ready = asyncio.get_running_loop().create_future()

    def on_text(payload: bytes) -> None:
        if payload.startswith(b'{"type":"votes"'):
            on_version(orjson.loads(payload)["updates"][0]["version"])
        elif payload.startswith(b'{"type":"snapshot"') and not ready.done():
            ready.set_result(orjson.loads(payload)["teachers"][0]["version"])

    client.on_text = on_text
    client.send_text(b'{"op":"subscribe","channel":"teacher:1"}')
    return client, int(await asyncio.wait_for(ready, 60))


async def measure(
    mode: str, port: int, pid: int, sockets: int, rates: list[int], seconds: float
) -> list[dict[str, Any]]:
    token = await sign_in(port)
    sent_at: dict[int, float] = {}
    latencies: list[float] = []
    received = [0]

    def timing(version: int) -> None:
        sent = sent_at.get(version)
        if sent is not None:
            latencies.append(time.perf_counter() - sent)

    def counting(version: int) -> None:
        received[0] += 1

    clients, version = [], 0
    limit = asyncio.Semaphore(200)

    async def one(index: int) -> None:
        nonlocal version
        async with limit:
            client, version = await subscriber(port, token, timing if index < SAMPLED else counting)
            clients.append(client)

    await asyncio.gather(*(one(index) for index in range(sockets)))
    voter = await connect(port, "/ws", {"Sec-WebSocket-Protocol": f"livevote.v1, bearer.{token}"})
    rows = []
    for rate in rates:
        latencies.clear()
        received[0] = 0
        count = int(rate * seconds)
        cpu = CpuMeter(pid)
        cpu.start()
        started = time.perf_counter()
        for index in range(count):
            delay = started + index / rate - time.perf_counter()
            if delay > 0.002:
                await asyncio.sleep(delay)
            version += 1
            sent_at[version] = time.perf_counter()
            voter.send_text(orjson.dumps({"op": "vote", "teacher": 1, "value": ("good", "bad")[version % 2]}))
        elapsed = time.perf_counter() - started
        deadline = time.perf_counter() + 3
        # Polled, not an Event: setting one would add a check to each of the count * sockets deliveries
        # on this client, which shares the CPU with the server it measures; `elapsed` is already taken.
        while received[0] + len(latencies) < count * sockets and time.perf_counter() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        delivered = received[0] + len(latencies)
        rows.append({
            "mode": mode, "sockets": sockets, "rate": rate, "delivered/s": delivered / elapsed,
            "delivered %": 100 * delivered / (count * sockets), "p50 ms": 1000 * percentile(latencies, 0.5),
            "p99 ms": 1000 * percentile(latencies, 0.99), "server cpu %": cpu.stop(),
        })
        print(table(rows[-1:], COLUMNS), flush=True)
    for client in [*clients, voter]:
        client.close()
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--rates", default="50,100,200,400")
    parser.add_argument("--step", type=float, default=3.0)
    options = parser.parse_args()
    work, redis_process, redis_url = await prepare("e2e")
    rows = []
    try:
        for mode, url in (("embedded", None), ("redis", redis_url)):
            port = free_port()
            server = livevote_process(f"e2e-{mode}", work, port, url, ws__coalesce_ms=0, ws__rate_limit=100000,
                                      ws__rate_burst=100000).start(work)
            try:
                await wait_for_port(port)
                rates = [int(rate) for rate in options.rates.split(",")]
                rows += await measure(mode, port, server.pid, options.sockets, rates, options.step)
            finally:
                server.stop()
    finally:
        redis_process.stop()
    report("e2e", rows, COLUMNS)


if __name__ == "__main__":
    asyncio.run(main())
