"""What a request's headers say: the media types it accepts, the body it declares, where it comes from.

A leaf of handlers/: plain functions over header values, shared by the API, the
pages and the live channel, so that each rule is parsed one way only.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

from tornado.httputil import HTTPHeaders

JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
JSON_RANGES = frozenset({"*/*", "application/*", JSON, PROBLEM_JSON})
"""Media ranges that admit a JSON answer (problem+json included)."""
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
LENGTH_DIGITS = 18
"""A Content-Length with more digits is past any cap; int() never parses a header-long number."""


def accepted_media(accept: str) -> Iterator[str]:
    """The media ranges an Accept header names with a weight above 0, lowercased
    (RFC 9110 §12.5.1). A weight that is no number counts as 1: it refuses nothing."""
    for media_range in accept.split(","):
        media_type, *params = (part.strip().lower() for part in media_range.split(";"))
        weight = next((param.replace(" ", "")[2:] for param in params if param.replace(" ", "").startswith("q=")), "1")
        try:
            if float(weight) <= 0:
                continue
        except ValueError:
            pass
        yield media_type


def accepts_json(accept: str) -> bool:
    """True when an Accept header admits a JSON response (absent means anything)."""
    return not accept.strip() or any(media in JSON_RANGES for media in accepted_media(accept))


def accepts_html(accept: str) -> bool:
    """True when an Accept header names an HTML type, as a browser's navigation does;
    `*/*` alone (fetch, curl) is not a request for a page."""
    return any(media in HTML_TYPES for media in accepted_media(accept))


def is_json_media_type(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == JSON or (media_type.startswith("application/") and media_type.endswith("+json"))


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


def bearer_token(headers: HTTPHeaders) -> str | None:
    """The token of an `Authorization: Bearer` header, if one was sent."""
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None
