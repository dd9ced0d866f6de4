"""A Messenger channel end to end on both databases, against the local fake Graph API
(tests/channels/fake_meta_graph.py) with Meta's documented events (tests/channels/meta_samples.py):
connecting (API and CLI), callbacks (messages, files, quick replies, postbacks, referrals, echoes,
receipts), replies through the outbox, the 24-hour window and message tags, the chat menu."""

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from typer.testing import CliRunner

from tertulia.channels.adapters.messenger import PROFILES, MessengerAdapter, envelope, text_body
from tertulia.channels.adapters.meta_graph import hub_signature
from tertulia.channels.models import Channel
from tertulia.channels.protocol import ChannelRules, DeliveryStatus, MessageType, OutboundMessage, PermanentError
from tertulia.channels.service import do_create_channel, do_save_chat_menu
from tertulia.cli import app
from tertulia.contacts.models import Contact, ContactActivity
from tertulia.conversations.models import Direction, Message, StoredFile
from tertulia.conversations.outbox import process_outbound
from tertulia.conversations.service import check_message_tag
from tertulia.kit import db as kit_db
from tertulia.kit import settings as kit_settings
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.kit.errors import ValidationFailed
from tertulia.users.models import Role
from tests.channels import meta_samples as meta
from tests.channels.fake_meta_graph import FakeGraph, fake_graph, graph_error
from tests.conftest import Tenant
from tests.conversations.support import sign_in
from tests.fakes import callbacks_written

ADAPTER = MessengerAdapter()
SECRETS = {"page_access_token": meta.PAGE_TOKEN, "app_secret": meta.APP_SECRET}


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    PROFILES.clear()
    with fake_graph(meta.PAGE_TOKEN) as server:
        server.pages[meta.PAGE_ID] = "Café La Tertulia"
        server.profiles[meta.PSID] = {"first_name": "Lucía", "last_name": "Gómez", "profile_pic": "https://cdn/p.jpg"}
        yield server
    PROFILES.clear()


def _connect(client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph) -> Channel:
    manager = sign_in(db, tenant, Role.MANAGER).headers
    body = {
        "type": "messenger",
        "name": "",
        "config": {"page_id": meta.PAGE_ID, "api_base_url": graph.url},
        "secrets": SECRETS,
    }
    created = client.post("/api/v1/channels", headers=manager, json=body)
    assert created.status_code == 201, created.text
    with db.transaction(write=False) as session:
        channel = session.get(Channel, created.json()["id"])
        assert channel is not None
        session.expunge(channel)
    return channel


def _post(client: TestClient, channel: Channel, data: dict[str, Any], *, signed: bool = True) -> int:
    raw = meta.body(json.loads(json.dumps(data).replace("{media}", str((channel.config or {})["api_base_url"]))))
    secret = str(channel.secrets["app_secret"]) if signed else "another-secret"
    response = client.post(
        f"/webhooks/{channel.key}", content=raw, headers={"X-Hub-Signature-256": f"sha256={hub_signature(secret, raw)}"}
    )
    if response.status_code == 200:
        callbacks_written(client.app.state.db)
    return response.status_code


def _messages(db: Database, channel: Channel) -> list[Message]:
    with db.transaction(write=False) as session:
        rows = list(session.scalars(select(Message).where(Message.channel_id == channel.id).order_by(Message.id)))
        for row in rows:
            session.expunge(row)
        return rows


# ----- connecting --------------------------------------------------------------------------------


@pytest.mark.usefixtures("immediate_queue")
def test_connecting_names_the_page_subscribes_the_app_and_hides_the_secrets(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    channel = _connect(client, db, tenant, graph)
    assert channel.name == "Café La Tertulia"
    assert meta.PAGE_ID in graph.subscribed
    subscribe = next(r for r in graph.requests if r.path.endswith("/subscribed_apps"))
    assert "message_echoes" in subscribe.query["subscribed_fields"]
    assert "feed" in subscribe.query["subscribed_fields"]
    assert len(channel.secrets["verify_token"]) >= 24  # generated, to paste into Meta's dashboard
    manager = sign_in(db, tenant, Role.MANAGER).headers
    shown = client.get(f"/api/v1/channels/{channel.id}", headers=manager).json()
    assert shown["secrets"] == {"page_access_token": "set", "app_secret": "set", "verify_token": "set"}
    assert meta.PAGE_TOKEN not in json.dumps(shown)
    wrong = {
        "type": "messenger",
        "config": {"page_id": meta.PAGE_ID, "api_base_url": graph.url},
        "secrets": {**SECRETS, "page_access_token": "EAA-wrong"},
    }
    refused = client.post("/api/v1/channels", headers=manager, json=wrong)
    assert refused.status_code == 422
    assert "Invalid OAuth access token" in refused.json()["error"]["details"]["secrets.page_access_token"]
    assert client.post(f"/api/v1/channels/{channel.id}/disconnect", headers=manager).status_code == 200
    assert meta.PAGE_ID not in graph.subscribed


def test_settings_are_checked() -> None:
    for config, secrets, field in [
        ({"page_id": "not a page"}, SECRETS, "config.page_id"),
        ({"page_id": meta.PAGE_ID}, {"app_secret": "s"}, "secrets.page_access_token"),
        ({"page_id": meta.PAGE_ID}, {"page_access_token": "t"}, "secrets.app_secret"),
        ({"page_id": meta.PAGE_ID, "api_base_url": "ftp://x"}, SECRETS, "config.api_base_url"),
    ]:
        with pytest.raises(ValidationFailed) as refused:
            ADAPTER.clean_config(config, secrets)
        assert field in (refused.value.details or {})


def test_the_cli_connects_a_page(
    db: Database, tenant: Tenant, graph: FakeGraph, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TERTULIA_DATABASE_URL", db.url)
    monkeypatch.setenv("TERTULIA_BASE_URL", "https://crm.example")
    monkeypatch.setenv("PAGE_TOKEN", meta.PAGE_TOKEN)
    kit_settings.get_settings.cache_clear()
    kit_db.get_database.cache_clear()
    try:
        done = CliRunner().invoke(
            app,
            [
                *("channel", "connect", "messenger", "--workspace", tenant.name),
                *("--set", f"page_id={meta.PAGE_ID}", "--set", f"api_base_url={graph.url}"),
                *("--set-from-env", "page_access_token=PAGE_TOKEN", "--set", f"app_secret={meta.APP_SECRET}"),
            ],
        )
        assert done.exit_code == 0, done.output
        result = json.loads(done.stdout)
    finally:
        kit_db.get_database().dispose()
        kit_settings.get_settings.cache_clear()
        kit_db.get_database.cache_clear()
    assert result["callback_url"].startswith("https://crm.example/webhooks/")
    with db.transaction(write=False) as session:
        channel = session.get(Channel, result["id"])
        assert channel is not None
        assert channel.secrets["page_access_token"] == meta.PAGE_TOKEN
        assert "page_access_token" not in channel.config
        assert channel.name == "Café La Tertulia"


# ----- callbacks ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("immediate_queue")
def test_messages_are_stored_once_and_forgeries_never(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    channel = _connect(client, db, tenant, graph)
    assert _post(client, channel, meta.envelope(meta.TEXT), signed=False) == 403
    assert _messages(db, channel) == []
    assert _post(client, channel, meta.envelope(meta.TEXT)) == 200
    assert _post(client, channel, meta.envelope(meta.TEXT)) == 200  # Meta retries
    [message] = _messages(db, channel)
    assert (message.direction, message.type, message.text) == (Direction.INCOMING, MessageType.TEXT, "hello, world!")
    assert message.payload["sender_profile"] == {"picture": "https://cdn/p.jpg"}
    with db.transaction(write=False) as session:
        contact = session.get(Contact, message.contact_id)
        assert contact is not None
        assert (contact.first_name, contact.last_name) == ("Lucía", "Gómez")
        assert contact.avatar_url == "https://cdn/p.jpg"
    # One profile call for the sender, not one per message.
    assert len([r for r in graph.requests if r.path.endswith(f"/{meta.PSID}")]) == 1


@pytest.mark.usefixtures("immediate_queue")
def test_a_profile_that_cannot_be_read_leaves_the_name_empty(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    channel = _connect(client, db, tenant, graph)
    graph.profiles.clear()  # Graph answers 400: the person's profile is not available to the app
    assert _post(client, channel, meta.envelope(meta.TEXT)) == 200
    [message] = _messages(db, channel)
    assert message.text == "hello, world!"


@pytest.mark.usefixtures("immediate_queue")
def test_files_quick_replies_postbacks_referrals_and_reactions(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    channel = _connect(client, db, tenant, graph)
    graph.media["photo.jpg"] = (b"\xff\xd8\xff\xe0 a jpeg", "image/jpeg")
    do_menu = [{"title": "Ver precios", "payload": "PRICES"}, {"title": "Web", "url": "https://cafe.example"}]
    with db.transaction() as session:
        stored = session.get(Channel, channel.id)
        assert stored is not None
        do_save_chat_menu(session, tenant.actor(), stored, do_menu)
    for event in (meta.IMAGE, meta.QUICK_REPLY, meta.POSTBACK, meta.REFERRAL, meta.REACTION):
        assert _post(client, channel, meta.envelope(event)) == 200
    image, quick, postback, referral, reaction = _messages(db, channel)
    assert image.type == MessageType.IMAGE
    [attachment] = image.attachments
    assert attachment["content_type"] == "image/jpeg"
    with db.transaction(write=False) as session:
        file = session.get(StoredFile, attachment["file_id"])
        assert file is not None
        assert file.conversation_id == image.conversation_id
    assert quick.type == MessageType.POSTBACK
    assert quick.payload["postback"] == {"data": "PICKED_RED", "title": "Red", "source": "quick_reply"}
    assert postback.payload["postback"] == {"data": "PRICES", "title": "Ver precios", "source": "chat_menu"}
    assert postback.payload["referral"]["ref"] == "spring-sale"
    assert referral.payload["referral"] == {"ref": "ad-campaign-7", "source": "SHORTLINK", "type": "OPEN_THREAD"}
    assert reaction.text == "\u2764\ufe0f"
    assert reaction.payload["reaction"]["provider_message_id"] == "m_our-message"
    with db.transaction(write=False) as session:
        recorded = list(
            session.scalars(
                select(ContactActivity.new_value).where(
                    ContactActivity.contact_id == image.contact_id, ContactActivity.field == "referral"
                )
            )
        )
    assert {"ref": "ad-campaign-7", "source": "SHORTLINK", "type": "OPEN_THREAD"} in recorded


@pytest.mark.usefixtures("immediate_queue")
def test_a_file_too_large_or_gone_keeps_the_message(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    channel = _connect(client, db, tenant, graph)  # photo.jpg is not on the CDN: 404
    assert _post(client, channel, meta.envelope(meta.IMAGE)) == 200
    [message] = _messages(db, channel)
    assert message.type == MessageType.IMAGE
    assert "404" in message.attachments[0]["unavailable"]


@pytest.mark.usefixtures("immediate_queue")
def test_echoes_of_the_page_are_outgoing_and_ours_are_not_doubled(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    channel = _connect(client, db, tenant, graph)
    assert _post(client, channel, meta.envelope(meta.TEXT)) == 200
    with db.transaction(write=False) as session:
        contact_id = session.scalar(select(Message.contact_id).where(Message.channel_id == channel.id))
        contact = session.get(Contact, contact_id)
        assert contact is not None
        window_before = contact.last_incoming_at
    url = f"/api/v1/contacts/id:{contact_id}/messages"
    sent = client.post(url, headers=tenant.headers, json={"channel_id": channel.id, "message": {"text": "¡Hola!"}})
    assert sent.status_code == 201, sent.text
    ours = _messages(db, channel)[-1]
    assert ours.provider_message_id is not None
    # Meta echoes our own message (with our metadata) and one a person sent from the Page inbox.
    from_us = meta.echo(ours.provider_message_id, "¡Hola!", metadata=f"tertulia-msg-{ours.id}")
    from_page = meta.echo("m_from-page-inbox", "Te llamamos mañana")
    assert _post(client, channel, meta.envelope(from_us, from_page)) == 200
    assert _post(client, channel, meta.envelope(from_page)) == 200  # repeated
    incoming, reply, echoed = _messages(db, channel)
    assert (reply.id, reply.text) == (ours.id, "¡Hola!")
    assert (echoed.direction, echoed.text, echoed.status) == (
        Direction.OUTGOING,
        "Te llamamos mañana",
        DeliveryStatus.SENT,
    )
    assert echoed.conversation_id == incoming.conversation_id
    with db.transaction(write=False) as session:
        contact = session.get(Contact, contact_id)
        assert contact is not None
        assert contact.last_incoming_at == window_before  # an echo never reopens the window


@pytest.mark.usefixtures("immediate_queue")
def test_receipts_move_statuses_forward_only(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    channel = _connect(client, db, tenant, graph)
    assert _post(client, channel, meta.envelope(meta.TEXT)) == 200
    contact_id = _messages(db, channel)[0].contact_id
    url = f"/api/v1/contacts/id:{contact_id}/messages"
    for text in ("uno", "dos"):
        body = {"channel_id": channel.id, "message": {"text": text}}
        assert client.post(url, headers=tenant.headers, json=body).status_code == 201
    _, first, second = _messages(db, channel)
    assert (first.status, second.status) == (DeliveryStatus.SENT, DeliveryStatus.SENT)
    assert _post(client, channel, meta.envelope(meta.read())) == 200  # read up to now: both
    assert _post(client, channel, meta.envelope(meta.delivery(str(first.provider_message_id)))) == 200  # late
    _, first, second = _messages(db, channel)
    assert (first.status, second.status) == (DeliveryStatus.READ, DeliveryStatus.READ)


# ----- sending -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("immediate_queue")
def test_outside_the_window_only_a_message_tag_goes_out(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    channel = _connect(client, db, tenant, graph)
    assert _post(client, channel, meta.envelope(meta.TEXT)) == 200
    contact_id = _messages(db, channel)[0].contact_id
    url = f"/api/v1/contacts/id:{contact_id}/messages"

    def send(text: str, tag: str | None = None) -> httpx.Response:
        message: dict[str, Any] = {"text": text}
        if tag:
            message["message_tag"] = tag
        return client.post(url, headers=tenant.headers, json={"channel_id": channel.id, "message": message})

    def last_written(hours: float) -> None:
        with db.transaction() as session:
            since = utcnow() - timedelta(hours=hours)
            session.execute(update(Contact).where(Contact.id == contact_id).values(last_incoming_at=since))

    assert send("dentro").status_code == 201
    last_written(25)
    # The composer learns the window is closed and which tags it may offer.
    conversation_id = _messages(db, channel)[0].conversation_id
    shown = client.get(f"/api/v1/conversations/{conversation_id}", headers=tenant.headers).json()
    assert shown["reply_window_open"] is False
    assert {"tag": "HUMAN_AGENT", "days": 7} in shown["message_tags"]
    assert {"tag": "ACCOUNT_UPDATE", "days": None} in shown["message_tags"]
    late = send("fuera")
    assert late.status_code == 422
    assert late.json()["error"]["code"] == "reply_window_closed"
    assert "message.message_tag" in late.json()["error"]["details"]
    unknown = send("fuera", "PROMOTION")
    assert unknown.status_code == 422
    assert "must be one of" in unknown.json()["error"]["details"]["message.message_tag"]
    assert send("Un agente te responde", "HUMAN_AGENT").status_code == 201
    assert send("Tu pedido salió", "POST_PURCHASE_UPDATE").status_code == 201
    last_written(24 * 8)
    expired = send("Una semana después", "HUMAN_AGENT")
    assert expired.status_code == 409
    assert expired.json()["error"]["code"] == "message_tag_expired"
    sent = graph.sent()
    # Nothing reached Meta for the refusals.
    assert [(r.body["messaging_type"], r.body.get("tag"), r.body["message"]["text"]) for r in sent] == [
        ("RESPONSE", None, "dentro"),
        ("MESSAGE_TAG", "HUMAN_AGENT", "Un agente te responde"),
        ("MESSAGE_TAG", "POST_PURCHASE_UPDATE", "Tu pedido salió"),
    ]
    assert sent[0].path == f"/v26.0/{meta.PAGE_ID}/messages"
    assert sent[0].body["recipient"] == {"id": meta.PSID}
    assert sent[0].body["message"]["metadata"].startswith("tertulia-msg-")
    # A channel without tags refuses one.
    with pytest.raises(ValidationFailed) as untagged:
        check_message_tag(tenant.actor(), channel, ChannelRules(), "HUMAN_AGENT", utcnow())
    assert "take no message tag" in untagged.value.details["message.message_tag"]


@pytest.mark.usefixtures("immediate_queue")
def test_throttling_is_retried_and_a_policy_refusal_fails_at_once(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    channel = _connect(client, db, tenant, graph)
    assert _post(client, channel, meta.envelope(meta.TEXT)) == 200
    contact_id = _messages(db, channel)[0].contact_id
    url = f"/api/v1/contacts/id:{contact_id}/messages"
    graph.fail_next("/messages", 400, graph_error(613, "Calls to this api have exceeded the rate limit."))
    assert (
        client.post(url, headers=tenant.headers, json={"channel_id": channel.id, "message": {"text": "a"}}).status_code
        == 201
    )
    throttled = _messages(db, channel)[-1]
    assert throttled.status == DeliveryStatus.PENDING  # waits for its retry
    assert throttled.attempts == 1
    assert process_outbound(db, throttled.id).state == "sent"
    graph.fail_next("/messages", 400, graph_error(551, "This person isn't available right now."))
    assert (
        client.post(url, headers=tenant.headers, json={"channel_id": channel.id, "message": {"text": "b"}}).status_code
        == 201
    )
    failed = _messages(db, channel)[-1]
    assert failed.status == DeliveryStatus.FAILED
    assert failed.status_reason is not None
    assert failed.status_reason.startswith("This person is not available right now")
    assert "(#551)" in failed.status_reason


def test_request_bodies_follow_the_send_api() -> None:
    def outbound(**payload: Any) -> OutboundMessage:
        return OutboundMessage(7, "tertulia-msg-7", meta.PSID, MessageType.TEXT, "¿Qué color?", [], payload)

    quick = text_body(outbound(quick_replies=[{"title": "Rojo", "payload": "RED"}]))
    assert quick == {
        "text": "¿Qué color?",
        "quick_replies": [{"content_type": "text", "title": "Rojo", "payload": "RED"}],
        "metadata": "tertulia-msg-7",
    }
    buttons = text_body(
        outbound(buttons=[{"title": "Ver", "url": "https://x.example"}, {"title": "Sí", "payload": "YES"}])
    )
    assert buttons is not None
    assert buttons["attachment"]["payload"] == {
        "template_type": "button",
        "text": "¿Qué color?",
        "buttons": [
            {"type": "web_url", "url": "https://x.example", "title": "Ver"},
            {"type": "postback", "title": "Sí", "payload": "YES"},
        ],
    }
    with pytest.raises(PermanentError):
        text_body(outbound(buttons=[{"title": str(i)} for i in range(4)]))
    assert envelope(outbound(private_reply_to="123_456")) == {
        "recipient": {"comment_id": "123_456"},
        "messaging_type": "RESPONSE",
    }


@pytest.mark.usefixtures("immediate_queue")
def test_files_are_uploaded_with_the_message(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    channel = _connect(client, db, tenant, graph)
    assert _post(client, channel, meta.envelope(meta.TEXT)) == 200
    contact_id = _messages(db, channel)[0].contact_id
    upload = client.post(
        "/api/v1/files", headers=tenant.headers, files={"file": ("menu.png", b"\x89PNG\r\n\x1a\n data", "image/png")}
    )
    assert upload.status_code == 201, upload.text
    body = {
        "channel_id": channel.id,
        "message": {"type": "image", "text": "Nuestro menú", "attachments": [upload.json()["id"]]},
    }
    assert (
        client.post(f"/api/v1/contacts/id:{contact_id}/messages", headers=tenant.headers, json=body).status_code == 201
    )
    text, image = graph.sent()
    assert text.body["message"]["text"] == "Nuestro menú"
    assert image.files["filedata"] == ("menu.png", b"\x89PNG\r\n\x1a\n data", "image/png")
    assert image.body["message"]["attachment"] == {"type": "image", "payload": {"is_reusable": False}}
    assert _messages(db, channel)[-1].status == DeliveryStatus.SENT


# ----- chat menu -----------------------------------------------------------------------------------


def test_the_menu_is_pushed_with_get_started_and_refusals_named(db: Database, tenant: Tenant, graph: FakeGraph) -> None:
    with db.transaction() as session:
        channel = session.get(Channel, _created(db, tenant, graph).id)
        assert channel is not None
        answer = do_save_chat_menu(
            session,
            tenant.actor(),
            channel,
            [{"title": "Ver precios"}, {"title": "Web", "url": "https://cafe.example"}],
        )
        assert json.loads(answer) == {"result": "success"}
        assert channel.config["menu"] == [
            {"title": "Ver precios", "payload": "VER_PRECIOS"},
            {"title": "Web", "url": "https://cafe.example"},
        ]
    assert graph.messenger_profile["get_started"] == {"payload": "GET_STARTED"}
    assert graph.messenger_profile["persistent_menu"][0]["call_to_actions"] == [
        {"type": "postback", "title": "Ver precios", "payload": "VER_PRECIOS"},
        {"type": "web_url", "title": "Web", "url": "https://cafe.example"},
    ]
    with pytest.raises(ValidationFailed) as long_title:
        ADAPTER.clean_menu([{"title": "x" * 31}])
    assert "menu[0].title" in long_title.value.details
    graph.fail_next("/messenger_profile", 400, graph_error(100, '(#100) Invalid keys "persistent_menu"'))
    with db.transaction() as session:
        channel = session.get(Channel, channel.id)
        assert channel is not None
        with pytest.raises(ValidationFailed) as refused:
            do_save_chat_menu(session, tenant.actor(), channel, [{"title": "Otra"}])
    assert "Invalid keys" in refused.value.details["menu"]


def _created(db: Database, tenant: Tenant, graph: FakeGraph) -> Channel:
    with db.transaction() as session:
        channel = do_create_channel(
            session,
            tenant.actor(),
            "messenger",
            "Página",
            {"page_id": meta.PAGE_ID, "api_base_url": graph.url},
            SECRETS,
        )
        session.expunge(channel)
    return channel


# ----- private replies to comments -------------------------------------------------------------------


@pytest.mark.usefixtures("immediate_queue")
def test_a_comment_is_answered_privately_once_and_opens_the_conversation(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    channel = _connect(client, db, tenant, graph)
    graph.commenters["1067280970047460_555_777"] = meta.PSID
    assert _post(client, channel, meta.feed_comment()) == 200
    assert _post(client, channel, meta.feed_comment()) == 200  # delivered twice: one item
    [comment] = _messages(db, channel)
    assert comment.text == "¿Tienen envíos a Guadalajara?"
    assert comment.payload["comment"]["comment_id"] == "1067280970047460_555_777"
    with db.transaction(write=False) as session:
        commenter = session.get(Contact, comment.contact_id)
        assert commenter is not None
        assert commenter.first_name == "Marta"
        assert commenter.last_incoming_at is None  # a comment opens no reply window
    url = f"/api/v1/conversations/{comment.conversation_id}/messages"
    plain = client.post(url, headers=tenant.headers, json={"text": "Hola"})
    assert plain.status_code == 422  # outside any window: only the private reply may go
    assert plain.json()["error"]["code"] == "reply_window_closed"
    reply = {"text": "¡Sí! Te escribo por aquí.", "private_reply_to_message_id": comment.id}
    sent = client.post(url, headers=tenant.headers, json=reply)
    assert sent.status_code == 201, sent.text
    [request] = graph.sent()
    assert request.body["recipient"] == {"comment_id": "1067280970047460_555_777"}
    assert request.body["message"]["text"] == "¡Sí! Te escribo por aquí."
    again = client.post(url, headers=tenant.headers, json=reply)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "private_reply_sent"
    assert len(graph.sent()) == 1  # refused before any provider call
    # Meta answered with the person's Messenger id: their reply lands in the same conversation.
    assert _post(client, channel, meta.envelope(meta.TEXT)) == 200
    answer = _messages(db, channel)[-1]
    assert answer.text == "hello, world!"
    assert (answer.contact_id, answer.conversation_id) == (comment.contact_id, comment.conversation_id)


@pytest.mark.usefixtures("immediate_queue")
def test_a_private_reply_after_seven_days_or_to_a_message_is_refused(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    channel = _connect(client, db, tenant, graph)
    old = int((utcnow() - timedelta(days=8)).timestamp())
    assert _post(client, channel, meta.feed_comment("1067280970047460_555_1", created=old)) == 200
    [comment] = _messages(db, channel)
    url = f"/api/v1/conversations/{comment.conversation_id}/messages"
    late = client.post(url, headers=tenant.headers, json={"text": "Perdón", "private_reply_to_message_id": comment.id})
    assert late.status_code == 409
    assert late.json()["error"]["code"] == "private_reply_expired"
    assert _post(client, channel, meta.envelope(meta.TEXT)) == 200
    message = _messages(db, channel)[-1]
    other = f"/api/v1/conversations/{message.conversation_id}/messages"
    refused = client.post(other, headers=tenant.headers, json={"text": "x", "private_reply_to_message_id": message.id})
    assert refused.status_code == 422
    assert "is not a comment" in refused.json()["error"]["details"]["private_reply_to_message_id"]
    assert graph.sent() == []
