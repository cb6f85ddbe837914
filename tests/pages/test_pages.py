"""The pages in a real browser: headless system Chromium driven by Playwright,
against the real server on a real port.

One Chromium serves every page test (a new context per test), so the tests,
the browser and the servers share the session's event loop; `start_server` is redefined here
for that loop (and to give servers that can restart on their port).
Screenshots of every page go to the test's tmp_path.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from handlers.pages import CONTENT_SECURITY_POLICY
from services.errors import FIELD_CODES
from services.wiring import build_services, close_services
from tests.conftest import ServerFactory
from tests.harness.pages import STORAGE_SPY, PageLog, conn, count, logged_in_context, open_live, screenshot, teacher
from tests.harness.server import ROOT, LiveServer, log_in, sign_up, sign_up_admin

pytestmark = pytest.mark.asyncio(loop_scope="session")

PASSWORD = "correct horse battery"
MARKUP = "<img src=x onerror=alert(1)>"
LIVE = "live"


async def pill_number(page: Page, name: str) -> int:
    return int(await conn(page).get_attribute(f"data-{name}") or 0)


# -- every page, looked at ----------------------------------------------------------


async def test_every_page_renders_under_the_csp(browser: Browser, server: LiveServer, tmp_path: Path) -> None:
    shots = tmp_path / "screenshots"
    carol = await sign_up(server, "carol")
    context = await logged_in_context(browser, server, "carol", PASSWORD)
    log = PageLog()
    page = log.watch(await context.new_page())

    response = await page.goto("/")
    assert response is not None and response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    await expect(page.locator("a.subject")).to_have_count(5)
    await expect(page.locator("a.subject .hot")).to_have_count(2)
    await expect(page.locator("#account .who")).to_have_text("carol")
    await expect(page.locator("a.subject").first).to_contain_text("Python全栈+人工智能")
    await screenshot(page, shots, "index")

    await page.locator("a.subject").first.click()
    await expect(page).to_have_url(re.compile(r"/teachers\.html\?sno=1$"))
    await expect(conn(page)).to_have_attribute("data-state", LIVE)
    await expect(page.locator("article.teacher")).to_have_count(3)
    await expect(page.locator("#subject-name")).to_have_text("Python全栈+人工智能")
    await expect(teacher(page, 1).locator(".name")).to_have_text("骆昊")
    await expect(teacher(page, 1).locator(".birth")).to_contain_text("1980-11-28")
    await page.wait_for_function(
        "() => [...document.querySelectorAll('img.photo')].every(i => i.complete && i.naturalWidth > 0)"
    )
    await screenshot(page, shots, "teachers")
    await page.set_viewport_size({"width": 390, "height": 844})
    await screenshot(page, shots, "teachers-phone")
    await page.set_viewport_size({"width": 1280, "height": 720})

    await teacher(page, 2).locator(".vote-good").click()
    await expect(count(page, 2, "good")).to_have_text("1")
    await open_live(page, "/dashboard.html")
    await expect(page.locator("#totals tr")).to_have_count(5)
    await expect(page.locator('#totals tr[data-no="1"] td.good')).to_have_text("1")
    await expect(page.locator("#votes-total")).to_have_text("1")
    await expect(page.locator("#sockets")).to_have_text(re.compile(r"^[1-9]\d*$"))  # this page at least
    for no in (4, 5, 7, 8):  # votes elsewhere move the totals and the chart, live
        assert (await carol.request("PUT", f"/api/teachers/{no}/vote", json_body={"value": "good"})).status == 200
    await expect(page.locator("#votes-total")).to_have_text("5", timeout=1000)
    await expect(page.locator('#totals tr[data-no="3"] td.good')).to_have_text("2")
    await expect(page.locator("#votes-rate")).not_to_have_text("0.00")
    await screenshot(page, shots, "dashboard")
    await page.set_viewport_size({"width": 390, "height": 844})
    await screenshot(page, shots, "dashboard-phone")
    await page.set_viewport_size({"width": 1280, "height": 720})

    await page.goto("/api/docs")
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text("livevote", timeout=10_000)
    await expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
    assert await page.locator(".swagger-ui .opblock").count() >= 20
    await screenshot(page, shots, "docs")

    anonymous = await browser.new_context(base_url=server.base_url)
    login_page = log.watch(await anonymous.new_page())
    await login_page.goto("/login.html?next=/dashboard.html")
    await expect(login_page.locator("#auth-form")).to_be_visible()
    await screenshot(login_page, shots, "login")

    log.assert_clean()
    await anonymous.close()
    await context.close()
    print(f"screenshots in {shots}")


# -- login and register ------------------------------------------------------------------------


async def test_login_page_registers_logs_in_and_returns_to_the_page(browser: Browser, server: LiveServer) -> None:
    context = await browser.new_context(base_url=server.base_url)
    log = PageLog()
    page = log.watch(await context.new_page())

    await page.goto("/teachers.html?sno=2")  # anyone may watch; voting asks for an account
    await expect(conn(page)).to_have_attribute("data-state", LIVE)
    await teacher(page, 4).locator(".vote-good").click()
    # the vote rides along to be cast on the way back
    await expect(page).to_have_url(re.compile(
        r"/login\.html\?next=%2Fteachers\.html%3Fsno%3D2%26teacher%3D4%26vote%3Dgood$"
    ))
    await page.locator("#tab-register").click()
    await page.locator("#username").fill("dave")
    await page.locator("#password").fill(PASSWORD)
    await page.locator("#submit").click()
    await expect(page).to_have_url(re.compile(r"/teachers\.html\?sno=2$"))
    await expect(conn(page)).to_have_attribute("data-state", LIVE)
    await expect(page.locator("#account .who")).to_have_text("dave")

    await page.locator("#logout").click()
    await expect(page).to_have_url(re.compile(r"/login\.html$"))
    await page.locator("#username").fill("dave")
    await page.locator("#password").fill("wrong password")
    await page.locator("#submit").click()
    await expect(page.locator("#notice")).to_have_text("用户名或密码不正确。 Wrong username or password.")

    await page.goto("/login.html?next=//evil.example/steal")
    await page.locator("#username").fill("dave")
    await page.locator("#password").fill(PASSWORD)
    await page.locator("#submit").click()
    await expect(page).to_have_url(server.base_url + "/")
    await expect(page.locator("#account .who")).to_have_text("dave")

    log.assert_clean()
    await context.close()


async def test_register_shows_translated_errors_next_to_their_fields(browser: Browser, server: LiveServer) -> None:
    """The server's field errors arrive as codes; the page shows its own words, never the
    server's English message."""
    context = await browser.new_context(base_url=server.base_url)
    log = PageLog()
    page = log.watch(await context.new_page())
    await page.goto("/login.html")
    await page.locator("#tab-register").click()
    await page.locator("#username").fill("erin")
    for password, expected in (("erin-erin-erin", "密码不能包含用户名"), ("password1", "密码太容易被猜到")):
        await page.locator("#password").fill(password)
        await page.locator("#submit").click()
        await expect(page.locator("#password-error")).to_contain_text(expected)
        await expect(page.locator("#password-error")).not_to_contain_text("must")
        await expect(page.locator("#notice")).to_have_text("请修改标出的内容。 Please correct the marked fields.")
    log.assert_clean()
    await context.close()


async def test_every_field_code_of_the_server_has_words_in_the_pages() -> None:
    table = (ROOT / "static" / "js" / "texts.js").read_text()
    missing = [code for code in FIELD_CODES if not re.search(rf"^\s+{code}: \"", table, re.MULTILINE)]
    assert not missing, f"static/js/texts.js FIELD_TEXT lacks {missing}"


# -- live votes between two people --------------------------------------------------------------


async def test_a_vote_in_one_context_shows_in_the_other_within_a_second(
    browser: Browser, server: LiveServer, tmp_path: Path
) -> None:
    await sign_up(server, "alice")
    await sign_up(server, "bob")
    alice_context = await logged_in_context(browser, server, "alice", PASSWORD)
    bob_context = await logged_in_context(browser, server, "bob", PASSWORD)
    log = PageLog()
    alice = await open_live(log.watch(await alice_context.new_page()), "/teachers.html?sno=1")
    bob = await open_live(log.watch(await bob_context.new_page()), "/teachers.html?sno=1")
    alice_good = teacher(alice, 1).locator(".vote-good")
    alice_bad = teacher(alice, 1).locator(".vote-bad")

    await alice_good.click()
    await expect(alice_good).to_have_attribute("aria-pressed", "true")
    await expect(count(alice, 1, "good")).to_have_text("1")
    await expect(count(bob, 1, "good")).to_have_text("1", timeout=1000)
    await expect(teacher(bob, 1).locator(".vote-good")).to_have_attribute("aria-pressed", "false")

    await alice_bad.click()  # switch
    await expect(alice_bad).to_have_attribute("aria-pressed", "true")
    await expect(alice_good).to_have_attribute("aria-pressed", "false")
    await expect(count(bob, 1, "bad")).to_have_text("1", timeout=1000)
    await expect(count(bob, 1, "good")).to_have_text("0", timeout=1000)

    await teacher(bob, 1).locator(".vote-good").click()
    await expect(count(bob, 1, "good")).to_have_text("1")
    await expect(count(alice, 1, "good")).to_have_text("1", timeout=1000)

    await alice_bad.click()  # the same button again: withdraw
    await expect(alice_bad).to_have_attribute("aria-pressed", "false")
    await expect(count(alice, 1, "bad")).to_have_text("0")
    await expect(count(bob, 1, "bad")).to_have_text("0", timeout=1000)
    await expect(teacher(alice, 1).locator(".mine")).to_contain_text("还没有评价")

    await open_live(bob, "/teachers.html?sno=1")  # a reload shows bob's own vote from the server
    await expect(teacher(bob, 1).locator(".vote-good")).to_have_attribute("aria-pressed", "true")
    await expect(count(bob, 1, "good")).to_have_text("1")
    await screenshot(bob, tmp_path / "screenshots", "teachers-voted")
    state = (await server.get("/api/teachers/1/")).json()
    assert (state["good_count"], state["bad_count"]) == (1, 0)

    log.assert_clean()
    await alice_context.close()
    await bob_context.close()


# -- tokens ---------------------------------------------------------------------------------------


async def test_a_page_stays_live_across_access_token_expiries_without_storing_tokens(
    browser: Browser, start_server: ServerFactory
) -> None:
    ttl = 3
    server = await start_server(auth__access_ttl=ttl, auth__refresh_ahead=1)
    await sign_up(server, "erin")
    await sign_up(server, "frank")
    context = await logged_in_context(browser, server, "erin", PASSWORD)
    await context.add_init_script(STORAGE_SPY)
    log = PageLog()
    page = log.watch(await context.new_page())
    loop = asyncio.get_running_loop()
    started = loop.time()
    await open_live(page, "/teachers.html?sno=1")

    # Five pushed tokens: the first token and at least three pushed ones have expired by then.
    await page.wait_for_function(
        "() => Number(document.getElementById('conn').dataset.tokenPushes) >= 5", timeout=30_000
    )
    assert loop.time() - started > 3 * ttl
    await expect(page).to_have_url(re.compile(r"/teachers\.html\?sno=1$"))
    await expect(conn(page)).to_have_attribute("data-state", LIVE)
    assert await pill_number(page, "connects") == 1, "the socket never had to reconnect"

    await teacher(page, 3).locator(".vote-bad").click()  # REST with the last pushed token
    await expect(count(page, 3, "bad")).to_have_text("1")
    frank = await log_in(server, "frank", PASSWORD)  # a token of 3 s: fresh now
    response = await frank.request("PUT", "/api/teachers/3/vote", json_body={"value": "good"})
    assert response.status == 200
    await expect(count(page, 3, "good")).to_have_text("1", timeout=1000)
    assert await pill_number(page, "cookie-refreshes") == 1, "only the page load used the cookie"

    stored = await page.evaluate(
        "() => ({local: localStorage.length, session: Object.fromEntries(Object.entries(sessionStorage)),"
        " writes: window.__storageWrites, cookie: document.cookie})"
    )
    # No token anywhere: the one thing kept is which transport went live (docs/pages.md).
    transport = {"livevote.transport": "WebSocket"}
    assert stored == {"local": 0, "session": transport, "writes": [["session", "livevote.transport"]], "cookie": ""}
    log.assert_clean()
    await context.close()


async def test_logout_in_one_tab_sends_the_other_tab_of_the_session_to_login(
    browser: Browser, server: LiveServer
) -> None:
    await sign_up(server, "grace")
    context = await logged_in_context(browser, server, "grace", PASSWORD)
    log = PageLog()
    voting = await open_live(log.watch(await context.new_page()), "/teachers.html?sno=1")
    dashboard = await open_live(log.watch(await context.new_page()), "/dashboard.html")

    await voting.locator("#logout").click()
    await expect(voting).to_have_url(re.compile(r"/login\.html$"))
    revoked_login = re.compile(r"/login\.html\?next=%2Fdashboard\.html&reason=revoked$")
    await expect(dashboard).to_have_url(revoked_login, timeout=3000)
    await expect(dashboard.locator("#notice")).to_contain_text("会话已结束")

    again = log.watch(await context.new_page())  # the cookie brings no session back: the page only watches
    await again.goto("/teachers.html?sno=1")
    await expect(conn(again)).to_have_attribute("data-state", LIVE)
    await expect(again.locator("#logout")).to_have_count(0)
    log.assert_clean()
    await context.close()


# -- reconnect ------------------------------------------------------------------------------------


COOKIE_REFRESHES = "import('/static/js/livevote.js').then((client) => client.stats.cookieRefreshes)"


async def test_a_page_reconnects_after_a_server_restart_with_correct_counts(
    browser: Browser, server: LiveServer, tmp_path: Path
) -> None:
    await sign_up(server, "heidi")
    ivan = await sign_up(server, "ivan")
    judy = await sign_up(server, "judy")
    context = await logged_in_context(browser, server, "heidi", PASSWORD)
    page = await open_live(await context.new_page(), "/teachers.html?sno=1")
    await expect(count(page, 2, "good")).to_have_text("0")
    port = server.port

    await server.stop()
    await expect(conn(page)).to_have_attribute("data-state", "reconnecting", timeout=5000)
    await expect(conn(page)).to_contain_text("reconnecting")
    await screenshot(page, tmp_path / "screenshots", "teachers-reconnecting")

    # While the server is away, a vote lands in the store: only the snapshot after reconnecting can bring it.
    offline = await build_services(server.config)
    try:
        await offline.votes.set(ivan.pair["user"]["id"], 2, "good")
    finally:
        await close_services(offline)

    # Its next attempt finds the port taken by something that hangs up: the socket fails before
    # any welcome, and so does the stream the page then tries.
    attempts = 0
    failed_twice = asyncio.Event()

    def hang_up(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal attempts
        writer.close()
        attempts += 1
        if attempts >= 2:
            failed_twice.set()

    impostor = await asyncio.start_server(hang_up, "127.0.0.1", port)
    await asyncio.wait_for(failed_twice.wait(), 10)
    impostor.close()
    await impostor.wait_closed()
    refreshes = await page.evaluate(COOKIE_REFRESHES)
    await server.start()
    assert server.port == port
    await expect(conn(page)).to_have_attribute("data-state", LIVE, timeout=20_000)
    await expect(conn(page)).to_contain_text("live")
    await expect(count(page, 2, "good")).to_have_text("1", timeout=2000)
    # Back on its socket with the token it had: a restart costs each page one handshake, not a
    # session-store write for a new token and a stream's ticket besides (a storm of them).
    await expect(conn(page)).to_have_attribute("data-transport", "WebSocket")
    assert await page.evaluate(COOKIE_REFRESHES) == refreshes

    response = await judy.request("PUT", "/api/teachers/2/vote", json_body={"value": "bad"})
    assert response.status == 200
    await expect(count(page, 2, "bad")).to_have_text("1", timeout=1000)
    await context.close()


# -- escaping -------------------------------------------------------------------------------------


async def test_markup_in_names_is_shown_as_text_and_never_runs(
    browser: Browser, server: LiveServer, tmp_path: Path
) -> None:
    root = await sign_up_admin(server)
    subject = await root.request("POST", "/api/subjects/", json_body={
        "name": f"科目 {MARKUP}", "intro": "<script>window.__pwned = 1</script>", "is_hot": True,
    })
    assert subject.status == 201, subject.body
    sno = subject.json()["no"]
    created = await root.request("POST", "/api/teachers/", json_body={
        "name": MARKUP, "sex": False, "birth": "1990-01-01", "photo": "",
        "intro": '<b onmouseover="window.__pwned = 2">intro</b>', "subject": sno,
    })
    assert created.status == 201, created.body
    tno = created.json()["no"]

    # bypass_csp: escaping alone must keep the markup inert, the CSP is a second wall.
    context = await logged_in_context(browser, server, "root", "admin password", bypass_csp=True)
    log = PageLog()
    page = log.watch(await context.new_page())
    for path in ("/", f"/teachers.html?sno={sno}", "/dashboard.html"):
        await page.goto(path)
        await expect(page.get_by_text(MARKUP, exact=False).first).to_be_visible()
        assert await page.locator('img[src="x"]').count() == 0
        assert await page.locator("main script, main b").count() == 0
    await expect(teacher(page, tno)).to_have_count(0)  # dashboard: sanity, we left the teachers page
    await page.goto(f"/teachers.html?sno={sno}")
    await expect(teacher(page, tno).locator(".name")).to_have_text(MARKUP)
    await expect(teacher(page, tno).locator(".intro")).to_have_text('<b onmouseover="window.__pwned = 2">intro</b>')
    await expect(teacher(page, tno).locator("img.photo")).to_have_attribute("src", "/static/images/placeholder.svg")
    await teacher(page, tno).locator(".intro").hover()
    await screenshot(page, tmp_path / "screenshots", "teachers-markup")
    assert await page.evaluate("() => window.__pwned === undefined")
    assert not log.dialogs
    log.assert_clean()
    await context.close()


# -- the client's rules, from inside the page ------------------------------------------------------


async def test_the_client_keeps_the_highest_version_and_only_same_site_next(
    browser: Browser, server: LiveServer
) -> None:
    context = await browser.new_context(base_url=server.base_url)
    page = await context.new_page()
    await page.goto("/login.html")
    result = await page.evaluate("""async () => {
      const client = await import("/static/js/livevote.js");
      const counts = new client.VersionedCounts();
      const kept = [
        counts.apply({no: 1, good_count: 1, bad_count: 0, version: 2}),
        counts.apply({no: 1, good_count: 0, bad_count: 0, version: 1}),
        counts.apply({no: 1, good_count: 9, bad_count: 9, version: 2}),
        counts.apply({no: 1, good_count: 2, bad_count: 1, version: 4}),
        counts.apply({no: 1, good_count: 1, bad_count: 1, version: 3}),
      ];
      const next = ["/teachers.html?sno=1", "//evil.example/x", "https://evil.example/", "/\\\\evil.example",
                    "javascript:alert(1)", "/dashboard.html#top"].map(client.safeNext);
      const node = client.el("p", {}, "<img src=x onerror=alert(1)>");
      return {kept, last: counts.get(1), next, html: node.innerHTML};
    }""")
    assert result["kept"] == [True, False, False, True, False]
    assert result["last"] == {"no": 1, "good_count": 2, "bad_count": 1, "version": 4}
    assert result["next"] == ["/teachers.html?sno=1", "/", "/", "/", "/", "/dashboard.html#top"]
    assert result["html"] == "&lt;img src=x onerror=alert(1)&gt;"
    await context.close()
