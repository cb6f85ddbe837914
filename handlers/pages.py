"""The pages in static/, served with headers that keep injected script from running.

An address nothing serves gets the 404 page (static/404.html) when a browser asks for a
page outside /api; under /api, and for programs, the 404 stays problem+json."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from tornado.httputil import HTTPServerRequest
from tornado.web import RequestHandler, StaticFileHandler

from handlers.base import AllowOn405, ApiHandler
from handlers.headers import accepts_html
from services.errors import NotFound

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
NOT_FOUND_PAGE = Path(__file__).resolve().parent.parent / "static" / "404.html"


def set_page_headers(handler: RequestHandler) -> None:
    for name, value in PAGE_HEADERS.items():
        handler.set_header(name, value)


def wants_page(request: HTTPServerRequest) -> bool:
    """A browser asking for a page, at an address outside /api."""
    path = request.path
    if path == "/api" or path.startswith("/api/"):
        return False
    return accepts_html(request.headers.get("Accept", ""))


@cache
def not_found_html() -> bytes:
    return NOT_FOUND_PAGE.read_bytes()


def send_not_found_page(handler: RequestHandler) -> None:
    """Finish `handler` with the 404 page, under the pages' headers."""
    set_page_headers(handler)
    handler.set_status(404)
    handler.set_header("Content-Type", "text/html; charset=UTF-8")
    handler.finish(not_found_html())


class PageHandler(AllowOn405, StaticFileHandler):
    """Static files with a strict Content-Security-Policy: no inline script, nothing from elsewhere."""

    def set_default_headers(self) -> None:
        set_page_headers(self)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """A page or file that is not there: the 404 page, for a browser asking for a page."""
        if status_code == 404 and wants_page(self.request):
            send_not_found_page(self)
            return
        super().write_error(status_code, **kwargs)


class NotFoundHandler(ApiHandler):
    """Every path no route claims: a problem+json 404; a browser asking for a page outside /api
    gets the 404 page instead, under the pages' headers."""

    def prepare(self) -> None:
        if wants_page(self.request):
            send_not_found_page(self)
            return
        raise NotFound(f"There is nothing at {self.request.path}.")
