"""RedisCounters: fixed-window counters shared by every process (scaled mode).

A counter is one key: INCR, and the window starts with the first count, whose
PEXPIRE NX sets the key's lifetime; both run in one Lua script, so a counter
never lives without its expiry. `reserve` checks every limit and counts in that
script, which Redis runs without interleaving any other command:
that is what keeps concurrent logins on many processes within a limit. The
keys of one reservation must live on one node (one slot, for Redis Cluster).
The client is shared and closed by its creator.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as redis

from services.backends.outages import redis_outage
from services.backends.counters import Counters


RESERVE = """
for i, key in ipairs(KEYS) do
    if tonumber(redis.call('GET', key) or '0') >= tonumber(ARGV[i + 1]) then
        return math.max(redis.call('PTTL', key), 1)
    end
end
for _, key in ipairs(KEYS) do
    redis.call('INCR', key)
    redis.call('PEXPIRE', key, ARGV[1], 'NX')
end
return 0
"""
"""KEYS: the counters; ARGV: the window in ms, then each key's limit. 0 when reserved,
else the milliseconds until the first full key resets."""

RELEASE = """
for _, key in ipairs(KEYS) do
    if tonumber(redis.call('GET', key) or '0') > 0 and redis.call('DECR', key) <= 0 then
        redis.call('DEL', key)
    end
end
"""


class RedisCounters(Counters):
    def __init__(self, client: redis.Redis, prefix: str = "lv:") -> None:
        self._client = client
        self._prefix = prefix
        self._reserve = client.register_script(RESERVE)
        self._release = client.register_script(RELEASE)

    @redis_outage
    async def reserve(self, limits: Sequence[tuple[str, int]], window: float) -> float | None:
        keys = [self._key(key) for key, _ in limits]
        wait_ms = await self._reserve(keys=keys, args=[max(1, round(window * 1000)), *(limit for _, limit in limits)])
        return int(wait_ms) / 1000 if wait_ms else None

    @redis_outage
    async def release(self, keys: Sequence[str]) -> None:
        await self._release(keys=[self._key(key) for key in keys])

    def _key(self, key: str) -> str:
        return f"{self._prefix}count:{key}"
