"""ApiHandler: the one place where HTTP meets the services.

It negotiates content (406), refuses a repeated query parameter rather than pick
one of its values (400), bounds and parses JSON bodies (413, 415, 400),
decides who may write, and turns every error, domain or HTTP, into an RFC 9457
problem+json response. Domain errors are translated here and nowhere else.

Only ApiHandler reads request bodies, streamed and capped at
server.max_body_size; the application (handlers/app.py) answers a body sent to
any other route with 413 at its headers, before any of it is read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

import orjson
from tornado.http1connection import HTTP1Connection
from tornado.web import HTTPError, RequestHandler

from handlers.headers import (
    JSON,
    PROBLEM_JSON,
    accepts_json,
    bearer_token,
    declared_length,
    is_json_media_type,
    origin_allowed,
)
from handlers.json_input import loads_strict
from services.audit import Actor
from services.auth.tokens import AccessClaims
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
from services.models import Page, PageJson, User
from services.schemas import canonical_int
from services.visibility import ANONYMOUS, Reader

log = logging.getLogger("livevote.http")

MAX_PAGE_SIZE = 100
MAX_PAGE = 1_000_000
CHUNKED_DRAIN = 1024 * 1024
"""A chunked body to /api that outgrows the cap is still read, and dropped, for this many more
bytes, so that a client still sending gets its 413 (closing at once can reset the connection
before the client reads the answer); past that the connection is closed."""
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


def problem_json(status: int, detail: str, errors: list[FieldError] | None = None, code: str | None = None) -> bytes:
    """An RFC 9457 problem document; `code`, for programs, where the status alone does not say
    what went wrong (voting_closed)."""
    problem: dict[str, Any] = {
        "type": "about:blank", "title": HTTPStatus(status).phrase, "status": status, "detail": detail,
    }
    if code is not None:
        problem["code"] = code
    if errors:
        problem["errors"] = [{"field": error.field, "code": error.code, "message": error.message} for error in errors]
    return orjson.dumps(problem)


def domain_status(exc: DomainError) -> int:
    """The HTTP status of a domain error, by its class or the nearest it derives from."""
    return next((DOMAIN_STATUS[kind] for kind in type(exc).__mro__ if kind in DOMAIN_STATUS), 500)


class DomainErrorLog(RequestHandler):
    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """Domain errors are answers, not faults; an outage is one line, not a traceback per request."""
        if isinstance(value, Unavailable):
            log.warning("%s %s: %s", self.request.method, self.request.path, value.detail)
        elif not isinstance(value, DomainError):
            super().log_exception(typ, value, tb)


def record_no(raw: str, noun: str) -> int:
    """A record number from a client: canonical ASCII digits, else (like ids past what the store
    can hold) it names nothing, 404."""
    no = canonical_int(raw)
    if no is None:
        raise NotFound(f"There is no {noun} {raw}.")
    return no


def implements(handler: type[RequestHandler], method: str) -> bool:
    return getattr(handler, method.lower(), None) is not getattr(RequestHandler, method.lower(), None)


def allowed_methods(handler: type[RequestHandler]) -> list[str]:
    """The methods a handler class implements, for the Allow header of a 405: HEAD with GET."""
    return [
        method for method in handler.SUPPORTED_METHODS
        if implements(handler, method) and (method != "HEAD" or implements(handler, "GET"))
    ]


class HeadAsGet(RequestHandler):
    """HEAD wherever GET (RFC 9110 9.3.2): GET's status and headers, and tornado sends no body.
    Where GET is not served, neither is HEAD: tornado's GET answers 405."""

    async def head(self, *args: str, **kwargs: str) -> None:
        served = self.get(*args, **kwargs)
        if served is not None:
            await served


class AllowOn405(RequestHandler):
    """Non-API handlers: a 405 names the allowed methods, as RFC 9110 asks."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if status_code == 405:
            self.set_header("Allow", ", ".join(allowed_methods(type(self))))
        super().write_error(status_code, **kwargs)


class InFlight:
    """API requests under way, so that a graceful stop can let them finish. Sockets and
    static files are not counted: a socket is closed, not waited for."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def started(self) -> None:
        self.count += 1
        self._idle.clear()

    def finished(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    async def idle(self) -> None:
        """Returns once no API request is under way."""
        await self._idle.wait()


class ApiHandler(HeadAsGet, DomainErrorLog):
    """Base of every /api handler. A request that declares a body is served by the handler's
    streaming twin (handlers/app.py), so that an oversized body is refused with 413 before it
    is read; one that declares none skips the event-loop turn a streaming handler waits for it."""

    def initialize(self, services: Services, in_flight: InFlight) -> None:
        self.services = services
        self.in_flight = in_flight
        self._body = bytearray()
        self._body_too_large = False
        self._tracked = False

    not_acceptable = "This resource is only available as application/json."
    """The detail of a 406, when accepts() refuses the request's Accept header."""

    def accepts(self, accept: str) -> bool:
        """Whether this resource has an answer that an Accept header admits; a handler that speaks
        more than JSON says which."""
        return accepts_json(accept)

    @property
    def body_limit(self) -> int:
        return self.services.config.server.max_body_size

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-store")

    def prepare(self) -> None:
        self.in_flight.started()
        self._tracked = True
        if not self.accepts(self.request.headers.get("Accept", "")):
            raise Problem(406, self.not_acceptable)
        repeated = next((name for name, values in self.request.query_arguments.items() if len(values) > 1), None)
        if repeated is not None:
            raise Problem(400, f"Query parameter {repeated} is given more than once; give it once.")
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
            self.in_flight.finished()

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
        return await self.services.sessions.authenticate(self._bearer_token())

    async def authenticate_admin(self) -> AccessClaims:
        """As authenticate, and 403 unless the user is an administrator now (whatever the token says)."""
        return await self.services.sessions.authenticate_admin(self._bearer_token())

    async def authenticated_user(self) -> User:
        """The bearer's user (401 unless the token is valid and its session active), with the role
        they have now (read within a second)."""
        return await self.services.sessions.reader(self._bearer_token())

    async def reader(self) -> Reader:
        """Who reads counts: the bearer's user when a token is sent (401 if it is not valid),
        else anyone."""
        if "Authorization" not in self.request.headers:
            return ANONYMOUS
        return Reader.of(await self.authenticated_user())

    async def acting_admin(self) -> Actor:
        """As authenticate_admin, and who that administrator is, for the audit log of their change."""
        claims = await self.authenticate_admin()
        return Actor.of(await self.services.accounts.get(claims.user_id))

    def _bearer_token(self) -> str:
        token = bearer_token(self.request.headers)
        if token is None:
            raise Unauthorized("This needs a bearer access token.")
        return token

    def origin_allowed(self) -> bool:
        return origin_allowed(
            self.request.headers.get("Origin"), self.request.host, self.services.config.server.allowed_origins
        )

    # -- output -----------------------------------------------------------

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", JSON)
        self.finish(orjson.dumps(data))

    def write_list(self, page: Page, offset: int, limit: int | None, results: list[Any] | None = None) -> None:
        """A plain array, or a DRF-style page when the client asked for one: of the page's items,
        or of `results` made from them."""
        results = [item.to_json() for item in page.items] if results is None else results
        if limit is None:
            self.write_json(results)
            return
        if offset and offset >= page.total:
            raise NotFound("Invalid page: there are not that many items.")
        size = limit
        number = offset // size + 1
        body: PageJson[dict[str, Any]] = {
            "count": page.total,
            "next": self._page_url(number + 1, size) if offset + size < page.total else None,
            "previous": self._page_url(number - 1, size) if number > 1 else None,
            "results": results,
        }
        self.write_json(body)

    def _page_url(self, number: int, size: int) -> str:
        """Relative: the Host header is the client's to write, and a cache or a proxy that
        serves this page to others must not hand them a link to a host of its choosing."""
        query = {key: self.get_query_argument(key) for key in self.request.arguments}
        query.update(page=str(number), page_size=str(size))
        return f"{self.request.path}?{urlencode(query)}"

    def created(self, data: Mapping[str, Any], location: str) -> None:
        self.set_header("Location", location)
        self.write_json(data, 201)

    def no_content(self) -> None:
        self.set_status(204)
        self.finish()

    # -- errors -----------------------------------------------------------

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        detail = HTTPStatus(status_code).description
        errors: list[FieldError] = []
        code = None
        if isinstance(exc, DomainError):
            status_code = domain_status(exc)
            detail = exc.detail
            code = getattr(exc, "code", None)
            errors = getattr(exc, "errors", [])
            if isinstance(exc, (RateLimited, Unavailable)):
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
        self.finish(problem_json(status_code, detail, errors, code))
