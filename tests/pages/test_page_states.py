"""The pages' states beyond the happy path, in a real browser (headless system Chromium)
against the real server: the 404 page, loading, a phone-wide header, logging out
everywhere, an anonymous visit without failing requests, and a vote while the
connection is down.

Fixtures as in tests/pages/test_pages.py: one Chromium for every page test, on the session's loop.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from playwright.async_api import (
    Browser,
    Page,
    Request,
    Response,
    Route,
    ViewportSize,
    WebSocketRoute,
    expect,
)

from handlers.pages import CONTENT_SECURITY_POLICY
from tests.harness.pages import PageLog, conn, logged_in_context, open_live, screenshot, teacher
from tests.harness.server import LiveServer, sign_up

pytestmark = pytest.mark.asyncio(loop_scope="session")

PASSWORD = "correct horse battery"
LIVE = "live"
PHONE: ViewportSize = {"width": 390, "height": 844}
LONGEST_NAME = "a-rather-long-username-of-32-chr"  # the longest a username may be


# -- 1. the 404 page -------------------------------------------------------------------------


async def test_an_unknown_address_shows_the_404_page_and_api_addresses_stay_problem_json(
    browser: Browser, server: LiveServer, tmp_path: Path
) -> None:
    context = await browser.new_context(base_url=server.base_url)
    log = PageLog()
    page = log.watch(await context.new_page())

    for path in ("/no/such/page", "/nothing.html", "/static/no-such-file.css"):
        response = await page.goto(path)
        assert response is not None and response.status == 404, path
        assert response.headers["content-type"].startswith("text/html"), path
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"
        await expect(page.locator("main h1")).to_have_text("页面不存在 Page not found")
        await expect(page.locator("main")).to_contain_text("Page not found")
        text = await page.locator("main").inner_text()
        assert text.index("页面不存在") < text.index("Page not found"), "Chinese first, English second"
        # styled by the pages' stylesheet (a blocked or missing stylesheet would leave it unstyled)
        assert await page.locator(".not-found").evaluate("n => getComputedStyle(n).textAlign") == "center"
        assert await page.locator(".topbar").evaluate("n => getComputedStyle(n).position") == "sticky"
    await screenshot(page, tmp_path / "screenshots", "not-found")

    await page.locator("#home").click()
    await expect(page).to_have_url(server.base_url + "/")
    await expect(page.locator("a.subject")).to_have_count(5)

    # A browser asking under /api still gets the problem document, not the page.
    response = await page.goto("/api/no-such-thing")
    assert response is not None and response.status == 404
    assert response.headers["content-type"] == "application/problem+json"
    problem = json.loads(await response.text())
    assert problem["status"] == 404 and problem["detail"] == "There is nothing at /api/no-such-thing."
    log.assert_clean()
    await context.close()

    # Programs (no Accept, */*, JSON) get problem+json everywhere; HTML only for those asking for it.
    for accept in (None, "*/*", "application/json", "text/html;q=0, */*"):
        headers = {"Accept": accept} if accept else {}
        reply = await server.get("/no/such/page", headers=headers)
        assert reply.status == 404 and reply.content_type == "application/problem+json", accept
    reply = await server.get("/no/such/page", headers={"Accept": "text/html"})
    assert reply.status == 404 and reply.content_type.startswith("text/html")
    assert reply.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert b"\xe9\xa1\xb5\xe9\x9d\xa2\xe4\xb8\x8d\xe5\xad\x98\xe5\x9c\xa8" in reply.body  # 页面不存在
    head = await server.request("HEAD", "/no/such/page", headers={"Accept": "text/html"})
    assert head.status == 404 and head.body == b""
    api = await server.get("/api/nothing", headers={"Accept": "text/html,*/*;q=0.8"})
    assert api.status == 404 and api.content_type == "application/problem+json"


# -- 2. loading ----------------------------------------------------------------------------------


async def test_the_teachers_page_says_loading_until_its_list_arrives(browser: Browser, server: LiveServer) -> None:
    await sign_up(server, "lena")
    context = await logged_in_context(browser, server, "lena", PASSWORD)
    log = PageLog()
    page = log.watch(await context.new_page())
    requested = asyncio.Event()
    release = asyncio.Event()
    socket_gates = [release]
    """The socket's snapshot lists the teachers too: it is held as long as the REST list."""

    async def hold(route: Route) -> None:
        requested.set()
        await release.wait()
        await route.continue_()

    async def hold_socket(socket: WebSocketRoute) -> None:
        await socket_gates[-1].wait()
        socket.connect_to_server()

    await page.route(re.compile(r"/api/teachers/\?sno=1$"), hold)
    await page.route_web_socket(re.compile(r"/ws$"), hold_socket)
    await page.goto("/teachers.html?sno=1")
    await asyncio.wait_for(requested.wait(), 10)
    loading = page.locator("#teachers .loading")
    await expect(loading).to_be_visible()
    await expect(loading).to_have_text("加载中… Loading")
    await expect(page.locator("#teachers")).to_have_attribute("aria-busy", "true")
    await expect(page.locator("article.teacher")).to_have_count(0)

    release.set()
    await expect(page.locator("article.teacher")).to_have_count(3)
    await expect(loading).to_have_count(0)
    await expect(page.locator("#teachers")).not_to_have_attribute("aria-busy", "true")
    await page.unroute(re.compile(r"/api/teachers/\?sno=1$"))

    # A list that fails to load does not leave the placeholder spinning.
    async def unavailable(route: Route) -> None:
        await route.fulfill(status=503, content_type="application/problem+json",
                            body=json.dumps({"type": "about:blank", "title": "Service Unavailable", "status": 503,
                                             "detail": "The store is unavailable."}))

    await page.route(re.compile(r"/api/teachers/\?sno=2$"), unavailable)
    socket_gates.append(asyncio.Event())  # never opened: no snapshot makes up for the list
    await page.goto("/teachers.html?sno=2")
    await expect(page.locator("#notice")).to_be_visible()
    await expect(page.locator("#teachers .loading")).to_be_hidden()
    log.assert_clean()
    await context.close()


# -- 3. a phone-wide header ------------------------------------------------------------------


async def assert_fits(page: Page, path: str, controls: list[str]) -> None:
    """No horizontal scroll at 390 px, and every control visible inside the viewport."""
    width = await page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{path}: scrollWidth {width}"
    for selector in controls:
        control = page.locator(selector)
        await expect(control).to_be_visible()
        box = await control.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (path, selector, box)


async def test_the_header_fits_a_390_px_phone_on_every_page(
    browser: Browser, server: LiveServer, tmp_path: Path
) -> None:
    shots = tmp_path / "screenshots"
    await sign_up(server, LONGEST_NAME)
    context = await logged_in_context(browser, server, LONGEST_NAME, PASSWORD, viewport=PHONE)
    log = PageLog()
    page = log.watch(await context.new_page())
    account = ["#account .who", "#logout", "#logout-all", ".brand", ".nav"]

    await page.goto("/")
    await expect(page.locator("a.subject")).to_have_count(5)
    await expect(page.locator("#account .who")).to_have_text(LONGEST_NAME)
    await assert_fits(page, "/", account)
    await screenshot(page, shots, "index-phone")

    await open_live(page, "/teachers.html?sno=1")
    await expect(page.locator("article.teacher")).to_have_count(3)
    await assert_fits(page, "teachers", [*account, "#conn"])
    await screenshot(page, shots, "teachers-phone")

    await open_live(page, "/dashboard.html")
    await expect(page.locator("#totals tr")).to_have_count(5)
    await assert_fits(page, "dashboard", [*account, "#conn"])
    await screenshot(page, shots, "dashboard-phone")

    await page.goto("/no/such/page")
    await assert_fits(page, "404", ["#home", ".brand", ".nav"])
    await screenshot(page, shots, "not-found-phone")

    # Above the phone layout the header wraps rather than overflows.
    tablet: ViewportSize = {"width": 768, "height": 1024}
    await page.set_viewport_size(tablet)
    for path in ("/", "/teachers.html?sno=1", "/dashboard.html"):
        await page.goto(path)
        await expect(page.locator("#logout-all")).to_be_visible()
        width = await page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= tablet["width"], f"{path} at 768 px: scrollWidth {width}"

    anonymous = await browser.new_context(base_url=server.base_url, viewport=PHONE)
    visitor = log.watch(await anonymous.new_page())
    await visitor.goto("/")
    await expect(visitor.locator("a.subject")).to_have_count(5)
    await assert_fits(visitor, "/ (anonymous)", ['#account a[href^="/login.html"]', ".brand", ".nav"])
    await visitor.goto("/login.html?next=/dashboard.html")
    await expect(visitor.locator("#auth-form")).to_be_visible()
    await assert_fits(visitor, "login", ["#account a", "#submit", ".brand", ".nav"])
    await screenshot(visitor, shots, "login-phone")

    log.assert_clean()
    await anonymous.close()
    await context.close()


NAME_CELLS = """links => links.map((link) => ({
  name: link.textContent,
  lines: new Set([...link.getClientRects()].map((line) => Math.round(line.top))).size,
  ems: link.parentElement.getBoundingClientRect().width / parseFloat(getComputedStyle(link).fontSize),
}))"""
"""Each dashboard name: its text, the lines it takes, and its cell's width in characters (ems)."""
HEADER_ENGLISH = ["Subjects", "Dashboard", "API docs", "Log out", "Log out everywhere"]


async def test_on_a_phone_subject_names_keep_their_width_and_the_header_its_english(
    browser: Browser, server: LiveServer
) -> None:
    """At 390 px the dashboard's counts take only their digits' width, so that no subject's name
    is squeezed to a few characters a line; and the header keeps its English glosses (wrapping,
    never past the edge) on every page."""
    await sign_up(server, LONGEST_NAME)
    context = await logged_in_context(browser, server, LONGEST_NAME, PASSWORD, viewport=PHONE)
    log = PageLog()
    page = await open_live(log.watch(await context.new_page()), "/dashboard.html")
    await expect(page.locator("#totals tr")).to_have_count(5)
    cells = await page.locator("#totals .subject-name").evaluate_all(NAME_CELLS)
    squeezed = [cell for cell in cells if cell["ems"] < 8 or cell["lines"] > 2]
    assert not squeezed, squeezed
    for path in ("/", "/teachers.html?sno=1", "/dashboard.html", "/login.html"):
        await page.goto(path)
        await expect(page.locator("#account")).not_to_be_empty()
        header = await page.locator("header").inner_text()  # as rendered: hidden words are not in it
        assert [word for word in HEADER_ENGLISH[:3] if word not in header] == [], (path, header)
        if path != "/login.html":
            assert [word for word in HEADER_ENGLISH[3:] if word not in header] == [], (path, header)
        await assert_fits(page, path, [".brand", ".nav", "#account"])
    log.assert_clean()
    await context.close()


# -- 4. log out everywhere --------------------------------------------------------------------------


async def test_log_out_everywhere_ends_every_session_of_the_user(browser: Browser, server: LiveServer) -> None:
    await sign_up(server, "nina")
    laptop = await logged_in_context(browser, server, "nina", PASSWORD)
    phone = await logged_in_context(browser, server, "nina", PASSWORD)  # a second session of the same user
    log = PageLog()
    here = await open_live(log.watch(await laptop.new_page()), "/teachers.html?sno=1")
    elsewhere = await open_live(log.watch(await phone.new_page()), "/dashboard.html")

    button = here.locator("#logout-all")
    await expect(button).to_contain_text("退出所有设备")
    await expect(button).to_contain_text("Log out everywhere")
    await expect(here.locator("#logout")).to_be_visible()  # next to the plain logout

    await button.click()
    await expect(here).to_have_url(re.compile(r"/login\.html$"))
    await expect(elsewhere).to_have_url(
        re.compile(r"/login\.html\?next=%2Fdashboard\.html&reason=revoked$"), timeout=3000
    )
    await expect(elsewhere.locator("#notice")).to_contain_text("会话已结束")

    for context in (laptop, phone):  # neither cookie brings a session back: the page only watches
        again = log.watch(await context.new_page())
        await again.goto("/teachers.html?sno=1")
        await expect(conn(again)).to_have_attribute("data-state", "live")
        await expect(again.locator("#account")).to_contain_text("登录")
        await expect(again.locator("#logout")).to_have_count(0)
    log.assert_clean()
    await laptop.close()
    await phone.close()


# -- 5. an anonymous visit makes no failing request ---------------------------------------------------


class Failures:
    """Requests of a page that failed, answers of 400 and up, and console lines naming a 401."""

    def __init__(self, page: Page) -> None:
        self.items: list[str] = []
        page.on("requestfailed", self._failed)
        page.on("response", self._response)
        page.on("console", lambda message: self._console(message.type, message.text))

    def _failed(self, request: Request) -> None:
        self.items.append(f"failed: {request.method} {request.url} ({request.failure})")

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.items.append(f"{response.status}: {response.request.method} {response.url}")

    def _console(self, kind: str, text: str) -> None:
        if kind == "error" or "401" in text:
            self.items.append(f"console {kind}: {text}")


async def test_an_anonymous_visit_to_the_home_page_makes_no_failing_request(
    browser: Browser, server: LiveServer
) -> None:
    hint = await server.get("/api/auth/session")
    if hint.status == 404:
        pytest.xfail("needs GET /api/auth/session in handlers/auth.py (see the report of this change)")
    await sign_up(server, "olga")
    context = await browser.new_context(base_url=server.base_url)
    page = await context.new_page()
    failures = Failures(page)

    await page.goto("/")
    await expect(page.locator("a.subject")).to_have_count(5)
    await expect(page.locator('#account a[href^="/login.html"]')).to_be_visible()  # the session probe is done
    await page.wait_for_load_state("networkidle")
    assert failures.items == []

    # Log in through the page: home shows the user; log out: home is quiet again.
    await page.goto("/login.html")
    await page.locator("#username").fill("olga")
    await page.locator("#password").fill(PASSWORD)
    await page.locator("#submit").click()
    await expect(page).to_have_url(server.base_url + "/")
    await expect(page.locator("#account .who")).to_have_text("olga")
    await page.locator("#logout").click()
    await expect(page).to_have_url(re.compile(r"/login\.html$"))
    await page.wait_for_load_state("networkidle")  # the login page's favicon too: the next goto would abort it
    failures.items.clear()
    await page.goto("/")
    await expect(page.locator('#account a[href^="/login.html"]')).to_be_visible()
    await page.wait_for_load_state("networkidle")
    assert failures.items == []
    await context.close()


# -- 6. a vote while the connection is down ---------------------------------------------------------


async def test_a_vote_while_the_server_is_away_says_so_and_the_notice_clears_when_it_is_back(
    browser: Browser, server: LiveServer, tmp_path: Path
) -> None:
    await sign_up(server, "paul")
    context = await logged_in_context(browser, server, "paul", PASSWORD)
    log = PageLog()
    page = await open_live(log.watch(await context.new_page()), "/teachers.html?sno=1")
    notice = page.locator("#notice")
    port = server.port

    await server.stop()
    await expect(conn(page)).to_have_attribute("data-state", "reconnecting", timeout=5000)
    await teacher(page, 1).locator(".vote-good").click()
    await expect(notice).to_be_visible()
    await expect(notice).to_contain_text("连接已断开")
    await expect(notice).to_contain_text("the connection is down")
    await expect(notice).not_to_contain_text(re.compile(r"Failed to fetch|NetworkError|TypeError", re.IGNORECASE))
    await screenshot(page, tmp_path / "screenshots", "teachers-vote-offline")

    await server.start()
    assert server.port == port
    await expect(conn(page)).to_have_attribute("data-state", LIVE, timeout=20_000)
    await expect(notice).to_be_hidden()
    await teacher(page, 1).locator(".vote-good").click()  # and voting works again
    await expect(teacher(page, 1).locator(".vote-good .count")).to_have_text("1")
    log.assert_clean()
    await context.close()


async def test_a_vote_while_the_browser_is_offline_says_so_and_the_notice_clears_when_it_is_back_online(
    browser: Browser, server: LiveServer
) -> None:
    await sign_up(server, "quinn")
    context = await logged_in_context(browser, server, "quinn", PASSWORD)
    log = PageLog()
    page = await open_live(log.watch(await context.new_page()), "/teachers.html?sno=1")
    notice = page.locator("#notice")

    await context.set_offline(True)
    await teacher(page, 2).locator(".vote-bad").click()
    await expect(notice).to_contain_text("连接已断开")
    await expect(notice).to_contain_text("the connection is down")

    await context.set_offline(False)
    await expect(conn(page)).to_have_attribute("data-state", LIVE, timeout=20_000)
    await expect(notice).to_be_hidden(timeout=20_000)
    await teacher(page, 2).locator(".vote-bad").click()
    await expect(teacher(page, 2).locator(".vote-bad .count")).to_have_text("1")
    log.assert_clean()
    await context.close()
