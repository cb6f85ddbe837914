"""RedisBroker: the Broker across processes, over one Redis's pub/sub (scaled mode).

One pub/sub connection per process carries every subscription (NodeSubscriber:
reconnection, and a resync after every gap). PUBLISH goes through a second
client, which retries once, at once, on a connection error only: that replaces
a pooled connection that died with a Redis restart, while a server that does
not answer fails after one `timeout`.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from services.backends.broker import Broker, BrokerHandler
from services.backends.broker_redis_subscriber import NodeSubscriber


class RedisBroker(Broker):
    def __init__(
        self,
        url: str,
        prefix: str = "lv:",
        timeout: float = 1.0,
        health_interval: float = 0.5,
        backoff: tuple[float, float] = (0.05, 2.0),
    ) -> None:
        self._publisher = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        self._prefix = prefix
        self._subscriber = NodeSubscriber(
            url, prefix, timeout=timeout, health_interval=health_interval, backoff=backoff
        )

    async def start(self, handler: BrokerHandler) -> None:
        """Returns after the first connection attempt, successful or not: if Redis
        is down the subscriber keeps trying, and publish() raises meanwhile."""
        await self._subscriber.start(handler)

    async def close(self) -> None:
        await self._subscriber.close()
        await self._publisher.aclose()

    async def publish(self, channel: str, data: bytes) -> None:
        await self._publisher.publish(self._prefix + channel, data)

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """One round trip (a pipeline, not a transaction)."""
        async with self._publisher.pipeline(transaction=False) as pipeline:
            for channel, data in messages:
                pipeline.publish(self._prefix + channel, data)
            await pipeline.execute()

    async def subscribe(self, channel: str) -> None:
        await self._subscriber.subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        await self._subscriber.unsubscribe(channel)

    async def ping(self) -> None:
        await self._publisher.ping()
