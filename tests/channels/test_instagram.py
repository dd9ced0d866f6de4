"""An Instagram channel end to end on both databases, against the local fake Graph API
(tests/channels/fake_meta_graph.py) with Meta's documented events (tests/channels/meta_samples.py):
connecting with Instagram Login and with Facebook Login, direct messages in (text, media, story
replies and mentions, reactions, unsupported ones), replies inside the window and with HUMAN_AGENT
after it, seen receipts, ice breakers, private replies to comments."""

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from typer.testing import CliRunner

from tertulia.channels.adapters.instagram import InstagramAdapter
from tertulia.channels.adapters.messenger import PROFILES
from tertulia.channels.adapters.meta_graph import hub_signature
from tertulia.channels.models import Channel
from tertulia.channels.protocol import DeliveryStatus, MessageType
from tertulia.channels.service import do_save_chat_menu
from tertulia.cli import app
from tertulia.contacts.models import Contact
from tertulia.conversations.models import Message
from tertulia.kit import db as kit_db
from tertulia.kit import settings as kit_settings
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.kit.errors import ValidationFailed
from tertulia.users.models import Role
from tests.channels import meta_samples as meta
from tests.channels.fake_meta_graph import FakeGraph, fake_graph
from tests.conftest import Tenant
from tests.conversations.support import sign_in
from tests.fakes import callbacks_written

TOKEN = "IGQVJ-test-token"
SECRETS = {"access_token": TOKEN, "app_secret": meta.APP_SECRET}


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    PROFILES.clear()
    with fake_graph(TOKEN) as server:
        server.accounts[meta.IG_ID] = "cafe.tertulia"
        server.profiles[meta.IGSID] = {"name": "Lucía Gómez", "username": "lucia.g", "profile_pic": "https://cdn/l.jpg"}
        yield server
    PROFILES.clear()


def _connect(
    client: TestClient, db: Database, tenant: Tenant, config: dict[str, Any], secrets: dict[str, str]
) -> Channel:
    manager = sign_in(db, tenant, Role.MANAGER).headers
    created = client.post(
        "/api/v1/channels", headers=manager, json={"type": "instagram", "config": config, "secrets": secrets}
    )
    assert created.status_code == 201, created.text
    with db.transaction(write=False) as session:
        channel = session.get(Channel, created.json()["id"])
        assert channel is not None
        session.expunge(channel)
    return channel


def _connected(client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph) -> Channel:
    return _connect(client, db, tenant, {"api_base_url": graph.url}, SECRETS)


def _post(client: TestClient, channel: Channel, data: dict[str, Any]) -> int:
    raw = meta.body(json.loads(json.dumps(data).replace("{media}", str((channel.config or {})["api_base_url"]))))
    signature = hub_signature(str(channel.secrets["app_secret"]), raw)
    response = client.post(
        f"/webhooks/{channel.key}", content=raw, headers={"X-Hub-Signature-256": f"sha256={signature}"}
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


@pytest.mark.usefixtures("immediate_queue")
def test_instagram_login_names_the_account_and_subscribes(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    channel = _connected(client, db, tenant, graph)
    assert channel.name == "@cafe.tertulia"
    assert channel.config["ig_user_id"] == meta.IG_ID
    assert channel.config["login"] == "instagram"
    assert "me" in graph.subscribed
    subscribe = next(r for r in graph.requests if r.path.endswith("/subscribed_apps"))
    assert "comments" in subscribe.query["subscribed_fields"]
    manager = sign_in(db, tenant, Role.MANAGER).headers
    wrong = {"type": "instagram", "config": {"api_base_url": graph.url}, "secrets": {**SECRETS, "access_token": "bad"}}
    refused = client.post("/api/v1/channels", headers=manager, json=wrong)
    assert refused.status_code == 422
    assert "Invalid OAuth access token" in refused.json()["error"]["details"]["secrets.access_token"]


@pytest.mark.usefixtures("immediate_queue")
def test_facebook_login_goes_through_the_linked_page(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    graph.pages[meta.PAGE_ID] = "Café La Tertulia"
    graph.page_instagram[meta.PAGE_ID] = meta.IG_ID
    config = {"login": "facebook", "page_id": meta.PAGE_ID, "api_base_url": graph.url}
    channel = _connect(client, db, tenant, config, {"page_access_token": TOKEN, "app_secret": meta.APP_SECRET})
    assert channel.config["ig_user_id"] == meta.IG_ID
    assert meta.PAGE_ID in graph.subscribed
    assert _post(client, channel, meta.ig_envelope(meta.IG_TEXT)) == 200
    contact_id = _messages(db, channel)[0].contact_id
    body = {"channel_id": channel.id, "message": {"text": "¡Hola!"}}
    assert (
        client.post(f"/api/v1/contacts/id:{contact_id}/messages", headers=tenant.headers, json=body).status_code == 201
    )
    [sent] = graph.sent()
    assert sent.path == f"/v26.0/{meta.PAGE_ID}/messages"  # the Page's Send API
    assert sent.body["recipient"] == {"id": meta.IGSID}
    graph.page_instagram.clear()
    manager = sign_in(db, tenant, Role.MANAGER).headers
    unlinked = client.post(
        "/api/v1/channels",
        headers=manager,
        json={"type": "instagram", "config": config, "secrets": {"page_access_token": TOKEN, "app_secret": "s"}},
    )
    assert unlinked.status_code == 422
    assert "no Instagram professional account" in unlinked.json()["error"]["details"]["config.page_id"]


def test_settings_are_checked() -> None:
    adapter = InstagramAdapter()
    for config, secrets, field in [
        ({"login": "tiktok"}, SECRETS, "config.login"),
        ({}, {"app_secret": "s"}, "secrets.access_token"),
        ({"login": "facebook"}, SECRETS, "config.page_id"),
        ({"login": "facebook", "page_id": meta.PAGE_ID}, SECRETS, "secrets.page_access_token"),
        ({"ig_user_id": "@cafe"}, SECRETS, "config.ig_user_id"),
    ]:
        with pytest.raises(ValidationFailed) as refused:
            adapter.clean_config(config, secrets)
        assert field in (refused.value.details or {})


@pytest.mark.usefixtures("immediate_queue")
def test_direct_messages_of_every_kind_are_kept(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    channel = _connected(client, db, tenant, graph)
    graph.media["photo.jpg"] = (b"\xff\xd8\xff\xe0 a jpeg", "image/jpeg")
    graph.media["story.jpg"] = (b"\xff\xd8\xff\xe0 a story", "image/jpeg")
    events = (
        meta.IG_TEXT,
        meta.IG_IMAGE,
        meta.IG_STORY_REPLY,
        meta.IG_STORY_MENTION,
        meta.IG_UNSUPPORTED,
        meta.IG_REACTION,
    )
    assert _post(client, channel, meta.ig_envelope(*events)) == 200
    assert _post(client, channel, meta.ig_envelope(meta.IG_TEXT)) == 200  # repeated: stored once
    text, image, story_reply, mention, unsupported, reaction = _messages(db, channel)
    assert text.text == "hi"
    assert image.type == MessageType.IMAGE
    assert image.attachments[0]["content_type"] == "image/jpeg"
    assert story_reply.text == "¡Qué bonito!"
    assert story_reply.payload["story_reply"]["id"] == "1799"
    assert mention.type == MessageType.IMAGE
    assert mention.payload["story_mention"] is True
    assert mention.attachments[0]["content_type"] == "image/jpeg"  # the story's file, kept as ours
    assert (unsupported.type, unsupported.payload["unsupported"]) == (MessageType.UNSUPPORTED, "message")
    assert reaction.text == "❤"
    with db.transaction(write=False) as session:
        contact = session.get(Contact, text.contact_id)
        assert contact is not None
        assert (contact.first_name, contact.last_name) == ("Lucía", "Gómez")


@pytest.mark.usefixtures("immediate_queue")
def test_replies_inside_the_window_human_agent_after_it_and_seen_receipts(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    channel = _connected(client, db, tenant, graph)
    assert _post(client, channel, meta.ig_envelope(meta.IG_TEXT)) == 200
    contact_id = _messages(db, channel)[0].contact_id
    url = f"/api/v1/contacts/id:{contact_id}/messages"

    def send(text: str, tag: str | None = None) -> int:
        message: dict[str, Any] = {"text": text, **({"message_tag": tag} if tag else {})}
        return client.post(url, headers=tenant.headers, json={"channel_id": channel.id, "message": message}).status_code

    assert send("Hola") == 201
    reply = _messages(db, channel)[-1]
    assert reply.status == DeliveryStatus.SENT
    assert _post(client, channel, meta.ig_envelope(meta.ig_seen(str(reply.provider_message_id)))) == 200
    assert _messages(db, channel)[-1].status == DeliveryStatus.READ
    with db.transaction() as session:
        since = utcnow() - timedelta(hours=30)
        session.execute(update(Contact).where(Contact.id == contact_id).values(last_incoming_at=since))
    assert send("Tarde") == 422
    assert send("Tarde", "ACCOUNT_UPDATE") == 422  # not an Instagram tag
    assert send("Un agente te responde", "HUMAN_AGENT") == 201
    sent = graph.sent()
    assert [r.path for r in sent] == [f"/v26.0/{meta.IG_ID}/messages"] * 2
    assert sent[0].token == TOKEN
    assert (sent[1].body["messaging_type"], sent[1].body["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")


@pytest.mark.usefixtures("immediate_queue")
def test_ice_breakers_and_a_private_reply_to_a_comment(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    channel = _connected(client, db, tenant, graph)
    with db.transaction() as session:
        stored = session.get(Channel, channel.id)
        assert stored is not None
        answer = do_save_chat_menu(session, tenant.actor(), stored, [{"question": "¿Horarios?", "payload": "HOURS"}])
    assert json.loads(answer) == {"result": "success"}
    assert graph.messenger_profile["platform"] == "instagram"
    assert graph.messenger_profile["ice_breakers"] == [
        {"call_to_actions": [{"question": "¿Horarios?", "payload": "HOURS"}], "locale": "default"}
    ]
    with pytest.raises(ValidationFailed):
        InstagramAdapter().clean_menu([{"question": str(i)} for i in range(5)])
    comment = {
        "object": "instagram",
        "entry": [
            {
                "id": meta.IG_ID,
                "time": int(utcnow().timestamp()),
                "changes": [
                    {
                        "field": "comments",
                        "value": {
                            "id": "17865799348089039",
                            "from": {"id": meta.IGSID, "username": "lucia.g"},
                            "text": "¿Precio?",
                            "media": {"id": "123123", "media_product_type": "FEED"},
                        },
                    }
                ],
            }
        ],
    }
    graph.commenters["17865799348089039"] = meta.IGSID
    assert _post(client, channel, comment) == 200
    [item] = _messages(db, channel)
    assert item.payload["comment"]["media_id"] == "123123"
    url = f"/api/v1/conversations/{item.conversation_id}/messages"
    reply = {"text": "Te escribimos por DM", "private_reply_to_message_id": item.id}
    assert client.post(url, headers=tenant.headers, json=reply).status_code == 201
    assert client.post(url, headers=tenant.headers, json=reply).status_code == 409
    [sent] = graph.sent()
    assert sent.body["recipient"] == {"comment_id": "17865799348089039"}


def test_the_cli_connects_an_account(
    db: Database, tenant: Tenant, graph: FakeGraph, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TERTULIA_DATABASE_URL", db.url)
    monkeypatch.setenv("TERTULIA_BASE_URL", "https://crm.example")
    kit_settings.get_settings.cache_clear()
    kit_db.get_database.cache_clear()
    try:
        done = CliRunner().invoke(
            app,
            [
                *("channel", "connect", "instagram", "--workspace", tenant.name, "--set", f"api_base_url={graph.url}"),
                *("--set", f"access_token={TOKEN}", "--set", f"app_secret={meta.APP_SECRET}"),
            ],
        )
        assert done.exit_code == 0, done.output
        result = json.loads(done.stdout)
    finally:
        kit_db.get_database().dispose()
        kit_settings.get_settings.cache_clear()
        kit_db.get_database.cache_clear()
    with db.transaction(write=False) as session:
        channel = session.get(Channel, result["id"])
        assert channel is not None
        assert channel.secrets["access_token"] == TOKEN
        assert "access_token" not in channel.config
        assert channel.name == "@cafe.tertulia"
