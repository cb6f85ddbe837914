"""RedisCounters: fixed-window counters shared by every process (scaled mode).

A counter is one key: INCR, and the window starts with the first hit, whose
PEXPIRE NX sets the key's lifetime; both run in one MULTI, so a counter never
lives without its expiry. The client is shared and closed by its creator.
"""

from __future__ import annotations

import redis.asyncio as redis

from services.backends.outages import redis_outage
from services.backends.counters import Counters


class RedisCounters(Counters):
    def __init__(self, client: redis.Redis, prefix: str = "lv:") -> None:
        self._client = client
        self._prefix = prefix

    @redis_outage
    async def hit(self, key: str, window: float) -> tuple[int, float]:
        name = self._key(key)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.incr(name)
            pipe.pexpire(name, max(1, round(window * 1000)), nx=True)
            pipe.pttl(name)
            count, _, left_ms = await pipe.execute()
        return int(count), max(left_ms, 0) / 1000

    @redis_outage
    async def peek(self, key: str) -> tuple[int, float]:
        name = self._key(key)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.get(name)
            pipe.pttl(name)
            count, left_ms = await pipe.execute()
        if count is None:
            return 0, 0.0
        return int(count), max(left_ms, 0) / 1000

    @redis_outage
    async def reset(self, key: str) -> None:
        await self._client.delete(self._key(key))

    def _key(self, key: str) -> str:
        return f"{self._prefix}count:{key}"
