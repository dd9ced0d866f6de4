"""Settings > Integrations > Webhooks in a real browser: a manager's mistakes are shown beside the
fields in Spanish, the new endpoint's secret is shown once, and a test event's attempt appears in
the delivery log (the endpoint's name never resolves: .invalid). SQLite only, like the other
browser tests."""

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import serve_workspace, shot, sign_in_at

pytestmark = pytest.mark.browser

MANAGER = ("marta@hooks.example.com", "marta-password")


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("webhooks")
    with serve_workspace(directory, "Tienda Co", "owner@hooks.example.com", MANAGER, first_name="Marta") as served:
        yield served.url


def test_a_manager_adds_an_endpoint_and_sends_a_test_event(spanish_page: Page, base_url: str) -> None:
    page = spanish_page
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
    shot(page, "70-settings-webhooks.png")

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
    shot(page, "71-settings-webhook-log.png")
