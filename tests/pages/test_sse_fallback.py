"""The pages' fallback to Server-Sent Events: a page whose WebSocket does not get through goes
live over /sse, with live counts and votes, and says so in its connection pill; the browser
session remembers the fallback only while no socket ever worked in it.

The failing sockets are Playwright's (`page.route_web_socket`): the page's `/ws` opens inside
the browser and never reaches the server, which then closes it or says nothing at all.
"""

from __future__ import annotations

import asyncio
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.async_api import Browser, Page, WebSocketRoute, expect

from tests.conftest import ServerFactory
from tests.harness.pages import PageLog, conn, count, logged_in_context, open_live, teacher, unglossed
from tests.harness.server import LiveServer, log_in, sign_up
from tests.harness.tcp_proxy import TcpProxy

pytestmark = pytest.mark.asyncio(loop_scope="session")

PASSWORD = "correct horse battery"
REMEMBERED = "() => sessionStorage.getItem('livevote.transport')"
"""The transport this tab's browser session remembers (static/js/live-client.js)."""


async def break_sockets(page: Page, *, close: bool) -> list[str]:
    """From now on, every `/ws` of `page` is closed at once (`close`) or left silent; the list
    that is returned grows by one address per socket the page tried."""
    tried: list[str] = []

    async def fail(ws: WebSocketRoute) -> None:
        tried.append(ws.url)
        if close:
            await ws.close(code=1011, reason="closed by the test")

    await page.route_web_socket("**/ws", fail)
    return tried


async def load_live(page: Page) -> float:
    """Load the teachers page again; seconds until it is live."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    await open_live(page)
    return loop.time() - started


async def test_a_page_whose_socket_is_closed_goes_live_over_sse_with_tokens_counts_and_votes(
    browser: Browser, start_server: ServerFactory
) -> None:
    server = await start_server(auth__access_ttl=3, auth__refresh_ahead=1)
    await sign_up(server, "sse-page")
    await sign_up(server, "sse-elsewhere")
    context = await logged_in_context(browser, server, "sse-page", PASSWORD)
    log = PageLog()
    page = log.watch(await context.new_page())
    tried = await break_sockets(page, close=True)

    took = await load_live(page)
    await expect(conn(page)).to_have_attribute("data-transport", "SSE")
    await expect(conn(page)).to_have_text("实时 live · SSE")
    print(f"page load to live over SSE, its socket closed at once: {took:.2f} s")
    assert len(tried) == 1, "the socket was tried first, once"
    assert await unglossed(page) == []

    # Tokens pushed over the stream replace the page's: the first one (3 s) has run out by the
    # second push, and the same stream goes on.
    await page.wait_for_function("() => Number(document.getElementById('conn').dataset.tokenPushes) >= 2")
    await expect(conn(page)).to_have_attribute("data-connects", "1")

    # Counts move live over the stream: a vote cast elsewhere, over REST.
    elsewhere = await log_in(server, "sse-elsewhere", PASSWORD)  # a token of 3 s: fresh now
    response = await elsewhere.request("PUT", "/api/teachers/1/vote", json_body={"value": "good"})
    assert response.status == 200, response.body
    await expect(count(page, 1, "good")).to_have_text("1", timeout=2000)
    # A vote from the page itself goes over REST, as with a socket, with the last pushed token.
    await teacher(page, 2).locator(".vote-bad").click()
    await expect(count(page, 2, "bad")).to_have_text("1")
    await expect(conn(page)).to_have_attribute("data-cookie-refreshes", "1")  # only the page load used the cookie

    # No socket ever worked in this session: the next page goes straight to the stream.
    took = await load_live(page)
    await expect(conn(page)).to_have_attribute("data-transport", "SSE")
    print(f"the next page load, to live over SSE with the fallback remembered: {took:.2f} s")
    assert len(tried) == 1 and await page.evaluate(REMEMBERED) == "SSE"

    # Every session of the user ends elsewhere: the stream says so, and the page goes to login.
    again = await log_in(server, "sse-page", PASSWORD)
    assert (await again.request("POST", "/api/auth/logout-all")).status < 300
    await expect(page).to_have_url(re.compile(r"/login\.html\?next=.*&reason=revoked$"), timeout=3000)
    log.assert_clean()
    await context.close()


async def test_a_page_says_websocket_and_once_one_worked_a_failing_socket_is_still_tried_first(
    browser: Browser, server: LiveServer
) -> None:
    context = await browser.new_context(base_url=server.base_url)  # a visitor: a viewer token
    log = PageLog()
    page = log.watch(await context.new_page())
    took = await load_live(page)
    await expect(conn(page)).to_have_attribute("data-transport", "WebSocket")
    await expect(conn(page)).to_have_text("实时 live · WebSocket")
    print(f"page load to live over a WebSocket: {took:.2f} s")

    # Now the socket opens but the server never speaks (a proxy holding the upgrade): after the
    # socket's deadline the page goes to the stream, and each later page still tries a socket first.
    tried = await break_sockets(page, close=False)
    took = await load_live(page)
    await expect(conn(page)).to_have_attribute("data-transport", "SSE")
    print(f"page load to live over SSE, its socket silent: {took:.2f} s")
    await load_live(page)
    await expect(conn(page)).to_have_attribute("data-transport", "SSE")
    assert (len(tried), await page.evaluate(REMEMBERED)) == (2, "WebSocket")
    log.assert_clean()
    await context.close()


async def test_a_page_whose_socket_was_live_waits_longer_for_its_next_one_before_the_stream(
    browser: Browser, server: LiveServer
) -> None:
    """After a restart the server admits returning sockets in turn: a page whose socket was live
    gives its next socket 10 s, not the first one's 3, before it tries the stream."""
    context = await browser.new_context(base_url=server.base_url)
    log = PageLog()
    page = log.watch(await context.new_page())
    sockets: list[WebSocketRoute] = []
    tickets: list[str] = []
    page.on("request", lambda request: tickets.append(request.url) if "/api/live/tickets" in request.url else None)

    async def slow_after_the_first(ws: WebSocketRoute) -> None:
        sockets.append(ws)
        if len(sockets) > 1:
            await asyncio.sleep(4.5)  # a handshake waiting its turn, past the first socket's 3 s
        ws.connect_to_server()

    await page.route_web_socket("**/ws", slow_after_the_first)
    await open_live(page)
    await expect(conn(page)).to_have_attribute("data-transport", "WebSocket")
    await sockets[0].close(code=1001, reason="going away")
    await expect(conn(page)).to_have_attribute("data-connects", "2", timeout=10_000)
    await expect(conn(page)).to_have_attribute("data-transport", "WebSocket")
    assert (len(sockets), tickets) == (2, [])
    log.assert_clean()
    await context.close()


async def test_a_stream_that_ends_comes_back_with_a_new_ticket_from_its_last_event(
    browser: Browser, server: LiveServer
) -> None:
    voter = await sign_up(server, "sse-restart")
    context = await browser.new_context(base_url=server.base_url)  # a visitor: a viewer token
    log = PageLog()
    page = log.watch(await context.new_page())
    await break_sockets(page, close=True)
    streams: list[str] = []
    page.on("request", lambda request: streams.append(request.url) if "/sse?" in request.url else None)
    await load_live(page)
    await expect(conn(page)).to_have_attribute("data-transport", "SSE")

    # A restart: the server ends the stream (close 1001), and the page opens another once it is back.
    await server.stop()
    await expect(conn(page)).to_have_attribute("data-state", "reconnecting")
    await server.start()
    await expect(conn(page)).to_have_attribute("data-state", "live", timeout=10_000)
    first, last = parse_qs(urlsplit(streams[0]).query), parse_qs(urlsplit(streams[-1]).query)
    assert "last_event_id" not in first and last["last_event_id"][0], streams
    assert last["ticket"] != first["ticket"]
    response = await voter.request("PUT", "/api/teachers/3/vote", json_body={"value": "good"})
    assert response.status == 200, response.body
    await expect(count(page, 3, "good")).to_have_text("1", timeout=2000)
    log.assert_clean()
    await context.close()


async def test_a_stream_that_goes_silent_is_given_up_once_its_token_ran_out(
    browser: Browser, start_server: ServerFactory
) -> None:
    """A connection that dies without a word (here a proxy that passes nothing more, and closes
    nothing) hides from EventSource; but the server speaks before each token runs out, so a
    stream silent past that is opened again."""
    server = await start_server(auth__viewer_ttl=3, auth__refresh_ahead=1)
    proxy = await TcpProxy(server.port).start()
    try:
        context = await browser.new_context(base_url=f"http://127.0.0.1:{proxy.port}")  # a visitor
        page = await context.new_page()
        await break_sockets(page, close=True)
        await load_live(page)
        await expect(conn(page)).to_have_attribute("data-transport", "SSE")
        proxy.blackhole()
        await expect(conn(page)).to_have_attribute("data-state", "reconnecting", timeout=10_000)
        proxy.restore()
        await expect(conn(page)).to_have_attribute("data-state", "live", timeout=10_000)
        await context.close()
    finally:
        await proxy.stop()
