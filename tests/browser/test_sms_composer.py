"""The composer of an SMS conversation counts segments as the agent types, in a real browser, the way
channels/adapters/sms.py counts them: GSM-7 (160, 153 per part, extension characters count two) or
UCS-2 (70, 67 per part, an emoji counts two); a note, which goes to no channel, shows no count.

With TERTULIA_SCREENSHOT_DIR set, the composer and the SMS channel's settings page are saved there
(docs/screenshots/ is refreshed so)."""

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tertulia.channels.adapters import sms
from tertulia.channels.protocol import InboundMessage
from tertulia.channels.service import do_create_channel
from tertulia.conversations.inbound import do_receive
from tertulia.kit import queue
from tertulia.kit.db import Database
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.users.models import Role
from tertulia.users.permissions import Actor
from tests.browser.conftest import require_chromium, sign_in_at, watch
from tests.live_server import fresh_sqlite_database, serve_tertulia

pytestmark = pytest.mark.browser

OWNER = ("owner@sms.example.com", "owner-password")


@dataclass
class Setup:
    url: str
    conversation_id: int
    channel_id: int


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    require_chromium()
    database: Database = fresh_sqlite_database(tmp_path_factory.mktemp("sms-composer"))
    with database.transaction() as session:
        created = do_create_workspace_with_owner(session, "Tienda Co", *OWNER, default_language="en")
        owner = Actor(workspace_id=created.workspace.id, kind="user", user_id=created.owner.id, role=Role.OWNER)
        channel = do_create_channel(
            session,
            owner,
            "twilio",
            "Twilio SMS",
            {"account_sid": "AC" + "0" * 32, "from_number": "+14155550100"},
            {"auth_token": "a" * 32},
        )
        received = do_receive(
            session,
            channel,
            InboundMessage(sender_id="+34612345678", provider_message_id="SM1", text="Hola", phone="+34612345678"),
        )
        conversation_id, channel_id = received.conversation.id, channel.id
    queue.use_database(database)
    with serve_tertulia(database) as base:
        yield Setup(base, conversation_id, channel_id)
    queue.use_database(None)
    database.dispose()


CASES = [
    "a" * 160,
    "a" * 161,
    "€" * 81,
    "a" * 69 + "😀",
    "¿Tienen talla M? Sí, ñandú.",
]


def test_the_composer_counts_sms_segments(browser: Browser, setup: Setup) -> None:
    problems: list[str] = []
    page = browser.new_context().new_page()
    watch(page, problems)
    sign_in_at(page, setup.url, f"/messages/{setup.conversation_id}", *OWNER)
    counter = page.get_by_test_id("composer-segments")
    box = page.get_by_test_id("composer-input")
    expect(counter).to_have_text("SMS: 0 segment(s) · 0/160 (GSM-7)")
    for text in CASES:
        box.fill(text)
        counted = sms.segments(text)
        limit = counted.per_segment * counted.segments if counted.segments > 1 else counted.per_segment
        expect(counter).to_have_text(
            f"SMS: {counted.segments} segment(s) · {counted.units}/{limit} ({counted.encoding})"
        )
    # The acceptance case: 70 characters with one emoji is two segments.
    box.fill("b" * 69 + "👍")
    expect(counter).to_contain_text("SMS: 2 segment(s)")
    folder = os.environ.get("TERTULIA_SCREENSHOT_DIR")
    if folder:
        box.fill("¡Hola! Tu pedido sale hoy 🚚 y llega el jueves.")
        page.screenshot(path=str(Path(folder) / "55-inbox-sms-segments.png"))
    page.get_by_test_id("mode-note").click()
    expect(counter).to_be_hidden()
    page.goto(f"{setup.url}/settings/channels/{setup.channel_id}")
    expect(page.get_by_test_id("sms-status")).to_contain_text("Twilio SMS")
    expect(page.get_by_test_id("callback-url")).to_be_visible()
    if folder:
        page.screenshot(path=str(Path(folder) / "56-settings-sms.png"), full_page=True)
    assert problems == []
