"""Voting windows on the pages, in Chromium: the teachers page shows the subject's state and
countdown and its vote buttons follow it (an admin's close and open through the API, a scheduled
close with nobody acting); the dashboard badges each subject's state; the admin page's Close now
closes the subject; the presentation view (/present/N) shows live bars, the state, and a QR code
that decodes to the voting page's address."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import zxingcpp
from PIL import Image
from playwright.async_api import Browser, Route, WebSocketRoute, expect

from tests.harness.pages import PageLog, conn, logged_in_context, teacher, unglossed
from tests.harness.server import LiveServer, UserClient, sign_up, sign_up_admin

pytestmark = pytest.mark.asyncio(loop_scope="session")

ADMIN, ADMIN_PASSWORD = "root", "admin password"
PASSWORD = "correct horse battery"
VOTING_CLOSED = "投票已关闭，这一票没有计入。 Voting is closed: this vote was not counted."


def soon(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


async def patch_subject(admin: UserClient, body: dict[str, Any], no: int = 1) -> dict[str, Any]:
    response = await admin.request("PATCH", f"/api/subjects/{no}/", json_body=body)
    assert response.status == 200, response.body
    return dict(response.json())


async def test_the_vote_buttons_follow_the_subjects_voting_state(browser: Browser, server: LiveServer) -> None:
    admin = await sign_up_admin(server, ADMIN, ADMIN_PASSWORD)
    await sign_up(server, "vera")
    context = await logged_in_context(browser, server, "vera", PASSWORD)
    log = PageLog()
    page = log.watch(await context.new_page())
    await page.goto("/teachers.html?sno=1")
    await expect(conn(page)).to_have_attribute("data-state", "live")
    good = teacher(page, 1).locator(".vote-good")
    await expect(page.locator("#voting-state")).to_have_text("投票进行中 Voting open")
    await expect(page.locator("#voting-countdown")).to_be_hidden()
    await expect(good).to_be_enabled()

    await patch_subject(admin, {"state": "closed"})
    await expect(page.locator("#voting-state")).to_have_attribute("data-state", "closed")
    await expect(page.locator("#voting-state")).to_have_text("投票已关闭 Voting closed")
    await expect(good).to_be_disabled()
    await expect(teacher(page, 2).locator(".vote-bad")).to_be_disabled()
    assert await unglossed(page) == []

    await patch_subject(admin, {"state": "open"})
    await expect(good).to_be_enabled()
    await good.click()
    await expect(good.locator(".count")).to_have_text("1")

    # A vote that races a close: the page has not heard of the close yet, the server refuses it.
    assert server.services is not None
    await server.services.backends.store.update_subject(1, {"closes_at": datetime.now(UTC)})  # not announced
    await teacher(page, 2).locator(".vote-good").click()
    await expect(page.locator("#notice")).to_have_text(VOTING_CLOSED)
    await expect(teacher(page, 2).locator(".vote-good .count")).to_have_text("0")
    log.assert_clean()
    await context.close()


async def test_a_scheduled_close_counts_down_then_disables_the_buttons(browser: Browser, server: LiveServer) -> None:
    admin = await sign_up_admin(server, ADMIN, ADMIN_PASSWORD)
    context = await browser.new_context(base_url=server.base_url)
    log = PageLog()
    page = log.watch(await context.new_page())
    await page.goto("/teachers.html?sno=1")
    await expect(conn(page)).to_have_attribute("data-state", "live")
    board = log.watch(await context.new_page())
    await board.goto("/dashboard.html")
    await expect(conn(board)).to_have_attribute("data-state", "live")
    badge = board.locator('tr[data-no="1"] .voting-badge')
    await expect(badge).to_have_attribute("data-state", "open")

    await patch_subject(admin, {"closes_at": soon(3)})
    countdown = page.locator("#voting-countdown")
    await expect(countdown).to_have_text(re.compile(r"^00:0[1-3] 后截止 Closes in 00:0[1-3]$"))
    await expect(countdown).to_have_attribute("data-next", "closes")
    await expect(teacher(page, 1).locator(".vote-good")).to_be_enabled()
    # Nobody acts: the page flips at the moment, and the dashboard's badge with it.
    await expect(teacher(page, 1).locator(".vote-good")).to_be_disabled(timeout=6000)
    await expect(page.locator("#voting-state")).to_have_attribute("data-state", "closed")
    await expect(countdown).to_be_hidden()
    await expect(badge).to_have_attribute("data-state", "closed")
    await expect(badge).to_have_text("投票已关闭 Voting closed")

    await patch_subject(admin, {"opens_at": soon(3600), "closes_at": None})
    await expect(countdown).to_have_text(re.compile(r"^(59:\d\d|1:00:00) 后开始 Opens in "))
    assert await unglossed(page) == []
    log.assert_clean()
    await context.close()


async def test_the_admin_closes_and_opens_voting_and_edits_keep_the_window(
    browser: Browser, server: LiveServer
) -> None:
    admin = await sign_up_admin(server, ADMIN, ADMIN_PASSWORD)
    context = await logged_in_context(browser, server, ADMIN, ADMIN_PASSWORD)
    log = PageLog()
    page = log.watch(await context.new_page())
    await page.goto("/admin.html")
    row = page.locator('#subject-rows tr[data-no="2"]')
    await expect(row.locator(".voting-state")).to_have_attribute("data-state", "open")
    await expect(row.locator(".open-now")).to_be_hidden()

    await row.locator(".close-now").click()
    await expect(row.locator(".voting-state")).to_have_attribute("data-state", "closed")
    closed = (await admin.get("/api/subjects/2/")).json()
    assert closed["state"] == "closed" and closed["closes_at"] is not None

    # Renaming sends only what changed (PATCH): the window stays closed.
    await row.locator(".edit").click()
    await page.locator("#subject-name").fill("改了名字")
    await page.locator("#subject-submit").click()
    await expect(page.locator("#notice")).to_have_text("已保存科目「改了名字」。 Subject saved.")
    renamed = (await admin.get("/api/subjects/2/")).json()
    assert (renamed["name"], renamed["state"], renamed["closes_at"]) == ("改了名字", "closed", closed["closes_at"])

    # A schedule typed in local time is stored in UTC; clearing it opens the subject again.
    await row.locator(".edit").click()
    await page.locator("#subject-opens").fill("2031-05-04T09:30")
    await page.locator("#subject-closes").fill("2031-05-04T10:15")
    await page.locator("#subject-submit").click()
    await expect(page.locator("#notice")).to_have_text(re.compile("Subject saved"))
    expected = await page.evaluate("['2031-05-04T09:30', '2031-05-04T10:15'].map((t) => new Date(t).toISOString())")
    scheduled = (await admin.get("/api/subjects/2/")).json()
    assert [scheduled["opens_at"], scheduled["closes_at"]] == [moment.replace(".000Z", "Z") for moment in expected]
    await expect(row.locator(".voting-countdown")).to_have_attribute("data-next", "opens")
    await row.locator(".edit").click()
    await page.locator("#subject-clear-schedule").click()
    await page.locator("#subject-submit").click()
    await expect(row.locator(".voting-state")).to_have_attribute("data-state", "open")
    cleared = (await admin.get("/api/subjects/2/")).json()
    assert (cleared["opens_at"], cleared["closes_at"], cleared["state"]) == (None, None, "open")
    assert await unglossed(page) == []
    log.assert_clean()
    await context.close()


async def test_the_presentation_shows_live_bars_the_state_and_a_qr_code_of_the_voting_page(
    browser: Browser, server: LiveServer
) -> None:
    admin = await sign_up_admin(server, ADMIN, ADMIN_PASSWORD)
    voter = await sign_up(server, "pia")
    context = await browser.new_context(base_url=server.base_url, viewport={"width": 1280, "height": 720})
    log = PageLog()
    page = log.watch(await context.new_page())
    await page.goto("/present/1")
    await expect(conn(page)).to_have_attribute("data-state", "live")
    rows = page.locator("#bars .bar-row")
    await expect(rows).to_have_count(3)
    await expect(page.locator("#voting-state")).to_have_text("投票进行中 Voting open")

    good = page.locator('.bar-row[data-no="1"] .track-good')
    await expect(good).to_have_attribute("data-count", "0")
    vote = await voter.request("PUT", "/api/teachers/1/vote", json_body={"value": "good"})
    assert vote.status == 200
    await expect(good).to_have_attribute("data-count", "1")
    # the leader's bar grows to fill its track (a transition: wait for it, not for a fixed time)
    leader = """.bar-row[data-no="1"] .track-good .fill"""
    await page.wait_for_function(f"() => document.querySelector('{leader}').getBoundingClientRect().width > 100")

    await patch_subject(admin, {"state": "closed"})
    await expect(page.locator("#voting-state")).to_have_attribute("data-state", "closed")

    url = f"{server.base_url}/teachers.html?sno=1"
    await expect(page.locator("#voting-url")).to_have_text(url)
    await expect(page.locator("svg.qr title")).to_have_text(url)
    decoded = zxingcpp.read_barcode(Image.open(io.BytesIO(await page.locator("svg.qr").screenshot())))
    assert decoded is not None and decoded.text == url
    # One 16:9 screen: nothing scrolls.
    assert await page.evaluate("document.documentElement.scrollHeight <= window.innerHeight")
    assert await unglossed(page) == []
    log.assert_clean()
    await context.close()


def withheld(raw: str | bytes) -> str:
    """A server message with every count withheld, as the server sends them to someone who may not
    see them yet (null)."""
    message = json.loads(raw)
    for record in [*message.get("teachers", []), *message.get("updates", []), *message.get("subjects", [])]:
        record.update(good_count=None, bad_count=None)
    return json.dumps(message)


async def test_withheld_counts_show_as_hidden(browser: Browser, server: LiveServer) -> None:
    voter = await sign_up(server, "olga")
    assert (await voter.request("PUT", "/api/teachers/1/vote", json_body={"value": "good"})).status == 200
    context = await browser.new_context(base_url=server.base_url)

    async def withhold(ws: WebSocketRoute) -> None:
        upstream = ws.connect_to_server()
        upstream.on_message(lambda raw: ws.send(withheld(raw)))

    async def withhold_listed(route: Route) -> None:  # the REST list the teachers page reads too
        response = await route.fetch()
        await route.fulfill(response=response, body=withheld(await response.body()))

    await context.route_web_socket(re.compile(r"/ws$"), withhold)
    await context.route(re.compile(r"/api/teachers/\?sno="), withhold_listed)
    log = PageLog()
    teacher_card = 'article.teacher[data-no="1"]'
    for path, count, bar in [
        ("/present/1", '.bar-row[data-no="1"] .count-good', '.bar-row[data-no="1"] .fill-good'),
        ("/teachers.html?sno=1", f"{teacher_card} .vote-good .count", f"{teacher_card} .ratio-good"),
        ("/dashboard.html", 'tr[data-no="1"] .good', 'tr[data-no="1"] .ratio-good'),
    ]:
        page = log.watch(await context.new_page())
        await page.goto(path)
        await expect(conn(page)).to_have_attribute("data-state", "live")
        await expect(page.locator(count)).to_have_text("隐藏 hidden")
        await expect(page.locator(bar)).to_be_hidden()
        assert "NaN" not in await page.locator("main").inner_text()
    log.assert_clean()
    await context.close()
