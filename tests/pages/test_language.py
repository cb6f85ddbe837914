"""The pages' language policy (docs/pages.md: Chinese, each string with its English gloss),
checked in Chromium on every page in every state a visitor can reach: loaded, logged in or
not, each error the login form can show, lists that fail to load, a vote that finds no server,
the admin page as an admin and as a plain user, the 404 page, and a server that went away.
Data (names, intros, usernames) is left out: the pages mark it translate="no"."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from playwright.async_api import Browser, BrowserContext, Page, Route, expect

from tests.conftest import ServerFactory
from tests.harness.pages import PageLog, conn, logged_in_context, teacher, unglossed
from tests.harness.server import LiveServer, sign_up, sign_up_admin

pytestmark = pytest.mark.asyncio(loop_scope="session")

PASSWORD = "correct horse battery"
Drive = Callable[[Page], Awaitable[None]]


class Survey:
    """Visits states and keeps, per state, what breaks the policy there."""

    def __init__(self, browser: Browser, server: LiveServer) -> None:
        self.browser, self.server = browser, server
        self.found: dict[str, list[str]] = {}
        self.log = PageLog()

    async def context(self, user: str | None = None, password: str = PASSWORD) -> BrowserContext:
        if user is None:
            return await self.browser.new_context(base_url=self.server.base_url)
        return await logged_in_context(self.browser, self.server, user, password)

    async def visit(self, state: str, context: BrowserContext, path: str, ready: Drive,
                    failing: str | None = None) -> Page:
        """Open `path` (with requests to `failing` refused, as by a server that is gone), let
        `ready` bring the page to the state, then check what it shows."""
        page = self.log.watch(await context.new_page())
        if failing is not None:
            await page.route(failing, refuse)
        await page.goto(path)
        await ready(page)
        await self.check(state, page)
        return page

    async def check(self, state: str, page: Page) -> None:
        found = await unglossed(page)
        if found:
            self.found[state] = found


async def refuse(route: Route) -> None:
    await route.abort("connectionrefused")


def shown(selector: str, text: str | None = None) -> Drive:
    async def ready(page: Page) -> None:
        target = page.locator(selector).first
        await expect(target).to_be_visible()
        if text is not None:
            await expect(target).to_contain_text(text)
    return ready


async def live(page: Page) -> None:
    await expect(conn(page)).to_have_attribute("data-state", "live")


async def test_the_subjects_the_teachers_and_the_dashboard_pages(browser: Browser, server: LiveServer) -> None:
    await sign_up(server, "lena")
    survey = Survey(browser, server)
    visitor, member = await survey.context(), await survey.context("lena")

    async def home_loaded(page: Page) -> None:
        await live(page)
        await expect(page.locator('a.subject[data-no="1"] .totals')).not_to_be_empty()

    await survey.visit("home, visitor", visitor, "/", home_loaded)
    await survey.visit("home, logged in", member, "/", home_loaded)
    await survey.visit("home, no server", visitor, "/", shown("#notice"), failing="**/api/subjects/")

    async def teachers_loaded(page: Page) -> None:
        await live(page)
        await expect(page.locator("article.teacher")).to_have_count(3)
        await expect(teacher(page, 1).locator(".mine")).not_to_be_empty()

    await survey.visit("teachers, visitor", visitor, "/teachers.html?sno=1", teachers_loaded)
    page = await survey.visit("teachers, logged in", member, "/teachers.html?sno=1", teachers_loaded)
    await teacher(page, 1).locator(".vote-good").click()
    await expect(teacher(page, 1).locator(".vote-good")).to_have_attribute("aria-pressed", "true")
    await survey.check("teachers, voted", page)
    await page.route("**/api/teachers/2/vote", refuse)
    await teacher(page, 2).locator(".vote-bad").click()
    await expect(page.locator("#notice")).to_be_visible()
    await survey.check("teachers, a vote that finds no server", page)
    await survey.visit("teachers, not a subject number", visitor, "/teachers.html?sno=abc", shown("#notice"))
    await survey.visit("teachers, no such subject", visitor, "/teachers.html?sno=999", shown("#notice"))
    await survey.visit("teachers, no server", visitor, "/teachers.html?sno=1", shown("#notice"),
                       failing="**/api/teachers/?sno=1")

    async def dashboard_loaded(page: Page) -> None:
        await live(page)
        await expect(page.locator("#totals tr")).to_have_count(5)

    await survey.visit("dashboard, visitor", visitor, "/dashboard.html", dashboard_loaded)
    await survey.visit("dashboard, logged in", member, "/dashboard.html", dashboard_loaded)
    await survey.visit("dashboard, no server", visitor, "/dashboard.html", shown("#notice"),
                       failing="**/api/subjects/")
    await survey.visit("404", visitor, "/no/such/page", shown("#home"))
    board = await survey.visit("dashboard, before the server goes", visitor, "/dashboard.html", dashboard_loaded)
    await server.stop()
    await expect(conn(board)).to_have_attribute("data-state", "reconnecting")
    await survey.check("dashboard, server gone", board)
    survey.log.assert_clean()
    assert survey.found == {}


async def test_the_login_page_and_each_of_its_errors(browser: Browser, start_server: ServerFactory) -> None:
    server = await start_server(auth__login_attempts=1)
    await sign_up(server, "taken")
    survey = Survey(browser, server)
    visitor = await survey.context()
    page = await survey.visit("login, sent to log in", visitor, "/login.html?next=/dashboard.html", shown("#notice"))
    form = {"username": page.locator("#username"), "password": page.locator("#password")}

    async def submit(state: str, username: str, password: str, where: str) -> None:
        await form["username"].fill(username)
        await form["password"].fill(password)
        await page.locator("#submit").click()
        await expect(page.locator(where)).to_be_visible()
        await survey.check(state, page)

    await submit("login, bad username", "x", PASSWORD, "#username-error")
    await submit("login, no password", "taken", "", "#password-error")
    await submit("login, wrong password", "taken", "wrong password", "#notice")
    await submit("login, too many attempts", "taken", "wrong password", "#notice")
    await expect(page.locator("#notice")).to_contain_text("Too many")
    await page.route("**/api/auth/login", refuse)
    await submit("login, no server", "someone", PASSWORD, "#notice")
    await expect(page.locator("#notice")).to_contain_text("Cannot reach the server")
    await page.unroute("**/api/auth/login", refuse)

    await page.locator("#tab-register").click()
    await expect(page.locator("#password-hint")).to_be_visible()
    await survey.check("register", page)
    await submit("register, short password", "newbie", "short", "#password-error")
    await submit("register, guessable password", "newbie", "password", "#password-error")
    await submit("register, taken username", "taken", PASSWORD, "#username-error")
    await survey.visit("login, session ended elsewhere", visitor, "/login.html?reason=revoked&next=/",
                       shown("#notice"))
    survey.log.assert_clean()
    assert survey.found == {}


async def test_the_admin_page_for_an_admin_and_for_a_plain_user(browser: Browser, server: LiveServer) -> None:
    await sign_up_admin(server)
    await sign_up(server, "plain")
    survey = Survey(browser, server)

    async def admin_loaded(page: Page) -> None:
        await expect(page.locator("#subject-rows tr")).to_have_count(5)
        await page.locator('#subject-rows tr[data-no="1"] .show-teachers').click()
        await expect(page.locator("#teacher-rows tr")).to_have_count(3)

    page = await survey.visit("admin", await survey.context("root", "admin password"), "/admin.html", admin_loaded)
    await page.locator("#subject-name").fill("")
    await page.locator("#subject-submit").click()
    await expect(page.locator("#subject-name-error")).to_be_visible()
    await survey.check("admin, a field error", page)
    await survey.visit("admin, plain user", await survey.context("plain"), "/admin.html",
                       shown("main", "Only administrators"))
    survey.log.assert_clean()
    assert survey.found == {}
