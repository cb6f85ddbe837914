"""The servers bench/fanout.py compares, on one Redis with the same messages: livevote (coalescing
off, then on; over Server-Sent Events, coalescing off; and as N processes on one port, `server.py
--workers N`, coalescing off), python-socketio's AsyncServer with AsyncRedisManager, and a bare
`websockets` server; for each, how to publish an update to it, open a subscribed socket (or event
stream), and read a version.

The processes are targets beside the others (`livevote-workers2`, `livevote-workers2-core0`)
rather than a flag, so that one run measures them against one process (`livevote`) with the same
client, Redis and updates, as every other comparison here does. `livevote-workersN` puts worker k
on core k-1 (modulo the cores: on two cores worker 2 shares core 1 with the load client and
Redis); `-core0` keeps all of them on the one process's core 0, the same CPU as one process.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson
import redis.asyncio as redis

from bench.common import SERVER_CORE, Process, livevote_process
from bench.sseload import SseClient, open_stream
from bench.wsload import WsClient, connect, open_subscribed
from services.events import subject_votes
from tests.harness.ports import free_port
from tests.harness.procfs import child_pids, process_tree

WORKERS = re.compile(r"livevote-workers(\d+)(-core0)?")
WORKERS_READY = 30.0
"""Seconds for every worker of a `livevote-workersN` target to say it listens."""


def livevote_feed(subject: int) -> str:
    """Where a livevote process hears of a subject's count changes (the default prefix "lv:")."""
    return "lv:" + subject_votes(subject)


class Stream(Protocol):
    """What bench/fanout.py needs of a socket or an event stream once it is subscribed."""

    @property
    def closed(self) -> asyncio.Future[int | None]: ...

    def close(self) -> None: ...


def update(version: int, subject: int = 1) -> bytes:
    return orjson.dumps({"no": 1, "subject": subject, "good_count": version, "bad_count": 0, "version": version})


@dataclass
class Target:
    name: str
    process: Process
    port: int
    publish: Callable[[redis.Redis, int, int], Awaitable[Any]]
    """(publisher, version, subject)"""
    is_update: Callable[[bytes], bool]
    version_of: Callable[[bytes], int]
    open_socket: Callable[[Target, Callable[[bytes], None] | None, int], Awaitable[Stream]]
    """(target, on_text, subject)"""
    token: str = ""
    coalescing: bool = False
    workers: int = 0
    """N of `server.py --workers N`; 0: one process, no supervisor."""
    cores: tuple[str, ...] = (SERVER_CORE,)
    """Where its processes run."""

    def pids(self) -> list[int]:
        """The server's processes: the one process, or the supervisor and its workers."""
        return process_tree(self.process.pid)


async def start(target: Target, work: Path) -> None:
    """Start the target; for `--workers`, return once every worker listens, each on its core."""
    target.process.start(work)
    if not target.workers:
        return
    log = work / f"{target.name}.log"
    deadline = time.monotonic() + WORKERS_READY
    while log.read_text(errors="replace").count("listening on") < target.workers:
        if time.monotonic() > deadline or target.process.popen is None or target.process.popen.poll() is not None:
            raise RuntimeError(f"{target.name}: not every worker listens; see {log}")
        await asyncio.sleep(0.1)
    for number, pid in enumerate(child_pids(target.process.pid)):  # forked in order of their numbers
        os.sched_setaffinity(pid, {int(target.cores[number % len(target.cores)])})


async def livevote_socket(target: Target, on_text: Callable[[bytes], None] | None, subject: int) -> WsClient:
    return await open_subscribed(target.port, target.token, f"subject:{subject}", on_text=on_text, timeout=30)


async def livevote_stream(target: Target, on_text: Callable[[bytes], None] | None, subject: int) -> SseClient:
    return await open_stream(target.port, target.token, (f"subject:{subject}",), on_text=on_text, timeout=30)


async def socketio_socket(target: Target, on_text: Callable[[bytes], None] | None, _subject: int) -> WsClient:
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


async def plain_socket(target: Target, on_text: Callable[[bytes], None] | None, _subject: int) -> WsClient:
    client = await connect(target.port, "/")
    client.on_text = on_text
    return client


def livevote_version(payload: bytes) -> int:
    return int(orjson.loads(payload)["updates"][0]["version"])


def socketio_version(payload: bytes) -> int:
    return int(orjson.loads(payload[2:])[1]["updates"][0]["version"])


def make_target(work: Path, redis_url: str, name: str, subjects: int = 1) -> Target:
    """Picked just before it starts: a port chosen earlier may meanwhile be an ephemeral port of the client.
    With `subjects` > 1 only livevote's targets without coalescing (bench/fanout.py counts every frame)."""
    port = free_port()
    workers = WORKERS.fullmatch(name)
    if subjects > 1 and not (name in ("livevote", "livevote-sse") or workers):
        raise ValueError(f"{name} takes one subject only")
    if name in ("livevote", "livevote-coalesced", "livevote-sse") or workers:
        coalesce = 50 if name == "livevote-coalesced" else 0
        count = int(workers.group(1)) if workers else 0
        config: dict[str, Any] = {"server__workers": count} if workers else {}
        process = livevote_process(name, work, port, redis_url, ws__coalesce_ms=coalesce,
                                   ws__rate_limit=1000, ws__max_pending=1 << 20, **config)
        cores = (SERVER_CORE,) if not workers or workers.group(2) else tuple(map(str, range(os.cpu_count() or 1)))
        process.core = ",".join(cores)
        return Target(name, process, port, lambda r, v, s: r.publish(livevote_feed(s), update(v, s)),
                      lambda p: p.startswith(b'{"type":"votes"'), livevote_version,
                      livevote_stream if name == "livevote-sse" else livevote_socket,
                      coalescing=coalesce > 0, workers=count, cores=cores)
    if name == "socketio":
        import socketio

        manager = socketio.AsyncRedisManager(redis_url, write_only=True)
        process = Process(name, [sys.executable, "bench/peers/socketio_server.py", "--port", str(port),
                                 "--redis-url", redis_url])
        return Target(
            name, process, port,
            lambda r, v, s: manager.emit("votes", {"type": "votes", "channel": "subject:1",
                                                   "updates": [orjson.loads(update(v))]}, room="subject:1"),
            lambda p: p.startswith(b"42"), socketio_version, socketio_socket)
    if name == "websockets":
        process = Process(name, [sys.executable, "bench/peers/websockets_server.py", "--port", str(port),
                                 "--redis-url", redis_url])
        return Target(name, process, port, lambda r, v, s: r.publish("bench:votes", update(v)),
                      lambda p: p.startswith(b'{"type":"votes"'), livevote_version, plain_socket)
    raise ValueError(f"unknown target {name}")
