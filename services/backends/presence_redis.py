"""RedisPresence: every process's count in one hash, each entry with its own deadline.

One key (`presence`), so that it works the same on a Redis Cluster; a field per
process holds "deadline|sockets|subject:count,...", the deadline by Redis's own
clock (TIME), so hosts need not agree on the time. The script that writes an
entry also drops the ones past their deadline and sums the rest: a process that
dies stops being counted once its deadline passes.
"""

from __future__ import annotations

import contextlib
import uuid

from redis.exceptions import RedisError

from services.backends.presence import Presence, PresenceCount
from services.backends.redis_client import OneKeyScript, RedisClient
from services.backends.redis_outages import redis_outage

REPORT = """
local time = redis.call('TIME')
local now = time[1] * 1000 + math.floor(time[2] / 1000)
redis.call('HSET', KEYS[1], ARGV[1], (now + tonumber(ARGV[3])) .. '|' .. ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local sockets, watching = 0, {}
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  local deadline, count, subjects = string.match(entries[i + 1], '^(%d+)|(%d+)|(.*)$')
  if deadline and tonumber(deadline) > now then
    sockets = sockets + tonumber(count)
    for subject, n in string.gmatch(subjects, '(%d+):(%d+)') do
      watching[subject] = (watching[subject] or 0) + tonumber(n)
    end
  else
    redis.call('HDEL', KEYS[1], entries[i])
  end
end
local reply = {sockets}
for subject, n in pairs(watching) do
  reply[#reply + 1] = subject
  reply[#reply + 1] = n
end
return reply
"""
"""KEYS: the hash. ARGV: this process's field, "sockets|subject:count,...", the entry's lifetime
in ms. Returns {sockets, subject, count, ...} summed over the live entries."""


class RedisPresence(Presence):
    def __init__(self, client: RedisClient, lifetime: float, prefix: str = "lv:") -> None:
        """`lifetime`: how long an entry counts after its report (a few report intervals)."""
        self._client = client
        self._key = f"{prefix}presence"
        self._field = uuid.uuid4().hex
        self._lifetime_ms = round(lifetime * 1000)
        self._report = OneKeyScript(client, REPORT)

    @redis_outage
    async def report(self, local: PresenceCount) -> PresenceCount:
        subjects = ",".join(f"{subject}:{count}" for subject, count in local.by_subject.items() if count)
        reply = await self._report(self._key, self._field, f"{local.sockets}|{subjects}", self._lifetime_ms)
        sockets, *flat = (int(value) for value in reply)
        return PresenceCount(sockets, dict(zip(flat[::2], flat[1::2], strict=True)))

    async def leave(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._client.hdel(self._key, self._field)
