"""RedisSessionStore: refresh sessions in Redis, for scaled mode.

Key layout (all under `prefix`, all expiring at the session's max_expires_at):
  session:{sid}   hash: user_id, created_at, expires_at, max_expires_at,
                  revoked ("0"/"1"), current, previous, rotated_at
  token:{hash}    string: the sid; one key per token ever issued, so that an
                  old token is recognised as reuse until the session ends
  user:{user_id}  set of sids, for revoke_user; it lives as long as the
                  user's longest session

Times are the caller's `now` (unix seconds), never the Redis clock, except
that keys expire by Redis's clock at max_expires_at: `now` must be real time.
Floats travel as Python reprs and Lua stores them verbatim, so they round-trip
exactly. Needs Redis >= 7.0 (PEXPIRETIME, EXPIRE NX/GT).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import redis.asyncio as redis
from redis.typing import EncodableT, FieldT

from services.backends.outages import redis_outage
from services.backends.sessions import Outcome, Rotation, SessionRecord, SessionStore

ROTATE = """
local sid = redis.call('GET', KEYS[1])
if not sid then return {'invalid'} end
local key = ARGV[1] .. 'session:' .. sid
local s = redis.call('HMGET', key, 'revoked', 'expires_at', 'max_expires_at', 'current', 'previous', 'rotated_at')
if not s[1] then return {'invalid'} end
local now = tonumber(ARGV[4])
local outcome
if s[1] == '1' or now >= tonumber(s[2]) then
  outcome = 'invalid'
elseif ARGV[2] == s[4] then
  local expires_at = ARGV[5]
  if tonumber(expires_at) > tonumber(s[3]) then expires_at = s[3] end
  redis.call('HSET', key, 'previous', s[4], 'current', ARGV[3], 'rotated_at', ARGV[4], 'expires_at', expires_at)
  redis.call('SET', KEYS[2], sid, 'PXAT', redis.call('PEXPIRETIME', key))
  outcome = 'rotated'
elseif ARGV[2] == s[5] and now - tonumber(s[6]) < tonumber(ARGV[6]) then
  outcome = 'grace'
else
  redis.call('HSET', key, 'revoked', '1')
  outcome = 'reused'
end
return {outcome, sid, redis.call('HGETALL', key)}
"""
"""KEYS: token:{presented}, token:{new}. ARGV: prefix, presented hash, new hash,
now, now + refresh_ttl, grace. Returns {outcome[, sid, session fields]}."""

REVOKE = """
local revoked = {}
for i, key in ipairs(KEYS) do
  if redis.call('HGET', key, 'revoked') == '0' then
    redis.call('HSET', key, 'revoked', '1')
    revoked[#revoked + 1] = ARGV[i]
  end
end
return revoked
"""
"""KEYS: session keys; ARGV: their sids. Revokes the active ones, returns their sids."""


class RedisSessionStore(SessionStore):
    """The client is shared and belongs to its creator, who closes it."""

    def __init__(self, client: redis.Redis, prefix: str = "lv:") -> None:
        self._client = client
        self._prefix = prefix
        self._rotate = client.register_script(ROTATE)
        self._revoke = client.register_script(REVOKE)

    async def open(self) -> None:
        await self.ping()

    async def close(self) -> None:
        """Nothing to release: the client is not ours."""

    @redis_outage
    async def ping(self) -> None:
        await self._client.ping()

    @redis_outage
    async def create(
        self, sid: str, user_id: int, token_hash: str, now: float, expires_at: float, max_expires_at: float
    ) -> SessionRecord:
        key, user_key = self._session_key(sid), self._user_key(user_id)
        expire_ms = math.ceil(max_expires_at * 1000)
        fields: dict[FieldT, EncodableT] = {
            "user_id": user_id, "created_at": now, "expires_at": expires_at, "max_expires_at": max_expires_at,
            "revoked": 0, "current": token_hash, "previous": "", "rotated_at": now,
        }
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=fields)
            pipe.pexpireat(key, expire_ms)
            pipe.set(self._token_key(token_hash), sid, pxat=expire_ms)
            pipe.sadd(user_key, sid)
            pipe.pexpireat(user_key, expire_ms, nx=True)
            pipe.pexpireat(user_key, expire_ms, gt=True)
            await pipe.execute()
        return SessionRecord(sid, user_id, now, expires_at, max_expires_at, False)

    @redis_outage
    async def rotate(self, token_hash: str, new_hash: str, now: float, refresh_ttl: float, grace: float) -> Rotation:
        reply = await self._rotate(
            keys=[self._token_key(token_hash), self._token_key(new_hash)],
            args=[self._prefix, token_hash, new_hash, now, now + refresh_ttl, grace],
        )
        if len(reply) == 1:
            return Rotation(Outcome(_text(reply[0])), None)
        outcome, sid, flat = reply
        return Rotation(Outcome(_text(outcome)), _record(_text(sid), dict(zip(flat[::2], flat[1::2]))))

    @redis_outage
    async def find(self, token_hash: str) -> SessionRecord | None:
        sid = await self._client.get(self._token_key(token_hash))
        return None if sid is None else await self.get(_text(sid))

    @redis_outage
    async def get(self, sid: str) -> SessionRecord | None:
        fields = await self._client.hgetall(self._session_key(sid))
        return _record(sid, fields) if fields else None

    @redis_outage
    async def revoke(self, sid: str) -> bool:
        return bool(await self._revoke(keys=[self._session_key(sid)], args=[sid]))

    @redis_outage
    async def revoke_user(self, user_id: int) -> list[str]:
        sids = [_text(sid) for sid in await self._client.smembers(self._user_key(user_id))]
        if not sids:
            return []
        revoked = await self._revoke(keys=[self._session_key(sid) for sid in sids], args=sids)
        return [_text(sid) for sid in revoked]

    def _session_key(self, sid: str) -> str:
        return f"{self._prefix}session:{sid}"

    def _token_key(self, token_hash: str) -> str:
        return f"{self._prefix}token:{token_hash}"

    def _user_key(self, user_id: int) -> str:
        return f"{self._prefix}user:{user_id}"


def _text(value: bytes | str) -> str:
    """The client may or may not decode responses."""
    return value.decode() if isinstance(value, bytes) else value


def _record(sid: str, hash_fields: Mapping[bytes | str, bytes | str]) -> SessionRecord:
    fields = {_text(name): _text(value) for name, value in hash_fields.items()}
    return SessionRecord(
        sid=sid,
        user_id=int(fields["user_id"]),
        created_at=float(fields["created_at"]),
        expires_at=float(fields["expires_at"]),
        max_expires_at=float(fields["max_expires_at"]),
        revoked=fields["revoked"] == "1",
    )
