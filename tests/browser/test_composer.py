"""The inbox composer in a real browser: emoji at the caret, files attached and sent, @mentions.

One uvicorn server on a fresh SQLite database; a customer has written through the web chat. The agent
inserts an emoji between two words, attaches an image and a text file (a file of a refused type is
stopped before uploading), sends them, sees the image as a thumbnail and the text file as a download
link, then writes an internal note mentioning a teammate picked by typing part of her name.
"""

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser, FilePayload, expect
from sqlalchemy import func, select

from tertulia.channels.service import do_create_channel
from tertulia.conversations import outbox as _outbox  # noqa: F401  (registers the queue tasks)
from tertulia.conversations.models import Conversation, Mention, Message, StoredFile
from tertulia.kit.db import Database
from tertulia.users.models import Role
from tertulia.users.service import do_add_member, do_create_user
from tests.browser.conftest import customer_writes, require_chromium, seed_workspace, sign_in_at, wait_in_page, watch
from tests.live_server import fresh_sqlite_database, immediate_deliveries, serve_tertulia

pytestmark = pytest.mark.browser

AGENT = ("marta@composer.example.com", "marta-password")
TEAMMATE = ("joaquina@composer.example.com", "x-password")
SHOP = "https://shop.example"


@dataclass
class Setup:
    url: str
    database: Database
    teammate_id: int
    conversation_id: int


def _png(width: int, height: int) -> bytes:
    """A real (tiny, red) PNG, so the browser can decode the thumbnail."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    require_chromium()
    database = fresh_sqlite_database(tmp_path_factory.mktemp("composer"))
    with database.transaction() as session:
        seeded = seed_workspace(
            session, "Tienda Co", "owner@composer.example.com", AGENT, first_name="Marta", last_name="Gil"
        )
        teammate = do_create_user(session, *TEAMMATE, first_name="Joaquina", last_name="Núñez")
        do_add_member(session, seeded.workspace_id, teammate.id, Role.AGENT)
        channel = do_create_channel(session, seeded.owner, "webchat", "Tienda", {"allowed_origins": [SHOP]})
        teammate_id, key = teammate.id, channel.key
    with immediate_deliveries(database), serve_tertulia(database) as base:
        customer_writes(base, key, SHOP, "Lucía Pérez", "¿Me mandáis una foto?", "composer-0001")
        with database.transaction(write=False) as session:
            conversation_id = session.scalars(select(Conversation.id)).one()
        yield Setup(base, database, teammate_id, conversation_id)
    database.dispose()


def test_emoji_attachments_and_mentions(browser: Browser, setup: Setup) -> None:
    problems: list[str] = []
    context = browser.new_context(locale="es-ES")
    page = context.new_page()
    watch(page, problems)
    sign_in_at(page, setup.url, f"/messages/{setup.conversation_id}", *AGENT)
    thread = page.get_by_test_id("thread")
    expect(thread.locator(".msg-incoming .msg-text")).to_have_text("¿Me mandáis una foto?")

    # An emoji found by its Spanish name lands where the caret was; Escape closes the panel.
    box = page.get_by_test_id("composer-input")
    box.fill("Aquí va !")
    box.evaluate("b => b.setSelectionRange(8, 8)")
    page.get_by_test_id("emoji-button").click()
    panel = page.get_by_test_id("emoji-panel")
    expect(panel).to_be_visible()
    expect(page.get_by_test_id("emoji-search")).to_be_focused()
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(page.get_by_test_id("emoji-button")).to_be_focused()
    page.keyboard.press("Enter")
    expect(panel).to_be_visible()
    page.get_by_test_id("emoji-search").fill("camara")
    expect(panel.locator("[data-emoji='📷']")).to_have_attribute("aria-label", "cámara de fotos")
    expect(panel.locator("[data-emoji='🎉']")).to_have_count(0)
    page.get_by_test_id("emoji-search").fill("camera")
    panel.locator("[data-emoji='📷']").click()
    expect(panel).to_be_hidden()
    expect(box).to_have_value("Aquí va 📷!")

    # A refused type is stopped before it is uploaded; an image and a text file are uploaded.
    files = page.get_by_test_id("file-input")
    files.set_input_files({"name": "datos.zip", "mimeType": "application/zip", "buffer": b"PK\x03\x04"})
    expect(page.get_by_test_id("composer-error")).to_have_text("No se pueden enviar archivos de tipo application/zip.")
    files.set_input_files(
        [
            FilePayload(name="foto <i onmouseover=x>.png", mimeType="image/png", buffer=_png(24, 16)),
            FilePayload(name="nota.txt", mimeType="text/plain", buffer=b"talla M"),
        ]
    )
    chips = page.get_by_test_id("composer-files")
    expect(chips.locator(".file-chip")).to_have_count(2)
    expect(chips.locator(".file-chip").first).to_contain_text("foto <i onmouseover=x>.png")
    expect(chips.locator(".file-chip.uploading")).to_have_count(0)
    expect(page.get_by_test_id("composer-error")).to_have_text("")
    # Removing a chip takes the file off the message.
    files.set_input_files({"name": "otra.txt", "mimeType": "text/plain", "buffer": b"no"})
    expect(chips.locator(".file-chip")).to_have_count(3)
    expect(chips.locator(".file-chip.uploading")).to_have_count(0)
    page.get_by_role("button", name="Quitar otra.txt").click()
    expect(chips.locator(".file-chip")).to_have_count(2)

    box.press("Enter")
    sent = thread.locator(".msg-outgoing").last
    expect(sent.locator(".msg-text")).to_have_text("Aquí va 📷!")
    image = sent.locator(".msg-image img")
    expect(image).to_have_attribute("alt", "foto <i onmouseover=x>.png")
    expect(sent.locator("a.msg-file")).to_contain_text("nota.txt")
    wait_in_page(page, "img => img.complete && img.naturalWidth === 24", image.element_handle())
    expect(chips.locator(".file-chip")).to_have_count(0)
    # The history renders attachments the same way after a reload (from the messages API).
    page.reload()
    expect(thread.locator(".msg-outgoing .msg-image img")).to_have_attribute("alt", "foto <i onmouseover=x>.png")

    # Joaquina has the inbox open elsewhere, on another conversation's list.
    teammate_context = browser.new_context(locale="es-ES")
    teammate = teammate_context.new_page()
    watch(teammate, problems)
    sign_in_at(teammate, setup.url, "/messages", *TEAMMATE)
    expect(teammate.locator("[data-live=on]")).to_have_count(1)  # her socket is open

    # An internal note: "@joa" offers Joaquina Núñez; Enter inserts her name; the note mentions her.
    page.get_by_test_id("mode-note").click()
    box.press_sequentially("Mira esto @nún")
    menu = page.get_by_test_id("mention-menu")
    expect(menu.locator("[data-member]")).to_have_text(["Joaquina Núñez"])
    box.press("Enter")
    expect(box).to_have_value("Mira esto @Joaquina Núñez ")
    box.press_sequentially("¿la tenemos?")
    box.press("Enter")
    note = thread.locator(".msg-comment").last
    expect(note.locator(".mention")).to_have_text("@Joaquina Núñez")
    expect(note.locator(".msg-text")).to_have_text("Mira esto @Joaquina Núñez ¿la tenemos?")

    # Joaquina is told at once, in her language, and the notice opens the conversation.
    toast = teammate.get_by_test_id("mention-toast")
    expect(toast).to_contain_text("Marta Gil te mencionó en una nota")
    toast.click()
    expect(teammate.get_by_test_id("thread").locator(".msg-comment .mention").last).to_have_text("@Joaquina Núñez")
    teammate_context.close()

    with setup.database.transaction(write=False) as session:
        outgoing = session.scalars(select(Message).where(Message.direction == "outgoing")).one()
        assert [(a["name"], a["content_type"]) for a in outgoing.attachments] == [
            ("foto <i onmouseover=x>.png", "image/png"),
            ("nota.txt", "text/plain"),
        ]
        # The chip taken off was deleted on the server too, not left behind.
        assert session.scalar(select(StoredFile).where(StoredFile.name == "otra.txt")) is None
        stored = session.scalars(select(StoredFile).where(StoredFile.name == "nota.txt")).one()
        assert stored.conversation_id == setup.conversation_id
        mentions = list(session.execute(select(Mention.user_id, Mention.conversation_id)))
        assert mentions == [(setup.teammate_id, setup.conversation_id)]

    context.close()
    assert problems == []


def test_a_lone_surrogate_is_refused_beside_the_composer(browser: Browser, setup: Setup) -> None:
    """A paste cut in the middle of an emoji leaves an unpaired surrogate in the box: the composer
    says so beside it, in the reader's language, and sends nothing (the API refuses it too)."""
    problems: list[str] = []
    context = browser.new_context(locale="es-ES")
    page = context.new_page()
    watch(page, problems)
    sign_in_at(page, setup.url, f"/messages/{setup.conversation_id}", *AGENT)
    box = page.get_by_test_id("composer-input")
    expect(page.get_by_test_id("thread").locator(".msg-incoming .msg-text")).to_have_text("¿Me mandáis una foto?")
    with setup.database.transaction(write=False) as session:
        before = session.scalar(select(func.count()).select_from(Message))
    box.evaluate("b => { b.value = 'hola \\ud83d'; }")
    box.press("Enter")
    expect(page.get_by_test_id("composer-error")).to_have_text(
        "El mensaje no debe contener caracteres NUL ni sustitutos sin pareja."
    )
    with setup.database.transaction(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Message)) == before
    assert problems == []
    context.close()
