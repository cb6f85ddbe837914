"""Token storm: N sockets whose access tokens expire within the same second.

    python bench/tokens.py [--sockets 10000] [--ttl 60] [--ahead 20]

Every socket connects with the same access token, so all of them expire
together; the TokenClock spreads their pushes over the earlier half of the
`refresh_ahead` window. Measured from the server's own /metrics: event-loop lag
(p99) while the pushes go out, against the same server idle with the same
sockets just before (the baseline); and, in scaled mode, Redis commands per
pushed token, from Redis's INFO commandstats.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import redis.asyncio as redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CpuMeter, bucket_bound, livevote_process, prepare, report, table
from bench.connect import storm
from bench.httpload import HttpConnection, sign_in
from bench.wsload import open_subscribed
from tests.harness.metrics import sample
from tests.harness.ports import free_port, wait_for_port

COLUMNS = ["mode", "sockets", "phase", "seconds", "pushes", "lag p99 ms", "lag max bucket ms", "server cpu %",
           "redis cmds/push"]


async def scrape(port: int) -> tuple[dict[float, float], float]:
    """The loop-lag histogram's cumulative buckets and the token pushes counter."""
    connection = await HttpConnection.open(port)
    _, body = await connection.request("GET", "/metrics")
    await connection.close()
    text = body.decode()
    buckets = {
        float("inf") if bound == "+Inf" else float(bound): float(count)
        for bound, count in re.findall(r'livevote_event_loop_lag_seconds_bucket\{le="([^"]+)"\} (\S+)', text)
    }
    pushes = sample(text, "livevote_token_pushes_total")
    return buckets, pushes


def lag_p99(before: dict[float, float], after: dict[float, float]) -> tuple[float, float]:
    """p99 and the highest occupied bucket of the lag observed between two scrapes (bucket upper bounds)."""
    deltas = {bound: after[bound] - before.get(bound, 0.0) for bound in sorted(after)}
    p99 = bucket_bound(deltas, 0.99)
    highest, previous = 0.0, 0.0
    for bound, count in deltas.items():
        if count > previous:
            highest = bound
        previous = count
    return 1000 * p99, 1000 * highest


async def redis_calls(client: redis.Redis | None) -> float:
    if client is None:
        return 0.0
    stats = await client.info("commandstats")
    return float(sum(entry["calls"] for name, entry in stats.items() if name.startswith("cmdstat_")))


async def phase(name: str, port: int, pid: int, seconds: float, redis_client: redis.Redis | None) -> dict[str, Any]:
    cpu = CpuMeter(pid)
    buckets, pushes = await scrape(port)
    calls = await redis_calls(redis_client)
    cpu.start()
    await asyncio.sleep(seconds)
    after_buckets, after_pushes = await scrape(port)
    pushed = after_pushes - pushes
    p99, highest = lag_p99(buckets, after_buckets)
    return {
        "phase": name, "seconds": seconds, "pushes": int(pushed), "lag p99 ms": p99, "lag max bucket ms": highest,
        "server cpu %": cpu.stop(),
        "redis cmds/push": (
            ((await redis_calls(redis_client)) - calls - 2) / pushed if redis_client and pushed else None
        ),
    }


async def measure(
    mode: str, work: Path, redis_url: str | None, sockets: int, ttl: int, ahead: int
) -> list[dict[str, Any]]:
    port = free_port()
    server = livevote_process(f"tokens-{mode}", work, port, redis_url, auth__access_ttl=ttl,
                              auth__refresh_ahead=ahead, ws__ping_interval=0).start(work)
    redis_client = redis.Redis.from_url(redis_url) if redis_url else None
    try:
        await wait_for_port(port)
        token = await sign_in(port)
        expires_at = jwt.decode(token, options={"verify_signature": False})["exp"]
        clients, opened = await storm(sockets, lambda: open_subscribed(port, token))
        print(f"{mode}: {len(clients)} sockets open in {opened['all subscribed s']:.1f} s", flush=True)
        storm_starts = expires_at - ahead - 0.5
        idle = max(min(storm_starts - time.time() - 1, 10.0), 1.0)
        rows = [await phase("idle (baseline)", port, server.pid, idle, redis_client)]
        await asyncio.sleep(max(storm_starts - time.time(), 0))
        rows.append(await phase("token storm", port, server.pid, ahead / 2 + 1, redis_client))
        for client in clients:
            client.close()
        for row in rows:
            row.update(mode=mode, sockets=len(clients))
        print(table(rows, COLUMNS), flush=True)
        return rows
    finally:
        if redis_client is not None:
            await redis_client.aclose()
        server.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=10000)
    parser.add_argument("--ttl", type=int, default=60, help="access token lifetime, seconds")
    parser.add_argument("--ahead", type=int, default=20, help="auth.refresh_ahead, seconds")
    options = parser.parse_args()
    work, redis_process, redis_url = await prepare("tokens")
    try:
        rows = await measure("embedded", work, None, options.sockets, options.ttl, options.ahead)
        rows += await measure("redis", work, redis_url, options.sockets, options.ttl, options.ahead)
    finally:
        redis_process.stop()
    report("tokens", rows, COLUMNS)


if __name__ == "__main__":
    asyncio.run(main())
