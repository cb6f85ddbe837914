"""The servers bench/fanout.py compares, on one Redis with the same messages: livevote (coalescing
off, then on; and over Server-Sent Events, coalescing off), python-socketio's AsyncServer with
AsyncRedisManager, and a bare `websockets` server; for each, how to publish an update to it, open a
subscribed socket (or event stream), and read a version."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson
import redis.asyncio as redis

from bench.common import Process, livevote_process
from bench.sseload import SseClient, open_stream
from bench.wsload import WsClient, connect, open_subscribed
from services.events import subject_votes
from tests.harness.ports import free_port

LIVEVOTE_FEED = "lv:" + subject_votes(1)
"""Where a livevote process hears of subject 1's count changes (the default prefix "lv:")."""


class Stream(Protocol):
    """What bench/fanout.py needs of a socket or an event stream once it is subscribed."""

    @property
    def closed(self) -> asyncio.Future[int | None]: ...

    def close(self) -> None: ...


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
    open_socket: Callable[[Target, Callable[[bytes], None] | None], Awaitable[Stream]]
    token: str = ""
    coalescing: bool = False


async def livevote_socket(target: Target, on_text: Callable[[bytes], None] | None) -> WsClient:
    return await open_subscribed(target.port, target.token, on_text=on_text, timeout=30)


async def livevote_stream(target: Target, on_text: Callable[[bytes], None] | None) -> SseClient:
    return await open_stream(target.port, target.token, on_text=on_text, timeout=30)


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
    if name in ("livevote", "livevote-coalesced", "livevote-sse"):
        coalesce = 50 if name == "livevote-coalesced" else 0
        process = livevote_process(name, work, port, redis_url, ws__coalesce_ms=coalesce,
                                   ws__rate_limit=1000, ws__max_pending=1 << 20)
        return Target(name, process, port, lambda r, v: r.publish(LIVEVOTE_FEED, update(v)),
                      lambda p: p.startswith(b'{"type":"votes"'), livevote_version,
                      livevote_stream if name == "livevote-sse" else livevote_socket,
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
