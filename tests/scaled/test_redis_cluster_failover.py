"""What livevote can rely on from redis-py's asyncio cluster client (`RedisCluster`, redis-py 8.1)
with sharded pub/sub when nodes of a real Redis Cluster (tests/harness/redis_cluster.py) die.
Each test starts its own 3-master, 3-replica cluster (~2 s) with cluster-node-timeout 1000 ms.

- A killed master's subscribers see ConnectionError: at once with a connection that has no
  retries (as redis-py's cluster client makes them), only after seconds of silent reconnecting
  with redis-py's default retry; and a plain PubSub that reconnects in time resubscribes by
  itself, so the messages published meanwhile are lost with no error, only a second
  'ssubscribe' confirmation.
- SPUBLISH through the cluster client raises ConnectionError while the dead master still owns
  the slot, then works on the promoted replica with the same client object.
- The cluster client's own pubsub (`RedisCluster.pubsub()`) does not move a subscription after a
  failover by itself: it raises ConnectionError on every read until some command through the same
  RedisCluster refreshes the slot map, then resubscribes on the new master in a background task.
  The only sign of the gap is another 'ssubscribe' message; messages published in between are gone.
- A CLUSTERDOWN answer to any command of that RedisCluster closes every connection of it,
  including the pubsub connections of healthy shards: they resubscribe silently and lose what
  was in flight. If the lost shard holds the client's "default node", every later command of
  the client, to any shard, raises that node's ConnectionError until it is back.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import pytest
import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ConstantBackoff, NoBackoff
from redis.exceptions import ClusterDownError, SlotNotCoveredError

from tests.harness.redis_cluster import ClusterServers
from tests.harness.server import wait_for
from tests.harness.sharded_pubsub import CHANNEL, SLOT, collect, next_message, other_shard_channel, shape, subscriber


async def test_failover_promotes_the_replica_and_spublish_resumes(
    redis_cluster: ClusterServers, cluster_client: RedisCluster
) -> None:
    loop = asyncio.get_running_loop()
    master = await redis_cluster.master_for_key(CHANNEL)
    [replica] = await redis_cluster.replicas_for_slot(SLOT)
    async with AsyncExitStack() as stack:
        no_retry = await subscriber(stack, master, retry=Retry(NoBackoff(), 0))
        default_retry = await subscriber(stack, master)  # redis-py's default: 10 retries, jittered backoff
        on_replica = await subscriber(stack, replica)
        assert await cluster_client.spublish(CHANNEL, b"before") == 2
        for pubsub in (no_retry, default_retry, on_replica):
            assert shape(await next_message(pubsub)) == ("smessage", CHANNEL, "before")

        async def first_error(pubsub: redis.client.PubSub) -> tuple[BaseException, float]:
            while True:
                try:
                    await pubsub.get_message(timeout=0.5)
                except Exception as error:
                    return error, loop.time() - killed_at

        await redis_cluster.kill(master)
        killed_at = loop.time()
        default_reader = asyncio.create_task(first_error(default_retry))

        # No retries: the read hits EOF, redis-py tries one reconnect, and the reader gets that
        # reconnect's ConnectionError at once.
        error, after = await first_error(no_retry)
        assert isinstance(error, redis.ConnectionError) and f"connecting to 127.0.0.1:{master}" in str(error)
        assert after < 1.0
        assert not default_reader.done()  # still reconnecting quietly (~4 s of backoff on average)

        # SPUBLISH through the same cluster client: ConnectionError while the dead master still
        # owns the slot (each call already retried 10 times inside redis-py), then it works.
        failures: list[BaseException] = []
        while True:
            try:
                receivers = await cluster_client.spublish(CHANNEL, b"after the failover")
                break
            except Exception as error:
                failures.append(error)
                assert loop.time() - killed_at < 10, failures
                await asyncio.sleep(0.05)
        resumed_after = loop.time() - killed_at
        assert failures and all(isinstance(error, redis.ConnectionError) for error in failures), failures
        assert receivers == 1  # the subscriber on the promoted replica

        new_master = await redis_cluster.wait_failover(master, SLOT, timeout=10)
        assert new_master == replica
        assert loop.time() - killed_at < 8, "failover took too long"
        # The subscriber on the replica kept its subscription through the promotion.
        assert shape(await next_message(on_replica)) == ("smessage", CHANNEL, "after the failover")

        default_error, default_after = await asyncio.wait_for(default_reader, 10)
        assert isinstance(default_error, redis.ConnectionError)
        assert f"connecting to 127.0.0.1:{master}" in str(default_error)
        print(f"failover: spublish failed {len(failures)}x ({type(failures[0]).__name__}: {failures[0]}), "
              f"worked {resumed_after:.2f} s after the kill; "
              f"default-retry subscriber raised after {default_after:.2f} s")

    # The old master comes back as a replica of its successor.
    await redis_cluster.restart(master)
    state = {node.port: node for node in await redis_cluster.nodes()}
    assert state[master].role == "replica" and state[master].master_port == new_master
    assert await redis_cluster.master_for_slot(SLOT) == new_master


async def test_plain_subscriber_with_retries_resubscribes_silently(
    redis_cluster: ClusterServers, cluster_client: RedisCluster
) -> None:
    """A plain PubSub whose node comes back within its retries reconnects and resubscribes in
    PubSub.on_connect: no error reaches the reader, and what was published meanwhile is gone."""
    [replica] = await redis_cluster.replicas_for_slot(SLOT)
    async with AsyncExitStack() as stack:
        patient = await subscriber(stack, replica, retry=Retry(ConstantBackoff(0.05), 300))
        await redis_cluster.kill(replica)
        reader = asyncio.create_task(next_message(patient, timeout=15))
        assert await cluster_client.spublish(CHANNEL, b"missed") == 0  # nobody subscribed on the master
        await redis_cluster.restart(replica)
        assert shape(await reader) == ("ssubscribe", CHANNEL, 1)  # the only trace of the gap
        assert await cluster_client.spublish(CHANNEL, b"after") == 0
        assert shape(await next_message(patient)) == ("smessage", CHANNEL, "after")


async def test_cluster_pubsub_across_a_failover(redis_cluster: ClusterServers, cluster_client: RedisCluster) -> None:
    fresh = RedisCluster.from_url(redis_cluster.url)
    try:
        with pytest.raises(SlotNotCoveredError):  # from_url loads no slot map: initialize() first
            await fresh.pubsub().ssubscribe(CHANNEL)
    finally:
        await fresh.aclose()

    master = await redis_cluster.master_for_key(CHANNEL)
    elsewhere = await other_shard_channel(redis_cluster, master)
    pubsub = cluster_client.pubsub()
    try:
        await pubsub.ssubscribe(CHANNEL, elsewhere)
        await cluster_client.spublish(CHANNEL, b"before")
        messages, _ = await collect(pubsub, lambda got: len(got) == 3)
        assert sorted(messages) == sorted(
            [("ssubscribe", CHANNEL, 1), ("ssubscribe", elsewhere, 1), ("smessage", CHANNEL, "before")]
        )

        await redis_cluster.kill(master)
        errors: list[BaseException] = []
        # Every read of the dead node's connection raises at once (cluster connections have no retries).
        loop = asyncio.get_running_loop()
        killed_at = loop.time()
        while not errors:
            assert loop.time() - killed_at < 2
            try:
                await pubsub.get_sharded_message(timeout=0.05)
            except redis.ConnectionError as error:
                errors.append(error)
        assert f"connecting to 127.0.0.1:{master}" in str(errors[0])

        new_master = await redis_cluster.wait_failover(master, SLOT)

        # The failover is over, but nothing has refreshed this client's slot map: the pubsub still
        # reads the dead node, and ssubscribe() again goes there too.
        errors = []
        for _ in range(4):
            try:
                message = await pubsub.get_sharded_message(timeout=0.05)
                assert message is None
            except redis.ConnectionError as error:
                errors.append(error)
        assert errors and all(f"127.0.0.1:{master}" in str(error) for error in errors)
        with pytest.raises(redis.ConnectionError, match=f"127.0.0.1:{master}"):
            await pubsub.ssubscribe(CHANNEL)

        # The other shard's subscription is unaffected.
        assert await cluster_client.spublish(elsewhere, b"other shard") == 1
        messages, _ = await collect(pubsub, lambda got: ("smessage", elsewhere, "other shard") in got,
                                    tolerate=(redis.ConnectionError,))

        # Published on the new master now: nobody is subscribed there.
        plain = redis.Redis(host="127.0.0.1", port=new_master)
        try:
            assert await plain.spublish(CHANNEL, b"lost") == 0
        finally:
            await plain.aclose()

        # A command of this client that meets the dead node refreshes the slot map (no error
        # reaches the caller: it retries on the new master), which schedules the pubsub's
        # reconciliation: SSUBSCRIBE on the new master, in a background task.
        await cluster_client.spublish(CHANNEL, b"refresh")
        messages, errors = await collect(pubsub, lambda got: ("ssubscribe", CHANNEL, 1) in got,
                                         tolerate=(redis.ConnectionError, RuntimeError))
        assert all(isinstance(error, (redis.ConnectionError, RuntimeError)) for error in errors)
        assert await cluster_client.spublish(CHANNEL, b"after") == 1
        later, _ = await collect(pubsub, lambda got: ("smessage", CHANNEL, "after") in got)
        seen = messages + later
        assert ("smessage", CHANNEL, "lost") not in seen  # the gap: only the second 'ssubscribe' tells
        assert ("ssubscribe", elsewhere, 1) not in seen
        print(f"cluster pubsub: 'refresh' {'arrived' if ('smessage', CHANNEL, 'refresh') in seen else 'was lost'}; "
              f"errors while it resubscribed: {errors!r}")
    finally:
        await pubsub.aclose()


@pytest.mark.parametrize("lost", ["another shard", "the default node's shard"])
async def test_clusterdown_closes_every_cluster_pubsub_connection(
    redis_cluster: ClusterServers, cluster_client: RedisCluster, lost: str
) -> None:
    """A shard lost entirely (master and replica) puts the cluster in fail state. A command of the
    RedisCluster that gets CLUSTERDOWN makes redis-py close every connection of the client, the
    pubsub connections to healthy shards included: they resubscribe silently at the next read,
    and what was in flight is gone.

    After CLUSTERDOWN redis-py retries: closes everything, sleeps 0.25 s, reloads the slot map,
    then sends COMMAND to its "default node" (the first master it lists) outside its retry loop.
    When the lost shard holds that node, every command of the client, to any shard, raises that
    node's ConnectionError until the node is back."""
    default = int(cluster_client.get_default_node().port)
    masters = [node.port for node in await redis_cluster.nodes() if node.role == "master"]
    lost_master = default if lost == "the default node's shard" else next(port for port in masters if port != default)
    [lost_replica] = [node.port for node in await redis_cluster.nodes() if node.master_port == lost_master]
    healthy = await other_shard_channel(redis_cluster, lost_master)
    healthy_master = await redis_cluster.master_for_key(healthy)
    pubsub = cluster_client.pubsub()
    try:
        await pubsub.ssubscribe(healthy)
        await collect(pubsub, lambda got: got == [("ssubscribe", healthy, 1)])

        await redis_cluster.kill(lost_replica)
        await redis_cluster.kill(lost_master)

        async def cluster_down() -> bool:
            return (await redis_cluster.cluster_info(healthy_master))["cluster_state"] == "fail"

        await wait_for(cluster_down, timeout=10)
        # Sharded pub/sub still works while the cluster is down (cluster-allow-pubsubshard-when-down).
        assert await cluster_client.spublish(healthy, b"in flight") == 1

        loop = asyncio.get_running_loop()
        started = loop.time()
        script = "return redis.call('INCR', KEYS[1])"
        if lost == "another shard":
            with pytest.raises(ClusterDownError):
                await cluster_client.eval(script, 1, healthy)
            assert loop.time() - started >= 11 * 0.25 - 0.05  # 1 + 10 attempts, 0.25 s after each
        else:
            for attempt in range(3):  # stuck: a healthy shard's EVAL and even SPUBLISH fail
                with pytest.raises(redis.ConnectionError, match=f"127.0.0.1:{lost_master}"):
                    if attempt == 0:
                        await cluster_client.eval(script, 1, healthy)
                    else:
                        await cluster_client.spublish(healthy, b"never")
        took = loop.time() - started

        messages, errors = await collect(pubsub, lambda got: ("ssubscribe", healthy, 1) in got)
        assert not errors

        if lost != "another shard":
            await redis_cluster.restart(lost_master)  # back as master of its slots: the client recovers
        assert await cluster_client.spublish(healthy, b"after") == 1
        later, _ = await collect(pubsub, lambda got: ("smessage", healthy, "after") in got)
        assert ("smessage", healthy, "in flight") not in messages + later
        print(f"CLUSTERDOWN, {lost} lost: " + (
            f"eval raised ClusterDownError after {took:.2f} s" if lost == "another shard"
            else "every command raised the dead default node's ConnectionError until it came back"
        ) + "; the healthy shard's pubsub resubscribed silently and lost what was in flight")
    finally:
        await pubsub.aclose()
