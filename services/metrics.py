"""Prometheus metrics of one process, in a registry of its own (several apps may share a process in tests).

What is counted is counted once per event, never once per socket: a broadcast
increments one counter however many sockets it reaches.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from services.gc_pauses import GcPauseTimer

LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
GC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""A young collection takes well under a millisecond; 0.01 s is the goal for a full one."""


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.sockets = Gauge("livevote_sockets_open", "Open WebSockets of this process", registry=self.registry)
        self.votes = Counter("livevote_vote_changes", "Votes that changed a count", registry=self.registry)
        self.broadcasts = Counter(
            "livevote_broadcasts", "Messages encoded once and sent to a channel's sockets", registry=self.registry
        )
        self.catch_ups = Counter(
            "livevote_slow_socket_catch_ups", "Snapshots sent to sockets that had fallen behind", registry=self.registry
        )
        self.token_pushes = Counter(
            "livevote_token_pushes", "Access tokens pushed over sockets", registry=self.registry
        )
        self.feed_messages = Counter(
            "livevote_vote_feed_messages", "Count changes received from the broker's vote feeds",
            registry=self.registry,
        )
        self.resyncs = Counter(
            "livevote_broker_resyncs", "Snapshots re-sent after a broker gap", registry=self.registry
        )
        self.connections = Gauge(
            "livevote_connections_open", "Client connections this process holds (HTTP and WebSocket)",
            registry=self.registry,
        )
        self.connections_refused = Counter(
            "livevote_connections_refused", "Connections answered 503 at once: server.max_connections were open",
            registry=self.registry,
        )
        self.accept_pauses = Counter(
            "livevote_accept_pauses", "Times this process ran out of file descriptors and stopped accepting for a"
            " moment (once per episode, however long)", registry=self.registry,
        )
        self.live_refused = Counter(
            "livevote_live_refused", "Live connections refused before the upgrade: too many open for one address"
            " or one token", ["limit"], registry=self.registry,
        )
        self.handshakes_waiting = Gauge(
            "livevote_handshakes_waiting", "Live connections waiting for their turn to be admitted (past"
            " ws.max_handshakes under way)", registry=self.registry,
        )
        self.loop_lag = Histogram(
            "livevote_event_loop_lag_seconds", "How late a 100 ms timer fires", buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self.gc_pauses = Histogram(
            "livevote_gc_pause_seconds", "How long each garbage collection stopped the process", ["generation"],
            buckets=GC_BUCKETS, registry=self.registry,
        )
        self.gc_frozen = Gauge(
            "livevote_gc_frozen_objects", "Objects frozen out of the garbage collector's sight (gc.freeze): start-up"
            " and what lived through the young generations, open sockets included", registry=self.registry,
        )
        self.gc_frozen.set_function(gc.get_freeze_count)
        self._gc_timer = GcPauseTimer(lambda generation, seconds: self.gc_pauses.labels(generation).observe(seconds))
        self._probe: asyncio.Task[None] | None = None

    def count_sockets(self, count: Callable[[], int]) -> None:
        self.sockets.set_function(count)

    def start(self, interval: float = 0.1) -> None:
        self._probe = asyncio.create_task(self._probe_lag(interval))
        self._gc_timer.install()

    async def close(self) -> None:
        self._gc_timer.remove()
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe

    async def _probe_lag(self, interval: float) -> None:
        while True:
            expected = time.perf_counter() + interval
            await asyncio.sleep(interval)
            self.loop_lag.observe(max(time.perf_counter() - expected, 0.0))

    def render(self) -> bytes:
        return generate_latest(self.registry)
