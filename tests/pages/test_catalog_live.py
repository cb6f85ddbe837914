"""Catalog changes reach open pages without a reload: a new, renamed, moved or removed teacher on
the teachers page, a renamed subject there and on the dashboard, new, renamed and removed
subjects on the home page; and pages that missed the announcements converge from the snapshots
of their socket's next connection."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, Page, expect

from tests.harness.pages import PageLog, conn, teacher
from tests.harness.server import LiveServer, sign_up_admin

pytestmark = pytest.mark.asyncio(loop_scope="session")

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


async def shows_the_store(server: LiveServer, home: Page, board: Page, subject_page: Page) -> None:
    """Home cards, dashboard rows and totals, and the subject page's cards are the store's."""
    stats = (await server.get("/api/stats")).json()
    names = [subject["name"] for subject in stats["subjects"]]
    await expect(home.locator("#subjects .card.subject h2")).to_have_text(names)
    await expect(board.locator("#totals .subject-name")).to_have_text(names)
    await expect(board.locator("#votes-total")).to_have_text(f"{stats['votes_total']:,}")
    teachers = (await server.get("/api/subjects/1/teachers/")).json()
    await expect(subject_page.locator("#teachers .teacher .name")).to_have_text([t["name"] for t in teachers])


async def test_home_dashboard_and_subject_pages_follow_the_catalog_also_after_missed_events(
    browser: Browser, server: LiveServer
) -> None:
    """Announced changes show at once; changes whose announcement was lost (written to the store
    directly) show once the socket comes back, from its snapshots alone."""
    admin = await sign_up_admin(server)
    assert server.services is not None
    store = server.services.backends.store
    context = await browser.new_context(base_url=server.base_url)
    log = PageLog()
    pages = []
    for path in ("/", "/dashboard.html", "/teachers.html?sno=1"):
        page = log.watch(await context.new_page())
        await page.goto(path)
        await expect(conn(page)).to_have_attribute("data-state", "live")
        pages.append(page)
    home, board, subject_page = pages

    created = await admin.request("POST", "/api/subjects/", json_body={"name": "新科目", "intro": "新开的课"})
    assert created.status == 201
    await shows_the_store(server, home, board, subject_page)
    path = f"/api/subjects/{created.json()['no']}/"
    assert (await admin.request("PATCH", path, json_body={"name": "又改名"})).status == 200
    await shows_the_store(server, home, board, subject_page)
    assert (await admin.request("DELETE", path)).status == 204
    assert (await admin.request("DELETE", "/api/teachers/2/")).status == 204
    await shows_the_store(server, home, board, subject_page)

    await store.create_subject({"name": "悄悄加的", "intro": "", "is_hot": False})
    await store.update_teacher(5, {"subject": 1, "name": "悄悄调来"})
    await store.delete_teacher(3)
    await store.update_subject(2, {"name": "悄悄改名"})
    server.services.hub.close_all()
    for page in pages:
        await expect(conn(page)).to_have_attribute("data-state", "live")
    await shows_the_store(server, home, board, subject_page)
    await context.close()
