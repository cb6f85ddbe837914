"""NodeSubscriber: one pub/sub connection to one Redis node, whose gaps never pass unnoticed.

It carries every subscription of its broker on that node, owned by a reader
task that hands each message to the handler. Pub/sub does not replay what was
missed, so a dropped connection is an error: the reader then reconnects with
capped, jittered backoff on a fresh connection, re-subscribes every wanted
channel and calls `on_resync` once Redis has confirmed them (the reply to a
PING sent after the SUBSCRIBE is the barrier). A server that goes quiet without
closing the socket is found by a PING after `health_interval` of silence, which
must be answered within as long again.

The connection is a plain redis-py Connection, not redis-py's PubSub: PubSub
connects again by itself whenever a read or a write fails, under the reader, and
re-subscribes silently, which would hide a gap (and, racing the reader, leaks
its streams). Here nothing connects but the reader, and only after a gap.

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

from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from services.backends.broker import BrokerHandler
from services.cancellation import cancel_and_wait

log = logging.getLogger("livevote.broker")

NETWORK_ERRORS = (RedisError, OSError)
"""What a lost or slow Redis raises (OSError covers the builtin TimeoutError)."""
WRITE_ERRORS = (*NETWORK_ERRORS, AttributeError)
"""A write that starts as the reader finds the connection dead meets a writer redis-py has
already dropped: AttributeError. The wish stays recorded, and the reconnection subscribes it."""


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
        self._pool = ConnectionPool.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, protocol=2)
        """RESP2: pushed messages come back as replies (RESP3 would route them to push handlers)."""
        options = self._pool.connection_kwargs
        self.address = f"{options.get('host')}:{options.get('port')}"
        """host:port, for logs (the URL may hold a password)."""
        self._prefix = prefix
        self._subscribe, self._unsubscribe = ("SSUBSCRIBE", "SUNSUBSCRIBE") if sharded else ("SUBSCRIBE", "UNSUBSCRIBE")
        self._timeout = timeout
        self._health_interval = health_interval
        self._backoff = backoff
        self._on_lost = on_lost
        self.channels: set[str] = set()
        """Wanted channels, unprefixed: the truth that every reconnection restores."""
        self._connection: AbstractConnection | None = None
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
            await cancel_and_wait(self._reader)
            self._reader = None
        await self._pool.aclose()

    async def subscribe(self, channel: str) -> None:
        """Returns once Redis has confirmed, so that state read afterwards misses no
        message; while disconnected it only records the wish."""
        if channel in self.channels:
            return
        self.channels.add(channel)
        connection = self._live()
        if connection is None:
            return
        confirmed = asyncio.get_running_loop().create_future()
        self._confirmations.setdefault(channel, []).append(confirmed)
        try:
            await self._send(connection, self._subscribe, channel)
            await asyncio.wait_for(asyncio.shield(confirmed), self._timeout)
        except WRITE_ERRORS as error:
            log.warning("subscribing to %s failed (%s); it will be retried on reconnection", channel, error)

    async def unsubscribe(self, channel: str) -> None:
        if channel not in self.channels:
            return
        self.channels.discard(channel)
        connection = self._live()
        if connection is None:
            return
        try:
            await self._send(connection, self._unsubscribe, channel)
        except WRITE_ERRORS as error:
            log.warning("unsubscribing from %s failed (%s); the reconnection will drop it", channel, error)

    async def _send(self, connection: AbstractConnection, command: str, *channels: str) -> None:
        """Writes on the connection the caller just found live, with no yield in between:
        redis-py would connect a dead one again by itself. A failed write closes it, and
        the reader starts afresh."""
        await connection.send_command(command, *(self._prefix + channel for channel in channels), check_health=False)

    # -- the reader ----------------------------------------------------------

    async def _read_forever(self, handler: BrokerHandler) -> None:
        failures = 0
        while True:
            connection = self._pool.make_connection()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
            try:
                await self._connect(connection)
                self._settled.set()
                if failures:
                    log.info("redis pub/sub reconnected to %s after %d failed attempt(s)", self.address, failures)
                failures = 0
                await self._listen(connection, handler)
            except NETWORK_ERRORS as error:
                failures += 1
                self._gap = True
                level = logging.WARNING if failures == 1 else logging.DEBUG
                log.log(level, "redis pub/sub connection to %s lost: %s", self.address, error)
                if self._on_lost is not None:
                    self._on_lost(self)
            finally:
                self._settled.set()
                await self._drop(connection)
            await asyncio.sleep(self._delay(failures))

    async def _connect(self, connection: AbstractConnection) -> None:
        await connection.connect()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        self._connection = connection
        if self.channels:
            await self._send(connection, self._subscribe, *self.channels)
        if self.channels or self._gap:
            self._resync_due = True
            await self._send(connection, "PING")
        self._gap = False

    async def _listen(self, connection: AbstractConnection, handler: BrokerHandler) -> None:
        pinged = False
        while True:
            reply = await self._checked(connection).read_response(timeout=self._health_interval)
            if reply is not None:
                pinged = False
                self._dispatch(reply, handler)
            elif pinged:
                raise TimeoutError("Redis did not answer PING")
            else:
                pinged = True
                await self._send(self._checked(connection), "PING")

    def _dispatch(self, reply: list[Any] | bytes, handler: BrokerHandler) -> None:
        """Pushed messages are [kind, channel, ...]; PING answers [b"pong", b""] while
        subscribed to something, else b"PONG"."""
        kind = (reply[0] if isinstance(reply, list) else reply).lower()
        if kind == b"pong":
            if self._resync_due:
                self._resync_due = False
                _call(handler.on_resync)
            return
        channel = bytes(reply[1]).decode()[len(self._prefix):]
        if kind in (b"message", b"smessage"):
            if channel in self.channels:
                _call(handler.on_message, channel, reply[2])
        elif kind in (b"subscribe", b"ssubscribe"):
            waiting = self._confirmations.get(channel)
            if waiting:
                _resolve(waiting.pop(0))
        elif kind == b"sunsubscribe" and channel in self.channels:
            raise RedisConnectionError("the node gave up a wanted shard channel (its slot moved)")

    async def _drop(self, connection: AbstractConnection) -> None:
        self._connection = None
        self._resync_due = False
        for waiting in self._confirmations.values():
            for confirmed in waiting:
                _resolve(confirmed)
        self._confirmations.clear()
        await connection.disconnect()

    def _live(self) -> AbstractConnection | None:
        """The current connection while it is up."""
        connection = self._connection
        return connection if connection is not None and connection.is_connected else None

    def _checked(self, connection: AbstractConnection) -> AbstractConnection:
        if self._live() is not connection:
            raise RedisConnectionError("redis pub/sub connection dropped")
        return connection

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
