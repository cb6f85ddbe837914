"""ApiHandler: the one place where HTTP meets the services.

It negotiates content (406), bounds and parses JSON bodies (413, 415, 400),
decides who may write, and turns every error, domain or HTTP, into an RFC 9457
problem+json response. Domain errors are translated here and nowhere else.

Only ApiHandler reads request bodies, streamed and capped at
server.max_body_size; LivevoteApplication answers a body sent to any other route
with 413 at its headers, before any of it is read.
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson
from tornado.http1connection import HTTP1Connection
from tornado.httputil import HTTPHeaders, HTTPServerRequest
from tornado.web import Application, HTTPError, RequestHandler, stream_request_body

from services.container import Services
from services.errors import (
    Conflict,
    DomainError,
    FieldError,
    Forbidden,
    Invalid,
    NotFound,
    RateLimited,
    Unauthorized,
    Unavailable,
)
from services.json_input import loads_strict
from services.models import Page
from services.schemas import canonical_int
from services.auth.tokens import AccessClaims

log = logging.getLogger("livevote.http")

JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
MAX_PAGE_SIZE = 100
MAX_PAGE = 1_000_000
CHUNKED_DRAIN = 1024 * 1024
"""A chunked body to /api that outgrows the cap is still read, and dropped, for this many more
bytes, so that a client still sending gets its 413 (closing at once can reset the connection
before the client reads the answer); past that the connection is closed."""
LENGTH_DIGITS = 18
"""A Content-Length with more digits is past any cap; int() never parses a header-long number."""

DOMAIN_STATUS: dict[type[DomainError], int] = {
    NotFound: 404,
    Conflict: 409,
    Invalid: 422,
    Unauthorized: 401,
    Forbidden: 403,
    Unavailable: 503,
    RateLimited: 429,
}


class Problem(HTTPError):
    """An HTTP-level error with a client-facing detail and extra headers."""

    def __init__(
        self,
        status: int,
        detail: str,
        headers: dict[str, str] | None = None,
        errors: list[FieldError] | None = None,
    ) -> None:
        super().__init__(status)
        self.detail = detail
        self.headers = headers or {}
        self.errors = errors or []


def accepts_json(accept: str) -> bool:
    """True when an Accept header admits a JSON response (absent means anything)."""
    if not accept.strip():
        return True
    for media_range in accept.split(","):
        media_type, *params = (part.strip().lower() for part in media_range.split(";"))
        if any(param.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000") for param in params):
            continue
        if media_type in ("*/*", "application/*", JSON, PROBLEM_JSON):
            return True
    return False


def problem_json(status: int, detail: str, errors: list[FieldError] | None = None) -> bytes:
    """An RFC 9457 problem document."""
    problem: dict[str, Any] = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status, "detail": detail}
    if errors:
        problem["errors"] = [{"field": error.field, "code": error.code, "message": error.message} for error in errors]
    return orjson.dumps(problem)


def declared_length(headers: HTTPHeaders) -> int | None:
    """The Content-Length a request announces: None when it has none or it is not plain ASCII
    digits (Tornado refuses those itself, before reading)."""
    raw = headers.get("Content-Length")
    if raw is None or not raw.isascii() or not raw.isdigit():
        return None
    return int(raw) if len(raw) <= LENGTH_DIGITS else 10**LENGTH_DIGITS


def declares_body(headers: HTTPHeaders) -> bool:
    """True when a request says a body follows: any Transfer-Encoding, or a Content-Length but 0."""
    return "Transfer-Encoding" in headers or ("Content-Length" in headers and declared_length(headers) != 0)


def origin_allowed(origin: str | None, host: str, allowed: tuple[str, ...]) -> bool:
    """Same host as the request, or listed in server.allowed_origins; an Origin that is no URL
    (`http://[`) is neither."""
    if not origin:
        return False
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        return False
    return origin in allowed or netloc.lower() == host.lower()


def is_json_media_type(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == JSON or (media_type.startswith("application/") and media_type.endswith("+json"))


def allowed_methods(handler: type[RequestHandler]) -> list[str]:
    """The methods a handler class implements, for the Allow header of a 405."""
    return [
        method for method in handler.SUPPORTED_METHODS
        if getattr(handler, method.lower(), None) is not getattr(RequestHandler, method.lower(), None)
    ]


class AllowOn405(RequestHandler):
    """Non-API handlers: a 405 names the allowed methods, as RFC 9110 asks."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if status_code == 405:
            self.set_header("Allow", ", ".join(allowed_methods(type(self))))
        super().write_error(status_code, **kwargs)


class ApiHandler(RequestHandler):
    """Base of every /api handler. A request that declares a body is served by the handler's
    streaming twin (`streaming`), so that an oversized body is refused with 413 before it is
    read; one that declares none skips the event-loop turn a streaming handler waits for it."""

    application: LivevoteApplication

    def initialize(self, services: Services) -> None:
        self.services = services
        self._body = bytearray()
        self._body_too_large = False
        self._tracked = False

    @property
    def body_limit(self) -> int:
        return self.services.config.server.max_body_size

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-store")

    def prepare(self) -> None:
        self.application.request_started()
        self._tracked = True
        if not accepts_json(self.request.headers.get("Accept", "")):
            raise Problem(406, "This resource is only available as application/json.")
        declared = declared_length(self.request.headers)
        if declared is not None and declared > self.body_limit:
            raise Problem(413, f"The request body is larger than {self.body_limit} bytes.", {"Connection": "close"})
        chunked = "Transfer-Encoding" in self.request.headers
        if chunked and isinstance(self.request.connection, HTTP1Connection):
            self.request.connection.set_max_body_size(self.body_limit + CHUNKED_DRAIN)

    def on_finish(self) -> None:
        self._untrack()

    def on_connection_close(self) -> None:
        """A client that left, say halfway through its body, is owed nothing: not in flight."""
        super().on_connection_close()
        self._untrack()

    def _untrack(self) -> None:
        if self._tracked:
            self._tracked = False
            self.application.request_finished()

    def data_received(self, chunk: bytes) -> None:
        if len(self._body) + len(chunk) > self.body_limit:
            self._body_too_large = True
            self._body.clear()
        elif not self._body_too_large:
            self._body.extend(chunk)

    # -- input ------------------------------------------------------------

    def json_body(self) -> Any:
        if self._body_too_large:
            raise Problem(413, f"The request body is larger than {self.body_limit} bytes.")
        if not is_json_media_type(self.request.headers.get("Content-Type", "")):
            raise Problem(415, "The request body must be application/json.")
        try:
            return loads_strict(bytes(self._body))
        except ValueError as exc:
            raise Problem(400, f"The request body is not valid JSON: {exc}.") from None

    def query_int(self, name: str, default: int, high: int) -> int:
        """?name=, canonical ASCII digits from 1 to `high` (services/schemas.py canonical_int), else 422."""
        raw = self.get_query_argument(name, None, strip=False)
        if raw is None:
            return default
        number = canonical_int(raw, high=high)
        if number is None:
            raise Invalid(
                f"Query parameter {name} is not valid.",
                [FieldError(name, "canonical_integer", f"must be a whole number from 1 to {high}, in ASCII digits")],
            )
        return number

    def page_window(self) -> tuple[int, int | None]:
        """(offset, limit) for ?page= / ?page_size=, or (0, None) for the whole list."""
        if not self.is_paged:
            return 0, None
        page = self.query_int("page", 1, high=MAX_PAGE)
        size = self.query_int("page_size", 20, high=MAX_PAGE_SIZE)
        return (page - 1) * size, size

    @property
    def is_paged(self) -> bool:
        return "page" in self.request.arguments or "page_size" in self.request.arguments

    # -- authentication ---------------------------------------------------

    async def authenticate(self) -> AccessClaims:
        """The caller's claims from `Authorization: Bearer`; 401 unless valid and its session active."""
        scheme, _, token = self.request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("This needs a bearer access token.")
        return await self.services.sessions.authenticate(token.strip())

    async def authenticate_admin(self) -> AccessClaims:
        claims = await self.authenticate()
        if claims.role != "admin":
            raise Forbidden("This needs an administrator.")
        return claims

    def origin_allowed(self) -> bool:
        return origin_allowed(
            self.request.headers.get("Origin"), self.request.host, self.services.config.server.allowed_origins
        )

    # -- output -----------------------------------------------------------

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", JSON)
        self.finish(orjson.dumps(data))

    def write_list(self, page: Page, offset: int, limit: int | None) -> None:
        """A plain array, or a DRF-style page when the client asked for one."""
        results = [item.to_json() for item in page.items]
        if limit is None:
            self.write_json(results)
            return
        if offset and offset >= page.total:
            raise NotFound("Invalid page: there are not that many items.")
        size = limit
        number = offset // size + 1
        self.write_json({
            "count": page.total,
            "next": self._page_url(number + 1, size) if offset + size < page.total else None,
            "previous": self._page_url(number - 1, size) if number > 1 else None,
            "results": results,
        })

    def _page_url(self, number: int, size: int) -> str:
        query = {key: self.get_query_argument(key) for key in self.request.arguments}
        query.update(page=str(number), page_size=str(size))
        return f"{self.request.protocol}://{self.request.host}{self.request.path}?{urlencode(query)}"

    def created(self, data: dict[str, Any], location: str) -> None:
        self.set_header("Location", location)
        self.write_json(data, 201)

    def no_content(self) -> None:
        self.set_status(204)
        self.finish()

    # -- errors -----------------------------------------------------------

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """Domain errors are answers, not faults; an outage is one line, not a traceback per request."""
        if isinstance(value, Unavailable):
            log.warning("%s %s: %s", self.request.method, self.request.path, value.detail)
        elif not isinstance(value, DomainError):
            super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        detail = HTTPStatus(status_code).description
        errors: list[FieldError] = []
        if isinstance(exc, DomainError):
            status_code = DOMAIN_STATUS.get(type(exc), 500)
            detail = exc.detail
            errors = getattr(exc, "errors", [])
            if isinstance(exc, RateLimited):
                self.set_header("Retry-After", str(max(int(exc.retry_after), 1)))
        elif isinstance(exc, Problem):
            detail = exc.detail
            errors = exc.errors
            for name, value in exc.headers.items():
                self.set_header(name, value)
        self.set_status(status_code)
        if status_code == 401:
            self.set_header("WWW-Authenticate", 'Bearer realm="livevote"')
        if status_code == 405:
            self.set_header("Allow", ", ".join(allowed_methods(type(self))))
            detail = f"{self.request.method} is not allowed here."
        self.set_header("Content-Type", PROBLEM_JSON)
        self.finish(problem_json(status_code, detail, errors))



class NotFoundHandler(ApiHandler):
    """Every path no route claims: a problem+json 404; a browser asking for a page outside /api
    gets the 404 page instead, under the pages' headers (handlers/pages.py)."""

    def prepare(self) -> None:
        # imported here, not at the top: handlers/pages.py imports this module
        from handlers.pages import send_not_found_page, wants_page

        if wants_page(self.request):
            send_not_found_page(self)
            return
        raise NotFound(f"There is nothing at {self.request.path}.")


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
        twin = _STREAMING[handler] = stream_request_body(type(handler.__name__, (handler,), {"__doc__": handler.__doc__}))
    return twin


class LivevoteApplication(Application):
    """Refuses bodies where none is expected, and counts requests in flight so that a graceful
    stop can let them finish."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def request_started(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def request_finished(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    def get_handler_delegate(
        self,
        request: HTTPServerRequest,
        target_class: type[RequestHandler],
        target_kwargs: dict[str, Any] | None = None,
        path_args: list[bytes] | None = None,
        path_kwargs: dict[str, bytes] | None = None,
    ) -> Any:
        """Pages, /ws and /metrics would buffer a body whole before they run: refuse it instead."""
        if declares_body(request.headers):
            if issubclass(target_class, ApiHandler):
                target_class = streaming(target_class)
            else:
                target_class, target_kwargs = BodyRefused, None
        return super().get_handler_delegate(request, target_class, target_kwargs, path_args, path_kwargs)

    async def wait_idle(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True
