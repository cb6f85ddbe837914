"""RedisCounters: fixed-window counters shared by every process (scaled mode).

A counter is one key, and its script checks the limit, counts and, with the
first count, sets the key's lifetime (PEXPIRE NX), which Redis runs without
interleaving any other command: that is what keeps concurrent logins on many
processes within a limit. The keys of one reservation (an account, an address)
may live on different nodes of a Redis Cluster, so each is reserved on its own
and, when a later one is full, the earlier ones are given back. A concurrent
caller may meanwhile see such a count that is about to be returned, and be
refused: the error is on the safe side, and no limit is ever overshot. (If
Redis fails halfway, the counts taken stay until their window ends.)
The client is shared and closed by its creator.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from services.backends.counters import Counters
from services.backends.redis_client import OneKeyScript, RedisClient
from services.backends.redis_outages import redis_outage

RESERVE = """
if tonumber(redis.call('GET', KEYS[1]) or '0') >= tonumber(ARGV[2]) then
    return math.max(redis.call('PTTL', KEYS[1]), 1)
end
redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1], 'NX')
return 0
"""
"""KEYS: the counter; ARGV: the window in ms, the limit. 0 when counted, else the
milliseconds until the key resets."""

RELEASE = """
if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 and redis.call('DECR', KEYS[1]) <= 0 then
    redis.call('DEL', KEYS[1])
end
"""


class RedisCounters(Counters):
    def __init__(self, client: RedisClient, prefix: str = "lv:") -> None:
        self._client = client
        self._prefix = prefix
        self._reserve = OneKeyScript(client, RESERVE)
        self._release = OneKeyScript(client, RELEASE)

    @redis_outage
    async def reserve(self, limits: Sequence[tuple[str, int]], window: float) -> float | None:
        window_ms = max(1, round(window * 1000))
        reserved: list[str] = []
        for key, limit in limits:
            wait_ms = await self._reserve(self._key(key), window_ms, limit)
            if wait_ms:
                await self.release(reserved)
                return int(wait_ms) / 1000
            reserved.append(key)
        return None

    @redis_outage
    async def release(self, keys: Sequence[str]) -> None:
        await asyncio.gather(*(self._release(self._key(key)) for key in keys))

    def _key(self, key: str) -> str:
        return f"{self._prefix}count:{key}"
