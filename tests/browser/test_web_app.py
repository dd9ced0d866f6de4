"""The web app in a real browser: Debian's Chromium driven by Playwright against a real uvicorn server.

These tests run on SQLite only: the server gets a fresh SQLite database of its own, migrated from
empty. What they cover that the TestClient tests cannot: htmx swaps, the CSRF header added by
app.js, Alpine's CSP build, and that the Content-Security-Policy breaks nothing.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Page, expect

from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.users.models import Role
from tertulia.users.service import do_add_member, do_create_user
from tests.browser.conftest import require_chromium, sign_in_at
from tests.live_server import fresh_sqlite_database, serve_tertulia

pytestmark = pytest.mark.browser

OWNER = ("owner@browser.example.com", "owner-password")
AGENT = ("agent@browser.example.com", "agent-password")


@dataclass
class Server:
    url: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    require_chromium()
    database = fresh_sqlite_database(tmp_path_factory.mktemp("browser"))
    with database.transaction() as session:
        created = do_create_workspace_with_owner(
            session, "Browser Co", OWNER[0], OWNER[1], default_country="MX", owner_first_name="Olga"
        )
        agent = do_create_user(session, AGENT[0], AGENT[1], first_name="Ana")
        do_add_member(session, created.workspace.id, agent.id, Role.AGENT)
    with serve_tertulia(database) as url:
        yield Server(url)
    database.dispose()


def sign_in(page: Page, server: Server, email: str, password: str) -> None:
    sign_in_at(page, server.url, "/contacts", email, password)


def test_agent_day_with_contacts(page: Page, server: Server) -> None:
    sign_in(page, server, *OWNER)
    expect(page.locator(".topbar h1")).to_have_text("Contacts")

    page.click("[data-testid=switch-language]")
    expect(page.locator(".topbar h1")).to_have_text("Contactos")
    page.click("[data-testid=switch-language]")
    expect(page.locator(".topbar h1")).to_have_text("Contacts")

    page.click("[data-testid=new-contact]")
    page.fill("input[name=first_name]", "Zoe")
    page.fill("input[name=last_name]", "Quintero")
    page.fill("input[name=email]", "zoe@")
    page.click("form.card button[type=submit]")
    expect(page.locator("#email-error")).to_be_visible()
    expect(page.locator("input[name=email]")).to_have_value("zoe@")
    expect(page.locator("input[name=first_name]")).to_have_value("Zoe")
    page.fill("input[name=email]", "zoe@example.com")
    page.click("form.card button[type=submit]")
    page.wait_for_url(re.compile(r"/contacts/\d+$"))
    expect(page.locator(".contact-title")).to_have_text("Zoe Quintero")

    page.fill(".tag-add input[name=tag]", "vip")
    page.click(".tag-add button[type=submit]")
    expect(page.locator("#tags .tag-list")).to_contain_text("vip")

    page.goto(f"{server.url}/contacts")
    page.keyboard.press("/")
    page.keyboard.type("quint")
    expect(page.locator("#contact-rows tr[data-row]")).to_have_count(1)
    page.click("#contact-rows a.contact-cell")
    page.wait_for_url(re.compile(r"/contacts/\d+$"))

    page.click(".prop[data-field=last_name] .edit-button")
    editor = page.locator("form.prop.editing input[name=value]")
    editor.fill("Quintero-Díaz")
    editor.press("Enter")
    expect(page.locator(".prop[data-field=last_name] .value")).to_have_text("Quintero-Díaz")
    page.click(".prop[data-field=phone] .edit-button")
    page.locator("form.prop.editing input[name=value]").fill("12")
    page.locator("form.prop.editing button[type=submit]").click()
    expect(page.locator("form.prop.editing .field-error")).to_be_visible()
    expect(page.locator("form.prop.editing input[name=value]")).to_have_value("12")


def test_agent_is_refused_settings(page: Page, server: Server) -> None:
    sign_in(page, server, *AGENT)
    expect(page.locator("nav a[href='/settings']")).to_have_count(0)
    response = page.goto(f"{server.url}/settings")
    assert response is not None
    assert response.status == 403
    expect(page.locator("h1")).to_have_text("You do not have access to this page")
