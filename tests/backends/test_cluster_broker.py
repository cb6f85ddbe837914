"""ClusterBroker on a real Redis Cluster (3 masters, 3 replicas): sharded pub/sub that
notices a failover, follows the slot to its new master and resyncs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.crc import key_slot

from services.backends.broker_redis_cluster import ClusterBroker
from services.backends.broker_redis_subscriber import NETWORK_ERRORS
from services.events import subject_votes
from tests.harness.broker import Recorder
from tests.harness.redis_cluster import ClusterServers

SUBJECTS = range(1, 7)
"""Enough subjects for their feeds to land on every master."""


@pytest.fixture
async def brokers(redis_cluster: ClusterServers) -> AsyncIterator[tuple[ClusterBroker, Recorder, ClusterBroker]]:
    """A listening broker with its recorder, and a publishing one: two processes' worth."""
    listener, publisher, recorder = ClusterBroker(redis_cluster.url), ClusterBroker(redis_cluster.url), Recorder()
    await listener.start(recorder)
    await publisher.start(Recorder())
    yield listener, recorder, publisher
    await listener.close()
    await publisher.close()


async def received(recorder: Recorder, channel: str, data: bytes) -> None:
    while await recorder.next() != (channel, data):
        pass


async def test_feeds_spread_over_the_masters_and_reach_only_their_subscribers(
    redis_cluster: ClusterServers, brokers: tuple[ClusterBroker, Recorder, ClusterBroker]
) -> None:
    listener, recorder, publisher = brokers
    masters = {await redis_cluster.master_for_key("lv:" + subject_votes(no)) for no in SUBJECTS}
    assert len(masters) == 3, "the subjects' feeds live on every master"
    for no in SUBJECTS:
        await listener.subscribe(subject_votes(no))
    await publisher.publish(subject_votes(99), b"nobody listens")
    for no in SUBJECTS:
        await publisher.publish(subject_votes(no), f"vote {no}".encode())
    got = [await recorder.next() for _ in SUBJECTS]
    assert sorted(got) == sorted((subject_votes(no), f"vote {no}".encode()) for no in SUBJECTS)
    await listener.unsubscribe(subject_votes(1))
    await publisher.publish(subject_votes(1), b"after unsubscribe")
    await publisher.publish(subject_votes(2), b"still subscribed")
    assert await recorder.next() == (subject_votes(2), b"still subscribed")


async def test_a_failover_moves_the_feed_to_the_new_master_and_resyncs(
    redis_cluster: ClusterServers, brokers: tuple[ClusterBroker, Recorder, ClusterBroker]
) -> None:
    listener, recorder, publisher = brokers
    feed = subject_votes(1)
    await listener.subscribe(feed)
    await listener.subscribe(subject_votes(2))
    await publisher.publish(feed, b"before")
    await received(recorder, feed, b"before")

    old_master = await redis_cluster.master_for_key("lv:" + feed)
    recorder.resynced.clear()
    await redis_cluster.kill(old_master)
    await redis_cluster.wait_failover(old_master, key_slot(("lv:" + feed).encode()))
    await asyncio.wait_for(recorder.resynced.wait(), 15)

    async def flows_again() -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                await publisher.publish(feed, f"after {attempt}".encode())
            except NETWORK_ERRORS:  # the publisher's slot map may lag a moment behind the failover
                await asyncio.sleep(0.1)
                continue
            try:
                await asyncio.wait_for(received(recorder, feed, f"after {attempt}".encode()), 1)
                return
            except TimeoutError:
                continue

    await asyncio.wait_for(flows_again(), 15)
    await publisher.publish(subject_votes(2), b"other shards never stopped")
    await received(recorder, subject_votes(2), b"other shards never stopped")
