"""What every browser test shares: Debian's Chromium (one per module), a console watcher, signing
in through the login page, a served workspace with one member, a new workflow draft, a customer
writing through the web chat, and screenshots for the docs. Browser tests share the machine with
the rest of the suite, so assertions get room."""

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, expect, sync_playwright
from sqlalchemy import select
from sqlalchemy.orm import Session

from tertulia.kit.db import Database
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.users.models import Role
from tertulia.users.permissions import Actor
from tertulia.users.service import do_add_member, do_create_user
from tertulia.workflows.models import WorkflowVersion
from tests.live_server import fresh_sqlite_database, serve_tertulia

CHROMIUM = "/usr/bin/chromium"

# Playwright's default of 5 s is tight while two test workers and PostgreSQL share two cores;
# a passing assertion returns as soon as it holds, so this only matters when the machine is busy.
expect.set_options(timeout=15_000)


def require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")


# One per module, not per test process: a module's own fixtures (a fake provider, the queue made
# immediate, its server) are set up before it launches; with one Chromium for the whole process,
# launched before them, tests/browser/test_broadcasts_live.py's first page never finished loading.
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


def wait_in_page(page: Page, expression: str, arg: Any = None, timeout: float = 15.0) -> None:
    """Until `expression` (or the function it is, called with `arg`) is true in the page, polled
    from here. Playwright's `wait_for_function` polls with a predicate it evals inside the page,
    which the app's Content-Security-Policy (no 'unsafe-eval') refuses whenever the condition is
    not already true at the first look; `page.evaluate` goes through the debugger protocol."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression, arg):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout:g} s: {expression}")
        time.sleep(0.05)


def sign_in_at(page: Page, base_url: str, path: str, email: str, password: str) -> None:
    """Open `path` signed out, sign in on the login page it sends us to, land back on `path`."""
    page.goto(f"{base_url}{path}")
    page.wait_for_url(re.compile(r"/login\?next="))
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(path) + "$"))


def create_workflow_draft(
    page: Page, base_url: str, member: tuple[str, str], name: str, create_label: str = "Crear borrador"
) -> int:
    """Sign `member` (email, password) in on the workflows page and create a draft called `name` with
    the button labelled `create_label` (in the member's language); the builder is open and the
    result is the workflow's id."""
    sign_in_at(page, base_url, "/workflows", *member)
    page.fill("#f-name", name)
    page.get_by_role("button", name=create_label).click()
    page.wait_for_url(re.compile(r"/workflows/\d+$"))
    return int(page.url.rsplit("/", 1)[1])


def saved_definition(database: Database, workflow_id: int) -> dict[str, Any]:
    """The definition of the workflow's newest version, as stored."""
    with database.transaction(write=False) as session:
        saved = session.scalars(
            select(WorkflowVersion.definition)
            .where(WorkflowVersion.workflow_id == workflow_id)
            .order_by(WorkflowVersion.id.desc())
        ).first()
    assert saved is not None
    return saved


def _watched_page(browser: Browser, locale: str) -> Iterator[Page]:
    context = browser.new_context(locale=locale)
    page = context.new_page()
    problems: list[str] = []
    watch(page, problems)
    yield page
    context.close()
    # A CSP violation or a script error would show up here.
    assert problems == []


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    yield from _watched_page(browser, "en-US")


@pytest.fixture
def spanish_page(browser: Browser) -> Iterator[Page]:
    """A page of its own context in Spanish (es-ES), watched like `page`."""
    yield from _watched_page(browser, "es-ES")


def shot(target: Page | Locator, name: str) -> None:
    """With TERTULIA_SCREENSHOT_DIR set, a screenshot for the docs: the whole page, or one element."""
    folder = os.environ.get("TERTULIA_SCREENSHOT_DIR")
    if not folder:
        return
    if isinstance(target, Page):
        target.screenshot(path=str(Path(folder) / name), full_page=True)
    else:
        target.screenshot(path=str(Path(folder) / name))


@dataclass
class Seeded:
    """A workspace, its owner (as an actor) and one member."""

    workspace_id: int
    owner: Actor
    member_id: int


def seed_workspace(
    session: Session,
    name: str,
    owner_email: str,
    member: tuple[str, str],
    *,
    role: Role = Role.MANAGER,
    first_name: str = "",
    last_name: str = "",
    **workspace: Any,
) -> Seeded:
    """Workspace `name` (with `workspace` settings), owned by `owner_email`, with `member` (email,
    password) in `role`."""
    created = do_create_workspace_with_owner(session, name, owner_email, "owner-password", **workspace)
    workspace_id = created.workspace.id
    user = do_create_user(session, member[0], member[1], first_name=first_name, last_name=last_name)
    do_add_member(session, workspace_id, user.id, role)
    owner = Actor(workspace_id=workspace_id, kind="user", user_id=created.owner.id, role=Role.OWNER)
    return Seeded(workspace_id, owner, user.id)


@dataclass
class Served:
    """The app served on a fresh SQLite database holding one seeded workspace."""

    url: str
    database: Database
    workspace_id: int


@contextmanager
def serve_workspace(
    directory: Path, name: str, owner_email: str, member: tuple[str, str], **seed: Any
) -> Iterator[Served]:
    """A fresh database in `directory` with `seed_workspace(name, owner_email, member, **seed)`,
    served until the block ends; the database is disposed of after."""
    require_chromium()
    database = fresh_sqlite_database(directory)
    with database.transaction() as session:
        workspace_id = seed_workspace(session, name, owner_email, member, **seed).workspace_id
    try:
        with serve_tertulia(database) as url:
            yield Served(url, database, workspace_id)
    finally:
        database.dispose()


def customer_writes(base_url: str, channel_key: str, origin: str, name: str, text: str, client_msg_id: str) -> None:
    """A customer called `name` starts a web-chat session from `origin` and says `text`, through the
    widget's own API (so replies can reach them)."""
    headers = {"Origin": origin}
    # httpx's default 5 s: a just-started server on a loaded machine answered its first request later.
    timeout = 30.0
    started = httpx.post(
        f"{base_url}/widget/{channel_key}/session", headers=headers, json={"name": name}, timeout=timeout
    )
    assert started.status_code == 200, started.text
    said = httpx.post(
        f"{base_url}/widget/{channel_key}/messages",
        headers={**headers, "Authorization": f"Bearer {started.json()['access_token']}"},
        json={"text": text, "client_msg_id": client_msg_id},
        timeout=timeout,
    )
    assert said.status_code == 201, said.text
