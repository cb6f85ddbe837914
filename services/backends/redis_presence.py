"""RedisPresence: every process's socket count in one hash, each entry with its own deadline.

One key (`presence`), so that it works the same on a Redis Cluster; a field per
process holds "count:deadline", the deadline by Redis's own clock (TIME), so
hosts need not agree on the time. The script that writes an entry also drops
the ones past their deadline and sums the rest: a process that dies stops being
counted within 3 heartbeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from redis.exceptions import RedisError

from services.backends.outages import redis_outage
from services.backends.presence import Presence, SocketCount
from services.backends.redis_client import OneKeyScript, RedisClient
from services.errors import Unavailable

log = logging.getLogger("livevote.presence")

REPORT = """
local time = redis.call('TIME')
local now = time[1] * 1000 + math.floor(time[2] / 1000)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. (now + tonumber(ARGV[3])))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local total = 0
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  local count, deadline = string.match(entries[i + 1], '^(%d+):(%d+)$')
  if deadline and tonumber(deadline) > now then
    total = total + tonumber(count)
  else
    redis.call('HDEL', KEYS[1], entries[i])
  end
end
return total
"""
"""KEYS: the hash. ARGV: this process's field, its count, the lifetime in ms. Returns the sum."""


class RedisPresence(Presence):
    def __init__(self, client: RedisClient, prefix: str = "lv:", heartbeat: float = 3.0) -> None:
        self._client = client
        self._key = f"{prefix}presence"
        self._field = uuid.uuid4().hex
        self._lifetime_ms = round(heartbeat * 3 * 1000)
        self._heartbeat = heartbeat
        self._report = OneKeyScript(client, REPORT)
        self._count: SocketCount = lambda: 0
        self._task: asyncio.Task[None] | None = None

    async def start(self, count: SocketCount) -> None:
        """Reports once before returning: a process counts from its start, not a heartbeat later."""
        self._count = count
        with contextlib.suppress(Unavailable):
            await self.total()
        self._task = asyncio.create_task(self._beat())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(RedisError, OSError):
            await self._client.hdel(self._key, self._field)

    @redis_outage
    async def total(self) -> int:
        return int(await self._report(self._key, self._field, self._count(), self._lifetime_ms))

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat)
            try:
                await self.total()
            except Unavailable as exc:
                log.warning("could not report open sockets: %s", exc)
