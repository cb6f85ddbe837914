"""Catalog changes reach open pages without a reload: a new, renamed, moved or removed teacher on
the teachers page, a renamed subject there and on the dashboard."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, expect

from tests.harness.pages import PageLog, conn, teacher
from tests.harness.server import LiveServer, sign_up_admin

pytestmark = pytest.mark.asyncio(loop_scope="module")

NEW_TEACHER = {"name": "钱学森", "sex": True, "birth": "1911-12-11", "subject": 1}


async def test_catalog_changes_show_on_open_pages(browser: Browser, server: LiveServer) -> None:
    admin = await sign_up_admin(server)
    context = await browser.new_context(base_url=server.base_url)
    log = PageLog()
    page = log.watch(await context.new_page())
    await page.goto("/teachers.html?sno=1")
    await expect(conn(page)).to_have_attribute("data-state", "live")
    board = log.watch(await context.new_page())
    await board.goto("/dashboard.html")
    await expect(conn(board)).to_have_attribute("data-state", "live")

    created = await admin.request("POST", "/api/teachers/", json_body=NEW_TEACHER)
    no = created.json()["no"]
    await expect(teacher(page, no).locator(".name")).to_have_text("钱学森")
    assert (await admin.request("PATCH", f"/api/teachers/{no}/", json_body={"name": "钱老"})).status == 200
    await expect(teacher(page, no).locator(".name")).to_have_text("钱老")
    assert (await admin.request("PATCH", "/api/teachers/1/", json_body={"subject": 2})).status == 200
    await expect(teacher(page, 1)).to_have_count(0)
    assert (await admin.request("DELETE", f"/api/teachers/{no}/")).status == 204
    await expect(teacher(page, no)).to_have_count(0)

    assert (await admin.request("PATCH", "/api/subjects/1/", json_body={"name": "Python 进阶"})).status == 200
    await expect(page.locator("#subject-name")).to_have_text("Python 进阶")
    await expect(board.locator('tr[data-no="1"] .subject-name')).to_have_text("Python 进阶")
    log.assert_clean()
    await context.close()
