"""Sharded pub/sub on a real Redis Cluster as redis-py shows it, for the cluster suites.

Plain subscribers to one node, messages as (type, channel, data), and reading until what a test
waits for has come.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import redis.asyncio as redis
from redis.asyncio.cluster import ClusterPubSub
from redis.crc import key_slot

from tests.harness.redis_cluster import ClusterServers

CHANNEL = "votes:{subject:1}"
SLOT = key_slot(CHANNEL.encode())


def shape(message: dict[str, Any]) -> tuple[str, str, Any]:
    data = message["data"]
    return message["type"], message["channel"].decode(), data.decode() if isinstance(data, bytes) else data


async def subscriber(stack: AsyncExitStack, port: int, channel: str = CHANNEL, **options: Any) -> redis.client.PubSub:
    """A plain (non-cluster) connection to one node that did SSUBSCRIBE, confirmed."""
    client = redis.Redis(host="127.0.0.1", port=port, **options)
    stack.push_async_callback(client.aclose)
    pubsub = client.pubsub()
    stack.push_async_callback(pubsub.aclose)
    await pubsub.ssubscribe(channel)
    assert shape(await next_message(pubsub)) == ("ssubscribe", channel, 1)
    return pubsub


async def next_message(pubsub: redis.client.PubSub, timeout: float = 5.0) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        message = await pubsub.get_message(timeout=0.1)
        if message is not None:
            return message
    raise TimeoutError(f"no message within {timeout} s")


async def collect(
    pubsub: ClusterPubSub,
    until: Callable[[list[tuple[str, str, Any]]], bool],
    timeout: float = 5.0,
    tolerate: tuple[type[BaseException], ...] = (),
) -> tuple[list[tuple[str, str, Any]], list[BaseException]]:
    """Read `get_sharded_message` until `until(messages)`; errors of the `tolerate` types are
    recorded and reading goes on (a dead node's connect is refused at once, hence the short pause)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    messages: list[tuple[str, str, Any]] = []
    errors: list[BaseException] = []
    while not until(messages):
        if loop.time() > deadline:
            raise TimeoutError(f"within {timeout} s only {messages}, errors {errors!r}")
        try:
            message = await pubsub.get_sharded_message(timeout=0.05)
        except tolerate as error:
            errors.append(error)
            await asyncio.sleep(0.02)
            continue
        if message is not None:
            messages.append(shape(message))
    return messages, errors


async def other_shard_channel(cluster: ClusterServers, than: int) -> str:
    """A votes channel whose slot's master is not `than`."""
    slot_map = await cluster.slot_map()
    for number in range(2, 1000):
        channel = f"votes:{{subject:{number}}}"
        slot = key_slot(channel.encode())
        if next(master for start, end, master in slot_map if start <= slot <= end) != than:
            return channel
    raise AssertionError("every channel on one shard")
