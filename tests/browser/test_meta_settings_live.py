"""Settings > Channels for WhatsApp, Messenger and Instagram in a real browser, against the local fake
Graph APIs (tests/channels/fake_graph.py for WhatsApp, tests/channels/fake_meta_graph.py for the
Page and the Instagram account).

The manager fills the WhatsApp connect form with a phone number id that is not numeric and sees the
refusal beside the field in Spanish, corrects it and lands on the number's page with the callback
URL; connects a Facebook Page and an Instagram account (Instagram Login) the same way and sees each
one's page: the account's name, the callback URL and the verify token to paste into Meta's dashboard.
With TERTULIA_SCREENSHOT_DIR set, the screens are saved there (docs/screenshots/ is refreshed so).
SQLite only, like the other browser tests.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser, expect
from sqlalchemy import select

from tertulia.channels.adapters.messenger import PROFILES
from tertulia.channels.models import Channel
from tertulia.kit.db import Database
from tertulia.provisioning import do_create_workspace_with_owner
from tests.browser.conftest import require_chromium, shot, sign_in_at, watch
from tests.channels import meta_samples as meta
from tests.channels import whatsapp_samples as wa
from tests.channels.fake_graph import TOKEN
from tests.channels.fake_graph import FakeGraph as FakeWhatsApp
from tests.channels.fake_graph import fake_graph as fake_whatsapp
from tests.channels.fake_meta_graph import FakeGraph, fake_graph
from tests.live_server import fresh_sqlite_database, serve_tertulia

pytestmark = pytest.mark.browser

OWNER = ("owner@meta.example.com", "owner-password")
INSTAGRAM_TOKEN = "IGQVJ-test-token"


@dataclass
class Setup:
    url: str
    database: Database
    whatsapp: FakeWhatsApp
    page: FakeGraph
    instagram: FakeGraph


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    require_chromium()
    PROFILES.clear()
    database = fresh_sqlite_database(tmp_path_factory.mktemp("meta-settings"))
    with database.transaction() as session:
        do_create_workspace_with_owner(session, "Tienda Co", *OWNER)
    with (
        fake_whatsapp([]) as whatsapp,
        fake_graph(meta.PAGE_TOKEN) as page_graph,
        fake_graph(INSTAGRAM_TOKEN) as instagram,
        serve_tertulia(database) as url,
    ):
        page_graph.pages[meta.PAGE_ID] = "Café La Tertulia"
        instagram.accounts[meta.IG_ID] = "cafe.tertulia"
        yield Setup(url, database, whatsapp, page_graph, instagram)
    database.dispose()
    PROFILES.clear()


def _key(setup: Setup, channel_type: str) -> str:
    with setup.database.transaction(write=False) as session:
        key = session.scalar(select(Channel.key).where(Channel.type == channel_type))
    assert key is not None
    return key


def test_connect_whatsapp_messenger_and_instagram_from_settings(browser: Browser, setup: Setup) -> None:
    problems: list[str] = []
    context = browser.new_context(locale="es-ES", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    watch(page, problems)
    sign_in_at(page, setup.url, "/settings/channels", *OWNER)

    # WhatsApp: a phone number id that is not numeric is refused beside its field, in Spanish.
    form = page.get_by_test_id("connect-whatsapp")
    form.locator("input[name=phone_number_id]").fill("10654-abc")
    form.locator("input[name=business_account_id]").fill(wa.BUSINESS_ACCOUNT_ID)
    form.locator("input[name=access_token]").fill(TOKEN)
    form.locator("input[name=app_secret]").fill(wa.APP_SECRET)
    form.locator("input[name=name]").fill("Ventas MX")
    form.locator("summary").click()
    form.locator("input[name=api_base_url]").fill(setup.whatsapp.url)
    form.locator("button[type=submit]").click()
    form = page.get_by_test_id("connect-whatsapp")
    expect(form.locator("#phone_number_id-error")).to_have_text(
        "debe ser el identificador numérico que muestra el panel de Meta"
    )
    expect(form.locator("input[name=phone_number_id]")).to_have_attribute("aria-invalid", "true")
    expect(form.locator("input[name=phone_number_id]")).to_have_value("10654-abc")  # kept to correct
    shot(form.locator("xpath=.."), "62-settings-whatsapp-connect.png")  # the card: title, steps, form
    form.locator("input[name=phone_number_id]").fill(wa.PHONE_NUMBER_ID)
    # Secrets are never sent back to the page: typed again.
    form.locator("input[name=access_token]").fill(TOKEN)
    form.locator("input[name=app_secret]").fill(wa.APP_SECRET)
    form.locator("button[type=submit]").click()
    expect(page.get_by_test_id("callback-url")).to_have_value(f"{setup.url}/webhooks/{_key(setup, 'whatsapp')}")
    expect(page.get_by_test_id("phone-number-id")).to_have_text(wa.PHONE_NUMBER_ID)

    # Messenger: the Page is named by Meta; its page shows what to paste into the app's Webhooks.
    page.goto(f"{setup.url}/settings/channels")
    form = page.get_by_test_id("connect-messenger")
    form.locator("input[name=page_id]").fill(meta.PAGE_ID)
    form.locator("input[name=page_access_token]").fill(meta.PAGE_TOKEN)
    form.locator("input[name=app_secret]").fill(meta.APP_SECRET)
    form.locator("summary").click()
    form.locator("input[name=api_base_url]").fill(setup.page.url)
    form.locator("button[type=submit]").click()
    expect(page.get_by_test_id("account-name")).to_have_text("Café La Tertulia")
    expect(page.get_by_test_id("callback-url")).to_have_value(f"{setup.url}/webhooks/{_key(setup, 'messenger')}")
    expect(page.get_by_test_id("verify-token")).to_be_visible()
    expect(page.get_by_test_id("chat-menu-link")).to_be_visible()
    assert meta.PAGE_ID in setup.page.subscribed
    shot(page, "63-settings-messenger.png")

    # Instagram with Instagram Login: the account's @username names it.
    page.goto(f"{setup.url}/settings/channels")
    form = page.get_by_test_id("connect-instagram")
    form.get_by_test_id("instagram-login").select_option("instagram")
    form.locator("input[name=access_token]").fill(INSTAGRAM_TOKEN)
    form.locator("input[name=app_secret]").fill(meta.APP_SECRET)
    form.locator("summary").click()
    form.locator("input[name=api_base_url]").fill(setup.instagram.url)
    form.locator("button[type=submit]").click()
    expect(page.get_by_test_id("account-name")).to_contain_text("cafe.tertulia")
    expect(page.get_by_test_id("callback-url")).to_have_value(f"{setup.url}/webhooks/{_key(setup, 'instagram')}")
    expect(page.get_by_test_id("verify-token")).to_be_visible()
    assert "me" in setup.instagram.subscribed
    shot(page, "64-settings-instagram.png")
    context.close()
    assert problems == []
