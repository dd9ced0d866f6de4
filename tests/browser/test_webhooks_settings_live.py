"""Settings > Integrations > Webhooks in a real browser: a manager's mistakes are shown beside the
fields in Spanish, the new endpoint's secret is shown once, and a test event's attempt appears in
the delivery log (the endpoint's name never resolves: .invalid). SQLite only, like the other
browser tests."""

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.users.models import Role
from tertulia.users.service import do_add_member, do_create_user
from tests.browser.conftest import require_chromium, sign_in_at, watch
from tests.live_server import fresh_sqlite_database, serve_tertulia

pytestmark = pytest.mark.browser

MANAGER = ("marta@hooks.example.com", "marta-password")


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_chromium()
    database = fresh_sqlite_database(tmp_path_factory.mktemp("webhooks"))
    with database.transaction() as session:
        created = do_create_workspace_with_owner(session, "Tienda Co", "owner@hooks.example.com", "owner-password")
        manager = do_create_user(session, MANAGER[0], MANAGER[1], first_name="Marta")
        do_add_member(session, created.workspace.id, manager.id, Role.MANAGER)
    with serve_tertulia(database) as url:
        yield url
    database.dispose()


def _shot(page: Page, name: str) -> None:
    folder = os.environ.get("TERTULIA_SCREENSHOT_DIR")
    if folder:
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def test_a_manager_adds_an_endpoint_and_sends_a_test_event(browser: Browser, base_url: str) -> None:
    problems: list[str] = []
    context = browser.new_context(locale="es-ES")
    page = context.new_page()
    watch(page, problems)
    sign_in_at(page, base_url, "/settings/webhooks", *MANAGER)
    expect(page.get_by_test_id("settings-webhooks")).to_have_attribute("aria-current", "page")

    page.fill("#f-url", "http://hooks.example.invalid/tertulia")
    page.get_by_test_id("new-webhook").get_by_role("button").click()
    expect(page.locator("#url-error")).to_have_text("La URL debe usar https.")
    expect(page.locator("#events-error")).to_have_text("Elige al menos un evento.")
    expect(page.locator("#f-url")).to_have_value("http://hooks.example.invalid/tertulia")

    page.fill("#f-url", "https://hooks.example.invalid/tertulia")
    page.fill("#f-description", "Sincronización con el CRM")
    page.check("input[name=events][value='contact.created']")
    page.check("input[name=events][value='message.received']")
    page.get_by_test_id("new-webhook").get_by_role("button").click()
    secret = page.get_by_test_id("webhook-secret")
    expect(secret).to_have_value(re.compile(r"^whsec_"))
    expect(page.get_by_test_id("webhook-row")).to_have_count(1)
    _shot(page, "70-settings-webhooks.png")

    page.get_by_test_id("webhook-row").get_by_role("link", name="hooks.example.invalid", exact=False).click()
    page.wait_for_url(re.compile(r"/settings/webhooks/\d+$"))
    page.get_by_role("button", name="Enviar evento de prueba").click()
    row = page.get_by_test_id("delivery-row")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("webhook.test")
    for _ in range(40):  # the embedded queue tries it in the background; the name does not resolve
        if "cannot resolve" in page.get_by_test_id("webhook-deliveries").inner_text():
            break
        page.wait_for_timeout(250)
        page.reload()
    page.get_by_test_id("webhook-deliveries").locator("summary").first.click()
    expect(page.get_by_test_id("webhook-deliveries")).to_contain_text("cannot resolve hooks.example.invalid")
    _shot(page, "71-settings-webhook-log.png")
    context.close()
    assert problems == []
