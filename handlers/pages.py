"""The pages in static/, served with headers that keep injected script from running."""

from __future__ import annotations

from tornado.web import StaticFileHandler

from handlers.base import AllowOn405

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


class PageHandler(AllowOn405, StaticFileHandler):
    """Static files with a strict Content-Security-Policy: no inline script, nothing from elsewhere."""

    def set_default_headers(self) -> None:
        self.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")
