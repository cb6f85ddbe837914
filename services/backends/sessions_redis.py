"""RedisSessionStore: refresh sessions in Redis or a Redis Cluster, for scaled mode.

Key layout (all under `prefix`, all expiring at the session's max_expires_at):
  session:{sid}   hash: user_id, created_at, expires_at, max_expires_at,
                  revoked ("0"/"1"), current, previous, rotated_at
  token:{hash}    string: the sid; one key per token ever issued, so that an
                  old token is recognised as reuse until the session ends
  user:{user_id}  set of sids, for revoke_user; it lives as long as the
                  user's longest session
  spent:{hash}    a single-use key spent (a live ticket), until it could
                  no longer be used anyway

A refresh token is found by its hash alone, so its key cannot share a slot with
its session: every script here touches one key, which a Redis Cluster requires,
and the rules of a rotation (Outcome) run atomically in the session's own
script. The keys around it are written in an order that a crash between two
steps leaves harmless: a session's user set before the session, the session
before its first token; a new token's key, which expires with the refresh TTL,
before the rotation that makes it current, then extended to the session's end
(or deleted when the rotation did not happen). A crash can at worst leave a key
to a token nobody holds.

Times are the caller's `now` (unix seconds), never the Redis clock, except
that keys expire by Redis's clock at max_expires_at: `now` must be real time.
Floats travel as Python reprs and Lua stores them verbatim, so they round-trip
exactly. Needs Redis >= 7.0 (PEXPIRETIME, EXPIRE NX/GT).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping

from redis.typing import EncodableT, FieldT

from services.backends.redis_client import OneKeyScript, RedisClient
from services.backends.redis_outages import redis_outage
from services.backends.sessions import Outcome, Rotation, SessionRecord, SessionStore

CREATE = """
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
"""
"""KEYS: session:{sid}. ARGV: expiry in unix ms, then field, value, ..."""

ADD_TO_USER = """
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[2], 'NX')
redis.call('PEXPIREAT', KEYS[1], ARGV[2], 'GT')
"""
"""KEYS: user:{id}. ARGV: sid, the session's expiry in unix ms (the set lives as long as the longest)."""

ROTATE = """
local s = redis.call('HMGET', KEYS[1], 'revoked', 'expires_at', 'max_expires_at', 'current', 'previous', 'rotated_at')
if not s[1] then return {'invalid'} end
local now = tonumber(ARGV[3])
local outcome
if s[1] == '1' or now >= tonumber(s[2]) then
  outcome = 'invalid'
elseif ARGV[1] == s[4] then
  local expires_at = ARGV[4]
  if tonumber(expires_at) > tonumber(s[3]) then expires_at = s[3] end
  redis.call('HSET', KEYS[1], 'previous', s[4], 'current', ARGV[2], 'rotated_at', ARGV[3], 'expires_at', expires_at)
  outcome = 'rotated'
elseif ARGV[1] == s[5] and now - tonumber(s[6]) < tonumber(ARGV[5]) then
  outcome = 'grace'
else
  redis.call('HSET', KEYS[1], 'revoked', '1')
  outcome = 'reused'
end
return {outcome, redis.call('PEXPIRETIME', KEYS[1]), redis.call('HGETALL', KEYS[1])}
"""
"""KEYS: session:{sid}. ARGV: presented hash, new hash, now, now + refresh_ttl, grace.
Returns {'invalid'} for no session, else {outcome, the session's expiry in unix ms, its fields}."""

REVOKE = """
if redis.call('HGET', KEYS[1], 'revoked') == '0' then
  redis.call('HSET', KEYS[1], 'revoked', '1')
  return 1
end
return 0
"""
"""KEYS: session:{sid}. 1 when it was active and is now revoked."""


class RedisSessionStore(SessionStore):
    """The client is shared and belongs to its creator, who closes it."""

    def __init__(self, client: RedisClient, prefix: str = "lv:") -> None:
        self._client = client
        self._prefix = prefix
        self._create = OneKeyScript(client, CREATE)
        self._add_to_user = OneKeyScript(client, ADD_TO_USER)
        self._rotate = OneKeyScript(client, ROTATE)
        self._revoke = OneKeyScript(client, REVOKE)

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
        expire_ms = math.ceil(max_expires_at * 1000)
        fields: dict[FieldT, EncodableT] = {
            "user_id": user_id, "created_at": now, "expires_at": expires_at, "max_expires_at": max_expires_at,
            "revoked": 0, "current": token_hash, "previous": "", "rotated_at": now,
        }
        await self._add_to_user(self._user_key(user_id), sid, expire_ms)
        flat = [item for pair in fields.items() for item in pair]
        await self._create(self._session_key(sid), expire_ms, *flat)
        await self._client.set(self._token_key(token_hash), sid, pxat=expire_ms)
        return SessionRecord(sid, user_id, now, expires_at, max_expires_at, False)

    @redis_outage
    async def rotate(self, token_hash: str, new_hash: str, now: float, refresh_ttl: float, grace: float) -> Rotation:
        sid = await self._client.get(self._token_key(token_hash))
        if sid is None:
            return Rotation(Outcome.INVALID, None)
        sid = _text(sid)
        new_key = self._token_key(new_hash)
        await self._client.set(new_key, sid, px=max(1, math.ceil(refresh_ttl * 1000)))
        reply = await self._rotate(self._session_key(sid), token_hash, new_hash, now, now + refresh_ttl, grace)
        if len(reply) == 1:
            return Rotation(Outcome.INVALID, None)
        outcome, expire_ms, flat = Outcome(_text(reply[0])), int(reply[1]), reply[2]
        if outcome is Outcome.ROTATED:
            await self._client.pexpireat(new_key, expire_ms)
        else:
            await self._client.delete(new_key)
        return Rotation(outcome, _record(sid, dict(zip(flat[::2], flat[1::2], strict=True))))

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
        return bool(await self._revoke(self._session_key(sid)))

    @redis_outage
    async def revoke_user(self, user_id: int) -> list[str]:
        """Each session is revoked atomically on its own; they may live on different nodes."""
        sids = [_text(sid) for sid in await self._client.smembers(self._user_key(user_id))]
        revoked = await asyncio.gather(*(self._revoke(self._session_key(sid)) for sid in sids))
        return [sid for sid, done in zip(sids, revoked, strict=True) if done]

    @redis_outage
    async def spend(self, key_hash: str, now: float, until: float) -> bool:
        return bool(await self._client.set(self._spent_key(key_hash), 1, nx=True, pxat=math.ceil(until * 1000)))

    def _session_key(self, sid: str) -> str:
        return f"{self._prefix}session:{sid}"

    def _token_key(self, token_hash: str) -> str:
        return f"{self._prefix}token:{token_hash}"

    def _user_key(self, user_id: int) -> str:
        return f"{self._prefix}user:{user_id}"

    def _spent_key(self, key_hash: str) -> str:
        return f"{self._prefix}spent:{key_hash}"


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
