"""Fan-out: C sockets subscribed to one subject, updates published at rising rates.

    python bench/fanout.py [--sockets 200,1000] [--rates 100,200,...] [--step 3]

Targets, in one run, same machine, same Redis, same message size, same client:
livevote (coalescing off, then on), python-socketio's AsyncServer with
AsyncRedisManager, and a bare `websockets` server with websockets.broadcast().
Updates go straight onto each server's Redis channel, each one numbered; the
client (this process, core 1) times every update on a sample of sockets from
the moment it published it. Per step: updates delivered per second, latency
percentiles, updates lost, server and client CPU; RSS per socket after
connecting. Saturation: the highest rate with >= 99 % delivered and p99 < 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as redis
from tornado.httpclient import AsyncHTTPClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    CpuMeter,
    Process,
    free_port,
    livevote_process,
    percentile,
    prepare,
    rss_bytes,
    table,
    wait_for_port,
    write_result,
)
from bench.wsload import WsClient, connect  # noqa: E402
from services.events import subject_votes  # noqa: E402

LIVEVOTE_FEED = "lv:" + subject_votes(1)
"""Where a livevote process hears of subject 1's count changes (the default prefix "lv:")."""

SAMPLED = 50
"""Sockets whose every update is timed (all sockets are counted)."""
CONNECT_CONCURRENCY = 200
COLUMNS = ["target", "sockets", "rate", "delivered/s", "delivered %", "lost", "p50 ms", "p95 ms", "p99 ms",
           "server cpu %", "client cpu %", "converge ms"]


def update(version: int) -> bytes:
    return orjson.dumps({"no": 1, "subject": 1, "good_count": version, "bad_count": 0, "version": version})


@dataclass
class Target:
    name: str
    process: Process
    port: int
    publish: Callable[[redis.Redis, int], Awaitable[Any]]
    is_update: Callable[[bytes], bool]
    version_of: Callable[[bytes], int]
    open_socket: Callable[[Target, Callable[[bytes], None] | None], Awaitable[WsClient]]
    token: str = ""
    coalescing: bool = False


@dataclass
class Tally:
    """What the sockets of one target received during one step."""

    updates: int = 0
    latencies: list[float] = field(default_factory=list)
    sent_at: dict[int, float] = field(default_factory=dict)
    final_version: int = -1
    final_seen: int = 0
    last_final_at: float = 0.0


# -- the three targets ------------------------------------------------------------


async def livevote_socket(target: Target, on_text: Callable[[bytes], None] | None) -> WsClient:
    client = await connect(target.port, "/ws", {"Sec-WebSocket-Protocol": f"livevote.v1, bearer.{target.token}"})
    ready = asyncio.get_running_loop().create_future()

    def opening(payload: bytes) -> None:
        if payload.startswith(b'{"type":"snapshot"') and not ready.done():
            ready.set_result(None)

    client.on_text = opening
    client.send_text(b'{"op":"subscribe","channel":"subject:1"}')
    await asyncio.wait_for(ready, 30)
    client.on_text = on_text
    return client


async def socketio_socket(target: Target, on_text: Callable[[bytes], None] | None) -> WsClient:
    client = await connect(target.port, "/socket.io/?EIO=4&transport=websocket")
    ready = asyncio.get_running_loop().create_future()

    def engine_io(payload: bytes) -> None:
        if payload[:1] == b"0":
            client.send_text(b"40")
        elif payload == b"2":
            client.send_text(b"3")
        elif payload.startswith(b"40") and not ready.done():
            ready.set_result(None)
        elif on_text is not None:
            on_text(payload)

    client.on_text = engine_io
    await asyncio.wait_for(ready, 30)
    return client


async def plain_socket(target: Target, on_text: Callable[[bytes], None] | None) -> WsClient:
    client = await connect(target.port, "/")
    client.on_text = on_text
    return client


def livevote_version(payload: bytes) -> int:
    return int(orjson.loads(payload)["updates"][0]["version"])


def socketio_version(payload: bytes) -> int:
    return int(orjson.loads(payload[2:])[1]["updates"][0]["version"])


def make_target(work: Path, redis_url: str, name: str) -> Target:
    """Picked just before it starts: a port chosen earlier may meanwhile be an ephemeral port of the client."""
    port = free_port()
    if name.startswith("livevote"):
        coalesce = 0 if name == "livevote" else 50
        process = livevote_process(name, work, port, redis_url, ws__coalesce_ms=coalesce,
                                   ws__rate_limit=1000, ws__max_pending=1 << 20)
        return Target(name, process, port, lambda r, v: r.publish(LIVEVOTE_FEED, update(v)),
                      lambda p: p.startswith(b'{"type":"votes"'), livevote_version, livevote_socket,
                      coalescing=coalesce > 0)
    if name == "socketio":
        import socketio

        manager = socketio.AsyncRedisManager(redis_url, write_only=True)
        process = Process(name, [sys.executable, "bench/peers/socketio_server.py", "--port", str(port),
                                 "--redis-url", redis_url])
        return Target(
            name, process, port,
            lambda r, v: manager.emit("votes", {"type": "votes", "channel": "subject:1",
                                                "updates": [orjson.loads(update(v))]}, room="subject:1"),
            lambda p: p.startswith(b"42"), socketio_version, socketio_socket)
    if name == "websockets":
        process = Process(name, [sys.executable, "bench/peers/websockets_server.py", "--port", str(port),
                                 "--redis-url", redis_url])
        return Target(name, process, port, lambda r, v: r.publish("bench:votes", update(v)),
                      lambda p: p.startswith(b'{"type":"votes"'), livevote_version, plain_socket)
    raise ValueError(f"unknown target {name}")


async def livevote_token(port: int) -> str:
    client = AsyncHTTPClient()
    body = orjson.dumps({"username": "bench", "password": "load test passphrase"})
    await client.fetch(f"http://127.0.0.1:{port}/api/auth/register", method="POST", body=body,
                       headers={"Content-Type": "application/json"}, raise_error=False)
    reply = await client.fetch(f"http://127.0.0.1:{port}/api/auth/login", method="POST", body=body,
                               headers={"Content-Type": "application/json"})
    return str(orjson.loads(reply.body)["access_token"])


# -- one target, one socket count -----------------------------------------------------


async def open_sockets(target: Target, count: int, tally_ref: list[Tally]) -> list[WsClient]:
    limit = asyncio.Semaphore(CONNECT_CONCURRENCY)
    clients: list[WsClient] = []

    def counter(index: int) -> Callable[[bytes], None]:
        sampled = index < SAMPLED

        def on_text(payload: bytes) -> None:
            if not target.is_update(payload):
                return
            tally = tally_ref[0]
            tally.updates += 1
            if sampled:
                sent = tally.sent_at.get(target.version_of(payload))
                if sent is not None:
                    tally.latencies.append(time.perf_counter() - sent)
            if target.coalescing and tally.final_version >= 0 and b'"version":%d}' % tally.final_version in payload:
                tally.final_seen += 1
                tally.last_final_at = time.perf_counter()

        return on_text

    async def one(index: int) -> None:
        async with limit:
            clients.append(await target.open_socket(target, counter(index)))

    await asyncio.gather(*(one(index) for index in range(count)))
    return clients


async def run_step(target: Target, publisher: redis.Redis, sockets: int, rate: int, seconds: float,
                   first_version: int, tally_ref: list[Tally]) -> tuple[dict[str, Any], int]:
    tally = tally_ref[0] = Tally()
    count = max(int(rate * seconds), 1)
    server_cpu, client_cpu = CpuMeter(target.process.pid), CpuMeter(os.getpid())
    server_cpu.start()
    client_cpu.start()
    started = time.perf_counter()
    tally.final_version = first_version + count - 1
    for index in range(count):
        due = started + index / rate
        delay = due - time.perf_counter()
        if delay > 0.002:
            await asyncio.sleep(delay)
        version = first_version + index
        tally.sent_at[version] = time.perf_counter()
        await target.publish(publisher, version)
    published = time.perf_counter()
    expected = count * sockets
    deadline = published + 3.0
    while time.perf_counter() < deadline:
        done = tally.final_seen >= sockets if target.coalescing else tally.updates >= expected
        if done:
            break
        await asyncio.sleep(0.02)
    elapsed = published - started
    row = {
        "target": target.name, "sockets": sockets, "rate": rate,
        "delivered/s": tally.updates / max(elapsed, 1e-9),
        "delivered %": 100 * tally.updates / expected,
        "lost": max(expected - tally.updates, 0) if not target.coalescing else None,
        "p50 ms": 1000 * percentile(tally.latencies, 0.50),
        "p95 ms": 1000 * percentile(tally.latencies, 0.95),
        "p99 ms": 1000 * percentile(tally.latencies, 0.99),
        "server cpu %": server_cpu.stop(), "client cpu %": client_cpu.stop(),
        "converge ms": 1000 * (tally.last_final_at - published) if target.coalescing and tally.final_seen >= sockets
        else None,
    }
    return row, first_version + count


def saturated(row: dict[str, Any]) -> bool:
    if row["lost"] is None:
        return row["converge ms"] is None or row["p99 ms"] >= 1000
    return row["delivered %"] < 99 or row["p99 ms"] >= 1000


async def measure(target: Target, redis_url: str, sockets: int, rates: list[int], seconds: float) -> dict[str, Any]:
    publisher = redis.Redis.from_url(redis_url)
    tally_ref = [Tally()]
    before = rss_bytes(target.process.pid)
    clients = await open_sockets(target, sockets, tally_ref)
    await asyncio.sleep(1.0)
    rss_per_socket = (rss_bytes(target.process.pid) - before) / sockets
    rows, version, saturation = [], 1_000_000 * (sockets + 1), None
    for rate in rates:
        row, version = await run_step(target, publisher, sockets, rate, seconds, version, tally_ref)
        row["rss/socket KiB"] = rss_per_socket / 1024
        rows.append(row)
        print(table([row], COLUMNS), flush=True)
        if saturated(row):
            break
        saturation = row
    for client in clients:
        client.close()
    await publisher.aclose()
    return {"rows": rows, "saturation": saturation, "rss_per_socket": rss_per_socket}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", default="200,1000")
    parser.add_argument("--rates", default="50,100,200,500,1000,2000,5000")
    parser.add_argument("--step", type=float, default=3.0, help="seconds of publishing per rate")
    parser.add_argument("--targets", default="livevote,livevote-coalesced,socketio,websockets")
    options = parser.parse_args()
    work, redis_process, redis_url = await prepare("fanout")
    results: dict[str, Any] = {"targets": {}}
    targets: list[Target] = []
    try:
        for name in options.targets.split(","):
            target = make_target(work, redis_url, name)
            targets.append(target)
            target.process.start(work)
            await wait_for_port(target.port)
            if target.name.startswith("livevote"):
                target.token = await livevote_token(target.port)
            for sockets in map(int, options.sockets.split(",")):
                print(f"\n{target.name}, {sockets} sockets", flush=True)
                rates = list(map(int, options.rates.split(",")))
                try:
                    measured = await measure(target, redis_url, sockets, rates, options.step)
                except (OSError, TimeoutError) as error:
                    print(f"  {target.name} could not take {sockets} sockets: {error!r}", flush=True)
                    measured = {"rows": [], "saturation": None, "rss_per_socket": float("nan"), "error": repr(error)}
                results["targets"].setdefault(target.name, {})[sockets] = measured
            target.process.stop()
    finally:
        for target in targets:
            target.process.stop()
        redis_process.stop()
    print("\nSaturation (highest rate with >= 99 % delivered and p99 < 1 s):")
    summary = []
    for name, by_sockets in results["targets"].items():
        for sockets, measured in by_sockets.items():
            best = measured["saturation"] or {}
            summary.append({"target": name, "sockets": sockets, "rate": best.get("rate"),
                            "delivered/s": best.get("delivered/s"), "p99 ms": best.get("p99 ms"),
                            "rss/socket KiB": measured["rss_per_socket"] / 1024})
    print(table(summary, ["target", "sockets", "rate", "delivered/s", "p99 ms", "rss/socket KiB"]))
    results["summary"] = summary
    print(f"\nwritten to {write_result('fanout', results)}")


if __name__ == "__main__":
    asyncio.run(main())
