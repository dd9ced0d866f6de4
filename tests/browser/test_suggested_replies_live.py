"""Suggested replies in a real browser: a customer asks through the web chat, the agent opens the
conversation, sees the knowledge's best answers under "Respuestas sugeridas" and puts one into the
composer with one click, then closes the conversation turning the paused bot back on (no script
error, no CSP violation)."""

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser, expect
from sqlalchemy import select

from tertulia.assistant.service import check_entry_values, do_create_entry
from tertulia.channels.service import do_create_channel
from tertulia.conversations import outbox as _outbox  # noqa: F401  (registers the queue tasks)
from tertulia.conversations.models import Conversation
from tertulia.kit.db import Database
from tertulia.users.models import Role
from tests.browser.conftest import customer_writes, require_chromium, seed_workspace, sign_in_at, watch
from tests.live_server import fresh_sqlite_database, immediate_deliveries, serve_tertulia

pytestmark = pytest.mark.browser

AGENT = ("rosa@suggest.example.com", "rosa-password")
SHOP = "https://shop.example"
ANSWER = "Sí, enviamos a todo el país en 48 horas."


@dataclass
class Setup:
    url: str
    database: Database
    conversation_id: int


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    require_chromium()
    database: Database = fresh_sqlite_database(tmp_path_factory.mktemp("suggest"))
    with database.transaction() as session:
        seeded = seed_workspace(
            session,
            "Tienda Co",
            "owner@suggest.example.com",
            AGENT,
            role=Role.AGENT,
            first_name="Rosa",
            last_name="Díaz",
        )
        channel = do_create_channel(session, seeded.owner, "webchat", "Tienda", {"allowed_origins": [SHOP]})
        key = channel.key
        for raw in (
            {"question": "¿Hacen envíos a domicilio?", "alternatives": ["¿Mandan a casa?"], "answer": ANSWER},
            {"question": "¿Cuál es el horario?", "alternatives": ["¿A qué hora abren?"], "answer": "De 9 a 19 h."},
        ):
            values = check_entry_values(session, seeded.workspace_id, {**raw, "language": "es"})
            do_create_entry(session, seeded.owner, values)
    with immediate_deliveries(database), serve_tertulia(database) as base:
        customer_writes(base, key, SHOP, "Lucía Pérez", "hola, ¿hacen envios a domicilio?", "suggest-0001")
        with database.transaction(write=False) as session:
            conversation_id = session.scalars(select(Conversation.id)).one()
        yield Setup(base, database, conversation_id)
    database.dispose()


def test_agent_inserts_a_suggested_reply(browser: Browser, setup: Setup) -> None:
    problems: list[str] = []
    context = browser.new_context(locale="es-ES")
    page = context.new_page()
    watch(page, problems)
    with setup.database.transaction() as session:
        conversation = session.get(Conversation, setup.conversation_id)
        assert conversation is not None
        conversation.bot_paused = True
    sign_in_at(page, setup.url, f"/messages/{setup.conversation_id}", *AGENT)
    bar = page.get_by_test_id("suggestions")
    expect(bar).to_be_visible()
    expect(bar).to_contain_text("Respuestas sugeridas")
    first = bar.get_by_test_id("suggestion").first
    expect(first).to_have_text(ANSWER)
    first.click()
    box = page.get_by_test_id("composer-input")
    expect(box).to_have_value(ANSWER)
    expect(box).to_be_focused()

    # Closing with "turn the bot back on" (offered because the bot is paused here) resumes it.
    page.get_by_test_id("close-conversation").click()
    resume = page.get_by_test_id("close-resume-bot")
    expect(resume).to_be_visible()
    expect(page.locator("[data-close-resume-field]")).to_contain_text("Volver a encender el bot")
    resume.check()
    page.get_by_test_id("confirm-close").click()
    expect(page.get_by_test_id("reopen-conversation")).to_be_visible()
    with setup.database.transaction(write=False) as session:
        closed = session.get(Conversation, setup.conversation_id)
        assert closed is not None
        assert (closed.status.value, closed.bot_paused) == ("closed", False)
    context.close()
    assert problems == []
