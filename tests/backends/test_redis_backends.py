"""Counters and Broker contracts, on their in-process and Redis implementations,
and the Redis broker through a Redis crash and restart (a real redis-server)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis
from redis.asyncio.connection import Connection as RedisConnection
from redis.exceptions import RedisError

from services.backends.broker import Broker, LocalBroker
from services.backends.broker_redis import RedisBroker
from services.backends.broker_redis_cluster import ClusterBroker
from services.backends.broker_redis_subscriber import NodeSubscriber
from services.backends.counters import Counters, LocalCounters
from services.backends.counters_redis import RedisCounters
from services.backends.presence import PresenceCount
from services.backends.presence_redis import RedisPresence
from services.backends.redis_client import connect_redis
from services.backends.redis_outages import redis_outage
from services.errors import Unavailable
from tests.harness.broker import Recorder
from tests.harness.redis_server import RedisServer, RedisTarget
from tests.harness.server import ROOT, wait_for

WAIT = 5.0
"""How long an expected event may take before the test fails."""



# -- Counters ------------------------------------------------------------------


def within(left: float, window: float) -> bool:
    """Seconds left lie in the window (allowing for float rounding)."""
    return 0 < left <= window + 1e-6


@pytest.fixture
async def counters(redis_target: RedisTarget | None) -> AsyncIterator[Counters]:
    if redis_target is None:
        yield LocalCounters()
        return
    client = await connect_redis(redis_target.url, redis_target.cluster)
    yield RedisCounters(client)
    await client.aclose()


async def test_reserve_counts_up_to_each_limit_then_says_how_long_to_wait(counters: Counters) -> None:
    for _ in range(3):
        assert await counters.reserve([("login:ann", 3), ("login:ip", 5)], 60) is None
    left = await counters.reserve([("login:ann", 3), ("login:ip", 5)], 60)
    assert left is not None and within(left, 60) and left > 59
    assert await counters.reserve([("login:ip", 5)], 60) is None, "a refused reservation counts nothing"
    assert await counters.reserve([("login:bob", 3)], 60) is None


async def test_a_window_ends_and_counting_starts_again(counters: Counters) -> None:
    assert await counters.reserve([("k", 1)], 0.2) is None

    async def reopened() -> bool:
        return await counters.reserve([("k", 1)], 0.2) is None

    await wait_for(reopened, WAIT)
    left = await counters.reserve([("k", 1)], 0.2)
    assert left is not None and within(left, 0.2)


async def test_release_gives_reservations_back(counters: Counters) -> None:
    assert await counters.reserve([("k", 2)], 60) is None
    assert await counters.reserve([("k", 2)], 60) is None
    await counters.release(["k"])
    assert await counters.reserve([("k", 2)], 60) is None
    assert await counters.reserve([("k", 2)], 60) is not None
    await counters.release(["k", "k", "never-counted"])
    assert await counters.reserve([("k", 2)], 60) is None


# -- Broker --------------------------------------------------------------------


async def test_a_full_later_key_gives_the_earlier_ones_back(counters: Counters) -> None:
    assert await counters.reserve([("b", 1)], 60) is None
    assert await counters.reserve([("a", 3), ("b", 1)], 60) is not None
    for _ in range(3):
        assert await counters.reserve([("a", 3)], 60) is None, "the refused reservation left a count on `a`"
    assert await counters.reserve([("a", 3)], 60) is not None


async def test_concurrent_reservations_never_overshoot_a_limit(counters: Counters) -> None:
    """Fifty callers at once, as fifty logins on several processes would be."""
    results = await asyncio.gather(*(counters.reserve([("ip", 1000), ("ann", 10)], 60) for _ in range(50)))
    assert sum(result is None for result in results) == 10
    assert await counters.reserve([("ip", 1000)], 60) is None


# -- Presence ------------------------------------------------------------------

SCALED_ONLY = pytest.mark.parametrize("redis_target", ["redis", "cluster"], indirect=True)
"""LocalPresence has only its own process to count."""


@SCALED_ONLY
async def test_presence_sums_every_process_and_forgets_one_that_left(redis_target: RedisTarget) -> None:
    client = await connect_redis(redis_target.url, redis_target.cluster)
    first, second = RedisPresence(client, lifetime=60), RedisPresence(client, lifetime=60)
    try:
        await second.report(PresenceCount(4, {1: 2, 7: 1}))
        assert await first.report(PresenceCount(3, {1: 1, 2: 2})) == PresenceCount(7, {1: 3, 2: 2, 7: 1})
        assert await first.report(PresenceCount(3, {1: 1, 2: 0})) == PresenceCount(7, {1: 3, 7: 1}), (
            "a zero is no entry"
        )
        await second.leave()
        assert await first.report(PresenceCount(3, {1: 1})) == PresenceCount(3, {1: 1})
    finally:
        await first.leave()
        await client.aclose()


@SCALED_ONLY
async def test_presence_drops_a_process_killed_without_leaving(redis_target: RedisTarget) -> None:
    """A process killed with -9 never says goodbye: its entry must lapse by its deadline."""
    client = await connect_redis(redis_target.url, redis_target.cluster)
    alive = RedisPresence(client, lifetime=60)
    other = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PRESENCE_PROCESS, redis_target.url, str(redis_target.cluster), cwd=ROOT,
    )
    try:
        async def total_is(expected: PresenceCount) -> bool:
            return await alive.report(PresenceCount(1, {2: 1})) == expected

        await wait_for(lambda: total_is(PresenceCount(6, {2: 4})), WAIT, what="the other process to report")
        other.kill()
        await other.wait()
        await wait_for(lambda: total_is(PresenceCount(1, {2: 1})), WAIT, what="the killed process's entry to lapse")
    finally:
        if other.returncode is None:
            other.kill()
            await other.wait()
        await alive.leave()
        await client.aclose()


PRESENCE_PROCESS = """
import asyncio, sys
from services.backends.presence import PresenceCount
from services.backends.redis_client import connect_redis
from services.backends.presence_redis import RedisPresence

async def main():
    presence = RedisPresence(await connect_redis(sys.argv[1], sys.argv[2] == "True"), lifetime=0.3)
    while True:
        await presence.report(PresenceCount(5, {2: 3}))
        await asyncio.sleep(0.1)

asyncio.run(main())
"""
"""Another process with 5 sockets, 3 of them on subject 2, reporting every 0.1 s."""


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def broker(redis_target: RedisTarget | None, recorder: Recorder) -> AsyncIterator[Broker]:
    if redis_target is None:
        instance: Broker = LocalBroker()
    else:
        instance = (ClusterBroker if redis_target.cluster else RedisBroker)(redis_target.url)
    await instance.start(recorder)
    yield instance
    await instance.close()


async def test_message_reaches_the_handler(broker: Broker, recorder: Recorder) -> None:
    await broker.subscribe("votes:1")
    await broker.publish("votes:1", b"hello")
    assert await recorder.next() == ("votes:1", b"hello")


async def test_nothing_arrives_after_unsubscribe(broker: Broker, recorder: Recorder) -> None:
    await broker.subscribe("votes:1")
    await broker.subscribe("marker")
    await broker.unsubscribe("votes:1")
    await broker.publish("votes:1", b"late")
    await broker.publish("marker", b"done")
    assert await recorder.next() == ("marker", b"done")
    assert recorder.messages.empty()


async def test_nothing_arrives_on_channels_never_subscribed(broker: Broker, recorder: Recorder) -> None:
    await broker.subscribe("marker")
    await broker.publish("votes:2", b"stray")
    await broker.publish("marker", b"done")
    assert await recorder.next() == ("marker", b"done")
    assert recorder.messages.empty()


async def test_two_redis_brokers_share_messages(redis_server: RedisServer) -> None:
    """Two brokers on one Redis stand for two processes."""
    first, second = Recorder(), Recorder()
    brokers = [RedisBroker(redis_server.url), RedisBroker(redis_server.url)]
    await brokers[0].start(first)
    await brokers[1].start(second)
    try:
        for instance in brokers:
            await instance.subscribe("votes:1")
        await brokers[0].publish("votes:1", b"from first")
        assert await second.next() == ("votes:1", b"from first")
        assert await first.next() == ("votes:1", b"from first")
        await brokers[1].publish("votes:1", b"from second")
        assert await first.next() == ("votes:1", b"from second")
    finally:
        for instance in brokers:
            await instance.close()


async def test_redis_broker_survives_a_redis_crash(redis_server: RedisServer) -> None:
    recorder = Recorder()
    broker = RedisBroker(redis_server.url)
    await broker.start(recorder)
    try:
        await broker.subscribe("kept")
        await broker.subscribe("dropped")
        await broker.publish("kept", b"before")
        assert await recorder.next() == ("kept", b"before")

        await redis_server.kill()
        # a hang would end in wait_for's TimeoutError, which is neither of these
        with pytest.raises((RedisError, ConnectionError)):
            await asyncio.wait_for(broker.publish("kept", b"lost"), 3)
        with pytest.raises((RedisError, ConnectionError)):
            await asyncio.wait_for(broker.ping(), 3)
        await broker.subscribe("added")
        await broker.unsubscribe("dropped")
        recorder.resynced.clear()

        await redis_server.start()
        await asyncio.wait_for(recorder.resynced.wait(), WAIT)
        await broker.publish("dropped", b"stray")
        for channel in ("kept", "added"):
            await broker.publish(channel, b"after")
            assert await recorder.next() == (channel, b"after")
        assert recorder.messages.empty()
    finally:
        await broker.close()



async def test_no_gap_passes_unnoticed_when_subscribes_race_a_killed_connection(redis_server: RedisServer) -> None:
    """Subscribes written just as Redis drops the pub/sub connection (where redis-py's own
    PubSub connects again under the reader and re-subscribes silently). Whatever is
    published in such a gap must either arrive or be followed by a resync."""
    recorder = Recorder()
    subscriber = NodeSubscriber(redis_server.url, "lv:", backoff=(0.001, 0.01))
    admin = redis.Redis.from_url(redis_server.url)
    await subscriber.start(recorder)

    async def connected() -> bool:
        return subscriber.connected

    try:
        await subscriber.subscribe("kept")
        for round_ in range(40):
            recorder.resynced.clear()
            killing = asyncio.ensure_future(admin.client_kill_filter(_type="pubsub"))
            await asyncio.gather(*(subscriber.subscribe(f"new:{round_}:{n}") for n in range(3)), killing)
            await admin.publish("lv:kept", f"gap {round_}".encode())
            message = asyncio.ensure_future(recorder.next())
            resynced = asyncio.ensure_future(recorder.resynced.wait())
            done, pending = await asyncio.wait([message, resynced], timeout=WAIT, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            assert done, (
                f"round {round_}: the message published in the gap neither arrived nor was followed by a resync"
            )
            await wait_for(connected, WAIT, what="the subscriber to reconnect")
            while not recorder.messages.empty():
                recorder.messages.get_nowait()
    finally:
        await admin.aclose()
        await subscriber.close()


# -- outages ------------------------------------------------------------------------


async def test_a_connection_redis_py_dropped_under_a_command_is_an_outage_and_our_bugs_are_not() -> None:
    """In a failover redis-py 8.1's cluster client drops connections that other commands are
    writing on, and those fail with AttributeError inside redis-py: the same call on a
    connection with no writer, here. That is a 503; an AttributeError of livevote's is a bug."""

    @redis_outage
    async def write_on_a_dropped_connection() -> None:
        await RedisConnection()._send_packed_command([b"PING\r\n"])

    @redis_outage
    async def our_bug() -> None:
        None.writelines([])  # type: ignore[attr-defined]

    with pytest.raises(Unavailable):
        await write_on_a_dropped_connection()
    with pytest.raises(AttributeError):
        await our_bug()
