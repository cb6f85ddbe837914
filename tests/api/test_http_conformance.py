"""HTTP/1.1 the way RFC 9110/9112 and a cautious client expect it, route by route.

HEAD answers wherever GET does, with GET's status and headers and no body; the route table is
enumerated, so a new route is covered the day it is added.
"""

from __future__ import annotations

import re

import pytest
from tornado.routing import PathMatches

from handlers.app import make_app
from handlers.base import allowed_methods
from tests.harness.server import LiveServer, Response, UserClient

GROUP_EXAMPLES = {"[0-9]+": "1", r"[a-z-]+\.html": "login.html", ".*": "js/livevote.js", "": ""}
"""What each capturing group of the route table matches, in an address that exists."""
VARYING = {"date"}
"""Headers whose value may differ between two answers to the same request."""


def example_path(pattern: str) -> str:
    """An address the route serves: `/api/subjects/([0-9]+)/?$` is /api/subjects/1."""
    path = re.sub(r"\(([^()]*)\)", lambda group: GROUP_EXAMPLES[group[1]], pattern.removesuffix("$"))
    return path.replace("/?", "").replace("\\.", ".")


def get_routes(server: LiveServer) -> list[str]:
    assert server.services is not None
    rules = make_app(server.services).wildcard_router.rules
    return [example_path(rule.matcher.regex.pattern) for rule in rules
            if isinstance(rule.matcher, PathMatches) and "GET" in allowed_methods(rule.target)]


def comparable(response: Response) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for name, value in response.headers.get_all():
        if name.lower() not in VARYING:
            headers.setdefault(name.lower(), []).append(value)
    return headers


async def test_head_answers_as_get_does_on_every_get_route(api: LiveServer, admin: UserClient) -> None:
    paths = get_routes(api)
    assert {"/healthz", "/ws", "/api/subjects/1", "/metrics", "/login.html"} <= set(paths), paths
    for path in paths:
        for who in (api, admin):
            got = await who.request("GET", path)
            head = await who.request("HEAD", path)
            label = f"HEAD {path} ({'admin' if who is admin else 'anonymous'})"
            assert head.status == got.status, f"{label}: {head.status}, GET {got.status}"
            assert head.body == b"", f"{label} sent a body"
            if path != "/metrics":  # its text changes with every request, and its length with it
                assert comparable(head) == comparable(got), label
            else:
                assert head.content_type == got.content_type, label


@pytest.mark.parametrize("path", ["/api/auth/login", "/api/auth/register", "/api/auth/logout"])
async def test_head_where_get_is_not_served_is_405_naming_what_is(api: LiveServer, path: str) -> None:
    response = await api.request("HEAD", path)
    assert response.status == 405
    assert "HEAD" not in response.headers["Allow"] and "POST" in response.headers["Allow"]
