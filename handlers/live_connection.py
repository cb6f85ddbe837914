"""LiveConnection: what every live transport does around the hub, whatever it speaks.

A WebSocket (handlers/live.py) and an event stream (handlers/event_stream.py) are
admitted alike (an access token of an active session or a viewer token, Origin
checked, within the connection caps), join the hub as one Peer, are welcomed,
live on their token (the TokenClock pushes the next one before it expires, or
ends the connection when it does) and leave the hub when they close. Each
transport says how it writes, pings and closes (the hub's Transport).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from tornado.iostream import IOStream, SSLIOStream
from tornado.web import Finish, HTTPError, RequestHandler

from handlers.base import problem_json
from handlers.headers import PROBLEM_JSON, origin_allowed
from services.auth.tokens import AccessClaims, ViewerClaims
from services.container import Services
from services.errors import Invalid, RateLimited, Unauthorized, Unavailable
from services.live.messages import CLOSE_TOKEN_EXPIRED, frame
from services.live.peer import Peer
from services.live.quota import RETRY_AFTER, Admission

log = logging.getLogger("livevote.live")

CLIENT_CLOSED = 499
"""The access log's status for a client that hung up before its turn came (as nginx logs it)."""
NO_SESSION = ""
"""The hub's session id for a viewer's connection: no revocation ever names it."""
REFUSALS = {
    401: "The live channel needs a valid access token of an active session.",
    403: "This page's origin may not open the live channel.",
    503: "Sessions cannot be checked right now; try again shortly.",
}


def token_identity(claims: AccessClaims | ViewerClaims) -> str:
    """What a token's connection cap counts by: a user's session (every token it is issued), or
    a viewer token's own id."""
    return claims.sid if isinstance(claims, AccessClaims) else claims.jti


class LiveConnection(RequestHandler):
    """The part of a live connection's handler that is the same for every transport."""

    if TYPE_CHECKING:  # each transport's own (the hub's Transport, the Heartbeat's Pingable)

        def _open_stream(self) -> IOStream | None:
            """The connection's stream, while frames may still be written to it."""

        def close(self, code: int | None = None, reason: str | None = None) -> None: ...

        def send_ping(self) -> None: ...

        def ping_timed_out(self) -> None: ...

    def initialize(self, services: Services) -> None:
        self.services = services
        self.claims: AccessClaims | ViewerClaims | None = None
        self.peer: Peer | None = None
        self.closed = False
        self._admission: Admission | None = None
        self._in_turn = False
        """Between its turn in the HandshakeQueue and its welcome (or its refusal)."""

    @property
    def expires_at(self) -> float:
        assert self.claims is not None
        return self.claims.expires_at

    # -- admission ------------------------------------------------------------

    def check_origin(self, origin: str) -> bool:
        return origin_allowed(origin, self.request.host, self.services.config.server.allowed_origins)

    async def admit(self, claims_of: Callable[[], Awaitable[AccessClaims | ViewerClaims]]) -> None:
        """The Origin (when sent), then this handshake's turn (services/live/handshakes.py), then
        the offered token's claims, then a place within the caps."""
        origin = self.request.headers.get("Origin")
        if origin is not None and not self.check_origin(origin):
            raise HTTPError(403, log_message="Origin not allowed")
        await self.services.handshakes.wait_turn()
        self._in_turn = True
        if self.closed:  # hung up while waiting: nothing to check, and its close came before its turn
            self.end_turn()
            self.set_status(CLIENT_CLOSED, "Client Closed Request")
            raise Finish()
        try:
            self.claims = await claims_of()
            if not self.closed:  # a client that hung up meanwhile takes no place
                self._admission = self.services.quota.admit(self.request.remote_ip or "", token_identity(self.claims))
        except Unauthorized as exc:
            raise HTTPError(401, log_message=exc.detail) from None
        except Unavailable as exc:
            raise HTTPError(503, log_message=exc.detail) from None
        except RateLimited as exc:
            raise HTTPError(429, log_message=exc.detail) from None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        detail = REFUSALS.get(status_code, "The live channel could not be opened.")
        if status_code == 401:
            self.set_header("WWW-Authenticate", 'Bearer realm="livevote"')
        if status_code in (400, 429):  # which channel, which cap, in the refusal's own words
            detail = kwargs["exc_info"][1].log_message
        if status_code == 429:
            self.set_header("Retry-After", str(RETRY_AFTER))
        self.set_header("Content-Type", PROBLEM_JSON)
        self.finish(problem_json(status_code, detail))

    def release(self) -> None:
        self.end_turn()
        if self._admission is not None:
            self.services.quota.release(self._admission)
            self._admission = None

    # -- in the hub -------------------------------------------------------------

    async def join(self, stream: bool = False) -> None:
        """Into the hub, on the token's clock and the heartbeat; then the welcome."""
        claims = self.claims
        assert claims is not None
        services = self.services
        if isinstance(claims, AccessClaims):
            self.peer = services.hub.join(self, claims.sid, claims.user_id, stream=stream)
        else:
            self.peer = services.hub.join(self, NO_SESSION, claims.jti, stream=stream)
        services.token_clock.track(self)
        services.heartbeat.add(self)
        if isinstance(claims, ViewerClaims):
            who: dict[str, Any] = {"user": None, "session": None, "role": claims.role}
        else:
            user = await services.accounts.get(claims.user_id)
            self.peer.admin = user.is_admin
            who = {"user": user.to_json(), "session": claims.sid, "role": user.role}
        self.send(frame("welcome", **who, expires_at=claims.expires_at, server_time=time.time()))
        self.end_turn()

    def end_turn(self) -> None:
        """Welcomed or refused: the next handshake's turn."""
        if self._in_turn:
            self._in_turn = False
            self.services.handshakes.end_turn()

    def leave(self) -> None:
        """The connection closed: its place, its pings, its token's clock, the hub; and the cycle
        between the handler and its template namespace, which tornado breaks (_break_cycles) once
        a request finishes, and a live connection's request never does."""
        self.closed = True
        self.ui = None  # type: ignore[assignment]
        self.release()
        self.services.heartbeat.remove(self)
        self.services.token_clock.forget(self)
        if self.peer is not None:
            self.peer.depart()
            task = asyncio.ensure_future(self.services.hub.remove(self.peer))
            task.add_done_callback(_log_failure)

    def send(self, frame: bytes) -> None:
        if self.peer is not None:
            self.peer.send(frame)

    # -- Transport for the hub --------------------------------------------------

    def sink(self) -> socket.socket | None:
        """Not over TLS: an SSLIOStream's socket takes no plain bytes."""
        stream = self._open_stream()
        if stream is None or stream.writing() or isinstance(stream, SSLIOStream):
            return None
        return stream.socket

    def write_frame(self, frame: bytes) -> bool:
        stream = self._open_stream()
        if stream is None:
            return False
        stream.write(frame)
        return True

    def drained(self) -> asyncio.Future[None]:
        stream = self._open_stream()
        if stream is None:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        return stream.write(b"")

    # -- tokens (TokenClock) ----------------------------------------------------

    async def push_token(self) -> None:
        assert self.claims is not None
        try:
            issued = await self.services.sessions.reissue(self.claims)
        except Unauthorized:
            assert self.peer is not None
            self.services.hub.revoke(self.peer)
            return
        except Exception:
            log.exception("token push failed; the connection keeps its token until it expires")
            return
        claims = self.services.tokens.verify_any(issued.token)
        if isinstance(claims, ViewerClaims):
            self.claims = claims
            self.services.token_clock.track(self)
        else:
            await self.adopt(claims)
        self.services.metrics.token_pushes.inc()
        self.send(frame("token", access_token=issued.token, expires_in=issued.expires_in, expires_at=issued.expires_at))

    def token_expired(self) -> None:
        if not self.closed and self.expires_at <= time.time():
            self.close(CLOSE_TOKEN_EXPIRED, "token expired")

    async def adopt(self, claims: AccessClaims) -> None:
        """Live on a newer token of the same user, and so on its session: a revocation that
        arrived while the token was being checked is remembered by the session service."""
        assert isinstance(self.claims, AccessClaims) and self.peer is not None
        if claims.user_id != self.claims.user_id:
            raise Invalid("That token belongs to another user.")
        self.claims = claims
        self.peer.admin = claims.role == "admin"
        self.services.token_clock.track(self)
        if self.peer.sid != claims.sid:
            self.services.hub.move(self.peer, claims.sid)
            if not await self.services.sessions.is_active(claims.sid):
                self.services.hub.revoke(self.peer)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("leaving the hub failed", exc_info=task.exception())
