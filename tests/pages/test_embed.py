"""The embed pages (/embed/subject/N, /embed/teacher/N) as another site shows them: framed by a
page served from another origin (another port) in Chromium, live as votes come in, and refused
by a site that server.embed_origins does not list; their headers, 404s, themes, and the admin
page's snippet."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Frame, Page, expect
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from tornado.web import Application, RequestHandler

from handlers.pages import CONTENT_SECURITY_POLICY, content_security_policy
from tests.conftest import ServerFactory
from tests.harness.pages import UNGLOSSED, PageLog, conn, logged_in_context
from tests.harness.server import LiveServer, UserClient, sign_up, sign_up_admin

pytestmark = pytest.mark.asyncio(loop_scope="session")

BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
HIDDEN = "隐藏 hidden"
HIDDEN_SUBJECT, ITS_TEACHER = 2, 4
"""A seeded subject whose results the test hides, and one of its teachers."""


class OuterSite:
    """Another site: one page on its own port that shows `frames` (iframe markup), read at each
    request: the frames name the livevote server, which starts once this site's origin is known."""

    def __init__(self) -> None:
        sock, self.port = bind_unused_port()
        self.frames: list[str] = []
        frames = self.frames

        class OuterPage(RequestHandler):
            def get(self) -> None:
                self.finish(f"<!doctype html><title>another site</title>{''.join(frames)}")

        self.server = HTTPServer(Application([(r"/", OuterPage)]))
        self.server.add_sockets([sock])

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        self.server.stop()
        await self.server.close_all_connections()


def iframe(server: LiveServer, path: str, width: int = 480, height: int = 240) -> str:
    return (
        f'<iframe src="{server.base_url}{path}" title="{path}"'
        f' style="border:0;width:{width}px;height:{height}px"></iframe>'
    )


@pytest_asyncio.fixture(loop_scope="session")
async def sites() -> AsyncIterator[dict[str, OuterSite]]:
    """Two other sites: the test lists one of them in server.embed_origins, never the other."""
    made = {"listed": OuterSite(), "unlisted": OuterSite()}
    yield made
    for site in made.values():
        await site.stop()


def frame_of(page: Page, path: str) -> Frame:
    frame = next((frame for frame in page.frames if frame.url.endswith(path)), None)
    assert frame is not None, [frame.url for frame in page.frames]
    return frame


async def vote(user: UserClient, teacher: int, value: str) -> None:
    response = await user.request("PUT", f"/api/teachers/{teacher}/vote", json_body={"value": value})
    assert response.status == 200, response.body


# -- in another site's frame ------------------------------------------------------------------


async def test_a_listed_site_frames_the_widgets_and_sees_votes_live(
    browser: Browser, start_server: ServerFactory, sites: dict[str, OuterSite]
) -> None:
    server = await start_server(server__embed_origins=[sites["listed"].origin])
    admin = await sign_up_admin(server)
    hide = await admin.request("PATCH", f"/api/subjects/{HIDDEN_SUBJECT}/", json_body={"visibility": "hidden"})
    assert hide.status == 200, hide.body
    voter = await sign_up(server, "nora")
    await vote(voter, ITS_TEACHER, "good")  # counted, but hidden from viewers
    sites["listed"].frames.extend(
        [
            iframe(server, "/embed/subject/1"),
            iframe(server, f"/embed/teacher/{ITS_TEACHER}", 280, 150),
        ]
    )
    context = await browser.new_context()
    log = PageLog()
    page = log.watch(await context.new_page())
    await page.goto(sites["listed"].origin + "/")

    subject = frame_of(page, "/embed/subject/1")
    await expect(conn(subject)).to_have_attribute("data-state", "live", timeout=10_000)
    await expect(subject.locator("#subject-name")).to_have_text("Python全栈+人工智能")
    await expect(subject.locator("#voting-state")).to_have_text("投票进行中 Voting open")
    await expect(subject.locator(".bar-row")).to_have_count(3)
    good = subject.locator('.bar-row[data-no="1"] .count-good')
    await expect(good).to_have_text("0")
    await vote(voter, 1, "good")
    await expect(good).to_have_text("1", timeout=5_000)
    await vote(voter, 2, "bad")
    await expect(subject.locator('.bar-row[data-no="2"] .count-bad')).to_have_text("1", timeout=5_000)

    teacher = frame_of(page, f"/embed/teacher/{ITS_TEACHER}")
    await expect(conn(teacher)).to_have_attribute("data-state", "live", timeout=10_000)
    await expect(teacher.locator(".bar-row")).to_have_count(1)
    await expect(teacher.locator(f'.bar-row[data-no="{ITS_TEACHER}"] .count-good')).to_have_text(HIDDEN)
    # A small frame: everything fits, nothing scrolls.
    fits = (
        "() => { const s = document.scrollingElement; return s.scrollHeight <= s.clientHeight"
        " && s.scrollWidth <= s.clientWidth; }"
    )
    assert await teacher.evaluate(fits)
    assert await subject.evaluate(UNGLOSSED) == []
    log.assert_clean()
    await context.close()


async def test_a_site_not_listed_cannot_frame_them(
    browser: Browser, start_server: ServerFactory, sites: dict[str, OuterSite]
) -> None:
    server = await start_server(server__embed_origins=[sites["listed"].origin])
    sites["unlisted"].frames.append(iframe(server, "/embed/subject/1"))
    context = await browser.new_context()
    page = await context.new_page()
    async with page.expect_console_message(
        lambda message: "frame-ancestors" in message.text, timeout=10_000
    ) as refused:
        await page.goto(sites["unlisted"].origin + "/")
    assert sites["listed"].origin in (await refused.value).text
    await page.wait_for_load_state("load")
    assert await page.frame_locator("iframe").locator("#embed").count() == 0
    await context.close()


# -- as HTTP sees them ------------------------------------------------------------------------


@pytest.mark.parametrize("path, name", [("/embed/subject/1", "Python全栈+人工智能"), ("/embed/teacher/1", "骆昊")])
async def test_by_default_no_site_may_frame_them(server: LiveServer, path: str, name: str) -> None:
    page = await server.get(path, headers=BROWSER)
    assert page.status == 200 and page.content_type == "text/html; charset=UTF-8"
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY and "X-Frame-Options" not in page.headers
    assert page.headers["Cache-Control"] == "no-cache"
    body = page.body.decode()
    assert name in body and 'class="topbar"' not in body and 'class="footer"' not in body
    assert re.search(r'<script type="module" src="/static/js/embed\.js\?v=', body)
    head = await server.request("HEAD", path, headers=BROWSER)
    assert head.status == 200 and head.body == b""


async def test_the_listed_sites_may_frame_them_and_nothing_else(start_server: ServerFactory) -> None:
    sites = ("https://school.example", "http://127.0.0.1:8081")
    server = await start_server(server__embed_origins=list(sites))
    policy = content_security_policy(sites)
    assert policy.endswith("; frame-ancestors https://school.example http://127.0.0.1:8081")
    for path in ("/embed/subject/1", "/embed/teacher/2", "/embed/subject/1?theme=dark"):
        page = await server.get(path, headers=BROWSER)
        assert page.status == 200 and page.headers["Content-Security-Policy"] == policy, path
    for path in ("/", "/present/1", "/admin.html", "/embed/subject/999"):
        page = await server.get(path, headers=BROWSER)
        assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, path


@pytest.mark.parametrize("path", ["/embed/subject/999", "/embed/teacher/999", "/embed/teacher/99999999999999999999"])
async def test_an_unknown_record_is_the_404_page(server: LiveServer, path: str) -> None:
    page = await server.get(path, headers=BROWSER)
    assert page.status == 404 and page.content_type == "text/html; charset=UTF-8"
    assert "页面不存在" in page.body.decode()
    problem = await server.get(path)
    assert problem.status == 404 and problem.content_type == "application/problem+json"
    assert problem.json()["detail"].startswith("There is no ")


async def test_the_theme_is_light_dark_or_the_visitors(server: LiveServer) -> None:
    themed = await server.get("/embed/subject/1?theme=dark", headers=BROWSER)
    assert themed.status == 200 and '<body class="embed-body" data-theme="dark">' in themed.body.decode()
    system = await server.get("/embed/subject/1", headers=BROWSER)
    assert '<body class="embed-body">' in system.body.decode()
    for query in ("theme=sepia", "theme="):
        wrong = await server.get(f"/embed/teacher/1?{query}", headers=BROWSER)
        assert wrong.status == 422 and wrong.content_type == "application/problem+json", query
        assert [error["field"] for error in wrong.json()["errors"]] == ["theme"]
    twice = await server.get("/embed/teacher/1?theme=dark&theme=light", headers=BROWSER)
    assert twice.status == 400 and "theme" in twice.json()["detail"]


# -- light and dark, and the admin page's snippet ------------------------------------------------


async def test_dark_follows_the_system_unless_the_address_says_otherwise(browser: Browser, server: LiveServer) -> None:
    backgrounds = {}
    for scheme, query in [("light", ""), ("dark", ""), ("dark", "?theme=light"), ("light", "?theme=dark")]:
        context = await browser.new_context(base_url=server.base_url, color_scheme=scheme)
        page = await context.new_page()
        await page.goto(f"/embed/subject/1{query}")
        backgrounds[scheme, query] = await page.evaluate("getComputedStyle(document.body).backgroundColor")
        await context.close()
    assert backgrounds["light", ""] != backgrounds["dark", ""]
    assert backgrounds["dark", "?theme=light"] == backgrounds["light", ""]
    assert backgrounds["light", "?theme=dark"] == backgrounds["dark", ""]


async def test_the_admin_page_gives_the_snippet_to_copy(browser: Browser, server: LiveServer) -> None:
    await sign_up_admin(server)
    context = await logged_in_context(browser, server, "root", "admin password")
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.base_url)
    log = PageLog()
    page = log.watch(await context.new_page())
    await page.goto("/admin.html?sno=1")
    code = page.locator("#embed-code")
    await expect(code).to_have_value(
        re.compile(
            rf'^<iframe src="{re.escape(server.base_url)}/embed/subject/1" title="livevote · Python全栈\+人工智能"'
        )
    )
    await expect(page.locator("#embed-box")).to_contain_text("server.embed_origins")
    await page.locator('#teacher-rows tr[data-no="2"] .embed').click()
    await expect(code).to_have_value(re.compile(r'src="[^"]+/embed/teacher/2"'))
    await page.locator("#embed-copy").click()
    await expect(page.locator("#embed-copied")).to_have_text("已复制 Copied")
    assert await page.evaluate("navigator.clipboard.readText()") == await code.input_value()
    log.assert_clean()
    await context.close()
