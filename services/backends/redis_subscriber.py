"""NodeSubscriber: one pub/sub connection to one Redis node, whose gaps never pass unnoticed.

It carries every subscription of its broker on that node, owned by a reader
task that hands each message to the handler. Pub/sub does not replay what was
missed, and redis-py may reconnect a pub/sub connection by itself and
re-subscribe silently, so the connection has no retries and a dropped
connection is an error: the reader then reconnects with capped, jittered
backoff on a fresh PubSub, re-subscribes every wanted channel and calls
`on_resync` once Redis has confirmed them (the reply to a PING sent after the
SUBSCRIBE is the barrier). A server that goes quiet without closing the socket
is found by a PING after `health_interval` of silence, which must be answered
within as long again.

Plain channels (SUBSCRIBE) on a single Redis; sharded ones (SSUBSCRIBE) on a
Redis Cluster node, where `on_lost` lets the cluster broker move the channels
to the node that serves their slot now.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

import redis.asyncio as redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from services.backends.broker import BrokerHandler

log = logging.getLogger("livevote.broker")

NETWORK_ERRORS = (RedisError, OSError)
"""What a lost or slow Redis raises (OSError covers the builtin TimeoutError)."""
WRITE_ERRORS = (*NETWORK_ERRORS, AttributeError)
"""A (S)SUBSCRIBE written while the reader finds the connection dead: redis-py has dropped the
connection's writer under the write and raises AttributeError. The wish stays recorded, and
the reconnection subscribes it."""


class NodeSubscriber:
    def __init__(
        self,
        url: str,
        prefix: str,
        sharded: bool = False,
        timeout: float = 1.0,
        health_interval: float = 0.5,
        backoff: tuple[float, float] = (0.05, 2.0),
        on_lost: Callable[[NodeSubscriber], None] | None = None,
    ) -> None:
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )
        options = self._client.connection_pool.connection_kwargs
        self.address = f"{options.get('host')}:{options.get('port')}"
        """host:port, for logs (the URL may hold a password)."""
        self._prefix = prefix
        self._sharded = sharded
        self._timeout = timeout
        self._health_interval = health_interval
        self._backoff = backoff
        self._on_lost = on_lost
        self.channels: set[str] = set()
        """Wanted channels, unprefixed: the truth that every reconnection restores."""
        self._pubsub: PubSub | None = None
        self._sending = asyncio.Lock()
        """Held by subscribe/unsubscribe while they write, so that the reader
        never closes the connection under them."""
        self._confirmations: dict[str, list[asyncio.Future[None]]] = {}
        """Per channel, the subscribe() calls waiting for Redis's reply, oldest first."""
        self._resync_due = False
        self._gap = False
        self._settled = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._live() is not None

    async def start(self, handler: BrokerHandler) -> None:
        """Returns after the first connection attempt, successful or not."""
        self._reader = asyncio.create_task(self._read_forever(handler), name=f"redis-subscriber {self.address}")
        await self._settled.wait()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.wait([self._reader])
            self._reader = None
        await self._client.aclose()

    async def subscribe(self, channel: str) -> None:
        """Returns once Redis has confirmed, so that state read afterwards misses no
        message; while disconnected it only records the wish."""
        if channel in self.channels:
            return
        self.channels.add(channel)
        confirmed = asyncio.get_running_loop().create_future()
        try:
            async with self._sending:
                pubsub = self._live()
                if pubsub is None:
                    return
                self._confirmations.setdefault(channel, []).append(confirmed)
                await self._send(pubsub, "subscribe", channel)
            await asyncio.wait_for(asyncio.shield(confirmed), self._timeout)
        except WRITE_ERRORS as error:
            log.warning("subscribing to %s failed (%s); it will be retried on reconnection", channel, error)

    async def unsubscribe(self, channel: str) -> None:
        if channel not in self.channels:
            return
        self.channels.discard(channel)
        try:
            async with self._sending:
                pubsub = self._live()
                if pubsub is not None:
                    await self._send(pubsub, "unsubscribe", channel)
        except WRITE_ERRORS as error:
            log.warning("unsubscribing from %s failed (%s); the reconnection will drop it", channel, error)

    async def _send(self, pubsub: PubSub, command: str, *channels: str) -> None:
        names = [self._prefix + channel for channel in channels]
        if self._sharded:
            await getattr(pubsub, "s" + command)(*names)
        else:
            await getattr(pubsub, command)(*names)

    # -- the reader ----------------------------------------------------------

    async def _read_forever(self, handler: BrokerHandler) -> None:
        failures = 0
        while True:
            pubsub = self._client.pubsub()
            try:
                await self._connect(pubsub)
                self._settled.set()
                if failures:
                    log.info("redis pub/sub reconnected to %s after %d failed attempt(s)", self.address, failures)
                failures = 0
                await self._listen(pubsub, handler)
            except NETWORK_ERRORS as error:
                failures += 1
                self._gap = True
                level = logging.WARNING if failures == 1 else logging.DEBUG
                log.log(level, "redis pub/sub connection to %s lost: %s", self.address, error)
                if self._on_lost is not None:
                    self._on_lost(self)
            finally:
                self._settled.set()
                await self._drop(pubsub)
            await asyncio.sleep(self._delay(failures))

    async def _connect(self, pubsub: PubSub) -> None:
        await pubsub.connect()
        self._pubsub = pubsub
        if self.channels:
            await self._send(pubsub, "subscribe", *self.channels)
        if self.channels or self._gap:
            self._resync_due = True
            await pubsub.ping()
        self._gap = False

    async def _listen(self, pubsub: PubSub, handler: BrokerHandler) -> None:
        pinged = False
        while True:
            message = await self._checked(pubsub).get_message(timeout=self._health_interval)
            if message is not None:
                pinged = False
                self._dispatch(message, handler)
            elif pinged:
                raise TimeoutError("Redis did not answer PING")
            else:
                pinged = True
                await self._checked(pubsub).ping()

    def _dispatch(self, message: dict[str, Any], handler: BrokerHandler) -> None:
        kind = message["type"]
        if kind in ("message", "smessage"):
            channel = message["channel"].decode()[len(self._prefix):]
            if channel in self.channels:
                _call(handler.on_message, channel, message["data"])
        elif kind in ("subscribe", "ssubscribe"):
            waiting = self._confirmations.get(message["channel"].decode()[len(self._prefix):])
            if waiting:
                _resolve(waiting.pop(0))
        elif kind == "sunsubscribe" and message["channel"].decode()[len(self._prefix):] in self.channels:
            raise RedisConnectionError("the node gave up a wanted shard channel (its slot moved)")
        elif kind == "pong" and self._resync_due:
            self._resync_due = False
            _call(handler.on_resync)

    async def _drop(self, pubsub: PubSub) -> None:
        self._pubsub = None
        self._resync_due = False
        for waiting in self._confirmations.values():
            for confirmed in waiting:
                _resolve(confirmed)
        self._confirmations.clear()
        async with self._sending:
            await pubsub.aclose()

    def _live(self) -> PubSub | None:
        """The current pub/sub while its connection is up."""
        pubsub = self._pubsub
        if pubsub is None or pubsub.connection is None or not pubsub.connection.is_connected:
            return None
        return pubsub

    def _checked(self, pubsub: PubSub) -> PubSub:
        """redis-py would reconnect a dropped pub/sub silently: make the drop an error."""
        if self._live() is not pubsub:
            raise RedisConnectionError("redis pub/sub connection dropped")
        return pubsub

    def _delay(self, failures: int) -> float:
        first, cap = self._backoff
        delay = min(cap, first * 2 ** min(failures - 1, 16))
        return random.uniform(delay / 2, delay)


def _call(method: Callable[..., None], *args: Any) -> None:
    """A failing handler must not take the subscription down with it."""
    try:
        method(*args)
    except Exception:
        log.exception("broker handler %s failed", method.__name__)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
