"""livevote behind the real nginx, configured by the shipped deploy/nginx.conf.

Each test runs one real redis-server, three `python server.py` processes on it
(server.xheaders on, the nginx origin allowed) and an unprivileged nginx in front of
them over TLS (tests/harness/nginx.py); the page tests drive headless Chromium
through nginx. Nothing is mocked: the client is on the other side of nginx.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis.asyncio as redis
from playwright.async_api import Browser, BrowserContext, async_playwright, expect
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from tests.harness.live_views import TEACHERS, store_counts
from tests.harness.nginx import Nginx, NginxFactory, start_nginx  # noqa: F401  (start_nginx: a fixture)
from tests.harness.pages import PageLog, count, launch_chromium, logged_in_context, open_live, teacher
from tests.harness.ports import free_port
from tests.harness.redis_server import RedisServer
from tests.harness.server import sign_up
from tests.harness.server_process import ServerProcess, processes

PASSWORD = "correct horse battery"
LOGIN_IP_ATTEMPTS = 3
"""auth.login_ip_attempts for these processes: failed logins per client address per window."""
BODY_LIMIT = 65536
"""server.max_body_size (the default) and client_max_body_size 64k in deploy/nginx.conf."""


@dataclass
class Stack:
    redis: RedisServer
    servers: list[ServerProcess]
    nginx: Nginx


@pytest.fixture
async def stack(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    redis_server: RedisServer,
    start_nginx: NginxFactory,  # noqa: F811
) -> AsyncIterator[Stack]:
    """Three processes of one host on one Redis, behind nginx on https://127.0.0.1:<port>
    (a test may parametrize it, indirectly, with a change to nginx's rendered config)."""
    adjust = getattr(request, "param", None)
    port = free_port()
    config = {
        "server.xheaders": "true",
        "server.allowed_origins": json.dumps([f"https://127.0.0.1:{port}"]),
        "auth.login_ip_attempts": LOGIN_IP_ATTEMPTS,
    }
    async with processes(3, tmp_path / "data", redis_server.url, **config) as servers:
        nginx = await start_nginx([server.port for server in servers], port=port, adjust=adjust)
        yield Stack(redis_server, servers, nginx)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await launch_chromium(playwright)
        yield chromium
        await chromium.close()


async def context_of(browser: Browser, nginx: Nginx, username: str) -> BrowserContext:
    """A logged-in context on nginx's origin (the test certificate is self-signed)."""
    return await logged_in_context(browser, nginx, username, PASSWORD, ignore_https_errors=True)  # type: ignore[arg-type]


SHOWN = """() => {
  const pill = document.getElementById("conn");
  return {
    state: pill.dataset.state,
    connects: Number(pill.dataset.connects),
    counts: Object.fromEntries([...document.querySelectorAll("article.teacher")].map((card) => [
      card.dataset.no,
      [Number(card.querySelector(".vote-good .count").textContent),
       Number(card.querySelector(".vote-bad .count").textContent)],
    ])),
  };
}"""
"""What a teachers page shows: its socket's state, how often it connected, the counts."""


async def sockets_open(server: ServerProcess) -> int:
    """livevote_sockets_open of one process, asked on its own port (not through nginx)."""
    response = await server.get("/metrics")
    assert response.status == 200, response.body
    for line in response.body.decode().splitlines():
        if line.startswith("livevote_sockets_open "):
            return int(float(line.split()[1]))
    raise AssertionError("no livevote_sockets_open in /metrics")


# -- the pages, through nginx ------------------------------------------------------------------


async def test_a_vote_on_one_page_shows_live_on_another_through_nginx(browser: Browser, stack: Stack) -> None:
    nginx = stack.nginx
    await sign_up(nginx, "alice")
    await sign_up(nginx, "bob")
    log = PageLog()
    alice_context = await context_of(browser, nginx, "alice")
    bob_context = await context_of(browser, nginx, "bob")
    alice = await open_live(log.watch(await alice_context.new_page()))
    bob = await open_live(log.watch(await bob_context.new_page()))
    await expect(count(bob, 1, "good")).to_have_text("0")

    await teacher(alice, 1).locator(".vote-good").click()
    await expect(count(alice, 1, "good")).to_have_text("1")
    await expect(count(bob, 1, "good")).to_have_text("1", timeout=1000)
    await teacher(bob, 1).locator(".vote-bad").click()
    await expect(count(alice, 1, "bad")).to_have_text("1", timeout=1000)

    # X-Forwarded-Proto reached livevote: it marked the refresh cookie Secure, as it does only for https.
    cookies = {cookie["name"]: cookie for cookie in await alice_context.cookies()}
    assert cookies["livevote_refresh"]["secure"] and cookies["livevote_refresh"]["httpOnly"]
    assert sum([await sockets_open(server) for server in stack.servers]) == 2
    log.assert_clean()
    await alice_context.close()
    await bob_context.close()


async def test_pages_on_a_killed_process_reconnect_through_nginx_and_converge(browser: Browser, stack: Stack) -> None:
    nginx, servers = stack.nginx, stack.servers
    names = ["carol", "dave", "erin", "frank"]
    for name in names:
        await sign_up(nginx, name)
    voter = await sign_up(nginx, "grace")
    log = PageLog()
    contexts = [await context_of(browser, nginx, name) for name in names]
    pages = [await open_live(log.watch(await context.new_page())) for context in contexts]
    await teacher(pages[0], 1).locator(".vote-good").click()
    await expect(count(pages[-1], 1, "good")).to_have_text("1", timeout=1000)

    held = [await sockets_open(server) for server in servers]
    assert sum(held) == len(pages), held
    victim_index = max(range(len(servers)), key=lambda i: held[i])
    victim, survivors = servers[victim_index], [s for i, s in enumerate(servers) if i != victim_index]
    print(f"sockets per process {held}; killing the one with {held[victim_index]}")

    loop = asyncio.get_running_loop()
    assert victim.process is not None
    victim.process.kill()  # SIGKILL: no goodbye, the kernel just resets its connections
    killed_at = loop.time()
    await victim.wait_exit()
    # A vote after the kill, through nginx (a PUT: if nginx picks the dead process first, it tries the next).
    response = await voter.request("PUT", "/api/teachers/2/vote", json_body={"value": "bad"})
    assert response.status == 200, response.body

    reconnected_at = converged_at = None
    deadline = killed_at + 5.0
    while True:
        expected = await store_counts(survivors[0])
        shown = [await page.evaluate(SHOWN) for page in pages]
        now = loop.time()
        live = all(s["state"] == "live" for s in shown)
        reconnects = sum(s["connects"] - 1 for s in shown)
        if reconnected_at is None and live and reconnects == held[victim_index]:
            reconnected_at = now
        agree = all(s["counts"].get(str(no)) == list(expected[no][:2]) for s in shown for no in TEACHERS)
        if reconnected_at is not None and agree:
            converged_at = now
            break
        assert now < deadline, (
            f"not converged 5 s after kill -9: reconnects {reconnects}, store {expected}, pages {shown}"
        )
        await asyncio.sleep(0.05)
    print(f"after kill -9: {held[victim_index]} page(s) live again through nginx in {reconnected_at - killed_at:.2f} s,"
          f" every page showing the store's counts in {converged_at - killed_at:.2f} s")
    assert expected[2][1] == 1 and expected[1][0] == 1

    # The reconnected sockets are subscribed again, not just sent a snapshot: a new vote reaches every page.
    assert (await voter.request("PUT", "/api/teachers/3/vote", json_body={"value": "good"})).status == 200
    for page in pages:
        await expect(count(page, 3, "good")).to_have_text("1", timeout=1000)
    assert sum([await sockets_open(server) for server in survivors]) == len(pages)
    log.assert_clean()
    for context in contexts:
        await context.close()


# -- who the client is, seen through nginx -------------------------------------------------------


async def failed_login(nginx: Nginx, username: str, source_ip: str, forged: dict[str, str] | None = None) -> int:
    response = await nginx.request(
        "POST", "/api/auth/login", json_body={"username": username, "password": "wrong password"},
        headers=forged, source_ip=source_ip,
    )
    assert response.status in (401, 429), (response.status, response.body)
    if response.status == 429:
        assert int(response.headers["Retry-After"]) > 0
    return response.status


async def test_the_login_throttle_counts_the_client_address_and_forged_headers_do_not_escape_it(stack: Stack) -> None:
    """The client connects from 127.0.0.2 (nginx reaches livevote from 127.0.0.1): the per-IP
    login budget is the client's, and headers the client makes up change nothing."""
    nginx = stack.nginx
    for attempt in range(LOGIN_IP_ATTEMPTS):  # other usernames each time: only the per-IP budget fills up
        forged = {"X-Forwarded-For": f"10.0.0.{attempt}", "X-Real-IP": f"10.1.0.{attempt}"}
        assert await failed_login(nginx, f"nobody{attempt}", "127.0.0.2", forged) == 401
    for forged in (
        {"X-Forwarded-For": "10.0.0.99"},
        {"X-Real-IP": "10.1.0.99"},
        {"X-Forwarded-For": "10.0.0.98, 10.0.0.97", "X-Real-IP": "10.1.0.98"},
        {},
    ):
        assert await failed_login(nginx, "somebody-else", "127.0.0.2", forged) == 429, forged
    # Another client address has its own budget, whatever it claims to be.
    assert await failed_login(nginx, "nobody0", "127.0.0.3", {"X-Real-IP": "127.0.0.2"}) == 401

    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    try:
        keys = [str(key) for key in await client.keys("*login:ip:*")]
        counted = {key.rsplit("login:ip:", 1)[1]: int(await client.get(key) or 0) for key in keys}
    finally:
        await client.aclose()
    assert counted == {"127.0.0.2": LOGIN_IP_ATTEMPTS, "127.0.0.3": 1}, counted


async def test_livevote_sees_https_and_the_browsers_host_and_nginx_guards_metrics(stack: Stack) -> None:
    nginx = stack.nginx
    await sign_up(nginx, "heidi")

    # X-Scheme / X-Forwarded-Proto from the client cannot downgrade the Secure cookie: nginx sets both.
    response = await nginx.request(
        "POST", "/api/auth/login", json_body={"username": "heidi", "password": PASSWORD},
        headers={"X-Scheme": "http", "X-Forwarded-Proto": "http"},
    )
    assert response.status == 200, response.body
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("livevote_refresh=") and "Secure" in cookie and "HttpOnly" in cookie, cookie
    token = response.json()["access_token"]

    # Paging links are relative: they work behind nginx without trusting any Host header.
    page = (await nginx.get("/api/subjects/?page=1&page_size=2")).json()
    assert page["next"].startswith("/api/subjects/?"), page["next"]
    assert (await nginx.get(page["next"])).status == 200

    # The socket's Origin check still works behind nginx: the site's own origin opens it, another does not.
    async def open_socket(origin: str) -> int:
        request = HTTPRequest(
            f"wss://127.0.0.1:{nginx.port}/ws", headers={"Origin": origin, "Authorization": f"Bearer {token}"},
            validate_cert=False, request_timeout=10,
        )
        try:
            connection = await websocket_connect(request, subprotocols=["livevote.v1"])
        except HTTPClientError as exc:
            return exc.code
        welcome = json.loads(str(await connection.read_message()))
        assert welcome["type"] == "welcome", welcome
        connection.close()
        return 101

    assert await open_socket(nginx.origin) == 101
    assert await open_socket("https://evil.example") == 403

    # /metrics: from the host itself only.
    assert (await nginx.get("/metrics")).status == 200
    assert (await nginx.get("/metrics", source_ip="127.0.0.2")).status == 403

    # Plain http is redirected to https.
    http = HTTPRequest(f"http://127.0.0.1:{nginx.http_port}/teachers.html?sno=1", follow_redirects=False)
    redirect = await AsyncHTTPClient().fetch(http, raise_error=False)
    assert redirect.code == 301 and redirect.headers["Location"] == "https://127.0.0.1/teachers.html?sno=1"


# -- request bodies ------------------------------------------------------------------------------


async def test_a_body_over_client_max_body_size_is_refused_by_nginx(stack: Stack) -> None:
    nginx = stack.nginx
    login = json.dumps({"username": "ivan", "password": "wrong password"})

    # Exactly the limit: nginx passes it on, livevote reads it (a failed login, not a 413).
    at_limit = login + " " * (BODY_LIMIT - len(login))
    response = await nginx.request(
        "POST", "/api/auth/login", body=at_limit, headers={"Content-Type": "application/json"}
    )
    assert response.status == 401, (response.status, response.body)

    # One byte more: refused by nginx, in livevote's problem+json shape, and no process saw it.
    response = await nginx.request(
        "POST", "/api/auth/login", body=at_limit + " ", headers={"Content-Type": "application/json"}
    )
    assert response.status == 413
    assert response.content_type == "application/problem+json"
    assert response.json()["status"] == 413

    def logins(lines: list[str]) -> list[str]:
        return [line for line in lines if '"POST /api/auth/login' in line]

    logged = logins(await nginx.logged(lambda lines: len(logins(lines)) >= 2))
    refused = [line for line in logged if " 413 " in line]
    assert len(refused) == 1 and "upstream=- " in refused[0], nginx.log("access.log")
    passed = [line for line in logged if " 401 " in line]
    assert len(passed) == 1 and "upstream=127.0.0.1:" in passed[0], passed


# -- Server-Sent Events through nginx ------------------------------------------------------------


async def open_stream(nginx: Nginx, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """GET `path` through nginx over TLS as HTTP/1.0 (so the body comes as it is, not chunked),
    read up to the end of the response's head, which must open an event stream."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the test's self-signed certificate
    reader, writer = await asyncio.open_connection("127.0.0.1", nginx.port, ssl=context)
    writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{nginx.port}\r\nOrigin: {nginx.origin}\r\n\r\n".encode())
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).decode()
    assert head.startswith("HTTP/1.1 200") and "text/event-stream" in head, head
    return reader, writer


async def next_message(reader: asyncio.StreamReader, kind: str, timeout: float) -> dict[str, Any]:
    """The stream's next message whose `type` is `kind`, within `timeout` seconds."""

    async def find() -> dict[str, Any]:
        while line := await reader.readline():
            if line.startswith(b"data:"):
                message: dict[str, Any] = json.loads(line[len(b"data:") :])
                if message["type"] == kind:
                    return message
        raise AssertionError(f"the stream ended before a {kind!r} message")

    return await asyncio.wait_for(find(), timeout)


async def test_a_stream_through_nginx_passes_each_event_at_once_and_logs_no_ticket(stack: Stack) -> None:
    nginx = stack.nginx
    judy = await sign_up(nginx, "judy")
    minted = await judy.request("POST", "/api/live/tickets")
    assert minted.status == 201, minted.body
    ticket = minted.json()["ticket"]
    reader, writer = await open_stream(nginx, f"/sse?channel=subject:1&ticket={quote(ticket)}")
    try:
        await next_message(reader, "snapshot", timeout=5)
        loop = asyncio.get_running_loop()
        voted_at = loop.time()
        assert (await judy.request("PUT", "/api/teachers/1/vote", json_body={"value": "good"})).status == 200
        # The event comes while the stream stays open: nginx buffering it would hold it back
        # until its buffer filled or the stream ended.
        update = await next_message(reader, "votes", timeout=2)
        print(f"a vote to its event on a stream through nginx: {loop.time() - voted_at:.3f} s")
        assert [(u["no"], u["good_count"]) for u in update["updates"]] == [(1, 1)], update
        assert not reader.at_eof()
    finally:
        writer.close()

    def streams(lines: list[str]) -> list[str]:
        return [line for line in lines if "/sse" in line]

    logged = streams(await nginx.logged(lambda lines: bool(streams(lines))))
    assert len(logged) == 1 and '"GET /sse HTTP/1.0"' in logged[0] and "upstream=127.0.0.1:" in logged[0], logged
    assert ticket not in nginx.log("access.log") and "ticket" not in logged[0], logged


def refusing_websockets(config: str) -> str:
    """nginx's rendered config with /ws answering 403: a proxy that lets no WebSocket through."""
    refused, found = re.subn(
        r"(location = /ws \{\n).*?(\n\s*\})", r"\g<1>            return 403;\g<2>", config, count=1, flags=re.DOTALL
    )
    assert found == 1, "no `location = /ws` in the rendered config"
    return refused


@pytest.mark.parametrize("stack", [refusing_websockets], indirect=True)
async def test_a_page_behind_an_nginx_refusing_websockets_goes_live_over_sse(browser: Browser, stack: Stack) -> None:
    nginx = stack.nginx
    await sign_up(nginx, "karl")
    voter = await sign_up(nginx, "lena")
    log = PageLog()
    context = await context_of(browser, nginx, "karl")
    page = log.watch(await context.new_page())
    loop = asyncio.get_running_loop()
    started = loop.time()
    await open_live(page)
    await expect(page.locator("#conn")).to_have_attribute("data-transport", "SSE")
    print(f"page load to live over SSE through nginx, its socket refused: {loop.time() - started:.2f} s")

    assert (await voter.request("PUT", "/api/teachers/1/vote", json_body={"value": "bad"})).status == 200
    await expect(count(page, 1, "bad")).to_have_text("1", timeout=2000)
    refused = await nginx.logged(lambda lines: any('"GET /ws HTTP/1.1" 403' in line for line in lines))
    assert not any('"GET /ws HTTP/1.1" 101' in line for line in refused), refused
    log.assert_clean()
    await context.close()
