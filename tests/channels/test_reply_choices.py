"""Reply choices in one shape (the API's `quick_reply`) on every channel that has them, on both
databases against the local fake providers: Messenger and Instagram send them as quick replies,
Telegram as an inline keyboard (WhatsApp's interactive messages: test_whatsapp_outbound.py); each
provider's limits are 422s naming the rule before any provider call; the older `quick_replies`
field keeps working."""

import time
from collections.abc import Iterator
from typing import Any

import pytest
import telegram
from fastapi.testclient import TestClient

from tertulia.channels.adapters.messenger import PROFILES
from tertulia.channels.models import Channel
from tertulia.channels.protocol import ReplyChoices
from tertulia.channels.registry import get_adapter
from tertulia.channels.reply_choices import check
from tertulia.kit.db import Database
from tertulia.kit.errors import ValidationFailed
from tests.channels import meta_samples as meta
from tests.channels import test_instagram as instagram
from tests.channels import test_messenger as messenger
from tests.channels import test_telegram as tg
from tests.channels.fake_meta_graph import FakeGraph, fake_graph
from tests.channels.fake_telegram import FakeTelegram, fake_telegram
from tests.channels.support import channel_messages
from tests.conftest import Tenant

COLOURS = {"buttons": [{"id": "AZUL", "title": "Azul"}, {"id": "ROJO", "title": "Rojo"}]}


@pytest.fixture
def page_graph() -> Iterator[FakeGraph]:
    PROFILES.clear()
    with fake_graph(meta.PAGE_TOKEN) as server:
        server.pages[meta.PAGE_ID] = "Café La Tertulia"
        server.profiles[meta.PSID] = {"first_name": "Lucía", "last_name": "Gómez"}
        yield server
    PROFILES.clear()


@pytest.fixture
def ig_graph() -> Iterator[FakeGraph]:
    PROFILES.clear()
    with fake_graph(instagram.TOKEN) as server:
        server.accounts[meta.IG_ID] = "cafe.tertulia"
        server.profiles[meta.IGSID] = {"name": "Lucía Gómez", "username": "lucia.g"}
        yield server
    PROFILES.clear()


@pytest.fixture
def bot() -> Iterator[FakeTelegram]:
    with fake_telegram() as server:
        server.add_bot()
        yield server


def _sender(client: TestClient, tenant: Tenant, url: str, channel_id: int) -> Any:
    def send(**message: Any) -> Any:
        return client.post(url, headers=tenant.headers, json={"channel_id": channel_id, "message": message})

    return send


def _messenger(client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph) -> tuple[Channel, Any]:
    channel = messenger._connect(client, db, tenant, graph)
    assert messenger._post(client, channel, meta.envelope(meta.TEXT)) == 200
    contact_id = messenger._messages(db, channel)[0].contact_id
    return channel, _sender(client, tenant, f"/api/v1/contacts/id:{contact_id}/messages", channel.id)


@pytest.mark.usefixtures("immediate_queue")
def test_messenger_sends_reply_choices_as_quick_replies_and_keeps_the_older_field(
    client: TestClient, db: Database, tenant: Tenant, page_graph: FakeGraph
) -> None:
    _, send = _messenger(client, db, tenant, page_graph)
    assert send(type="quick_reply", text="¿Qué color?", quick_reply=COLOURS).status_code == 201
    older = send(text="¿Qué color?", quick_replies=[{"title": "Azul", "payload": "AZUL"}, {"title": "Rojo"}])
    assert older.status_code == 201, older.text
    # The stored message carries the one shape, whichever field the request used.
    assert older.json()["id"]
    stored = client.get(f"/api/v1/conversations/{older.json()['conversation_id']}/messages", headers=tenant.headers)
    shapes = [m["payload"].get("quick_reply") for m in stored.json()["items"] if m["direction"] == "outgoing"]
    assert shapes == [COLOURS, {"buttons": [{"id": "AZUL", "title": "Azul"}, {"id": "Rojo", "title": "Rojo"}]}]
    # developers.facebook.com/docs/messenger-platform/send-messages/quick-replies: content_type text,
    # a title and a payload that comes back with the customer's choice.
    new, old = page_graph.sent()
    assert new.body["message"]["quick_replies"] == [
        {"content_type": "text", "title": "Azul", "payload": "AZUL"},
        {"content_type": "text", "title": "Rojo", "payload": "ROJO"},
    ]
    assert old.body["message"]["quick_replies"][1] == {"content_type": "text", "title": "Rojo", "payload": "Rojo"}


@pytest.mark.usefixtures("immediate_queue")
def test_messenger_refuses_what_meta_would_before_calling_it(
    client: TestClient, db: Database, tenant: Tenant, page_graph: FakeGraph
) -> None:
    _, send = _messenger(client, db, tenant, page_graph)
    fourteen = [{"id": f"O{n}", "title": f"Opción {n}"} for n in range(14)]
    rows = [{"id": "S", "title": "Talla S"}]
    cases = [
        ({"buttons": fourteen}, "message.quick_reply.buttons", "Messenger allows at most 13 reply buttons"),
        (
            {"buttons": [{"id": "X", "title": "Un título de veintiún"}]},
            "message.quick_reply.buttons[0].title",
            "at most 20 characters",
        ),
        ({"list": {"button": "Ver", "sections": [{"rows": rows}]}}, "message.quick_reply.list", "no list messages"),
        ({**COLOURS, "header": "Colores"}, "message.quick_reply.header", "Messenger reply choices have no header"),
        (
            {"buttons": [{"id": "X", "title": "Sí"}, {"id": "X", "title": "No"}]},
            "message.quick_reply.buttons[1].id",
            "different",
        ),
    ]
    for quick_reply, field, rule in cases:
        refused = send(type="quick_reply", text="Elija", quick_reply=quick_reply)
        assert refused.status_code == 422, (quick_reply, refused.text)
        assert rule in refused.json()["error"]["details"][field], refused.json()
    both = send(type="quick_reply", text="Elija", quick_reply=COLOURS, quick_replies=[{"title": "Azul"}])
    assert both.status_code == 422
    assert "not both" in both.json()["error"]["details"]["message.quick_replies"]
    no_text = send(type="quick_reply", text=" ", quick_reply=COLOURS)
    assert no_text.status_code == 422
    assert "message.text" in no_text.json()["error"]["details"]
    assert page_graph.sent() == []


@pytest.mark.usefixtures("immediate_queue")
def test_instagram_sends_reply_choices_as_quick_replies_and_has_no_lists(
    client: TestClient, db: Database, tenant: Tenant, ig_graph: FakeGraph
) -> None:
    channel = instagram._connected(client, db, tenant, ig_graph)
    assert instagram._post(client, channel, meta.ig_envelope(meta.IG_TEXT)) == 200
    contact_id = instagram._messages(db, channel)[0].contact_id
    send = _sender(client, tenant, f"/api/v1/contacts/id:{contact_id}/messages", channel.id)
    rows = [{"id": "S", "title": "Talla S"}]
    listed = send(
        type="quick_reply", text="Elija", quick_reply={"list": {"button": "Ver", "sections": [{"rows": rows}]}}
    )
    assert listed.status_code == 422
    assert "Instagram has no list messages" in listed.json()["error"]["details"]["message.quick_reply.list"]
    assert ig_graph.sent() == []
    assert send(type="quick_reply", text="¿Qué color?", quick_reply=COLOURS).status_code == 201
    [sent] = ig_graph.sent()
    assert sent.body["message"]["text"] == "¿Qué color?"
    assert [q["payload"] for q in sent.body["message"]["quick_replies"]] == ["AZUL", "ROJO"]


@pytest.mark.usefixtures("immediate_queue")
def test_telegram_sends_reply_choices_as_an_inline_keyboard(
    client: TestClient, db: Database, tenant: Tenant, bot: FakeTelegram
) -> None:
    channel = tg._connect(client, db, tenant, bot)
    assert tg._post(client, bot, tg._update(1, 55, text="¿Precio?")) == 200
    tg.callbacks_written(db)
    [incoming] = channel_messages(db, channel["id"])
    url = f"/api/v1/contacts/id:{incoming.contact_id}/messages"
    send = _sender(client, tenant, url, channel["id"])
    too_long = send(type="quick_reply", text="Elija", quick_reply={"buttons": [{"id": "ñ" * 33, "title": "Sí"}]})
    assert too_long.status_code == 422
    assert "at most 64 bytes" in too_long.json()["error"]["details"]["message.quick_reply.buttons[0].id"]
    mixed = send(
        type="quick_reply", text="Elija", quick_reply=COLOURS, buttons=[{"title": "Web", "url": "https://x.example"}]
    )
    assert mixed.status_code == 422
    assert "not both" in mixed.json()["error"]["details"]["message.buttons"]
    assert bot.sent("sendMessage") == []

    assert send(type="quick_reply", text="¿Qué color?", quick_reply=COLOURS).status_code == 201
    [call] = bot.sent("sendMessage")
    # python-telegram-bot reads the keyboard we sent: one button a row, the choice's id as callback_data.
    markup = telegram.InlineKeyboardMarkup.de_json(call.params["reply_markup"], None)
    assert markup is not None
    assert [(row[0].text, row[0].callback_data) for row in markup.inline_keyboard] == [
        ("Azul", "AZUL"),
        ("Rojo", "ROJO"),
    ]
    # On Telegram the keyboard may go under a file, its caption the text.
    uploaded = client.post(
        "/api/v1/files",
        files={"file": ("catalogo.pdf", b"%PDF-1.4 catalogue", "application/pdf")},
        headers=tenant.headers,
    )
    assert uploaded.status_code == 201, uploaded.text
    time.sleep(1.05)  # one message a second per chat: otherwise the outbox holds it back
    with_file = send(type="quick_reply", text="¿Le gusta?", attachments=[uploaded.json()["id"]], quick_reply=COLOURS)
    assert with_file.status_code == 201, with_file.text
    [document] = bot.sent("sendDocument")
    assert document.params["caption"] == "¿Le gusta?"
    assert document.params["reply_markup"]["inline_keyboard"][0] == [{"text": "Azul", "callback_data": "AZUL"}]


def test_every_channel_with_reply_choices_names_its_limits() -> None:
    limits = {
        kind: get_adapter(kind).rules.reply_choices for kind in ("whatsapp", "messenger", "instagram", "telegram")
    }
    assert {kind: (lim.max_buttons, lim.title_length, bool(lim.lists)) for kind, lim in limits.items() if lim} == {
        "whatsapp": (3, 20, True),
        "messenger": (13, 20, False),
        "instagram": (13, 20, False),
        "telegram": (20, 64, False),
    }
    assert get_adapter("webchat").rules.reply_choices is None
    telegram_limits = limits["telegram"]
    assert isinstance(telegram_limits, ReplyChoices)
    # A keyboard may go under a file on Telegram, with or without a caption.
    check(telegram_limits, COLOURS, None, has_files=True)
    whatsapp_limits = limits["whatsapp"]
    assert isinstance(whatsapp_limits, ReplyChoices)
    with pytest.raises(ValidationFailed) as refused:
        check(whatsapp_limits, COLOURS, "Elija", has_files=True)
    assert refused.value.details == {"message.attachments": "WhatsApp sends reply buttons and lists without files"}
