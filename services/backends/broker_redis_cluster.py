"""ClusterBroker: the Broker over a Redis Cluster's sharded pub/sub (SPUBLISH / SSUBSCRIBE).

A sharded channel lives on the master that serves its slot, so a process keeps
one NodeSubscriber per master that serves one of its channels: each a plain
connection whose gaps are noticed and followed by a resync. redis-py's own
cluster pub/sub is not used for receiving: it re-subscribes on its own after a
failover, so a gap (whatever was published meanwhile) would pass unnoticed.

When a subscriber's connection is lost, or its node gives up a channel because
the slot moved, the slot map is read again and every channel whose slot another
master serves now moves there; once they are subscribed, the handler resyncs.
The dead node's subscriber keeps trying meanwhile (it may come back as master
of the same slots), and is closed once no channel is left on it.

SPUBLISH goes through redis-py's cluster client, which follows MOVED replies
and refreshes its slot map after a failover by itself.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio.cluster import RedisCluster

from services.backends.broker import Broker, BrokerHandler
from services.backends.broker_redis_subscriber import NETWORK_ERRORS, NodeSubscriber
from services.cancellation import cancel_and_wait

log = logging.getLogger("livevote.broker")

REHOME_INTERVAL = 0.2
REHOME_PATIENCE = 60.0
"""How long the slot map is read again and again until every channel's node answers; a
failover takes about cluster-node-timeout plus an election. Past this the subscribers keep
reconnecting on their own, and their next loss starts another round."""


class ClusterBroker(Broker):
    def __init__(
        self,
        url: str,
        prefix: str = "lv:",
        timeout: float = 1.0,
        health_interval: float = 0.5,
        backoff: tuple[float, float] = (0.05, 2.0),
    ) -> None:
        self._url = url
        self._cluster = RedisCluster.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self._prefix = prefix
        self._timeout = timeout
        self._health_interval = health_interval
        self._backoff = backoff
        self._handler: BrokerHandler | None = None
        self._subscribers: dict[str, NodeSubscriber] = {}
        """By node address (host:port)."""
        self._homes: dict[str, NodeSubscriber] = {}
        """Each wanted channel's subscriber."""
        self._moving = asyncio.Lock()
        self._rehoming: asyncio.Task[None] | None = None

    async def start(self, handler: BrokerHandler) -> None:
        self._handler = handler
        try:
            await self._cluster.initialize()
        except NETWORK_ERRORS as error:
            log.warning("the Redis Cluster is not reachable yet (%s); subscriptions wait for it", error)

    async def close(self) -> None:
        if self._rehoming is not None:
            await cancel_and_wait(self._rehoming)
        for subscriber in self._subscribers.values():
            await subscriber.close()
        await self._cluster.aclose()

    async def publish(self, channel: str, data: bytes) -> None:
        await self._cluster.spublish(self._prefix + channel, data)

    async def subscribe(self, channel: str) -> None:
        async with self._moving:
            if channel in self._homes:
                return
            subscriber = self._homes[channel] = await self._subscriber_for(channel)
        await subscriber.subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        async with self._moving:
            subscriber = self._homes.pop(channel, None)
        if subscriber is not None:
            await subscriber.unsubscribe(channel)

    async def ping(self) -> None:
        await self._cluster.ping()

    # -- where each channel lives ----------------------------------------------

    async def _subscriber_for(self, channel: str) -> NodeSubscriber:
        """The subscriber on the master of the channel's slot, as the slot map last said."""
        node = self._cluster.get_node_from_key(self._prefix + channel)
        if node is None:
            raise ConnectionError(f"no node serves the slot of {channel} yet")
        address = f"{node.host}:{node.port}"
        subscriber = self._subscribers.get(address)
        if subscriber is None:
            assert self._handler is not None, "start() first"
            subscriber = self._subscribers[address] = NodeSubscriber(
                _node_url(self._url, address), self._prefix, sharded=True, timeout=self._timeout,
                health_interval=self._health_interval, backoff=self._backoff, on_lost=self._lost,
            )
            await subscriber.start(self._handler)
        return subscriber

    def _lost(self, _subscriber: NodeSubscriber) -> None:
        if self._rehoming is None or self._rehoming.done():
            self._rehoming = asyncio.ensure_future(self._rehome())

    async def _rehome(self) -> None:
        """Read the slot map again until every channel's subscriber is connected, moving the
        channels whose slot another master serves now; then resync, since whatever was
        published while a channel had no live subscriber is gone."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REHOME_PATIENCE
        moved: set[str] = set()
        while loop.time() < deadline:
            try:
                await self._cluster.nodes_manager.initialize()
                moved |= await self._move_channels()
            except NETWORK_ERRORS as error:
                log.debug("reading the cluster's slot map failed: %s", error)
            if all(subscriber.connected for subscriber in set(self._homes.values())):
                break
            await asyncio.sleep(REHOME_INTERVAL)
        if moved and self._handler is not None:
            log.info("moved %d channel(s) to their slots' new masters", len(moved))
            self._handler.on_resync()

    async def _move_channels(self) -> set[str]:
        moved = set()
        async with self._moving:
            for channel, home in list(self._homes.items()):
                target = await self._subscriber_for(channel)
                if target is not home:
                    await home.unsubscribe(channel)
                    self._homes[channel] = target
                    await target.subscribe(channel)
                    moved.add(channel)
            for address, subscriber in list(self._subscribers.items()):
                if not subscriber.channels:
                    del self._subscribers[address]
                    await subscriber.close()
        return moved


def _node_url(url: str, address: str) -> str:
    """The cluster URL with another node's address, credentials and options kept."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{credentials}@{address}" if credentials else address))
