"""What every browser test shares: Debian's Chromium, a console watcher and signing in through the
login page. Browser tests share the machine with the rest of the suite, so assertions get room."""

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"

# Playwright's default of 5 s is tight while two test workers and PostgreSQL share two cores;
# a passing assertion returns as soon as it holds, so this only matters when the machine is busy.
expect.set_options(timeout=15_000)


def require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require_chromium()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


def watch(page: Page, problems: list[str]) -> None:
    """Collect script errors and CSP violations; expected 4xx answers (422, 403) are logged by
    Chromium too and are not problems."""

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and "status of 4" not in message.text:
            problems.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.set_default_timeout(10_000)


def sign_in_at(page: Page, base_url: str, path: str, email: str, password: str) -> None:
    """Open `path` signed out, sign in on the login page it sends us to, land back on `path`."""
    page.goto(f"{base_url}{path}")
    page.wait_for_url(re.compile(r"/login\?next="))
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(path) + "$"))


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    problems: list[str] = []
    watch(page, problems)
    yield page
    context.close()
    # A CSP violation or a script error would show up here.
    assert problems == []
