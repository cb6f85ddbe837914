"""GET /sse: the live channel as an event stream, where WebSockets cannot go; and its tickets.

The same server messages as the socket's (docs/protocol.md), one way: there are no
client ops, votes go over REST. A browser's EventSource cannot send headers, so it
brings a ticket in the URL (POST /api/live/tickets: single-use, 30 seconds), which is
cut from the request's URI before anything logs it; a program may send
`Authorization: Bearer` instead. The channels are named in the request
(`?channel=subject:1&channel=dashboard`); a client coming back names the last
event's id (`Last-Event-ID`, or `last_event_id` in the URL) and gets only what
changed since, when this process can tell (services/live/resumption.py).

Once admitted, the connection is taken from tornado: the head says
`Connection: close` (the body is not chunked, it ends with the stream), and the
hub writes each event straight to the socket as it writes a socket's frames, by
the same slow-consumer rule. Reading goes on only to notice the client leave.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re

from tornado.iostream import IOStream, StreamClosedError
from tornado.web import HTTPError
from typing_extensions import TypedDict

from handlers.base import ApiHandler
from handlers.headers import bearer_token
from handlers.live_connection import LiveConnection
from handlers.openapi import Operation
from handlers.protocol import error_code
from services.auth.tokens import AccessClaims, ViewerClaims
from services.container import Services
from services.errors import DomainError, Unauthorized
from services.live.event_stream import HEARTBEAT, EventStreamPeer, event, mark_only, retry
from services.live.messages import BadChannel, frame, parse_channel

log = logging.getLogger("livevote.live")

TICKET = re.compile(r"(?<=[?&])ticket=[^&#]*")
RETRY_MS = 2000
"""EventSource's own wait before reconnecting (the page's client reconnects with its backoff)."""
CLOSE_TIMEOUT = 5.0
"""Seconds the close message may take to leave before the connection is cut."""
READ_CHUNK = 4096
MEDIA_TYPE = "text/event-stream; charset=utf-8"
CHANNEL_PATTERN = "^(dashboard|(subject|teacher):[1-9][0-9]*)$"


def without_ticket(uri: str) -> str:
    """The URI as it may be logged: a ticket's value blanked (spent or not, it is no one's business)."""
    return TICKET.sub("ticket=-", uri) if "ticket=" in uri else uri


class TicketJson(TypedDict):
    ticket: str
    expires_in: int


class TicketHandler(ApiHandler):
    @Operation("createLiveTicket", "live", "A ticket to open the live channel's event stream", status=201,
               ok="A single-use ticket, good for `expires_in` seconds, that opens GET /sse?ticket=… as the"
                  " bearer token would (a user's or a viewer's): a browser's EventSource cannot send headers,"
                  " and a ticket in a URL is no use to whoever reads it later",
               returns=TicketJson, secured=True, errors=(401, 503))
    async def post(self) -> None:
        issued = await self.services.sessions.ticket(self._bearer_token())
        ticket: TicketJson = {"ticket": issued.token, "expires_in": issued.expires_in}
        self.write_json(ticket, status=201)


class EventStream(LiveConnection):
    def initialize(self, services: Services) -> None:
        super().initialize(services)
        self.stream: IOStream | None = None
        self._channels: list[str] = []
        self._closing = False

    # -- admission --------------------------------------------------------------

    async def prepare(self) -> None:
        self._channels = self._named_channels()
        ticket = self.get_query_argument("ticket", None)
        await self.admit(lambda: self._claims_of(ticket))

    def _named_channels(self) -> list[str]:
        names = list(dict.fromkeys(self.get_query_arguments("channel")))
        if not names:
            raise HTTPError(400, log_message="Name the channels to watch: /sse?channel=subject:1&channel=dashboard.")
        limit = self.services.config.ws.max_subscriptions
        if len(names) > limit:
            raise HTTPError(400, log_message=f"A stream may watch at most {limit} channels.")
        try:
            for name in names:
                parse_channel(name)
        except BadChannel as exc:
            raise HTTPError(400, log_message=exc.detail) from None
        return names

    async def _claims_of(self, ticket: str | None) -> AccessClaims | ViewerClaims:
        token = bearer_token(self.request.headers)
        if token is not None:
            return await self.services.sessions.admit(token)
        if ticket:
            return await self.services.sessions.spend_ticket(ticket)
        raise Unauthorized("The event stream needs a ticket (POST /api/live/tickets) or a bearer token.")

    def on_finish(self) -> None:
        """A refused request gives its place back (an admitted stream is never finished)."""
        self.release()

    # -- the stream -------------------------------------------------------------

    @Operation(
        "openEventStream", "live", "The live channel as Server-Sent Events", media_type="text/event-stream",
        ok="An endless text/event-stream: the socket's server messages, one JSON object per event, each with"
           " an `id` to resume from; see docs/protocol.md in the repository",
        secured=True, errors=(400, 401, 403, 429, 503),
        parameters=[
            {"name": "channel", "in": "query", "required": True, "description": "A channel to watch, repeated:"
             " subject:{no}, teacher:{no} or dashboard", "style": "form", "explode": True,
             "schema": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": CHANNEL_PATTERN}}},
            {"name": "ticket", "in": "query", "required": False, "description": "From POST /api/live/tickets,"
             " when no Authorization header can be sent", "schema": {"type": "string"}},
            {"name": "last_event_id", "in": "query", "required": False, "description": "The last event's id,"
             " as the Last-Event-ID header carries it", "schema": {"type": "string"}},
            {"name": "Last-Event-ID", "in": "header", "required": False, "description": "The last event's id:"
             " only what changed since is sent, when the server can tell", "schema": {"type": "string"}},
        ],
        notes={
            400: "No channel named, a malformed one, or more than ws.max_subscriptions",
            401: "Missing, invalid, expired or spent ticket or token, or its session has ended",
            403: "The Origin is neither this host nor one of server.allowed_origins",
            429: "This address or this token holds as many live connections as allowed; see Retry-After",
            503: "Sessions cannot be checked right now",
        },
    )
    async def get(self) -> None:
        stream = self.stream = self._take_connection()
        try:
            await self.join(stream=True)
            await self._subscribe()
            with contextlib.suppress(StreamClosedError):
                while True:
                    await stream.read_bytes(READ_CHUNK, partial=True)
        except Exception:
            log.exception("the event stream failed")
        finally:
            stream.close()
            self.leave()
            self.application.log_request(self)

    def _take_connection(self) -> IOStream:
        """Write the head, then take the connection over from tornado."""
        for name, value in (
            ("Content-Type", MEDIA_TYPE), ("Cache-Control", "no-store"), ("X-Accel-Buffering", "no"),
            ("X-Content-Type-Options", "nosniff"), ("Connection", "close"),
        ):
            self.set_header(name, value)
        lines = ["HTTP/1.1 200 OK", *(f"{name}: {value}" for name, value in self._headers.get_all())]
        stream = self.detach()
        stream.set_nodelay(True)
        stream.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + retry(RETRY_MS))
        return stream

    async def _subscribe(self) -> None:
        """Each channel's first state (or what changed since the client's last event), in order;
        then a mark the client can come back from, which every later event carries too."""
        assert isinstance(self.peer, EventStreamPeer)
        services = self.services
        since = self.request.headers.get("Last-Event-ID") or self.get_query_argument("last_event_id", None)
        for name in self._channels:
            try:
                frames = await services.hub.subscribe(self.peer, name, services.config.ws.max_subscriptions, since)
            except DomainError as exc:
                frames = [frame("error", code=error_code(exc), message=exc.detail, channel=name)]
            for data in frames:
                self.send(data)
        self.peer.resumable = True
        self.send(mark_only(services.hub.mark))

    def on_connection_close(self) -> None:
        """A client that hangs up while being admitted takes no place (once the connection is
        taken over, tornado calls this no more: the read loop notices the close)."""
        self.closed = True

    # -- Transport for the hub ------------------------------------------------

    def _open_stream(self) -> IOStream | None:
        stream = self.stream
        return None if stream is None or self._closing or stream.closed() else stream

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """The close message, with the code a socket would have closed with, then the end."""
        stream = self._open_stream()
        if stream is None:
            return
        self._closing = True
        if self.peer is not None:
            self.peer.direct = None
        sent = stream.write(event(frame("close", code=code, reason=reason or ""), None))
        sent.add_done_callback(lambda _: stream.close())
        asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, stream.close)

    # -- heartbeat (Heartbeat) ------------------------------------------------

    def send_ping(self) -> None:
        """A comment: nothing can answer it, and a client that stopped reading falls behind and
        is closed as too slow, as a socket is."""
        self.send(HEARTBEAT)
        self.services.heartbeat.answered(self)

    def ping_timed_out(self) -> None:
        if self.stream is not None:
            self.stream.close()
