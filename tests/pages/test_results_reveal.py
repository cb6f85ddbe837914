"""Results visibility on the teachers page, in Chromium, against the server's own withholding:
counts of a `hidden` subject show as hidden, stay hidden while others vote, and appear without
a reload when an admin reveals them (and hide again when hidden again); with `after_vote` they
appear as soon as the user votes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.async_api import Browser, Page, WebSocket, expect

from tests.harness.live_views import subscribe
from tests.harness.pages import PageLog, conn, count, logged_in_context, teacher
from tests.harness.server import LiveServer, UserClient, sign_up, sign_up_admin
from tests.harness.ws_client import welcomed

pytestmark = pytest.mark.asyncio(loop_scope="session")

PASSWORD = "correct horse battery"
HIDDEN = "隐藏 hidden"


async def set_visibility(admin: UserClient, visibility: str) -> None:
    response = await admin.request("PATCH", "/api/subjects/1/", json_body={"visibility": visibility})
    assert response.status == 200 and response.json()["visibility"] == visibility, response.body


async def vote(user: UserClient, teacher: int, value: str) -> None:
    response = await user.request("PUT", f"/api/teachers/{teacher}/vote", json_body={"value": value})
    assert response.status == 200, response.body


def frames_of(page: Page) -> list[dict[str, Any]]:
    """Every message the page's sockets receive, decoded, as they come."""
    frames: list[dict[str, Any]] = []

    def on_socket(socket: WebSocket) -> None:
        socket.on("framereceived", lambda payload: frames.append(json.loads(payload)))

    page.on("websocket", on_socket)
    return frames


async def open_teachers(
    browser: Browser, server: LiveServer, username: str
) -> tuple[Page, list[dict[str, Any]], PageLog]:
    await sign_up(server, username)
    context = await logged_in_context(browser, server, username, PASSWORD)
    log = PageLog()
    page = log.watch(await context.new_page())
    frames = frames_of(page)
    await page.goto("/teachers.html?sno=1")
    await expect(conn(page)).to_have_attribute("data-state", "live")
    return page, frames, log


async def test_hidden_counts_appear_when_the_admin_reveals_them(browser: Browser, server: LiveServer) -> None:
    admin = await sign_up_admin(server)
    await set_visibility(admin, "hidden")
    otto = await sign_up(server, "otto")
    await vote(otto, 2, "bad")  # counted before the page opens: its version is known there, hidden
    page, frames, log = await open_teachers(browser, server, "vera")
    await expect(count(page, 2, "bad")).to_have_text(HIDDEN)
    await page.evaluate("window.notReloaded = true")
    witness = await welcomed(server, admin.access_token)  # an admin sees every count
    try:
        await subscribe(witness, "subject:1")
        await vote(otto, 1, "good")
        await witness.expect("votes", channel="subject:1")
    finally:
        await witness.close()
    # The vote went out to the channel; a rename sent after it reaches the page after whatever it got.
    renamed = await admin.request("PATCH", "/api/teachers/3/", json_body={"name": "改了名字"})
    assert renamed.status == 200, renamed.body
    await expect(teacher(page, 3).locator(".name")).to_have_text("改了名字")
    await expect(count(page, 1, "good")).to_have_text(HIDDEN)
    await expect(count(page, 1, "bad")).to_have_text(HIDDEN)
    shown = [item for frame in frames for item in [*frame.get("teachers", []), *frame.get("updates", [])]]
    assert shown and {item["good_count"] for item in shown} == {None}, "counts sent to whoever may not see them"

    await set_visibility(admin, "always")
    await expect(count(page, 1, "good")).to_have_text("1")
    await expect(count(page, 1, "bad")).to_have_text("0")
    await expect(count(page, 2, "bad")).to_have_text("1")
    await set_visibility(admin, "hidden")  # hidden again: no count of before stays on show, frozen
    await expect(count(page, 2, "bad")).to_have_text(HIDDEN)
    assert await page.evaluate("window.notReloaded === true")
    log.assert_clean()
    await page.context.close()


async def test_after_vote_counts_appear_once_the_user_votes(browser: Browser, server: LiveServer) -> None:
    admin = await sign_up_admin(server)
    await set_visibility(admin, "after_vote")
    await vote(await sign_up(server, "otto"), 1, "bad")
    page, _, log = await open_teachers(browser, server, "vera")
    await expect(count(page, 1, "bad")).to_have_text(HIDDEN)

    await teacher(page, 2).locator(".vote-good").click()
    await expect(count(page, 2, "good")).to_have_text("1", timeout=2000)
    await expect(count(page, 1, "bad")).to_have_text("1", timeout=2000)
    log.assert_clean()
    await page.context.close()
