"""Latency of the account calls, one at a time: login, refresh, vote (REST), in embedded mode.

    python bench/auth.py [--rounds 50]

With the shipped argon2id cost (time 3, 64 MiB, parallelism 4), login is
dominated by the password check by design; refresh and vote show the
server's own overhead. The baseline in the same run is GET /healthz.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import livevote_process, percentile, prepare, report
from bench.httpload import JSON, PASSWORD, HttpConnection
from tests.harness.ports import free_port, wait_for_port


async def timed(samples: list[float], call: Awaitable[tuple[int, bytes]]) -> tuple[int, bytes]:
    started = time.perf_counter()
    status, body = await call
    samples.append(time.perf_counter() - started)
    return status, body


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    options = parser.parse_args()
    work, redis_process, _ = await prepare("auth")
    port = free_port()
    server = livevote_process("auth", work, port, None).start(work)
    try:
        await wait_for_port(port)
        connection = await HttpConnection.open(port)
        credentials = orjson.dumps({"username": "bench", "password": PASSWORD})
        await connection.request("POST", "/api/auth/register", credentials, JSON)
        samples: dict[str, list[float]] = {"healthz": [], "login": [], "refresh": [], "vote": []}
        for round_ in range(options.rounds):
            await timed(samples["healthz"], connection.request("GET", "/healthz"))
            _, body = await timed(samples["login"], connection.request("POST", "/api/auth/login", credentials, JSON))
            refresh = orjson.dumps({"refresh_token": orjson.loads(body)["refresh_token"]})
            _, body = await timed(samples["refresh"], connection.request("POST", "/api/auth/refresh", refresh, JSON))
            bearer = {**JSON, "Authorization": f"Bearer {orjson.loads(body)['access_token']}"}
            vote = orjson.dumps({"value": ("good", "bad")[round_ % 2]})
            await timed(samples["vote"], connection.request("PUT", "/api/teachers/1/vote", vote, bearer))
        await connection.close()
    finally:
        server.stop()
        redis_process.stop()
    baseline = percentile(samples["healthz"], 0.5)
    rows = [
        {"call": name, "p50 ms": 1000 * percentile(values, 0.5), "p99 ms": 1000 * percentile(values, 0.99),
         "p50 / healthz": percentile(values, 0.5) / baseline}
        for name, values in samples.items()
    ]
    report("auth", rows, ["call", "p50 ms", "p99 ms", "p50 / healthz"], rounds=options.rounds)


if __name__ == "__main__":
    asyncio.run(main())
