"""Peer: python-socketio's AsyncServer with AsyncRedisManager, on Tornado like livevote.

Every client joins the room subject:1 on connect; the benchmark emits into it
through Redis with a write-only AsyncRedisManager.
"""

from __future__ import annotations

import argparse
import asyncio

import socketio
import tornado.web

ROOM = "subject:1"


async def main(port: int, redis_url: str) -> None:
    server = socketio.AsyncServer(async_mode="tornado", client_manager=socketio.AsyncRedisManager(redis_url),
                                  cors_allowed_origins="*")

    @server.event
    async def connect(sid: str, environ: dict[str, object]) -> None:
        await server.enter_room(sid, ROOM)

    app = tornado.web.Application([(r"/socket.io/", socketio.get_tornado_handler(server))])
    app.listen(port, "127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    options = parser.parse_args()
    asyncio.run(main(options.port, options.redis_url))
