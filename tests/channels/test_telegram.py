"""A Telegram channel end to end on both databases, against the local fake Bot API: connecting (API and
CLI), updates through the callback endpoint (messages, files, edits, button presses, deep links),
replies through the outbox, health, disconnecting."""

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import telegram
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from tertulia.channels.adapters.telegram import TelegramAdapter
from tertulia.channels.models import Channel
from tertulia.channels.protocol import DeliveryStatus, MessageType
from tertulia.cli import app
from tertulia.contacts.models import Contact, ContactActivity, ContactIdentity
from tertulia.conversations.ingress.callbacks import MAX_ATTEMPTS, callback_spool, process_callbacks
from tertulia.conversations.models import Direction, Message, StoredFile
from tertulia.conversations.outbox import HEADROOM, pace_turn
from tertulia.events.models import EventRecord
from tertulia.kit import db as kit_db
from tertulia.kit import settings as kit_settings
from tertulia.kit import storage
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.users.models import Role
from tests.channels import telegram_samples as samples
from tests.channels.fake_telegram import BOT_TOKEN, FakeTelegram, fake_telegram
from tests.channels.support import channel_messages
from tests.conftest import Tenant
from tests.conversations.support import sign_in
from tests.fakes import callbacks_written
from tests.web.helpers import sign_in_as

CUSTOMER = telegram.User(id=424242, first_name="Lucía", last_name="Gómez", is_bot=False, username="lucia")
PRIVATE = telegram.Chat(id=424242, type="private", first_name="Lucía", last_name="Gómez", username="lucia")
WHEN = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    with fake_telegram() as server:
        server.add_bot()
        yield server


def _manager(db: Database, tenant: Tenant) -> dict[str, str]:
    return sign_in(db, tenant, Role.MANAGER).headers


def _connect(client: TestClient, db: Database, tenant: Tenant, fake: FakeTelegram) -> dict[str, Any]:
    response = client.post(
        "/api/v1/channels",
        json={"type": "telegram", "config": {"api_base_url": fake.url}, "secrets": {"bot_token": BOT_TOKEN}},
        headers=_manager(db, tenant),
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def _post(client: TestClient, fake: FakeTelegram, body: str | bytes, secret: str | None = None) -> int:
    hook = fake.webhooks[BOT_TOKEN]
    path = hook["url"].split("://", 1)[1].split("/", 1)[1]
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret if secret is not None else hook["secret_token"]}
    return client.post(f"/{path}", content=body, headers=headers).status_code


def _update(update_id: int, message_id: int = 77, **content: Any) -> str:
    built = telegram.Message(message_id=message_id, date=WHEN, chat=PRIVATE, from_user=CUSTOMER, **content)
    return telegram.Update(update_id=update_id, message=built).to_json()


# ----- connecting ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("immediate_queue")
def test_other_writers_go_on_while_telegram_is_asked(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeTelegram
) -> None:
    """On SQLite a transaction's first write takes the one write lock: connecting asks the provider
    before writing, so a slow provider does not hold up every other write."""
    asked, may_answer = threading.Event(), threading.Event()
    get_me = fake._getMe

    def slow_get_me(*args: Any) -> tuple[int, Any]:
        asked.set()
        may_answer.wait(timeout=30)
        return get_me(*args)

    fake._getMe = slow_get_me  # type: ignore[method-assign]
    headers = _manager(db, tenant)
    answers: list[Any] = []
    body = {"type": "telegram", "config": {"api_base_url": fake.url}, "secrets": {"bot_token": BOT_TOKEN}}
    connecting = threading.Thread(
        target=lambda: answers.append(client.post("/api/v1/channels", json=body, headers=headers))
    )
    connecting.start()
    try:
        assert asked.wait(timeout=30)

        def write() -> None:
            with db.transaction() as session:
                session.execute(
                    update(Contact).where(Contact.workspace_id == tenant.workspace_id).values(last_name="Pérez")
                )

        writer = threading.Thread(target=write)
        writer.start()
        writer.join(timeout=5)
        written_while_asked = not writer.is_alive()
    finally:
        may_answer.set()
        connecting.join(timeout=30)
    writer.join(timeout=30)
    assert written_while_asked
    assert answers[0].status_code == 201, answers[0].text


@pytest.mark.usefixtures("immediate_queue")
def test_connecting_names_the_bot_and_registers_the_webhook(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeTelegram
) -> None:
    created = _connect(client, db, tenant, fake)
    assert created["name"] == "@tertulia_test_bot"
    assert created["secrets"] == {"bot_token": "set", "webhook_secret": "set"}
    assert BOT_TOKEN not in str(created)
    hook = fake.webhooks[BOT_TOKEN]
    assert hook["url"] == created["callback_url"]
    assert created["callback_url"].endswith(f"/webhooks/{created['key']}")
    assert hook["allowed_updates"] == ["message", "edited_message", "callback_query"]
    assert created["health"]["state"] == "connected"
    with db.transaction(write=False) as session:
        channel = session.get(Channel, created["id"])
        assert channel is not None
        assert channel.secrets["webhook_secret"] == hook["secret_token"]


def test_a_refused_token_is_shown_beside_the_field_and_nothing_is_kept(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeTelegram
) -> None:
    wrong = "999:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    response = client.post(
        "/api/v1/channels",
        json={"type": "telegram", "config": {"api_base_url": fake.url}, "secrets": {"bot_token": wrong}},
        headers=_manager(db, tenant),
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"] == {"secrets.bot_token": "Telegram: Unauthorized"}
    malformed = client.post(
        "/api/v1/channels", json={"type": "telegram", "secrets": {"bot_token": "nope"}}, headers=_manager(db, tenant)
    )
    assert malformed.status_code == 422
    assert "secrets.bot_token" in malformed.json()["error"]["details"]
    with db.transaction(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Channel)) == 0


def test_the_cli_connects_as_the_page_does(
    db: Database, tenant: Tenant, fake: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TERTULIA_DATABASE_URL", db.url)
    monkeypatch.setenv("TERTULIA_BASE_URL", "https://crm.example")
    monkeypatch.setenv("MY_BOT_TOKEN", BOT_TOKEN)
    kit_settings.get_settings.cache_clear()
    kit_db.get_database.cache_clear()
    try:
        runner = CliRunner()
        args = ["channel", "connect", "telegram", "--workspace", tenant.name, "--set", f"api_base_url={fake.url}"]
        done = runner.invoke(app, [*args, "--set-from-env", "bot_token=MY_BOT_TOKEN"])
        assert done.exit_code == 0, done.output
        result = json.loads(done.stdout)
        assert set(result) == {"id", "callback_url"}
        assert result["callback_url"].startswith("https://crm.example/webhooks/")
        assert fake.webhooks[BOT_TOKEN]["url"] == result["callback_url"]
        listed = runner.invoke(app, ["channel", "list", "--workspace", tenant.name])
        assert listed.exit_code == 0
        assert '"name": "@tertulia_test_bot"' in listed.stdout
        assert '"state": "connected"' in listed.stdout
        refused = runner.invoke(app, [*args, "--set", "bot_token=999:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"])
        assert refused.exit_code == 1
        assert "Unauthorized" in refused.output
        unknown = runner.invoke(app, ["channel", "connect", "carrier-pigeon", "--workspace", tenant.name])
        assert unknown.exit_code == 1
        assert "must be one of" in unknown.output
        bad_pair = runner.invoke(app, [*args, "--set", "no-equals-sign"])
        assert bad_pair.exit_code == 2
    finally:
        kit_db.get_database().dispose()
        kit_settings.get_settings.cache_clear()
        kit_db.get_database.cache_clear()
    with db.transaction(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Channel)) == 1


# ----- inbound --------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("immediate_queue")
def test_a_message_is_stored_once_for_the_contact(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeTelegram
) -> None:
    channel = _connect(client, db, tenant, fake)
    body = _update(1, text="Hola, ¿tienen envíos a Puebla?")
    assert _post(client, fake, body, secret="wrong") == 403
    assert _post(client, fake, body) == 200
    assert _post(client, fake, body) == 200  # Telegram retrying the same update
    callbacks_written(db)
    [stored] = channel_messages(db, channel["id"])
    assert (stored.text, stored.provider_message_id, stored.direction) == (
        "Hola, ¿tienen envíos a Puebla?",
        "424242:77",
        Direction.INCOMING,
    )
    with db.transaction(write=False) as session:
        contact = session.get(Contact, stored.contact_id)
        assert contact is not None
        assert (contact.first_name, contact.last_name) == ("Lucía", "Gómez")
        identity = session.scalar(select(ContactIdentity).where(ContactIdentity.contact_id == contact.id))
        assert identity is not None
        assert (identity.channel, identity.external_id) == ("telegram", "424242")
        found = session.get(Channel, channel["id"])
        assert found is not None
        assert found.last_callback_at is not None


@pytest.mark.usefixtures("immediate_queue")
def test_documented_samples_through_the_endpoint(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeTelegram
) -> None:
    channel = _connect(client, db, tenant, fake)
    for number, body in enumerate((samples.TEXT, samples.FORWARDED, samples.ENTITIES, samples.INLINE_QUERY), 1):
        assert _post(client, fake, samples.renumbered(body, number, 2000 + number)) == 200
    callbacks_written(db)
    stored = channel_messages(db, channel["id"])
    assert [m.provider_message_id for m in stored] == ["1111111:2001", "1111111:2002", "1111111:2003"]


@pytest.mark.usefixtures("immediate_queue")
def test_a_photo_is_fetched_and_kept_as_a_file_of_the_conversation(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeTelegram
) -> None:
    channel = _connect(client, db, tenant, fake)
    file_id = fake.add_file(b"\xff\xd8\xff jpeg bytes", "photos/file_9.jpg")
    sizes = [
        telegram.PhotoSize(file_id="thumb", file_unique_id="t", width=90, height=60),
        telegram.PhotoSize(file_id=file_id, file_unique_id="big", width=1280, height=853, file_size=16),
    ]
    zipped = telegram.Document(file_id="zip", file_unique_id="z", file_name="fotos.zip", mime_type="application/zip")
    fake.files["zip"] = ("documents/file_1.zip", b"PK zip")
    assert _post(client, fake, _update(1, 10, photo=sizes, caption="así llegó")) == 200
    assert _post(client, fake, _update(2, 11, document=zipped)) == 200
    callbacks_written(db)
    photo, archive = channel_messages(db, channel["id"])
    assert (photo.type, photo.text) == (MessageType.IMAGE, "así llegó")
    [attachment] = photo.attachments
    assert attachment["content_type"] == "image/jpeg"
    with db.transaction(write=False) as session:
        stored = session.get(StoredFile, attachment["file_id"])
        assert stored is not None
        assert stored.conversation_id == photo.conversation_id
        assert storage.get_storage().get(stored.storage_key) == b"\xff\xd8\xff jpeg bytes"
    # A type we do not keep: the message stays, its file marked unavailable with the reason.
    assert archive.type == MessageType.FILE
    assert archive.attachments == [
        {
            "name": "fotos.zip",
            "size": 6,
            "content_type": "application/zip",
            "unavailable": "files of type application/zip are not accepted",
        }
    ]


@pytest.mark.usefixtures("immediate_queue")
def test_an_edit_changes_the_original_and_is_marked(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeTelegram
) -> None:
    channel = _connect(client, db, tenant, fake)
    assert _post(client, fake, samples.renumbered(samples.TEXT, 1)) == 200
    assert _post(client, fake, samples.renumbered(samples.EDITED, 2)) == 200
    assert _post(client, fake, samples.renumbered(samples.EDITED, 2)) == 200  # delivered twice
    callbacks_written(db)
    [message] = channel_messages(db, channel["id"])
    assert message.text == "Edited text"
    assert message.payload["edited_at"] == datetime.fromtimestamp(1441646600, UTC).isoformat()
    assert message.payload["edits"] == [{"text": "/start", "until": message.payload["edited_at"]}]


@pytest.mark.usefixtures("immediate_queue")
def test_a_button_press_is_the_customers_choice_and_is_answered(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeTelegram
) -> None:
    channel = _connect(client, db, tenant, fake)
    keyboard = telegram.InlineKeyboardMarkup([[telegram.InlineKeyboardButton("Sí", callback_data="yes")]])
    shown = telegram.Message(message_id=90, date=WHEN, chat=PRIVATE, text="¿Confirmas?", reply_markup=keyboard)
    query = telegram.CallbackQuery(id="cq-77", from_user=CUSTOMER, chat_instance="ci", data="yes", message=shown)
    assert _post(client, fake, telegram.Update(update_id=5, callback_query=query).to_json()) == 200
    callbacks_written(db)
    [choice] = channel_messages(db, channel["id"])
    assert (choice.type, choice.text, choice.payload["postback"]["data"]) == (MessageType.POSTBACK, "Sí", "yes")
    assert [c.params["callback_query_id"] for c in fake.called("answerCallbackQuery")] == ["cq-77"]


@pytest.mark.usefixtures("immediate_queue")
def test_a_deep_link_is_recorded_on_the_contact(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeTelegram
) -> None:
    channel = _connect(client, db, tenant, fake)
    assert _post(client, fake, _update(1, text="/start promo-navidad")) == 200
    callbacks_written(db)
    [message] = channel_messages(db, channel["id"])
    with db.transaction(write=False) as session:
        activity = session.scalar(
            select(ContactActivity).where(
                ContactActivity.contact_id == message.contact_id, ContactActivity.action == "referral"
            )
        )
        assert activity is not None
        assert activity.new_value == {"source": "telegram_start", "ref": "promo-navidad"}


# ----- outbound ------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("immediate_queue")
def test_replies_go_out_with_buttons_and_quotes_and_failures_keep_telegrams_reason(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeTelegram
) -> None:
    channel = _connect(client, db, tenant, fake)
    assert _post(client, fake, _update(1, 55, text="¿Precio?")) == 200
    callbacks_written(db)
    [incoming] = channel_messages(db, channel["id"])
    reply = client.post(
        f"/api/v1/conversations/{incoming.conversation_id}/messages",
        json={
            "text": "Son $100 <con IVA>",
            "buttons": [{"title": "Comprar", "payload": "buy"}],
            "reply_to_message_id": incoming.id,
        },
        headers=tenant.headers,
    )
    assert reply.status_code == 201, reply.text
    [call] = fake.sent("sendMessage")
    assert call.params["text"] == "Son $100 &lt;con IVA&gt;"
    assert call.params["reply_markup"] == {"inline_keyboard": [[{"text": "Comprar", "callback_data": "buy"}]]}
    assert call.params["reply_parameters"]["message_id"] == 55
    with db.transaction(write=False) as session:
        sent = session.get(Message, reply.json()["id"])
        assert sent is not None
        assert sent.status == DeliveryStatus.SENT
        assert sent.provider_message_id is not None
        assert sent.provider_message_id.startswith("424242:")
        found = session.get(Channel, channel["id"])
        assert found is not None
        assert found.last_sent_at is not None
    fake.blocked.add(424242)
    time.sleep(1.05)  # one message a second per chat: the next one would wait its turn
    refused = client.post(
        f"/api/v1/conversations/{incoming.conversation_id}/messages",
        json={"text": "¿Sigues ahí?"},
        headers=tenant.headers,
    )
    with db.transaction(write=False) as session:
        failed = session.get(Message, refused.json()["id"])
        assert failed is not None
        assert (failed.status, failed.status_reason) == (
            DeliveryStatus.FAILED,
            "Forbidden: bot was blocked by the user",
        )
        found = session.get(Channel, channel["id"])
        assert found is not None
        # One customer blocking the bot is that message's failure: the channel still works.
        assert (found.last_error, found.last_error_at) == (None, None)
    state = client.get(f"/api/v1/channels/{channel['id']}", headers=_manager(db, tenant)).json()["health"]
    assert (state["state"], state["last_error"]) == ("connected", None)
    assert _channel_events(db, tenant.workspace_id) == []


def _channel_events(db: Database, workspace_id: int) -> list[tuple[str, dict[str, Any]]]:
    with db.transaction(write=False) as session:
        rows = session.scalars(
            select(EventRecord)
            .where(EventRecord.workspace_id == workspace_id, EventRecord.type.like("channel.%"))
            .order_by(EventRecord.id)
        )
        return [(row.type, dict(row.payload)) for row in rows]


@pytest.mark.usefixtures("immediate_queue")
def test_a_revoked_token_puts_the_channel_in_error_once_and_a_blocked_chat_does_not(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeTelegram
) -> None:
    channel = _connect(client, db, tenant, fake)
    for update_id, chat in ((1, 424242), (2, 515151)):
        sender = telegram.User(id=chat, first_name="Cliente", is_bot=False)
        room = telegram.Chat(id=chat, type="private", first_name="Cliente")
        built = telegram.Message(message_id=70 + update_id, date=WHEN, chat=room, from_user=sender, text="hola")
        assert _post(client, fake, telegram.Update(update_id=update_id, message=built).to_json()) == 200
    callbacks_written(db)
    conversations = sorted({m.conversation_id for m in channel_messages(db, channel["id"])})
    assert len(conversations) == 2

    def reply(conversation_id: int, text: str) -> Message:
        posted = client.post(
            f"/api/v1/conversations/{conversation_id}/messages", json={"text": text}, headers=tenant.headers
        )
        assert posted.status_code == 201, posted.text
        with db.transaction(write=False) as session:
            message = session.get(Message, posted.json()["id"])
            assert message is not None
            return message

    fake.blocked.add(424242)
    assert reply(conversations[0], "uno").status == DeliveryStatus.FAILED
    assert _channel_events(db, tenant.workspace_id) == []

    fake.bots.pop(BOT_TOKEN)  # the bot's token revoked with @BotFather's /revoke
    for text in ("dos", "tres"):
        refused = reply(conversations[1], text)
        assert (refused.status, refused.status_reason) == (DeliveryStatus.FAILED, "Unauthorized")
        time.sleep(1.05)  # one message a second per chat
    state = client.get(f"/api/v1/channels/{channel['id']}", headers=_manager(db, tenant)).json()["health"]
    assert (state["state"], state["last_error"]) == ("error", "Unauthorized")
    assert _channel_events(db, tenant.workspace_id) == [
        (
            "channel.errored",
            {
                "channel_id": channel["id"],
                "name": "@tertulia_test_bot",
                "channel_type": "telegram",
                "error": "Unauthorized",
                "fault": "credentials",
                "code": "401",
            },
        )
    ]

    fake.add_bot()  # a new token given to the channel works again
    assert reply(conversations[1], "cuatro").status == DeliveryStatus.SENT
    assert [kind for kind, _payload in _channel_events(db, tenant.workspace_id)] == [
        "channel.errored",
        "channel.recovered",
    ]
    state = client.get(f"/api/v1/channels/{channel['id']}", headers=_manager(db, tenant)).json()["health"]
    assert state["state"] == "connected"


@pytest.mark.usefixtures("immediate_queue")
def test_throttling_waits_and_counts_one_attempt(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeTelegram
) -> None:
    channel = _connect(client, db, tenant, fake)
    assert _post(client, fake, _update(1, text="hola")) == 200
    callbacks_written(db)
    [incoming] = channel_messages(db, channel["id"])
    fake.fail_next("sendMessage", 429, "Too Many Requests: retry after 30", retry_after=30)
    reply = client.post(
        f"/api/v1/conversations/{incoming.conversation_id}/messages", json={"text": "hola"}, headers=tenant.headers
    )
    with db.transaction(write=False) as session:
        waiting = session.get(Message, reply.json()["id"])
        assert waiting is not None
        # Retried in 30 s (Telegram's retry_after), not failed.
        assert (waiting.status, waiting.attempts) == (DeliveryStatus.PENDING, 1)


def test_the_pace_holds_a_second_message_to_the_same_chat(db: Database, tenant: Tenant) -> None:
    channel = Channel(key="pace-test-key", type="telegram", config={})
    rules = TelegramAdapter.rules
    now = utcnow()
    with db.transaction() as session:
        assert pace_turn(session, rules, channel, "1", lambda: now).wait == 0
        assert pace_turn(session, rules, channel, "1", lambda: now).wait > 0  # one a second per chat
        assert pace_turn(session, rules, channel, "2", lambda: now).wait == 0  # another chat is not held back
        assert pace_turn(session, rules, channel, "1", lambda: now + timedelta(seconds=1 + HEADROOM)).wait == 0


@pytest.mark.usefixtures("immediate_queue")
def test_disconnecting_keeps_the_history(client: TestClient, db: Database, tenant: Tenant, fake: FakeTelegram) -> None:
    channel = _connect(client, db, tenant, fake)
    assert _post(client, fake, _update(1, text="hola")) == 200
    callbacks_written(db)
    hook = dict(fake.webhooks[BOT_TOKEN])
    done = client.post(f"/api/v1/channels/{channel['id']}/disconnect", headers=_manager(db, tenant))
    assert done.status_code == 200
    assert done.json()["health"]["state"] == "disconnected"
    assert BOT_TOKEN not in fake.webhooks
    assert len(channel_messages(db, channel["id"])) == 1
    path = hook["url"].split("://", 1)[1].split("/", 1)[1]
    late = client.post(
        f"/{path}",
        content=_update(2, 78, text="¿hola?"),
        headers={"X-Telegram-Bot-Api-Secret-Token": hook["secret_token"]},
    )
    # Refused, or (within the callback writer's 2 s trust in a channel it looked up) dropped by the task.
    assert late.status_code in (200, 404)
    callbacks_written(db)
    assert len(channel_messages(db, channel["id"])) == 1
    again = client.post(f"/api/v1/channels/{channel['id']}/connect", headers=_manager(db, tenant))
    assert again.status_code == 200
    assert fake.webhooks[BOT_TOKEN]["url"] == hook["url"]


@pytest.mark.usefixtures("immediate_queue")
def test_a_file_telegram_cannot_give_now_is_fetched_on_a_later_try(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeTelegram
) -> None:
    channel = _connect(client, db, tenant, fake)
    file_id = fake.add_file(b"OggS voice", "voice/file_1.oga")
    voice = telegram.Voice(file_id=file_id, file_unique_id="v", duration=2, mime_type="audio/ogg", file_size=10)
    fake.fail_next("getFile", 502, "Bad Gateway")
    assert _post(client, fake, _update(1, voice=voice)) == 200
    spool = callback_spool(db)
    deadline = time.monotonic() + 15
    while not fake.called("getFile"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.2)
    # Not written yet, not lost: the callback waits in the spool for its lease to run out.
    assert channel_messages(db, channel["id"]) == []
    assert spool.waiting() == 1
    with spool.database.transaction() as session:
        session.execute(update(spool.table).values(lease_until=utcnow() - timedelta(seconds=1)))
    assert process_callbacks(db) == 1
    [message] = channel_messages(db, channel["id"])
    assert (message.type, message.payload["voice"]) == (MessageType.AUDIO, True)
    [attachment] = message.attachments
    assert attachment["content_type"] == "audio/ogg"
    assert spool.waiting() == 0


@pytest.mark.usefixtures("immediate_queue")
def test_on_its_last_try_the_message_is_kept_without_its_file(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeTelegram
) -> None:
    channel = _connect(client, db, tenant, fake)
    voice = telegram.Voice(file_id="never", file_unique_id="v", duration=2, mime_type="audio/ogg", file_size=10)
    for _ in range(MAX_ATTEMPTS):
        fake.fail_next("getFile", 503, "Service Unavailable")
    assert _post(client, fake, _update(1, voice=voice)) == 200
    spool = callback_spool(db)
    deadline = time.monotonic() + 15
    while not fake.called("getFile"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.2)
    with spool.database.transaction() as session:
        session.execute(
            update(spool.table).values(lease_until=utcnow() - timedelta(seconds=1), attempts=MAX_ATTEMPTS - 1)
        )
    assert process_callbacks(db) == 1
    [message] = channel_messages(db, channel["id"])
    assert message.attachments[0]["unavailable"] == "Service Unavailable"
    assert spool.waiting() == 0


@pytest.mark.usefixtures("immediate_queue")
def test_a_file_sent_from_the_inbox_is_uploaded_to_telegram(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeTelegram
) -> None:
    channel = _connect(client, db, tenant, fake)
    assert _post(client, fake, _update(1, text="¿Me mandas el catálogo?")) == 200
    callbacks_written(db)
    [incoming] = channel_messages(db, channel["id"])
    uploaded = client.post(
        "/api/v1/files",
        files={"file": ("catalogo.pdf", b"%PDF-1.4 catalogue", "application/pdf")},
        data={"conversation_id": str(incoming.conversation_id)},
        headers=tenant.headers,
    )
    assert uploaded.status_code == 201, uploaded.text
    reply = client.post(
        f"/api/v1/conversations/{incoming.conversation_id}/messages",
        json={"type": "file", "text": "Aquí lo tienes", "attachments": [uploaded.json()["id"]]},
        headers=tenant.headers,
    )
    assert reply.status_code == 201, reply.text
    [call] = fake.sent("sendDocument")
    assert call.files["document"] == ("catalogo.pdf", b"%PDF-1.4 catalogue", "application/pdf")
    assert (call.params["caption"], call.params["chat_id"]) == ("Aquí lo tienes", "424242")
    with db.transaction(write=False) as session:
        sent = session.get(Message, reply.json()["id"])
        assert sent is not None
        assert sent.status == DeliveryStatus.SENT


@pytest.mark.usefixtures("immediate_queue")
def test_the_contact_page_shows_the_deep_link(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeTelegram
) -> None:
    channel = _connect(client, db, tenant, fake)
    assert _post(client, fake, _update(1, text="/start promo-navidad")) == 200
    callbacks_written(db)
    [message] = channel_messages(db, channel["id"])
    sign_in_as(client, db, tenant.owner_id, "owner-password")
    page = client.get(f"/contacts/{message.contact_id}", headers={"Accept-Language": "es"})
    assert "llegó por un enlace" in page.text
    assert 'data-testid="referral">promo-navidad<' in page.text
