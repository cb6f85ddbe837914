"""RedisPresence: each process's socket count in a key of its own, with a TTL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.backends.outages import redis_outage
from services.backends.presence import Presence, SocketCount

log = logging.getLogger("livevote.presence")


class RedisPresence(Presence):
    def __init__(self, client: Redis, prefix: str = "lv:", heartbeat: float = 3.0) -> None:
        self._client = client
        self._pattern = f"{prefix}presence:*"
        self._key = f"{prefix}presence:{uuid.uuid4().hex}"
        self._heartbeat = heartbeat
        self._count: SocketCount = lambda: 0
        self._task: asyncio.Task[None] | None = None

    async def start(self, count: SocketCount) -> None:
        self._count = count
        self._task = asyncio.create_task(self._beat())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(RedisError, OSError):
            await self._client.delete(self._key)

    @redis_outage
    async def total(self) -> int:
        await self._report()
        keys = [key async for key in self._client.scan_iter(match=self._pattern, count=100)]
        values = await self._client.mget(keys) if keys else []
        return sum(int(value) for value in values if value is not None)

    async def _report(self) -> None:
        await self._client.set(self._key, self._count(), ex=int(self._heartbeat * 3))

    async def _beat(self) -> None:
        while True:
            try:
                await self._report()
            except (RedisError, OSError) as exc:
                log.warning("could not report open sockets: %s", exc)
            await asyncio.sleep(self._heartbeat)
