"""The Tornado application: make_app() and its route table.

`make_app(services)` builds the application from running services; server.py
serves it, and the tests serve it exactly so. The application refuses a body
sent where none is expected (pages, /ws, /metrics would buffer it whole before
they run) with 413 at its headers, before any of it is read.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from tornado.httputil import HTTPServerRequest
from tornado.web import Application, HTTPError, RequestHandler, stream_request_body

from handlers.audit import AuditHandler
from handlers.auth import (
    LoginHandler,
    LogoutAllHandler,
    LogoutHandler,
    MeHandler,
    RefreshHandler,
    RegisterHandler,
    SessionCookieHandler,
    UserHandler,
    ViewerHandler,
)
from handlers.base import ApiHandler, InFlight, problem_json
from handlers.catalog import (
    SubjectHandler,
    SubjectListHandler,
    SubjectTeachersHandler,
    TeacherHandler,
    TeacherListHandler,
)
from handlers.event_stream import EventStream, TicketHandler, without_ticket
from handlers.headers import PROBLEM_JSON, declares_body
from handlers.history import (
    HistoryExportHandler,
    ResultsExportHandler,
    SubjectHistoryHandler,
    TeacherHistoryHandler,
)
from handlers.listener import GuardedHTTPServer, default_max_connections
from handlers.live import LiveSocket
from handlers.ops import HealthHandler, MetricsHandler, OpenApiHandler, ReadyHandler, StatsHandler
from handlers.pages import (
    STATIC_DIR,
    TEMPLATES_DIR,
    ApiDocsHandler,
    EmbedSubjectHandler,
    EmbedTeacherHandler,
    IconHandler,
    NotFoundHandler,
    PageHandler,
    PresentationHandler,
    StaticAssetHandler,
)
from handlers.votes import VoteHandler
from services.container import Services

Route = tuple[str, type[RequestHandler], dict[str, Any]]


def routes(services: Services, in_flight: InFlight) -> list[Route]:
    """tornado tries the rules in order: the most requested come first (probes, votes, sockets)."""
    api = {"services": services, "in_flight": in_flight}
    plain = {"services": services}
    return [
        (r"/healthz", HealthHandler, api),
        (r"/api/teachers/([0-9]+)/vote/?", VoteHandler, api),
        (r"/ws", LiveSocket, plain),
        (r"/sse", EventStream, plain),
        (r"/api/live/tickets/?", TicketHandler, api),
        (r"/api/subjects/?", SubjectListHandler, api),
        (r"/api/subjects/([0-9]+)/?", SubjectHandler, api),
        (r"/api/subjects/([0-9]+)/teachers/?", SubjectTeachersHandler, api),
        (r"/api/teachers/?", TeacherListHandler, api),
        (r"/api/teachers/([0-9]+)/?", TeacherHandler, api),
        (r"/api/teachers/([0-9]+)/history/?", TeacherHistoryHandler, api),
        (r"/api/subjects/([0-9]+)/history/?", SubjectHistoryHandler, api),
        (r"/api/subjects/([0-9]+)/results\.csv", ResultsExportHandler, api),
        (r"/api/subjects/([0-9]+)/history\.csv", HistoryExportHandler, api),
        (r"/api/auth/register/?", RegisterHandler, api),
        (r"/api/auth/login/?", LoginHandler, api),
        (r"/api/auth/refresh/?", RefreshHandler, api),
        (r"/api/auth/logout/?", LogoutHandler, api),
        (r"/api/auth/logout-all/?", LogoutAllHandler, api),
        (r"/api/auth/viewer/?", ViewerHandler, api),
        (r"/api/auth/session/?", SessionCookieHandler, api),
        (r"/api/auth/me/?", MeHandler, api),
        (r"/api/users/([0-9]+)/?", UserHandler, api),
        (r"/api/audit/?", AuditHandler, api),
        (r"/api/stats/?", StatsHandler, api),
        (r"/metrics", MetricsHandler, plain),
        (r"/api/openapi\.json", OpenApiHandler, api),
        (r"/readyz", ReadyHandler, api),
        (r"/api/docs/?()", ApiDocsHandler, {"page": "docs"}),
        (r"/()", PageHandler, {}),
        (r"/([a-z-]+\.html)", PageHandler, {}),
        (r"/present/([0-9]+)", PresentationHandler, plain),
        (r"/embed/subject/([0-9]+)", EmbedSubjectHandler, plain),
        (r"/embed/teacher/([0-9]+)", EmbedTeacherHandler, plain),
        (r"/static/(.*)", StaticAssetHandler, {"path": str(STATIC_DIR)}),
        (r"/favicon\.ico", IconHandler, {"url": "/static/images/favicon.svg", "permanent": True}),
    ]


def make_app(services: Services) -> LivevoteApplication:
    in_flight = InFlight()
    # pings: services/live/heartbeat.py, not tornado's task per socket
    return LivevoteApplication(
        routes(services, in_flight),
        in_flight,
        default_handler_class=NotFoundHandler,
        default_handler_args={"services": services, "in_flight": in_flight},
        websocket_max_message_size=services.config.ws.max_message_size,
        template_path=str(TEMPLATES_DIR),
        static_handler_class=StaticAssetHandler,
        **({} if services.config.server.access_log else {"log_function": _no_access_log}),
    )


def _no_access_log(_handler: RequestHandler) -> None:
    """server.access_log: false. Errors are still logged where they happen."""


def http_server(app: LivevoteApplication, services: Services) -> GuardedHTTPServer:
    """Behind a proxy (server.xheaders), X-Forwarded-For/-Proto name the client and its scheme.
    No connection reads a body past server.max_body_size (handlers/base.py refuses most sooner).
    A connection that sends no request for server.idle_timeout is closed (tornado's default: an hour).
    Past server.max_connections a connection is refused with 503 (handlers/listener.py)."""
    server = services.config.server
    return GuardedHTTPServer(
        app, xheaders=server.xheaders, max_body_size=server.max_body_size, idle_connection_timeout=server.idle_timeout,
        metrics=services.metrics, max_connections=server.max_connections or default_max_connections(),
        backed_up=services.handshakes.backed_up,
    )


class LivevoteApplication(Application):
    """Refuses bodies where none is expected; `in_flight` counts the API requests under way."""

    def __init__(self, handlers: list[Route], in_flight: InFlight, **settings: Any) -> None:
        super().__init__(handlers, **settings)
        # static_url() needs static_path; given to tornado's __init__, it would also route /static/,
        # /favicon.ico and /robots.txt itself, ahead of this route table.
        self.settings["static_path"] = str(STATIC_DIR)
        self.in_flight = in_flight

    def get_handler_delegate(
        self,
        request: HTTPServerRequest,
        target_class: type[RequestHandler],
        target_kwargs: dict[str, Any] | None = None,
        path_args: list[bytes] | None = None,
        path_kwargs: dict[str, bytes] | None = None,
    ) -> Any:
        """A request that declares a body reaches an API handler's streaming twin, and any
        other handler's 413. A live ticket in the URI is blanked before anything can log it."""
        request.uri = without_ticket(request.uri or "")
        if declares_body(request.headers):
            if issubclass(target_class, ApiHandler):
                target_class = streaming(target_class)
            else:
                target_class, target_kwargs = BodyRefused, None
        return super().get_handler_delegate(request, target_class, target_kwargs, path_args, path_kwargs)


@stream_request_body
class BodyRefused(RequestHandler):
    """Stands in for a handler that takes no body when a request brings one. As a streaming
    handler it runs at the headers: the 413 goes out and the connection closes unread."""

    def prepare(self) -> None:
        raise HTTPError(413)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        detail = HTTPStatus(status_code).description
        if status_code == 413:
            detail = f"{self.request.path} takes no request body."
        self.set_header("Connection", "close")
        self.set_header("Content-Type", PROBLEM_JSON)
        self.finish(problem_json(status_code, detail))


_STREAMING: dict[type[ApiHandler], type[ApiHandler]] = {}


def streaming(handler: type[ApiHandler]) -> type[ApiHandler]:
    """The handler, reading its body as it arrives (ApiHandler.data_received); one twin per class."""
    twin = _STREAMING.get(handler)
    if twin is None:
        subclass = type(handler.__name__, (handler,), {"__doc__": handler.__doc__})
        twin = _STREAMING[handler] = stream_request_body(subclass)
    return twin
