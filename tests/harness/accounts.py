"""Account requests as any client sends them, raw (nothing asserted), one at a time or all at once."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from tests.harness.redis_server import RedisServer
from tests.harness.server import LiveServer, Response

STRONG = "pale blue teapot"
"""A password the password rule accepts."""


async def start_in_mode(start_server: Any, redis: RedisServer | None, **overrides: Any) -> LiveServer:
    """`start_server` (the fixture) embedded, or scaled on `redis` (counters and sessions in Redis)."""
    if redis is not None:
        overrides["redis__url"] = redis.url
    return await start_server(**overrides)


async def all_at_once(server: LiveServer, path: str, bodies: list[dict[str, Any]],
                      headers: list[dict[str, str]] | None = None) -> list[Response]:
    """Each request on a connection of its own, all sent together (the shared client
    would keep all but ten waiting, which is no concurrency test)."""
    client = AsyncHTTPClient(force_instance=True, max_clients=len(bodies))
    try:
        replies = await asyncio.gather(*(
            client.fetch(HTTPRequest(
                server.base_url + path, method="POST", body=json.dumps(body), request_timeout=120,
                headers={"Content-Type": "application/json", **(headers[index] if headers else {})},
            ), raise_error=False)
            for index, body in enumerate(bodies)
        ))
    finally:
        client.close()
    return [Response(reply.code, reply.headers, reply.body or b"") for reply in replies]


async def login(server: LiveServer, username: str, password: str, **kwargs: Any) -> Response:
    credentials = {"username": username, "password": password}
    return await server.request("POST", "/api/auth/login", json_body=credentials, **kwargs)


async def register(server: LiveServer, username: str, password: str = STRONG, **kwargs: Any) -> Response:
    return await server.request(
        "POST", "/api/auth/register", json_body={"username": username, "password": password}, **kwargs
    )
