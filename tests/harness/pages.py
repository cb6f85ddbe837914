"""Browser tests' helpers: the system Chromium through Playwright, page locators, and what a page said."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    expect,
)

from tests.harness.server import LiveServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CSP_VIOLATION = re.compile(r"Content Security Policy|Refused to (execute|load|apply|connect|evaluate)", re.I)


async def launch_chromium(playwright: Playwright) -> Browser:
    """The system Chromium; `playwright install` is never needed (nor possible offline)."""
    return await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def conn(page: Page) -> Any:
    """The page's connection state pill."""
    return page.locator("#conn")


def teacher(page: Page, no: int) -> Any:
    return page.locator(f'article.teacher[data-no="{no}"]')


def count(page: Page, no: int, value: str) -> Any:
    """The good or bad count a teacher's card shows."""
    return teacher(page, no).locator(f".vote-{value} .count")


async def open_live(page: Page, path: str = "/teachers.html?sno=1") -> Page:
    """Go to a live page and wait until its socket is live (the pill says so)."""
    await page.goto(path)
    await expect(conn(page)).to_have_attribute("data-state", "live", timeout=10_000)
    return page


@dataclass
class PageLog:
    """What a page said: uncaught errors, CSP violations, dialogs (alert/confirm)."""

    errors: list[str] = field(default_factory=list)
    csp: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> Page:
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("console", self._console)
        page.on("dialog", self._dialog)
        return page

    def _console(self, message: ConsoleMessage) -> None:
        if CSP_VIOLATION.search(message.text):
            self.csp.append(message.text)

    async def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        await dialog.dismiss()

    def assert_clean(self) -> None:
        assert not self.errors, self.errors
        assert not self.csp, self.csp
        assert not self.dialogs, self.dialogs


STORAGE_SPY = """
(() => {
  const writes = [];
  Object.defineProperty(window, "__storageWrites", { value: writes });
  const setItem = Storage.prototype.setItem;
  Storage.prototype.setItem = function (key, value) {
    writes.push([this === window.localStorage ? "local" : "session", String(key)]);
    return setItem.call(this, key, value);
  };
})();
"""
"""Records every localStorage / sessionStorage write a page makes (an init script)."""


async def logged_in_context(browser: Browser, server: LiveServer, username: str, password: str,
                            **options: Any) -> BrowserContext:
    """A browser context holding a session cookie, as after the login form (which one test uses for real)."""
    context = await browser.new_context(base_url=server.base_url, **options)
    response = await context.request.post(
        "/api/auth/login", data={"username": username, "password": password}
    )
    assert response.status == 200, await response.text()
    await response.dispose()
    return context


async def screenshot(page: Page, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True, animations="disabled")
    return path


UNGLOSSED = r"""
() => {
  const CJK = /[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]/;
  const NOT_A_GLOSS = new Set(["livevote", "http", "api", "json"]);
  const BROWSER_WORDS = /Failed to fetch|NetworkError|TypeError|Load failed/;
  const glossed = (text) => (text.match(/[A-Za-z]{2,}/g) || []).some((word) => !NOT_A_GLOSS.has(word.toLowerCase()));
  const isData = (node) => Boolean(node.closest('[translate="no"]'));
  const found = [];
  const owners = new Set();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const owner = walker.currentNode.parentElement;
    if (!owner || !CJK.test(walker.currentNode.data) || isData(owner)) continue;
    if (owner.checkVisibility({ visibilityProperty: true })) owners.add(owner);
  }
  for (const owner of owners) {
    const shown = owner.innerText.trim(); // as rendered: a gloss that CSS hides does not count
    if (!glossed(shown)) found.push(shown);
  }
  for (const node of document.querySelectorAll("[aria-label], [title], [placeholder], [alt]")) {
    if (isData(node)) continue;
    for (const name of ["aria-label", "title", "placeholder", "alt"]) {
      const value = node.getAttribute(name);
      if (value && CJK.test(value) && !glossed(value)) found.push(`${name}="${value}"`);
    }
  }
  if (CJK.test(document.title) && !glossed(document.title)) found.push(`<title>${document.title}`);
  const browser = document.body.innerText.match(BROWSER_WORDS);
  if (browser) found.push(`the browser's own words: ${browser[0]}`);
  return found;
}
"""
"""The pages' language policy (docs/pages.md), checked on what a page shows now: every visible
text with Chinese in it also carries an English gloss (a word other than livevote, HTTP, API
or JSON) in the same element, and so do labels, titles, placeholders and the page title. Data
(names, intros, usernames) sits under translate="no" and is left out; the browser's own error
words ("Failed to fetch") are never shown."""


async def unglossed(page: Page) -> list[str]:
    """What the page shows now that breaks the language policy (see UNGLOSSED)."""
    found: list[str] = await page.evaluate(UNGLOSSED)
    return found
