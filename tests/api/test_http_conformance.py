"""HTTP/1.1 the way RFC 9110/9112 and a cautious client expect it, route by route.

HEAD answers wherever GET does, with GET's status and headers and no body. A query parameter
given twice is refused (400), never read as one of its values. Paging links are relative, so no
Host header a client sends ends up in them. These walk the route table (or the OpenAPI document
built from it), so a new route is covered the day it is added. A request head too large for the
server is answered (414, 431) before the close, never a bare drop; and a connection that sends
nothing is closed after server.idle_timeout.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tornado.routing import PathMatches

from handlers.app import make_app, routes
from handlers.base import allowed_methods
from handlers.openapi import openapi_document
from tests.conftest import ServerFactory
from tests.harness.server import LiveServer, Response, UserClient, assert_problem
from tests.harness.strategies import examples

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


def query_operations() -> list[tuple[str, str, list[str]]]:
    """(method, example path, its query parameters) of every operation that takes any; an
    administrator's operations among them are SECURED."""
    # the route table for its patterns and handlers only: no request reaches it
    table = tuple((pattern, handler) for pattern, handler, _ in routes(None, None))  # type: ignore[arg-type]
    found = []
    for path, item in openapi_document(table)["paths"].items():
        if path == "/sse":  # a stream that never ends, whose `channel` is a list: tests/live/test_event_stream.py
            continue
        for method, operation in item.items():
            names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
            if names:
                found.append((method.upper(), path.replace("{no}", "1"), names))
                if "security" in operation:
                    SECURED.add(path)
    return found


SECURED: set[str] = set()
QUERY_OPERATIONS = query_operations()
values = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=6) | st.integers(1, 3).map(str)


@examples(2)
@given(data=st.data())
async def test_a_query_parameter_given_twice_is_refused_on_every_route(api: LiveServer, data: st.DataObject) -> None:
    assert {path for _, path, _ in QUERY_OPERATIONS} >= {"/api/teachers/", "/api/subjects/"}, QUERY_OPERATIONS
    method, path, names = data.draw(st.sampled_from(QUERY_OPERATIONS), label="operation")
    repeated = data.draw(st.sampled_from(names), label="repeated")
    pairs = [(repeated, data.draw(values, label="first")), (repeated, data.draw(values, label="again"))]
    pairs += [(name, "1") for name in data.draw(st.lists(st.sampled_from(names), unique=True), label="others")
              if name != repeated]
    pairs = data.draw(st.permutations(pairs), label="order")
    response = await api.request(method, f"{path}?{urlencode(pairs)}")
    problem = assert_problem(response, 400)
    assert repeated in problem["detail"], problem


QUERY_VALUES = {
    "from": "2026-05-01T08:00:00Z", "to": "2026-05-01T09:00:00Z", "step": "minute", "kind": "subject", "theme": "dark",
}
"""A valid value of each query parameter that takes no number."""


async def test_a_query_parameter_given_once_is_read(admin: UserClient) -> None:
    """The refusal above is of the repetition: the same parameters once each are served (to an
    administrator, since some operations are theirs)."""
    for method, path, names in QUERY_OPERATIONS:
        query = urlencode([(name, QUERY_VALUES.get(name, "1")) for name in names])
        response = await admin.request(method, f"{path}?{query}")
        assert response.status == 200, (method, path, response.body)


PAGED = [(method, path) for method, path, names in QUERY_OPERATIONS if "page" in names and path not in SECURED]
"""The public lists: an administrator's (the audit log) builds its links the same way (write_list)."""
hosts = st.sampled_from(["evil.example", "evil.example:443", "127.0.0.1:1", "[::1]:80", "a\"><b"]) | st.from_regex(
    r"[a-z0-9.-]{1,30}(:[0-9]{1,5})?", fullmatch=True
)


@examples(2)
@given(data=st.data())
async def test_paging_links_never_carry_the_host_header(api: LiveServer, data: st.DataObject) -> None:
    method, path = data.draw(st.sampled_from(PAGED), label="list")
    host = data.draw(hosts, label="host")
    response = await api.request(method, f"{path}?page=2&page_size=1", headers={"Host": host})
    assert response.status in (200, 400), (host, response.status, response.body)
    if response.status == 400:  # tornado refuses a Host that is no host name at all
        return
    page = response.json()
    for link in (page["next"], page["previous"]):
        assert link.startswith(f"{path}?"), f"not relative to this server: {link!r} (Host {host!r})"
        assert (await api.get(link)).status == 200, link


MAX_HEAD = 65536
"""The most of a request head the server reads (tornado's max_header_size)."""


async def exchange(port: int, head: str, timeout: float = 10.0) -> bytes:
    """Write a request head by hand; everything the server answers until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.encode())
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


def responses(raw: bytes) -> list[tuple[int, bytes]]:
    """(status, body) of each response in a connection's bytes, bodies by Content-Length."""
    found = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next((int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")), 0)
        found.append((int(lines[0].split()[1]), rest[:length]))
        raw = rest[length:]
    return found


def request(path: str = "/api/subjects/", *headers: str) -> str:
    """A GET head; `Connection: close` unless the headers say otherwise."""
    if not any(header.lower().startswith("connection:") for header in headers):
        headers = (*headers, "Connection: close")
    return "\r\n".join([f"GET {path} HTTP/1.1", "Host: localhost", *headers]) + "\r\n\r\n"


HEADS = [
    pytest.param(request("/api/subjects/?pad=" + "a" * (MAX_HEAD - 200)), [200], id="url-just-under"),
    pytest.param(request("/api/subjects/?pad=" + "a" * MAX_HEAD), [414], id="long-query"),
    pytest.param(request("/" + "a" * (2 * MAX_HEAD)), [414], id="long-path"),
    pytest.param(request("/api/subjects/", "X-Big: " + "b" * MAX_HEAD), [431], id="one-huge-header"),
    pytest.param(request("/api/subjects/", *(f"X-H{n}: {'c' * 40}" for n in range(2000))), [431], id="many-headers"),
    pytest.param(request("/api/subjects/", "Cookie: " + "d=1; " * 20000), [431], id="huge-cookie"),
    pytest.param(request("/healthz", "Connection: keep-alive") + request("/healthz", "X-Big: " + "e" * MAX_HEAD),
                 [200, 431], id="keep-alive-then-huge"),
]


@pytest.mark.parametrize(("head", "statuses"), HEADS)
async def test_a_request_head_too_large_is_answered_before_the_close(
    api: LiveServer, head: str, statuses: list[int]
) -> None:
    answered = responses(await exchange(api.port, head))
    assert [status for status, _ in answered] == statuses, answered
    for status, body in answered:
        if status >= 400:
            problem = json.loads(body)
            assert problem["status"] == status and problem["detail"], problem
    assert (await api.get("/healthz")).status == 200


@examples(1)
@given(size=st.integers(MAX_HEAD - 512, MAX_HEAD + 8192), in_url=st.booleans())
async def test_a_head_near_the_limit_is_served_or_refused_but_never_dropped(
    api: LiveServer, size: int, in_url: bool
) -> None:
    head = request(f"/healthz?pad={'a' * size}") if in_url else request("/healthz", f"X-Pad: {'a' * size}")
    answered = responses(await exchange(api.port, head))
    request_line = head.index("\r\n") + 2
    refused = 414 if request_line > MAX_HEAD else 431  # a line that fits, with headers that do not: 431
    assert [status for status, _ in answered] in ([200], [refused]), (len(head), answered)
    if len(head) > MAX_HEAD + 4:  # the head and the blank line after it
        assert answered[0][0] == refused, len(head)


IDLE_TIMEOUT = 0.5


async def test_a_connection_that_sends_nothing_is_closed_after_the_idle_timeout(start_server: ServerFactory) -> None:
    server = await start_server(server__idle_timeout=IDLE_TIMEOUT)
    for head in ("", request("/healthz", "Connection: keep-alive")):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            opened = time.monotonic()
            writer.write(head.encode())
            answered = responses(await asyncio.wait_for(reader.read(), 10))
            waited = time.monotonic() - opened
        finally:
            writer.close()
        assert [status for status, _ in answered] == ([200] if head else []), answered
        assert IDLE_TIMEOUT * 0.8 <= waited < 5, f"closed after {waited:.2f} s, not after {IDLE_TIMEOUT} s idle"
