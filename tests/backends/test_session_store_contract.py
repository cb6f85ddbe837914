"""The SessionStore contract: every implementation must pass these, unchanged.

Times are whole seconds near the real clock: Redis expires keys by its own
clock at max_expires_at, and whole seconds keep `now - rotated_at` exact.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.backends.redis_client import connect_redis
from services.backends.sessions import Outcome, Rotation, SessionRecord, SessionStore
from services.backends.sessions_redis import RedisSessionStore
from services.backends.sessions_sqlite import SqliteSessionStore
from services.backends.sqlite_db import SqliteDatabase
from tests.harness.redis_server import RedisTarget

TTL = 7 * 86400.0
MAX_AGE = 30 * 86400.0
GRACE = 10.0



@pytest.fixture
async def store(redis_target: RedisTarget | None, tmp_path: Path) -> AsyncIterator[SessionStore]:
    if redis_target is None:
        database = SqliteDatabase(tmp_path / "s.db")
        await database.open()
        sqlite_store = SqliteSessionStore(database)
        await sqlite_store.open()
        yield sqlite_store
        await sqlite_store.close()
        await database.close()
    else:
        client = await connect_redis(redis_target.url, redis_target.cluster)
        redis_store = RedisSessionStore(client)
        await redis_store.open()
        yield redis_store
        await redis_store.close()
        await client.aclose()


@pytest.fixture
def t0() -> float:
    return float(int(time.time()))


def h(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def start(store: SessionStore, t0: float, sid: str = "s1", user_id: int = 1, token: str = "t0") -> SessionRecord:
    return await store.create(sid, user_id, h(token), t0, t0 + TTL, t0 + MAX_AGE)


async def rotate(store: SessionStore, old: str, new: str, now: float, grace: float = GRACE) -> Rotation:
    return await store.rotate(h(old), h(new), now, TTL, grace)


async def test_create_then_get(store: SessionStore, t0: float) -> None:
    created = await start(store, t0)
    assert created == SessionRecord("s1", 1, t0, t0 + TTL, t0 + MAX_AGE, False)
    assert await store.get("s1") == created
    assert await store.get("nope") is None


async def test_find_by_current_and_older_hashes(store: SessionStore, t0: float) -> None:
    await start(store, t0)
    await rotate(store, "t0", "t1", t0 + 100)
    await rotate(store, "t1", "t2", t0 + 200)
    for token in ("t0", "t1", "t2"):
        found = await store.find(h(token))
        assert found is not None and found.sid == "s1"
    assert await store.find(h("unknown")) is None


async def test_rotation_slides_expiry(store: SessionStore, t0: float) -> None:
    await start(store, t0)
    rotation = await rotate(store, "t0", "t1", t0 + 100)
    assert rotation.outcome is Outcome.ROTATED
    assert rotation.session == SessionRecord("s1", 1, t0, t0 + 100 + TTL, t0 + MAX_AGE, False)
    assert await store.get("s1") == rotation.session


async def test_sliding_expiry_is_capped_by_max_expiry(store: SessionStore, t0: float) -> None:
    await start(store, t0, token="day0")
    for day, expected_expiry in ((6, 13), (12, 19), (18, 25), (24, 30)):
        rotation = await rotate(store, f"day{day - 6}", f"day{day}", t0 + day * 86400)
        assert rotation.outcome is Outcome.ROTATED
        assert rotation.session is not None and rotation.session.expires_at == t0 + expected_expiry * 86400
    assert (await rotate(store, "day24", "day30", t0 + MAX_AGE)).outcome is Outcome.INVALID


async def test_replaced_token_within_grace_changes_nothing(store: SessionStore, t0: float) -> None:
    await start(store, t0)
    rotated = await rotate(store, "t0", "t1", t0 + 100)
    replay = await rotate(store, "t0", "t2", t0 + 100 + GRACE - 1)
    assert replay == Rotation(Outcome.GRACE, rotated.session)
    assert await store.get("s1") == rotated.session
    assert await store.find(h("t2")) is None
    assert (await rotate(store, "t1", "t3", t0 + 120)).outcome is Outcome.ROTATED


async def test_replaced_token_after_grace_revokes_the_session(store: SessionStore, t0: float) -> None:
    await start(store, t0)
    await rotate(store, "t0", "t1", t0 + 100)
    reuse = await rotate(store, "t0", "t2", t0 + 100 + GRACE + 1)
    assert reuse.outcome is Outcome.REUSED
    assert reuse.session is not None and reuse.session.revoked
    assert await store.get("s1") == reuse.session
    assert (await rotate(store, "t1", "t3", t0 + 112)).outcome is Outcome.INVALID


async def test_grace_means_less_than_grace_seconds(store: SessionStore, t0: float) -> None:
    """Outcome.GRACE: replaced *less than* `grace` seconds ago; so grace=0 never applies."""
    await start(store, t0)
    await rotate(store, "t0", "t1", t0 + 100)
    assert (await rotate(store, "t0", "t2", t0 + 100 + GRACE)).outcome is Outcome.REUSED


async def test_token_from_two_rotations_ago_is_reuse(store: SessionStore, t0: float) -> None:
    await start(store, t0)
    await rotate(store, "t0", "t1", t0 + 100)
    await rotate(store, "t1", "t2", t0 + 101)
    reuse = await rotate(store, "t0", "t3", t0 + 102)
    assert reuse.outcome is Outcome.REUSED
    assert reuse.session is not None and reuse.session.revoked


async def test_unknown_token_is_invalid(store: SessionStore, t0: float) -> None:
    await start(store, t0)
    assert await rotate(store, "unknown", "t1", t0 + 1) == Rotation(Outcome.INVALID, None)


async def test_expired_session_is_invalid(store: SessionStore, t0: float) -> None:
    created = await start(store, t0)
    assert (await rotate(store, "t0", "t1", t0 + TTL)).outcome is Outcome.INVALID
    assert await store.get("s1") == created
    assert not created.active(t0 + TTL)


async def test_revoke_once(store: SessionStore, t0: float) -> None:
    await start(store, t0)
    assert await store.revoke("s1") is True
    assert await store.revoke("s1") is False
    assert await store.revoke("nope") is False
    revoked = await store.get("s1")
    assert revoked is not None and revoked.revoked and not revoked.active(t0 + 1)
    assert (await rotate(store, "t0", "t1", t0 + 1)).outcome is Outcome.INVALID


async def test_revoke_user_revokes_only_that_users_active_sessions(store: SessionStore, t0: float) -> None:
    for sid, user_id in (("a1", 1), ("a2", 1), ("a3", 1), ("b1", 2)):
        await start(store, t0, sid, user_id, token=f"token-{sid}")
    await store.revoke("a3")
    assert sorted(await store.revoke_user(1)) == ["a1", "a2"]
    assert await store.revoke_user(1) == []
    assert await store.revoke_user(99) == []
    for sid, revoked in (("a1", True), ("a2", True), ("b1", False)):
        session = await store.get(sid)
        assert session is not None and session.revoked is revoked
    assert (await rotate(store, "token-b1", "next", t0 + 1)).outcome is Outcome.ROTATED


async def test_concurrent_rotations_within_grace_rotate_once(store: SessionStore, t0: float) -> None:
    await start(store, t0)
    rotations = await asyncio.gather(*(rotate(store, "t0", f"new{i}", t0 + 5) for i in range(20)))
    outcomes = Counter(rotation.outcome for rotation in rotations)
    assert outcomes == {Outcome.ROTATED: 1, Outcome.GRACE: 19}
    winner = next(i for i, rotation in enumerate(rotations) if rotation.outcome is Outcome.ROTATED)
    assert (await rotate(store, f"new{winner}", "next", t0 + 6)).outcome is Outcome.ROTATED


async def test_concurrent_rotations_without_grace_revoke_the_session(store: SessionStore, t0: float) -> None:
    await start(store, t0)
    rotations = await asyncio.gather(*(rotate(store, "t0", f"new{i}", t0 + 5, grace=0) for i in range(20)))
    outcomes = Counter(rotation.outcome for rotation in rotations)
    assert outcomes == {Outcome.ROTATED: 1, Outcome.REUSED: 1, Outcome.INVALID: 18}
    winner = next(i for i, rotation in enumerate(rotations) if rotation.outcome is Outcome.ROTATED)
    assert (await rotate(store, f"new{winner}", "next", t0 + 6)).outcome is Outcome.INVALID
    session = await store.get("s1")
    assert session is not None and session.revoked


async def test_a_key_is_spent_once_even_when_spent_concurrently(store: SessionStore, t0: float) -> None:
    spent = await asyncio.gather(*(store.spend(h("ticket"), t0, t0 + 30) for _ in range(20)))
    assert spent.count(True) == 1
    assert await store.spend(h("ticket"), t0 + 29, t0 + 30) is False
    assert await store.spend(h("another"), t0, t0 + 30) is True


async def test_a_spent_key_is_forgotten_only_once_it_could_not_be_used(store: SessionStore, t0: float) -> None:
    """Keys are forgotten after `until` (SQLite on the next spend, Redis by expiry): the store
    does not grow with every ticket ever spent."""
    assert await store.spend(h("old"), t0 - 60, t0 - 30) is True
    assert await store.spend(h("new"), t0, t0 + 30) is True
    assert await store.spend(h("new"), t0 + 1, t0 + 30) is False
    assert await store.spend(h("old"), t0, t0 + 30) is True
