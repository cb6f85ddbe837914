"""A real Redis Cluster (tests/harness/redis_cluster.py) and what livevote can rely on from redis-py's
asyncio cluster client (`redis.asyncio.cluster.RedisCluster`, redis-py 8.1) with sharded pub/sub,
while every node is up, on the run's shared 3-master, 3-replica cluster (`shared_cluster`).

- SSUBSCRIBE is served by the slot's master *and* its replicas, and SPUBLISH reaches the
  subscribers of every node of the shard; a node of another shard answers MOVED, which a plain
  PubSub only raises at the next read, while still counting the channel as subscribed.
- A Lua script's keys must share a slot: redis-py refuses two slots before sending, the server
  answers CROSSSLOT, and an undeclared key of another node fails at run time.

What happens when nodes die is tests/scaled/test_redis_cluster_failover.py's subject.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest
import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import ClusterCrossSlotError, MovedError, RedisClusterException, ResponseError

from tests.harness.redis_cluster import SLOTS, ClusterServers
from tests.harness.sharded_pubsub import CHANNEL, SLOT, next_message, shape, subscriber


@pytest.fixture
def redis_cluster(shared_cluster: ClusterServers) -> ClusterServers:
    """No test here faults its cluster: the run's shared one (`cluster_client` connects to it too)."""
    return shared_cluster


async def test_spublish_reaches_the_shards_subscribers_and_other_shards_answer_moved(
    redis_cluster: ClusterServers, cluster_client: RedisCluster
) -> None:
    nodes = await redis_cluster.nodes()
    masters = [node for node in nodes if node.role == "master"]
    replicas = [node for node in nodes if node.role == "replica"]
    assert len(masters) == 3 and len(replicas) == 3
    assert sum(end - start + 1 for node in masters for start, end in node.slots) == SLOTS
    assert sorted(node.master_port or 0 for node in replicas) == sorted(node.port for node in masters)
    assert all(node.running and not node.failed for node in nodes)
    assert redis_cluster.url == f"redis://127.0.0.1:{redis_cluster.ports[0]}/0"

    master = await redis_cluster.master_for_key(CHANNEL)
    [replica] = await redis_cluster.replicas_for_slot(SLOT)
    other = next(node.port for node in masters if node.port != master)
    async with AsyncExitStack() as stack:
        on_master = await subscriber(stack, master)
        on_replica = await subscriber(stack, replica)  # a replica of the owner serves SSUBSCRIBE too

        # A node of another shard: ssubscribe() sends and returns; the MOVED comes at the next
        # read, and the PubSub still counts the channel as subscribed.
        elsewhere = redis.Redis(host="127.0.0.1", port=other)
        stack.push_async_callback(elsewhere.aclose)
        refused = elsewhere.pubsub()
        stack.push_async_callback(refused.aclose)
        await refused.ssubscribe(CHANNEL)
        with pytest.raises(MovedError) as moved:
            await next_message(refused)
        assert (moved.value.slot_id, moved.value.host, moved.value.port) == (SLOT, "127.0.0.1", master)
        assert refused.subscribed
        with pytest.raises(MovedError):
            await elsewhere.spublish(CHANNEL, b"nowhere")

        # SPUBLISH counts only the subscribers of the node that ran it, but the whole shard gets it.
        assert await cluster_client.spublish(CHANNEL, b"hello") == 1
        assert shape(await next_message(on_master)) == ("smessage", CHANNEL, "hello")
        assert shape(await next_message(on_replica)) == ("smessage", CHANNEL, "hello")

        # A replica also takes SPUBLISH, and the master's subscribers get it as well.
        via_replica = redis.Redis(host="127.0.0.1", port=replica)
        stack.push_async_callback(via_replica.aclose)
        assert await via_replica.spublish(CHANNEL, b"from the replica") == 1
        assert shape(await next_message(on_master)) == ("smessage", CHANNEL, "from the replica")
        assert shape(await next_message(on_replica)) == ("smessage", CHANNEL, "from the replica")


async def test_lua_keys_must_share_a_slot(redis_cluster: ClusterServers, cluster_client: RedisCluster) -> None:
    script = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCRBY', KEYS[2], ARGV[1])"
    assert await cluster_client.eval(script, 2, "{x}:a", "{x}:b", 5) == 5
    assert await cluster_client.get("{x}:a") == b"5"
    registered = cluster_client.register_script(script)  # EVALSHA, SCRIPT LOAD on NOSCRIPT
    assert await registered(keys=["{x}:a", "{x}:b"], args=[2]) == 7

    # Two slots: redis-py refuses before sending anything (not a server error).
    assert key_slot(b"a") != key_slot(b"b")
    with pytest.raises(RedisClusterException, match="all keys must map to the same key slot") as refused:
        await cluster_client.eval(script, 2, "a", "b", 1)
    assert not isinstance(refused.value, ResponseError)
    # The server's own answer, on a plain connection to a node: CROSSSLOT.
    plain = redis.Redis(host="127.0.0.1", port=await redis_cluster.master_for_key("a"))
    try:
        with pytest.raises(ClusterCrossSlotError, match="don't hash to the same slot"):
            await plain.eval(script, 2, "a", "b", 1)
    finally:
        await plain.aclose()

    # A key the script did not declare, served by another node, fails at run time.
    home = await redis_cluster.master_for_key("{x}:a")
    stranger = "k0"
    while await redis_cluster.master_for_key(stranger) == home:
        stranger += "0"
    with pytest.raises(ResponseError, match="non local key"):
        await cluster_client.eval(f"return redis.call('GET', '{stranger}')", 1, "{x}:a")
