"""The screenshots of README.md and docs/pages.md: python docs/screenshots.py [--out docs/screenshots]

Starts the real app in this process (a free port, a temporary data directory, the demo
data), signs up an admin and a few users, casts votes and opens sockets that watch some
subjects, then photographs the pages in headless Chromium (tests/harness/pages.py): each
shot is taken once the page is live and shows the counts the server holds.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.async_api import Browser, Page, async_playwright, expect  # noqa: E402

from services.backends.store_sqlite import SqliteStore  # noqa: E402
from tests.harness.pages import conn, launch_chromium, logged_in_context, teacher  # noqa: E402
from tests.harness.server import LiveServer, UserClient, make_config, sign_up, sign_up_admin, viewer_token  # noqa: E402
from tests.harness.ws_client import LiveClient  # noqa: E402

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
PASSWORD = "correct horse battery"
ADMIN = ("root", "admin password")  # sign_up_admin's defaults
VIEWER = "alice"  # the user whose pages are photographed; she has voted on every teacher of subject 1
# "user teacher value"; teacher n of the demo data teaches subject (n + 2) // 3
BEFORE = ["alice 1 good", "alice 2 good", "alice 3 bad", "bob 1 good", "bob 2 bad", "bob 3 good",
          "carol 1 good", "carol 2 good", "dave 1 bad", "dave 3 good", "erin 7 good", "frank 10 good"]
WAVES = [  # while the dashboard is open: its last bar and votes per second move live
    ["erin 1 good", "frank 7 good"],
    ["alice 7 good", "bob 7 good", "carol 8 bad", "dave 4 good"],
    ["erin 10 good"],
    ["alice 4 good", "bob 5 bad", "carol 13 good", "dave 7 bad", "erin 8 good"],
    ["frank 2 good", "alice 10 bad", "bob 14 good"],
    ["carol 4 good", "dave 9 good", "erin 13 good"],
]
WATCHERS = {1: 3, 2: 1, 3: 2}
"""People (one viewer token each) who watch these subjects besides the pages, for the "N 人在看"
figures."""


async def cast_over_the_hour(server: LiveServer, users: dict[str, UserClient], votes: list[str]) -> None:
    """The votes three at a time, each three moved 12 minutes into the past in the stored history,
    so that the charts of the last hour show them spread out."""
    assert server.services is not None
    store = server.services.backends.store
    assert isinstance(store, SqliteStore)
    for start in range(0, len(votes), 3):
        await cast(users, votes[start:start + 3])
        await store.database.write(lambda conn: conn.execute("UPDATE vote_history SET minute = minute - 12"))


async def cast(users: dict[str, UserClient], votes: list[str]) -> None:
    for vote in votes:
        name, no, value = vote.split()
        response = await users[name].request("PUT", f"/api/teachers/{no}/vote", json_body={"value": value})
        assert response.status == 200, (vote, response.status, response.body)


async def open_page(browser: Browser, server: LiveServer, path: str, viewport: dict[str, int],
                    login: tuple[str, str] = (VIEWER, PASSWORD), live: bool = True) -> Page:
    """A new logged-in page on `path`; once its socket is live when it has one."""
    context = await logged_in_context(browser, server, *login, viewport=viewport, device_scale_factor=1)
    page = await context.new_page()
    response = await page.goto(path)
    if response is None or response.status != 200:
        raise SystemExit(f"screenshots: GET {path} answered {response and response.status}: "
                         f"that page does not exist (yet), so its screenshot cannot be taken")
    if live:
        await expect(conn(page)).to_have_attribute("data-state", "live", timeout=10_000)
    return page


async def shoot(page: Page, out: Path, name: str) -> None:
    await page.screenshot(path=str(out / f"{name}.png"), animations="disabled")
    await page.context.close()
    print(f"wrote {out / name}.png")


async def dashboard(browser: Browser, server: LiveServer, users: dict[str, UserClient], out: Path) -> None:
    page = await open_page(browser, server, "/dashboard.html", DESKTOP)
    for wave in WAVES:
        await cast(users, wave)
        total = (await server.get("/api/stats")).json()["votes_total"]
        await expect(page.locator("#votes-total")).to_have_text(str(total))
    subjects = (await server.get("/api/stats")).json()["subjects"]
    await expect(page.locator("#totals td.watching")).to_have_text([str(WATCHERS.get(s["no"], 0)) for s in subjects])
    await expect(page.locator("#sockets")).to_have_text(re.compile(r"^[1-9]"))
    await expect(page.locator("#votes-rate")).not_to_have_text("0.00")
    await shoot(page, out, "dashboard")


async def teachers(browser: Browser, server: LiveServer, out: Path, name: str, viewport: dict[str, int]) -> None:
    page = await open_page(browser, server, "/teachers.html?sno=1", viewport)
    for record in (await server.get("/api/teachers/?sno=1")).json()["teachers"]:
        for value in ("good", "bad"):
            count = teacher(page, record["no"]).locator(f".vote-{value} .count")
            await expect(count).to_have_text(str(record[f"{value}_count"]))
        await expect(teacher(page, record["no"]).locator(".mine")).to_contain_text("你的评价")
    watching = WATCHERS[1] + 1  # and this page
    await expect(page.locator("#watching")).to_have_text(f"{watching} 人在看 · {watching} watching")
    await page.wait_for_function("""() => [...document.querySelectorAll("img.photo")]
        .filter(img => img.getBoundingClientRect().top < innerHeight)
        .every(img => img.complete && img.naturalWidth > 0)""")
    await shoot(page, out, name)


async def home(browser: Browser, server: LiveServer, out: Path) -> None:
    page = await open_page(browser, server, "/", DESKTOP)
    subjects = (await server.get("/api/stats")).json()["subjects"]
    await expect(page.locator("a.subject .totals")).to_have_text([
        f"好评 Good {s['good_count']} · 差评 Bad {s['bad_count']} · {WATCHERS.get(s['no'], 0)} 人在看 watching"
        for s in subjects
    ])
    await shoot(page, out, "home")


async def admin(browser: Browser, server: LiveServer, out: Path) -> None:
    """The catalog editor has no socket: ready once it lists every subject and subject 1's teachers."""
    page = await open_page(browser, server, "/admin.html?sno=1", DESKTOP, login=ADMIN, live=False)
    await expect(page.locator("#account .who")).to_have_text(ADMIN[0])
    subjects = (await server.get("/api/subjects/")).json()
    await expect(page.locator("#subject-rows tr[data-no]")).to_have_count(len(subjects))
    listed = (await server.get("/api/teachers/?sno=1")).json()["teachers"]
    await expect(page.locator("#teacher-rows tr[data-no] .row-name")).to_have_text([t["name"] for t in listed])
    await shoot(page, out, "admin")


async def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="livevote-screenshots-") as data:
        server = await LiveServer(make_config(Path(data), ws__watching_interval=0.2)).start()
        watchers: list[LiveClient] = []
        try:
            await sign_up_admin(server, *ADMIN)
            names = {vote.split()[0] for vote in BEFORE + [vote for wave in WAVES for vote in wave]}
            users = {name: await sign_up(server, name, PASSWORD) for name in sorted(names)}
            await cast_over_the_hour(server, users, BEFORE)
            for sno, count in WATCHERS.items():
                for _ in range(count):
                    watchers.append(client := await LiveClient.connect(server.base_url, await viewer_token(server)))
                    assert (await client.request("subscribe", channel=f"subject:{sno}"))["type"] == "ack"
            async with async_playwright() as playwright:
                browser = await launch_chromium(playwright)
                try:
                    await dashboard(browser, server, users, out)
                    await teachers(browser, server, out, "teachers", DESKTOP)
                    await teachers(browser, server, out, "phone-teachers", PHONE)
                    await home(browser, server, out)
                    await admin(browser, server, out)  # last: the others are written even without it
                finally:
                    await browser.close()
        finally:
            for client in watchers:
                await client.close()
            await server.stop()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots",
                        help="folder for the PNGs (default: docs/screenshots)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args().out))
