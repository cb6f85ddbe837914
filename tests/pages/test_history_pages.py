"""The last hour on the pages: the dashboard's votes per minute and the teachers page's good and
bad counts come from the stored history, so a reload keeps them, and go on live."""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import Browser, Route, expect

from services.backends.store_sqlite import SqliteStore
from tests.conftest import ServerFactory
from tests.harness.pages import PageLog, open_live
from tests.harness.server import UserClient, sign_up

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def put_vote(client: UserClient, teacher: int, value: str) -> None:
    response = await client.request("PUT", f"/api/teachers/{teacher}/vote", json_body={"value": value})
    assert response.status == 200, response.body


async def test_the_charts_show_the_stored_history_after_a_reload_and_go_on_live(
    browser: Browser, start_server: ServerFactory
) -> None:
    server = await start_server()
    hana, ivan = await sign_up(server, "hana"), await sign_up(server, "ivan")
    await put_vote(hana, 1, "good")
    await put_vote(ivan, 2, "bad")
    await put_vote(hana, 1, "bad")  # a switch: one vote change
    assert server.services is not None and isinstance(server.services.backends.store, SqliteStore)
    await server.services.backends.store.database.write(  # cast ten minutes ago: no page saw them live
        lambda conn: conn.execute("UPDATE vote_history SET minute = minute - 10"))
    log = PageLog()
    context = await browser.new_context(base_url=server.base_url)
    page = log.watch(await context.new_page())

    await open_live(page, "/dashboard.html")
    chart = page.locator("#chart")
    await expect(chart).to_have_attribute("data-votes", "3")
    await page.reload()
    await expect(chart).to_have_attribute("data-votes", "3")
    await put_vote(ivan, 4, "good")
    await expect(chart).to_have_attribute("data-votes", "4")
    await expect(page.locator("#votes-rate")).not_to_have_text("0.00")

    await open_live(page, "/teachers.html?sno=1")
    history = page.locator("#history-chart")
    for _ in range(2):  # on load, and again after a reload
        await expect(history).to_have_attribute("data-votes", "3")
        await expect(history).to_have_attribute("data-bad", "2")
        await expect(history).to_have_attribute("data-good", "0")
        await page.reload()
    await put_vote(ivan, 3, "good")
    await expect(history).to_have_attribute("data-good", "1")
    await expect(history).to_have_attribute("data-votes", "4")
    log.assert_clean()
    await context.close()


async def test_a_history_answer_older_than_a_live_vote_does_not_undo_it(
    browser: Browser, start_server: ServerFactory
) -> None:
    """The dashboard's first history read is held until a vote has come live; its answer, which
    predates the vote, must not take the vote off the chart (it is read again)."""
    server = await start_server()
    june = await sign_up(server, "june")
    context = await browser.new_context(base_url=server.base_url)
    page = await context.new_page()
    held: list[Route] = []
    voted = asyncio.Event()

    async def hold_the_first(route: Route) -> None:
        if held:
            await route.continue_()
            return
        held.append(route)
        response = await route.fetch()  # read now, before the vote
        await voted.wait()
        await route.fulfill(response=response)

    await page.route("**/api/subjects/*/history*", hold_the_first)
    await open_live(page, "/dashboard.html")
    await put_vote(june, 1, "good")
    chart = page.locator("#chart")
    await expect(chart).to_have_attribute("data-votes", "1")
    async with page.expect_request("**/api/subjects/*/history*"):  # read again, the held answer being older
        voted.set()
    await expect(chart).to_have_attribute("data-votes", "1")
    await expect(page.locator("#votes-rate")).not_to_have_text("0.00")
    await context.close()
