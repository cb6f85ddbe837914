"""Live counts without an account: the teachers page and the dashboard watch on a viewer token,
show how many people watch, and send a visitor who wants to vote to log in and back."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, expect

from tests.conftest import ServerFactory
from tests.harness.pages import PageLog, conn, logged_in_context, teacher
from tests.harness.server import sign_up

pytestmark = pytest.mark.asyncio(loop_scope="session")

PASSWORD = "correct horse battery"
LIVE = "live"


async def test_an_anonymous_visitor_watches_live_counts_and_voting_asks_to_log_in(
    browser: Browser, start_server: ServerFactory
) -> None:
    server = await start_server(ws__watching_interval=0.2)
    await sign_up(server, "olga")
    log = PageLog()
    visitor_context = await browser.new_context(base_url=server.base_url)
    visitor = log.watch(await visitor_context.new_page())
    failed: list[str] = []
    visitor.on("response", lambda response: failed.append(response.url) if response.status >= 400 else None)
    await visitor.goto("/teachers.html?sno=1")
    await expect(conn(visitor)).to_have_attribute("data-state", LIVE)
    await expect(visitor.locator("#account")).to_contain_text("登录")
    await expect(visitor.locator("#watching")).to_have_text(re.compile(r"^1 人在看"))
    await expect(teacher(visitor, 1).locator(".mine")).to_contain_text("登录后即可投票")

    voter_context = await logged_in_context(browser, server, "olga", PASSWORD)
    voter = log.watch(await voter_context.new_page())
    await voter.goto("/teachers.html?sno=1")
    await expect(conn(voter)).to_have_attribute("data-state", LIVE)
    await expect(visitor.locator("#watching")).to_have_text(re.compile(r"^2 人在看"))
    await teacher(voter, 1).locator(".vote-good").click()
    await expect(teacher(visitor, 1).locator(".vote-good .count")).to_have_text("1", timeout=2000)

    board = log.watch(await visitor_context.new_page())
    await board.goto("/dashboard.html")
    await expect(conn(board)).to_have_attribute("data-state", LIVE)
    await expect(board.locator('tr[data-no="1"] .watching')).to_have_text("2")
    await expect(board.locator('tr[data-no="1"] .good')).to_have_text("1")
    await board.close()

    await teacher(visitor, 2).locator(".vote-bad").click()
    await expect(visitor).to_have_url(re.compile(r"/login\.html\?next=%2Fteachers\.html%3Fsno%3D1%26"))
    await expect(visitor.locator("#watching")).to_have_count(0)
    assert not failed, f"an anonymous visit made failing requests: {failed}"
    await visitor.locator("#username").fill("olga")
    await visitor.locator("#password").fill(PASSWORD)
    await visitor.locator("#submit").click()
    await expect(visitor).to_have_url(re.compile(r"/teachers\.html\?sno=1$"))
    await expect(teacher(voter, 2).locator(".vote-bad .count")).to_have_text("1", timeout=2000)
    log.assert_clean()
    await visitor_context.close()
    await voter_context.close()


async def test_a_projector_keeps_the_dashboard_live_across_viewer_token_expiries(
    browser: Browser, start_server: ServerFactory
) -> None:
    """Nobody logs in: the socket's viewer token is renewed over the socket before it expires,
    and the page never has to reconnect."""
    server = await start_server(auth__viewer_ttl=3, auth__refresh_ahead=1)
    voter = await sign_up(server, "pia")
    context = await browser.new_context(base_url=server.base_url)
    log = PageLog()
    page = log.watch(await context.new_page())
    await page.goto("/dashboard.html")
    await expect(conn(page)).to_have_attribute("data-state", LIVE)
    await page.wait_for_function(
        "import('/static/js/livevote.js').then((client) => client.stats.tokenPushes >= 2)", timeout=10_000
    )
    assert (await voter.request("PUT", "/api/teachers/1/vote", json_body={"value": "good"})).status == 200
    await expect(page.locator('tr[data-no="1"] .good')).to_have_text("1", timeout=2000)
    connects = await page.evaluate("import('/static/js/livevote.js').then((client) => client.stats.connects)")
    assert connects == 1, "the socket lived on its pushed viewer tokens"
    log.assert_clean()
    await context.close()


async def test_the_home_page_cards_show_live_totals_and_watchers(browser: Browser, start_server: ServerFactory) -> None:
    server = await start_server(ws__watching_interval=0.2)
    voter = await sign_up(server, "quirin")
    context = await browser.new_context(base_url=server.base_url)
    log = PageLog()
    home = log.watch(await context.new_page())
    await home.goto("/")
    card = home.locator('a.subject[data-no="1"] .totals')
    await expect(card).to_have_text("好评 Good 0 · 差评 Bad 0 · 0 人在看 watching")
    watcher = log.watch(await context.new_page())
    await watcher.goto("/teachers.html?sno=1")
    assert (await voter.request("PUT", "/api/teachers/2/vote", json_body={"value": "bad"})).status == 200
    await expect(card).to_have_text("好评 Good 0 · 差评 Bad 1 · 1 人在看 watching", timeout=3000)
    log.assert_clean()
    await context.close()


@pytest.mark.parametrize("way_in, voted_before", [
    ("log in", None), ("register", None), ("log in", "good"), ("log in", "bad"),
])
async def test_a_vote_clicked_while_logged_out_is_cast_once_back_from_login(
    browser: Browser, start_server: ServerFactory, way_in: str, voted_before: str | None
) -> None:
    """Whichever way the visitor gets an account, the vote that sent them to log in is cast on
    their return, once: it ends as they clicked (a vote they had already cast stays, rather than
    being withdrawn), and a reload does not cast it again."""
    server = await start_server()
    if way_in == "log in":
        user = await sign_up(server, "ulla")
        if voted_before:
            assert (await user.request("PUT", "/api/teachers/2/vote", json_body={"value": voted_before})).status == 200
    context = await browser.new_context(base_url=server.base_url)
    log = PageLog()
    page = log.watch(await context.new_page())
    await page.goto("/teachers.html?sno=1")
    await expect(conn(page)).to_have_attribute("data-state", LIVE)
    await teacher(page, 2).locator(".vote-bad").click()
    await expect(page.locator("#notice")).to_be_visible()  # the login page's script runs: "log in first"
    if way_in == "register":
        await page.locator("#tab-register").click()
    await page.locator("#username").fill("ulla")
    await page.locator("#password").fill(PASSWORD)
    await page.locator("#submit").click()

    await expect(page).to_have_url(re.compile(r"/teachers\.html\?sno=1$"))
    bad = teacher(page, 2).locator(".vote-bad")
    await expect(bad).to_have_attribute("aria-pressed", "true")
    await expect(bad.locator(".count")).to_have_text("1")
    await expect(teacher(page, 2).locator(".vote-good")).to_have_attribute("aria-pressed", "false")
    await page.reload()
    await expect(conn(page)).to_have_attribute("data-state", LIVE)
    await expect(bad).to_have_attribute("aria-pressed", "true")
    counts = (await server.get("/api/teachers/2/")).json()
    assert (counts["good_count"], counts["bad_count"]) == (0, 1), counts
    log.assert_clean()
    await context.close()
