"""GET /ws: the live channel (docs/protocol.md).

The access token is checked before the upgrade (HTTP 401, no 101), from the
Authorization header or the `bearer.<jwt>` subprotocol, which is never echoed.
A viewer token (POST /api/auth/viewer) opens a socket that may only watch:
subscribe, unsubscribe and ping; anything else is `forbidden`.
After that the socket lives on its token: the TokenClock pushes a fresh one
before it expires, or closes the socket 4001 when it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from pydantic import ValidationError
from tornado.httputil import HTTPHeaders
from tornado.iostream import IOStream, StreamClosedError
from tornado.web import HTTPError
from tornado.websocket import WebSocketHandler, WebSocketProtocol, WebSocketProtocol13

from handlers.headers import bearer_token
from handlers.json_input import loads_strict
from handlers.live_connection import LiveConnection
from handlers.openapi import Operation
from handlers.protocol import (
    BEARER_PREFIX,
    OP_NAMES,
    OPS,
    SUBPROTOCOL,
    Auth,
    Ping,
    Refresh,
    Subscribe,
    Unsubscribe,
    Vote,
    error,
    error_code,
)
from handlers.ws_protocol import StrictProtocol
from services.auth.tokens import AccessClaims, ViewerClaims
from services.container import Services
from services.errors import DomainError, Forbidden
from services.live.messages import CLOSE_RATE_LIMITED, frame
from services.visibility import Reader

log = logging.getLogger("livevote.live")

WATCHING_OPS = (Subscribe, Unsubscribe, Ping)
"""All that a viewer token allows."""
PING_FRAME = b"\x89\x00"
"""A WebSocket ping with no payload, as a server sends it (unmasked)."""
NO_HEADERS = HTTPHeaders()
"""Every open socket's headers, once the handshake is done: empty, shared, never written."""

LIVE_CHANNEL = (
    "A WebSocket upgrade (`Upgrade: websocket`) that offers the subprotocol `livevote.v1`. The access"
    " token comes as `Authorization: Bearer <jwt>`, or from a browser as a second subprotocol"
    " `bearer.<jwt>` (never echoed); it is checked before the upgrade. An `Origin`, when sent, must"
    " be this host or one of server.allowed_origins. Then every frame is one JSON object: client ops"
    " (subscribe, unsubscribe, vote, refresh, auth, ping) and server messages (welcome, snapshot,"
    " votes, token, revoked, error). The whole protocol, with channels, error and close codes and"
    " how to reconnect, is written out in docs/protocol.md in the repository."
)
"""GET /ws in /api/openapi.json, which cannot link a file and so names it."""
LIVE_CHANNEL_OPENED = "Switched to WebSocket; the server answers livevote.v1 when it was offered"
HANDSHAKE_HEADERS = [
    {"name": "Upgrade", "in": "header", "required": True, "description": "`websocket`, in any case",
     "schema": {"type": "string", "examples": ["websocket"]}},
    {"name": "Sec-WebSocket-Protocol", "in": "header", "required": False,
     "description": "`livevote.v1`, and from a browser `bearer.<jwt>` as well",
     "schema": {"type": "string", "examples": ["livevote.v1, bearer.<jwt>"]}},
]
class TokenBucket:
    """`rate` ops per second on average, with bursts of up to `burst`."""

    __slots__ = ("_rate", "_burst", "_tokens", "_at")

    def __init__(self, rate: float, burst: int) -> None:
        self._rate, self._burst = rate, burst
        self._tokens, self._at = float(burst), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class LiveProtocol(StrictProtocol):
    """An open socket's frames are read on a task of their own.

    tornado reads them at the bottom of the handshake's coroutines (the request's
    _execute, get, accept_connection, _accept_connection), which then wait out the
    socket's whole life holding the handshake's headers and locals: about 30 of an
    idle socket's ~69 GC-tracked objects, that every full collection walks
    (docs/performance.md, "Garbage collection at 10,000 sockets").
    """

    _reader: asyncio.Task[None] | None = None

    async def _receive_frame_loop(self) -> None:
        self._reader = asyncio.ensure_future(self._read_frames())

    async def _read_frames(self) -> None:
        try:
            await super()._receive_frame_loop()
        except asyncio.CancelledError:  # as tornado's accept_connection did while it awaited the loop
            self._abort()


class LiveSocket(LiveConnection, WebSocketHandler):
    def initialize(self, services: Services) -> None:
        super().initialize(services)
        ws = services.config.ws
        self._bucket = TokenBucket(ws.rate_limit, ws.rate_burst)

    # -- handshake ----------------------------------------------------------

    @Operation(
        "openLiveChannel", "live", "The live channel: WebSocket protocol v1", ok=LIVE_CHANNEL_OPENED, status=101,
        description=LIVE_CHANNEL, parameters=HANDSHAKE_HEADERS, secured=True, errors=(401, 403, 413, 429, 503),
        notes={
            401: "Missing, invalid or expired access token, or its session has ended",
            403: "The Origin is neither this host nor one of server.allowed_origins",
            413: "The request brings a body",
            429: "This address or this token holds as many live connections as allowed"
                 " (ws.max_sockets_per_address, ws.max_sockets_per_token); see Retry-After",
            503: "Sessions cannot be checked right now",
        },
        plain={
            400: "Not a WebSocket upgrade (Upgrade or Connection header missing)",
            426: "Unsupported Sec-WebSocket-Version (13 is spoken)",
        },
    )
    async def get(self, *args: Any, **kwargs: Any) -> None:
        """The upgrade is tornado's; this only declares the operation."""
        await super().get(*args, **kwargs)

    async def head(self, *args: Any, **kwargs: Any) -> None:
        """A HEAD never upgrades: it gets what a GET that does not ask to upgrade gets (400)."""
        self.request.headers.pop("Upgrade", None)
        await super().get(*args, **kwargs)

    async def prepare(self) -> None:
        """The Origin is checked first, and by us: tornado's own check would fail with a 500 on
        an Origin that is not a URL."""
        await self.admit(lambda: self.services.sessions.admit(self._offered_token()))

    def _offered_token(self) -> str:
        token = bearer_token(self.request.headers)
        if token is not None:
            return token
        for protocol in self.request.headers.get("Sec-WebSocket-Protocol", "").split(","):
            if protocol.strip().startswith(BEARER_PREFIX):
                return protocol.strip()[len(BEARER_PREFIX):]
        raise HTTPError(401, log_message="The socket needs an access token.")

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return SUBPROTOCOL if SUBPROTOCOL in subprotocols else None

    def get_websocket_protocol(self) -> WebSocketProtocol | None:
        """tornado's protocol, held to RFC 6455 where tornado is lenient (handlers/ws_protocol.py)."""
        protocol = super().get_websocket_protocol()
        if not isinstance(protocol, WebSocketProtocol13):
            return protocol
        return LiveProtocol(self, False, protocol.params)

    def get_compression_options(self) -> None:
        """No compression: the frame of a broadcast is built once for every socket."""

    # -- lifecycle ------------------------------------------------------------

    async def open(self) -> None:
        """Nagle off: updates are small and must not wait for the previous one's ACK."""
        self.set_nodelay(True)
        self._forget_the_handshake()
        await self.join()

    def _forget_the_handshake(self) -> None:
        """Nothing reads the handshake's request and response headers again, nor the finished
        HTTP/1.1 connection (its task and context), nor the template namespace: dropped, they
        are about 3.5 KiB of an idle socket's ~17 (docs/performance.md)."""
        self.request.headers = self._headers = NO_HEADERS
        self.request.connection = self.request.server_connection = None
        self.ui = None  # type: ignore[assignment]  # as tornado's _break_cycles does at the close

    def on_finish(self) -> None:
        """A handshake that ends without the upgrade (not a WebSocket request, another version)
        gives its place back; an upgraded socket keeps it until it closes."""
        if self.get_status() != 101:
            self.release()

    def on_close(self) -> None:
        self.leave()

    # -- Transport for the hub ------------------------------------------------

    def _open_stream(self) -> IOStream | None:
        connection = self.ws_connection
        if connection is None or connection.is_closing():
            return None
        return connection.stream

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Nothing may follow the close frame: frames stop going straight to the socket."""
        if self.peer is not None:
            self.peer.direct = None
        super().close(code, reason)

    # -- pings (Heartbeat) ----------------------------------------------------

    def send_ping(self) -> None:
        """Through the same straight path as broadcasts: tornado's write_ping costs a Future."""
        self.send(PING_FRAME)

    def on_ping(self, data: bytes) -> None:
        """tornado has just written its pong, maybe only in part: until the socket is seen clear
        again, frames must not go straight to it."""
        if self.peer is not None:
            self.peer.direct = None

    def on_pong(self, data: bytes) -> None:
        self.services.heartbeat.answered(self)

    def ping_timed_out(self) -> None:
        """Dropped at once: a peer that answers no ping would not answer a closing handshake."""
        stream = self._open_stream()
        if stream is not None:
            stream.close()

    # -- ops ------------------------------------------------------------------

    async def on_message(self, raw: str | bytes) -> None:
        """Ops are answered in order, one at a time; while the socket is behind on its output,
        reading waits for it to drain, so a client that never reads gets no more replies."""
        if self.peer is not None and self.peer.behind:
            with contextlib.suppress(StreamClosedError):
                await self.drained()
        if not self._bucket.take():
            self.send(error("rate_limited", "Too many messages; slow down."))
            self.close(CLOSE_RATE_LIMITED, "rate limited")
            return
        try:
            data = loads_strict(raw)
        except ValueError as exc:
            self.send(error("bad_json", f"Each message must be one JSON object ({exc})."))
            return
        op_id = data.get("id") if isinstance(data, dict) and type(data.get("id")) in (str, int) else None
        if not isinstance(data, dict) or not isinstance(data.get("op"), str) or data["op"] not in OP_NAMES:
            self.send(error("unknown_op", f"Known ops: {', '.join(sorted(OP_NAMES))}.", op_id))
            return
        try:
            await self._dispatch(OPS.validate_python(data))
        except ValidationError as exc:
            details = "; ".join(f"{'.'.join(map(str, e['loc'][1:])) or 'op'}: {e['msg']}" for e in exc.errors())
            self.send(error("invalid", details, op_id))
        except DomainError as exc:
            self.send(error(error_code(exc), exc.detail, op_id))
        except Exception:
            log.exception("op %s failed", data.get("op"))
            self.send(error("failed", "The server could not carry out this op.", op_id))

    async def _dispatch(self, op: Any) -> None:
        assert self.peer is not None and self.claims is not None
        services = self.services
        claims = self.claims
        if isinstance(claims, ViewerClaims) and not isinstance(op, WATCHING_OPS):
            raise Forbidden("A viewer token may only watch: log in to vote.")
        if isinstance(op, Subscribe):
            (snapshot,) = await services.hub.subscribe(self.peer, op.channel, services.config.ws.max_subscriptions)
            self.send(frame("ack", id=op.id, channel=op.channel))
            self.send(snapshot)
        elif isinstance(op, Unsubscribe):
            await services.hub.unsubscribe(self.peer, op.channel)
            self.send(frame("ack", id=op.id, channel=op.channel))
        elif isinstance(op, Vote):
            assert isinstance(claims, AccessClaims)
            result = await services.votes.set(claims.user_id, op.teacher, op.value)
            answer = await services.visibility.vote(Reader(claims.user_id, self.peer.admin), result)
            self.send(frame("ack", id=op.id, **answer))
        elif isinstance(op, Refresh):
            assert isinstance(claims, AccessClaims)
            pair = await services.sessions.refresh(op.refresh_token, claims.user_id)
            await self.adopt(services.tokens.verify(pair.access.token))
            self.send(frame("tokens", id=op.id, **pair.to_json()))
        elif isinstance(op, Auth):
            await self.adopt(await services.sessions.authenticate(op.access_token))
            self.send(frame("ack", id=op.id, expires_at=self.expires_at))
        elif isinstance(op, Ping):
            self.send(frame("pong", id=op.id))

