"""The accept loop: a cap on connections, and a pause instead of a spin when descriptors run out.

tornado's accept handler (tornado.netutil.add_accept_handler) lets accept()'s EMFILE escape to
the event loop, which logs a traceback and, the listening socket being still readable, calls
it again at once: the process spins at a full core and fills its log until connections close.
Here the loop stops accepting for PAUSE seconds at a time instead, while it serves the
connections it has; each episode is logged once and counted (livevote_accept_pauses).

Before it comes to that, past `server.max_connections` a new connection is answered with a
short 503 problem+json and closed, unread (livevote_connections_refused). By default the cap
is the open-file limit less a reserve for the store, Redis, and the refusals themselves.

In a reconnect storm the loop also stops accepting, 5 ms at a time, while the live handshakes
already taken are backed up (services/live/handshakes.py): new connections wait in the
kernel's accept queue, in the order they came, and the loop's turns go to finishing the
connections it has rather than to reading and parsing ever more of them.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import socket
from collections.abc import Callable, Iterable
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.iostream import IOStream, StreamClosedError

from handlers.head_limit import HeadLimitStream, refusal
from services.metrics import Metrics

log = logging.getLogger("livevote")

OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
"""accept() errors that leave the connection queued: accepting again at once would fail again."""
PAUSE = 0.1
"""Seconds between tries while descriptors are out: ten failed accepts a second cost nothing."""
ACCEPT_BATCH = 16
"""Connections accepted in one turn of the event loop, so that a storm does not starve the rest: as
many as ws.max_handshakes by default. 128 let a storm's connections into the loop faster than
their heads came, and turns of the loop with thousands of them in flight kept /healthz waiting
(docs/performance.md, "Third fix")."""
BACKED_UP_PAUSE = 0.005
"""Seconds between looks at whether the connections taken are still backed up."""
LINGER = 1.0
"""Seconds a refused connection is read (and what it sent dropped) before it is closed, so that
closing with its request unread does not reset the connection before the 503 is read."""
RETRY_AFTER = 1
RESERVE_SHARE = 10
"""The default cap keeps a tenth of the open-file limit, and at least MIN_RESERVE, for the rest."""
MIN_RESERVE = 64
REFUSAL_DETAIL = "This server holds as many connections as it may at once; try again shortly."


def default_max_connections() -> int:
    """The open-file limit (as raised at start) less a reserve; at least 1."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(soft - max(soft // RESERVE_SHARE, MIN_RESERVE), 1)


REFUSAL = refusal(503, "Service Unavailable", REFUSAL_DETAIL, f"Retry-After: {RETRY_AFTER}")
"""The whole answer to a connection past the cap, whatever it asked (or if it asked nothing)."""


class GuardedHTTPServer(HTTPServer):
    """tornado's HTTPServer with its own accept loop (plain TCP only: TLS ends in front of it)."""

    def initialize(  # type: ignore[override]  # tornado's Configurable: a subclass takes its own arguments
        self, *args: Any, max_connections: int, metrics: Metrics, backed_up: Callable[[], bool],
        **kwargs: Any,
    ) -> None:
        super().initialize(*args, **kwargs)
        if self.ssl_options is not None:
            raise ValueError("GuardedHTTPServer serves plain TCP; TLS ends at the proxy in front")
        self.max_connections = max_connections
        self.backed_up = backed_up
        """Whether the connections already taken have more work queued than is being done:
        then new ones wait in the kernel's accept queue, in order, rather than in this process."""
        self.open_connections = 0
        self._metrics = metrics
        self._starved = False
        """Out of descriptors since the queue of waiting connections was last seen empty: one
        episode, however many connections close and are replaced meanwhile."""
        self._refusing: set[asyncio.Task[None]] = set()
        metrics.connections.set_function(lambda: self.open_connections)

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        """As tornado's, with AcceptLoop in place of add_accept_handler; stop() still works."""
        for sock in sockets:
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = AcceptLoop(sock, self).stop

    def accepted(self, connection: socket.socket, address: Any) -> None:
        if self.open_connections >= self.max_connections:
            self._metrics.connections_refused.inc()
            task = asyncio.ensure_future(self._refuse(connection))
            self._refusing.add(task)
            task.add_done_callback(self._refusing.discard)
            return
        self.open_connections += 1
        stream = CountedStream(self, connection, max_buffer_size=self.max_buffer_size,
                               read_chunk_size=self.read_chunk_size)
        self.handle_stream(stream, address)

    def caught_up(self) -> None:
        """Every waiting connection was accepted: an episode out of descriptors is over."""
        self._starved = False

    def connection_closed(self) -> None:
        self.open_connections -= 1

    def out_of_descriptors(self, exc: OSError) -> None:
        """Once per episode: a warning and the counter."""
        if self._starved:
            return
        self._starved = True
        self._metrics.accept_pauses.inc()
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        log.warning(
            "out of file descriptors (%s; open-file limit %d, %d connections open): not accepting new"
            " connections for %.1f s at a time until some close", exc.strerror, soft, self.open_connections, PAUSE,
        )

    async def _refuse(self, connection: socket.socket) -> None:
        stream = IOStream(connection)
        try:
            await stream.write(REFUSAL)
            connection.shutdown(socket.SHUT_WR)
            async with asyncio.timeout(LINGER):
                while True:
                    await stream.read_bytes(65536, partial=True)
        except (StreamClosedError, OSError, TimeoutError):
            pass
        finally:
            stream.close()


class CountedStream(HeadLimitStream):
    """An accepted connection's stream, which tells the server when its descriptor is closed
    (and answers a request head over the limit before it closes)."""

    def __init__(self, server: GuardedHTTPServer, connection: socket.socket, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self._server: GuardedHTTPServer | None = server

    def close(self, exc_info: Any = False) -> None:
        """The error a stream closed on (a reset, most often) is kept without its traceback: the
        traceback's frames hold the stream, a cycle that a frozen stream (services/gc_pauses.py)
        would keep for good."""
        super().close(exc_info)
        if self.error is not None:
            self.error.__traceback__ = None

    def close_fd(self) -> None:
        super().close_fd()
        if self._server is not None:
            self._server.connection_closed()
            self._server = None


class AcceptLoop:
    """Accepts on one listening socket; out of descriptors, it stops reading it for PAUSE seconds."""

    def __init__(self, sock: socket.socket, server: GuardedHTTPServer) -> None:
        self._sock = sock
        self._server = server
        self._loop = IOLoop.current()
        self._resume: object | None = None
        self._stopped = False
        self._loop.add_handler(sock, self._accept, IOLoop.READ)

    def _accept(self, _fd: Any, _events: int) -> None:
        for _ in range(ACCEPT_BATCH):
            if self._stopped:
                return
            if self._server.backed_up():
                self._pause(BACKED_UP_PAUSE)
                return
            try:
                connection, address = self._sock.accept()
            except BlockingIOError:
                self._server.caught_up()
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno not in OUT_OF_DESCRIPTORS:
                    raise
                self._server.out_of_descriptors(exc)
                self._pause(PAUSE)
                return
            self._server.accepted(connection, address)

    def _pause(self, seconds: float) -> None:
        self._loop.remove_handler(self._sock)
        self._resume = self._loop.call_later(seconds, self._try_again)

    def _try_again(self) -> None:
        self._resume = None
        if not self._stopped:
            self._loop.add_handler(self._sock, self._accept, IOLoop.READ)

    def stop(self) -> None:
        self._stopped = True
        if self._resume is not None:
            self._loop.remove_timeout(self._resume)
            self._resume = None
        else:
            self._loop.remove_handler(self._sock)
