"""Idle cost: server CPU and memory while N sockets are held and (almost) nothing happens.

    python bench/idle.py [--sockets 10000] [--window 40] [--every 5] [--targets livevote,livevote-no-ping,websockets]

Per target, one server on core 0 and this client on core 1:
1. with no socket open, the server's CPU % over `--baseline` seconds (its own timers);
2. `--sockets` sockets connect (livevote: authenticated with a token, subscribed
   to subject:1, as bench/connect.py does; websockets: the bare peer of
   bench/peers/websockets_server.py) and settle; RSS after minus before, per socket;
3. `--window` seconds with no traffic at all: server CPU %;
4. `--window` seconds with one update every `--every` seconds on the subscribed
   channel, through each server's own path (livevote: a vote over REST, which
   the hub fans out; websockets: a message on its Redis channel): server CPU %.
Phases 3 and 4 are `--repeat` windows each, summarized by their median (and
min/max): the server's CPU is its own (/proc), but other work on core 0 still
moves it. Derived: µs/socket/s = (CPU - CPU with no socket) / sockets; µs/ping =
the same over the window / pings answered; µs/frame = (update-window CPU -
idle CPU) over the window / frames received.

Pings the client answered (it pongs every server ping) and frames received are
counted per window. Both servers ping every socket every 20 s (livevote:
ws.ping_interval, Tornado's periodic_ping; websockets: its default
ping_interval), so a 40 s window holds two of each one's ping cycles.
`livevote-no-ping` is livevote with ws.ping_interval 0: what the pings cost.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import wsload
from bench.common import ROOT, CpuMeter, Process, livevote_process, prepare, table, write_result
from bench.fanout_targets import update
from bench.httpload import HttpConnection, sign_in
from bench.wsload import WsClient, connect, open_subscribed
from tests.harness.ports import free_port, wait_for_port
from tests.harness.procfs import rss_kib

CONNECT_CONCURRENCY = 200
CHEAP_ARGON2 = {"auth__argon2_memory_kib": 8192, "auth__argon2_time_cost": 1}
COLUMNS = ["target", "phase", "sockets", "seconds", "server cpu %", "µs/socket/s", "pings/socket", "frames",
           "client cpu %"]
SUMMARY = ["target", "phase", "sockets", "windows", "server cpu %", "cpu % min", "cpu % max", "µs/socket/s",
           "pings/socket", "µs/ping", "frames", "µs/frame", "client cpu %"]
MEMORY_COLUMNS = ["target", "sockets", "RSS before MiB", "RSS after MiB", "RSS/socket KiB", "connect s"]

_pongs = 0
_client_frame = wsload.client_frame


def _counting_client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """wsload answers each server ping with client_frame(..., 0xA): counting those counts pings."""
    global _pongs
    if opcode == 0xA:
        _pongs += 1
    return _client_frame(payload, opcode)


wsload.client_frame = _counting_client_frame


@dataclass
class Target:
    name: str
    process: Process
    port: int
    open_socket: Callable[[], Awaitable[WsClient]]
    publish: Callable[[int], Awaitable[None]]
    close: Callable[[], Awaitable[None]]


def code_version() -> str:
    """HEAD and whether the server's code differs from it (livevote's files change under a benchmark)."""
    import subprocess

    marker = ROOT / "CODE_VERSION"
    if marker.exists():
        return marker.read_text().strip()
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "server.py", "handlers", "services"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    changed = [line[3:] for line in dirty if line.strip()]
    return f"{head} + uncommitted changes to {', '.join(changed)}" if changed else head


async def livevote_target(name: str, work: Path, redis_url: str | None, **config: Any) -> Target:
    port = free_port()
    process = livevote_process(name, work, port, redis_url, **CHEAP_ARGON2, **config).start(work)
    await wait_for_port(port)
    token = await sign_in(port)
    http = await HttpConnection.open(port)
    status, body = await http.request("GET", "/api/subjects/1/teachers")
    assert status == 200, body
    teacher = _first_teacher(orjson.loads(body))
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    values = itertools.cycle(["good", "bad"])

    async def publish(_version: int) -> None:
        """good, bad, good...: every vote changes the counts, so every one is broadcast."""
        status, reply = await http.request("PUT", f"/api/teachers/{teacher}/vote",
                                           orjson.dumps({"value": next(values)}), headers)
        assert status == 200, reply

    return Target(name, process, port, lambda: open_subscribed(port, token), publish, http.close)


def _first_teacher(page: Any) -> int:
    items = page["items"] if isinstance(page, dict) and "items" in page else page
    if isinstance(items, dict):
        items = next(value for value in items.values() if isinstance(value, list))
    return int(items[0]["no"])


async def websockets_target(work: Path, redis_url: str) -> Target:
    port = free_port()
    process = Process("websockets", [sys.executable, "bench/peers/websockets_server.py", "--port", str(port),
                                     "--redis-url", redis_url]).start(work)
    await wait_for_port(port)
    publisher = redis.Redis.from_url(redis_url)

    async def publish(version: int) -> None:
        await publisher.publish("bench:votes", update(version))

    return Target("websockets", process, port, lambda: connect(port, "/"), publish, publisher.aclose)


async def window(target: Target, phase: str, sockets: int, seconds: float, every: float | None,
                 clients: list[WsClient], baseline: float | None) -> dict[str, Any]:
    global _pongs
    _pongs = 0
    frames_before = sum(client.frames for client in clients)
    server, client = CpuMeter(target.process.pid), CpuMeter(os.getpid())
    server.start()
    client.start()
    began = time.monotonic()
    published = 0
    if every:
        while (due := began + published * every) < began + seconds:
            await asyncio.sleep(max(due - time.monotonic(), 0))
            await target.publish(published + 1)
            published += 1
    await asyncio.sleep(max(began + seconds - time.monotonic(), 0))
    server_cpu = server.stop()
    row = {
        "target": target.name, "phase": phase, "sockets": sockets, "seconds": seconds, "server cpu %": server_cpu,
        "µs/socket/s": 1e4 * (server_cpu - baseline) / sockets if sockets and baseline is not None else None,
        "pings/socket": _pongs / sockets if sockets else None, "pings": _pongs,
        "frames": sum(client.frames for client in clients) - frames_before, "updates": published,
        "client cpu %": client.stop(),
    }
    print(table([row], COLUMNS), flush=True)
    return row


async def open_all(target: Target, count: int) -> list[WsClient]:
    limit = asyncio.Semaphore(CONNECT_CONCURRENCY)
    clients: list[WsClient] = []

    async def one() -> None:
        async with limit:
            clients.append(await target.open_socket())

    await asyncio.gather(*(one() for _ in range(count)))
    return clients


async def windows(target: Target, phase: str, sockets: int, seconds: float, every: float | None,
                  clients: list[WsClient], baseline: float | None, repeat: int) -> dict[str, Any]:
    """`repeat` windows in a row; their median (other work on the machine only ever adds)."""
    runs = [await window(target, phase, sockets, seconds, every, clients, baseline) for _ in range(repeat)]
    row = dict(runs[0])
    for key in ("server cpu %", "µs/socket/s", "pings/socket", "pings", "frames", "updates", "client cpu %"):
        values = [run[key] for run in runs if run[key] is not None]
        row[key] = statistics.median(values) if values else None
    cpu = [run["server cpu %"] for run in runs]
    row.update({"windows": repeat, "cpu % min": min(cpu), "cpu % max": max(cpu), "runs": runs})
    return row


async def measure(target: Target, sockets: int, baseline_seconds: float, seconds: float,
                  every: float, repeat: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    await asyncio.sleep(2.0)
    rows = [await windows(target, "no sockets", 0, baseline_seconds, None, [], None, 1)]
    baseline = rows[0]["server cpu %"]
    before = rss_kib(target.process.pid)
    began = time.perf_counter()
    clients = await open_all(target, sockets)
    connected = time.perf_counter() - began
    await asyncio.sleep(3.0)
    after = rss_kib(target.process.pid)
    memory = {
        "target": target.name, "sockets": len(clients), "RSS before MiB": before / 1024,
        "RSS after MiB": after / 1024, "RSS/socket KiB": (after - before) / len(clients), "connect s": connected,
    }
    print(table([memory], MEMORY_COLUMNS), flush=True)
    idle = await windows(target, "idle", len(clients), seconds, None, clients, baseline, repeat)
    idle["µs/ping"] = 1e4 * (idle["server cpu %"] - baseline) * seconds / idle["pings"] if idle["pings"] else None
    busy = await windows(target, f"1 update/{every:g} s", len(clients), seconds, every, clients, baseline, repeat)
    busy["µs/frame"] = (1e4 * (busy["server cpu %"] - idle["server cpu %"]) * seconds / busy["frames"]
                        if busy["frames"] else None)
    rows += [idle, busy]
    for client in clients:
        client.close()
    return rows, memory


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=10000)
    parser.add_argument("--window", type=float, default=40.0, help="seconds per measured window")
    parser.add_argument("--baseline", type=float, default=20.0, help="seconds measured with no socket open")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between updates in the update window")
    parser.add_argument("--repeat", type=int, default=3, help="windows per phase; the summary shows their median")
    parser.add_argument("--targets", default="livevote,livevote-no-ping,websockets")
    parser.add_argument("--redis", action="store_true", help="livevote in scaled mode (sessions and pub/sub in Redis)")
    options = parser.parse_args()
    print(f"livevote code: {code_version()}", flush=True)
    work, redis_process, redis_url = await prepare("idle")
    rows: list[dict[str, Any]] = []
    memory: list[dict[str, Any]] = []
    try:
        for name in options.targets.split(","):
            if name == "livevote":
                target = await livevote_target(name, work, redis_url if options.redis else None)
            elif name == "livevote-no-ping":
                target = await livevote_target(name, work, redis_url if options.redis else None, ws__ping_interval=0)
            elif name == "websockets":
                target = await websockets_target(work, redis_url)
            else:
                raise SystemExit(f"unknown target {name}")
            print(f"\n{name}", flush=True)
            try:
                measured, rss = await measure(target, options.sockets, options.baseline, options.window, options.every,
                                              options.repeat)
            finally:
                await target.close()
                target.process.stop()
            rows += measured
            memory.append(rss)
    finally:
        redis_process.stop()
    ratios = _ratios(rows, memory)
    print()
    print(table(rows, SUMMARY))
    print()
    print(table(memory, MEMORY_COLUMNS))
    print()
    print(table(ratios, ["measure", "livevote", "websockets", "livevote / websockets"]))
    result = {"code": code_version(), "mode": "redis" if options.redis else "embedded", "rows": rows, "memory": memory,
              "ratios": ratios, "options": vars(options)}
    print(f"\nwritten to {write_result('idle', result)}")


def _ratios(rows: list[dict[str, Any]], memory: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def cell(target: str, phase: str, key: str) -> float | None:
        found = [row[key] for row in rows if row["target"] == target and row["phase"].startswith(phase)]
        return found[0] if found else None

    ratios = []
    for phase in ("no sockets", "idle", "1 update"):
        for key in ("server cpu %", "µs/socket/s"):
            mine, theirs = cell("livevote", phase, key), cell("websockets", phase, key)
            if mine is not None and theirs is not None:
                ratios.append({"measure": f"{phase}: {key}", "livevote": mine, "websockets": theirs,
                               "livevote / websockets": mine / theirs if theirs else None})
    rss = {row["target"]: row["RSS/socket KiB"] for row in memory}
    if "livevote" in rss and "websockets" in rss:
        ratios.append({"measure": "RSS/socket KiB", "livevote": rss["livevote"], "websockets": rss["websockets"],
                       "livevote / websockets": rss["livevote"] / rss["websockets"]})
    return ratios


if __name__ == "__main__":
    asyncio.run(main())
