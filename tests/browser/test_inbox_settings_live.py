"""Settings > Snippets in a real browser: a manager saves a snippet (after fixing a bad variable) and
finds it offered by "/" in the inbox composer, filled in for the customer. SQLite only, like the other
browser tests.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser, expect

from tertulia.channels.protocol import InboundMessage
from tertulia.channels.service import do_create_channel
from tertulia.conversations import inbound
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.users.models import Role
from tertulia.users.permissions import Actor
from tertulia.users.service import do_add_member, do_create_user
from tests.browser.conftest import require_chromium, sign_in_at, watch
from tests.live_server import fresh_sqlite_database, serve_tertulia

pytestmark = pytest.mark.browser

MANAGER = ("marta@settings.example.com", "marta-password")


@dataclass
class Setup:
    url: str
    conversation_id: int


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    require_chromium()
    database = fresh_sqlite_database(tmp_path_factory.mktemp("snippets"))
    with database.transaction() as session:
        created = do_create_workspace_with_owner(session, "Tienda Co", "owner@settings.example.com", "owner-password")
        workspace_id = created.workspace.id
        manager = do_create_user(session, MANAGER[0], MANAGER[1], first_name="Marta")
        do_add_member(session, workspace_id, manager.id, Role.MANAGER)
        owner = Actor(workspace_id=workspace_id, kind="user", user_id=created.owner.id, role=Role.OWNER)
        channel = do_create_channel(session, owner, "webchat", "Tienda", {"allowed_origins": ["https://shop.example"]})
        received = inbound.do_receive(
            session,
            channel,
            InboundMessage(
                sender_id="visitor-1", provider_message_id="m-1", text="¿Cuánto tarda el envío?", first_name="Lucía"
            ),
        )
        conversation_id = received.conversation.id
    with serve_tertulia(database) as base:
        yield Setup(base, conversation_id)
    database.dispose()


def test_a_snippet_saved_in_settings_is_offered_in_the_composer(browser: Browser, setup: Setup) -> None:
    problems: list[str] = []
    context = browser.new_context(locale="es-ES")
    page = context.new_page()
    watch(page, problems)

    sign_in_at(page, setup.url, "/settings/snippets", *MANAGER)
    expect(page.get_by_test_id("settings-snippets")).to_have_attribute("aria-current", "page")

    # A misspelt variable: the error is beside the text, in Spanish, and what was typed is kept.
    page.fill("#f-shortcut", "envio")
    page.fill("#f-text", "Hola {{contact.nombre}}, el envío tarda 2 días.")
    page.get_by_test_id("create-snippet").click()
    expect(page.locator("#text-error")).to_contain_text("Variable desconocida: {{contact.nombre}}")
    expect(page.locator("#f-shortcut")).to_have_value("envio")
    expect(page.locator("#f-text")).to_have_value("Hola {{contact.nombre}}, el envío tarda 2 días.")

    page.fill("#f-text", 'Hola {{contact.first_name | "cliente"}}, el envío tarda 2 días.')
    page.get_by_test_id("create-snippet").click()
    page.wait_for_url(re.compile(r"/settings/snippets$"))
    row = page.get_by_test_id("snippet-row")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("/envio")
    expect(page.locator("#text-error")).to_have_count(0)

    # In the inbox, "/" offers it and inserting fills in the customer's name.
    page.goto(f"{setup.url}/messages/{setup.conversation_id}")
    box = page.get_by_test_id("composer-input")
    box.click()
    box.press_sequentially("/envi")
    expect(page.locator("[data-snippet-menu] [data-snippet=envio]")).to_be_visible()
    box.press("Enter")
    expect(box).to_have_value("Hola Lucía, el envío tarda 2 días.")

    context.close()
    assert problems == []
