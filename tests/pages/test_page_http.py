"""The pages as HTTP sees them: rendered from templates that are never served raw, every asset
linked with its content hash, and a cache policy under which old and new files never mix."""

from __future__ import annotations

import re

import pytest

from handlers.pages import CONTENT_SECURITY_POLICY
from tests.harness.server import LiveServer, sign_up_admin

pytestmark = pytest.mark.asyncio(loop_scope="session")

PAGES = ["/", "/teachers.html?sno=1", "/login.html", "/dashboard.html", "/admin.html", "/api/docs", "/present/1",
         "/embed/subject/1", "/embed/teacher/1"]
BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
LINKED = re.compile(r'(?:src|href)="(/static/[^"]+)"')
ICON = re.compile(r'<link rel="icon" href="(/static/[^"?]+)')


@pytest.mark.parametrize("path", PAGES)
async def test_a_page_links_every_file_by_its_hash_and_is_revalidated(server: LiveServer, path: str) -> None:
    page = await server.get(path, headers=BROWSER)
    assert page.status == 200 and page.content_type == "text/html; charset=UTF-8"
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert page.headers["Cache-Control"] == "no-cache"
    linked = LINKED.findall(page.body.decode())
    assert linked, "a page links its stylesheet and script"
    unversioned = [url for url in linked if not re.search(r"\?v=[0-9a-f]{8,}$", url)]
    assert not unversioned, unversioned
    for url in linked:
        asset = await server.get(url)
        assert asset.status == 200, url
        assert "no-cache" not in asset.headers.get("Cache-Control", ""), f"{url} is versioned: cached for good"


async def test_an_unversioned_file_is_revalidated_and_answers_304_when_unchanged(server: LiveServer) -> None:
    """Modules imported by relative path carry no ?v=: the browser checks them on every load."""
    module = await server.get("/static/js/live-client.js")
    assert module.status == 200 and module.headers["Cache-Control"] == "no-cache"
    again = await server.get("/static/js/live-client.js", headers={"If-None-Match": module.headers["Etag"]})
    assert again.status == 304


@pytest.mark.parametrize("path", ["/static/templates/layout.html", "/static/templates/index.html",
                                  "/static/templates/../templates/404.html", "/static/index.html"])
async def test_templates_are_not_served_raw(server: LiveServer, path: str) -> None:
    raw = await server.get(path, headers=BROWSER)
    assert raw.status == 404
    assert b"{%" not in raw.body and b"{{" not in raw.body, "template source leaked"


@pytest.mark.parametrize("path", ["/layout.html", "/404.html"])
async def test_only_pages_are_rendered_by_name(server: LiveServer, path: str) -> None:
    """layout.html and 404.html are templates, not pages: asked for by name, they are not there."""
    assert (await server.get(path, headers=BROWSER)).status == 404


@pytest.mark.parametrize("path", ["/favicon.ico"])
async def test_what_a_browser_asks_for_unprompted_is_the_pages_own_file(server: LiveServer, path: str) -> None:
    """Browsers, bookmarks and feed readers fetch /favicon.ico without a page naming it: it
    leads to the icon the pages link, not to a 404."""
    icon = ICON.search((await server.get("/", headers=BROWSER)).body.decode())
    assert icon, "the layout links an icon"
    answer = await server.get(path)
    assert answer.status == 301 and answer.headers["Location"] == icon.group(1)
    target = await server.get(answer.headers["Location"])
    assert target.status == 200 and target.content_type == "image/svg+xml"


async def test_the_presentation_view_is_a_page_with_its_qr_code_and_only_escaped_data(server: LiveServer) -> None:
    """/present/N: the pages' headers, the QR code inline as SVG with the voting page's address
    (built from the request's Host) as its title and as text; a subject's name is data, escaped."""
    admin = await sign_up_admin(server)
    created = await admin.request("POST", "/api/subjects/", json_body={"name": "<b>粗体</b>&"})
    no = created.json()["no"]
    page = await server.get(f"/present/{no}", headers={**BROWSER, "Host": "vote.example:8443"})
    assert page.status == 200 and page.content_type == "text/html; charset=UTF-8"
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    body = page.body.decode()
    url = f"http://vote.example:8443/teachers.html?sno={no}"
    assert re.search(rf'<svg [^>]*class="qr"[^>]*><title id="qr-title">{re.escape(url)}</title>', body)
    assert f'id="voting-url" translate="no">{url}</p>' in body
    assert "&lt;b&gt;粗体&lt;/b&gt;&amp;" in body and "<b>粗体" not in body
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", body, re.S)
    assert scripts == [""] and re.search(r'<script type="module" src="/static/js/present\.js\?v=', body)
    head = await server.request("HEAD", f"/present/{no}", headers=BROWSER)
    assert head.status == 200 and head.body == b""


@pytest.mark.parametrize("path", ["/present/999", "/present/99999999999999999999999"])
async def test_an_unknown_subject_has_no_presentation(server: LiveServer, path: str) -> None:
    page = await server.get(path, headers=BROWSER)
    assert page.status == 404 and page.content_type == "text/html; charset=UTF-8"
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "页面不存在" in page.body.decode()
    problem = await server.get(path)
    assert problem.status == 404 and problem.content_type == "application/problem+json"
    assert problem.json()["detail"].startswith("There is no subject")
