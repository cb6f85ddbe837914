"""Peer: a bare `websockets` server fed from one Redis subscription with
websockets.broadcast(): the practical ceiling for fan-out from one Python process.

It wraps each update as livevote does ({"type":"votes","channel","updates"}),
so both send the same message size, without compression like livevote.
"""

from __future__ import annotations

import argparse
import asyncio

import orjson
import redis.asyncio as redis
from websockets.asyncio.server import ServerConnection, broadcast, serve

CHANNEL = "bench:votes"
clients: set[ServerConnection] = set()


async def handler(connection: ServerConnection) -> None:
    clients.add(connection)
    try:
        await connection.wait_closed()
    finally:
        clients.discard(connection)


async def relay(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    async with client.pubsub() as pubsub:
        await pubsub.subscribe(CHANNEL)
        async for item in pubsub.listen():
            if item["type"] == "message":
                message = {"type": "votes", "channel": "subject:1", "updates": [orjson.loads(item["data"])]}
                broadcast(clients, orjson.dumps(message).decode())


async def main(port: int, redis_url: str) -> None:
    async with serve(handler, "127.0.0.1", port, compression=None, max_queue=None):
        await relay(redis_url)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    options = parser.parse_args()
    asyncio.run(main(options.port, options.redis_url))
