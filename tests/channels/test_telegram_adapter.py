"""The Telegram adapter on its own (no database): Telegram's documented samples and updates built by
python-telegram-bot parse as they should; sending, connecting, media and the chat menu go over HTTP
to the local fake Bot API server, whose answers python-telegram-bot parses too."""

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import telegram

from tertulia.channels.adapters.telegram import TelegramAdapter
from tertulia.channels.models import Channel
from tertulia.channels.protocol import (
    InboundEdit,
    MessageType,
    OutboundMessage,
    PermanentError,
    SetupRefused,
    TransientError,
    WebhookRejected,
    WebhookRequest,
)
from tertulia.kit import storage
from tests.channels import telegram_samples as samples
from tests.channels.fake_telegram import BOT_TOKEN, FakeTelegram, fake_telegram

ADAPTER = TelegramAdapter()
SECRET = "s3cret-token_for-tests"


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    with fake_telegram() as server:
        server.add_bot()
        yield server


def _channel(api: str = "https://api.telegram.org", **config: Any) -> Channel:
    cleaned, secrets = ADAPTER.clean_config({"api_base_url": api, **config}, {"bot_token": BOT_TOKEN})
    return Channel(
        id=5,
        workspace_id=1,
        type="telegram",
        name="Bot",
        key="k",
        active=True,
        config=cleaned,
        secrets={**secrets, "webhook_secret": SECRET},
    )


def _post(body: bytes | str, secret: str | None = SECRET) -> WebhookRequest:
    data = body.encode() if isinstance(body, str) else body
    headers = {"x-telegram-bot-api-secret-token": secret} if secret is not None else {}
    return WebhookRequest(method="POST", url="https://t.example/webhooks/k", headers=headers, query={}, body=data)


def _parse(body: bytes | str, channel: Channel | None = None) -> Any:
    channel = channel or _channel()
    request = _post(body)
    ADAPTER.verify_webhook(channel, request)
    return ADAPTER.parse_webhook(channel, request)


def _outbound(text: str | None = "hola", **kwargs: Any) -> OutboundMessage:
    values: dict[str, Any] = {
        "message_id": 7,
        "idempotency_key": "tertulia-msg-7",
        "recipient_id": "1111111",
        "type": MessageType.TEXT,
        "text": text,
        "attachments": [],
        "payload": {},
    }
    values.update(kwargs)
    return OutboundMessage(**values)


# ----- verification ---------------------------------------------------------------------------------


def test_the_secret_token_header_is_required_and_compared() -> None:
    channel = _channel()
    ADAPTER.verify_webhook(channel, _post(samples.TEXT))
    for wrong in (None, "", SECRET[:-1], SECRET + "x", "0" * len(SECRET)):
        with pytest.raises(WebhookRejected):
            ADAPTER.verify_webhook(channel, _post(samples.TEXT, wrong))
    get = WebhookRequest(method="GET", url="https://t.example/webhooks/k", headers={}, query={}, body=b"")
    with pytest.raises(WebhookRejected):
        ADAPTER.verify_webhook(channel, get)


# ----- Telegram's own samples ------------------------------------------------------------------------


def test_documented_text_sample_is_a_message_with_a_start_referral() -> None:
    parsed = _parse(samples.TEXT)
    [message] = parsed.messages
    assert (message.sender_id, message.provider_message_id, message.type) == ("1111111", "1111111:1365", "text")
    assert (message.text, message.first_name, message.last_name) == ("/start", "Test Firstname", "Test Lastname")
    assert message.sent_at == datetime.fromtimestamp(1441645532, UTC)
    assert message.payload["referral"] == {"source": "telegram_start", "ref": None}
    assert message.payload["telegram"]["username"] == "Testusername"


def test_documented_samples_forward_reply_entities() -> None:
    assert _parse(samples.FORWARDED).messages[0].payload["forwarded"] is True
    assert _parse(samples.REPLY).messages[0].payload["reply_to"] == "1111111:1334"
    entities = _parse(samples.ENTITIES).messages[0]
    assert (entities.type, entities.text) == (MessageType.TEXT, "Bold and italics")


def test_documented_edit_is_an_edit_of_the_original_not_a_message() -> None:
    parsed = _parse(samples.EDITED)
    assert parsed.messages == []
    assert parsed.edits == [
        InboundEdit("1111111:1365", "Edited text", datetime.fromtimestamp(1441646600, UTC), "1111111")
    ]


def test_documented_media_samples_are_files_to_fetch() -> None:
    audio = _parse(samples.AUDIO).messages[0]
    assert audio.type == MessageType.AUDIO
    assert audio.attachments[0]["provider_file"] == {
        "file_id": "AwADBAADbXXXXXXXXXXXGBdhD2l6_XX",
        "file_unique_id": None,
        "size": 3897500,
        "content_type": "audio/mpeg",
        "name": "Test music file",
    }
    voice = _parse(samples.VOICE).messages[0]
    assert (voice.type, voice.payload["voice"], voice.attachments[0]["provider_file"]["content_type"]) == (
        MessageType.AUDIO,
        True,
        "audio/ogg",
    )
    document = _parse(samples.DOCUMENT).messages[0]
    assert (document.type, document.attachments[0]["provider_file"]["name"]) == (MessageType.FILE, "Testfile.pdf")


def test_documented_callback_query_is_a_postback_answered_later() -> None:
    parsed = _parse(samples.CALLBACK_QUERY)
    [choice] = parsed.messages
    assert (choice.type, choice.provider_message_id, choice.sender_id) == (
        "postback",
        "cbq:4382bfdwdsb323b2d9",
        "1111111",
    )
    assert choice.text == "Data from button callback"
    assert choice.payload["postback"]["source"] == "inline_keyboard"
    assert parsed.follow_ups == [{"method": "answerCallbackQuery", "callback_query_id": "4382bfdwdsb323b2d9"}]


def test_update_types_not_subscribed_to_carry_nothing() -> None:
    parsed = _parse(samples.INLINE_QUERY)
    assert (parsed.messages, parsed.edits, parsed.statuses) == ([], [], [])


def test_a_body_that_is_not_an_update_is_refused() -> None:
    for body in (b"[]", b'{"update_id": 1, "message": {"text": "no chat"}}'):
        with pytest.raises(ValueError):  # noqa: PT012
            request = _post(body)
            ADAPTER.parse_webhook(_channel(), request)


# ----- updates built by python-telegram-bot ------------------------------------------------------------

CUSTOMER = telegram.User(id=424242, first_name="Lucía", last_name="Gómez", is_bot=False, username="lucia")
PRIVATE = telegram.Chat(id=424242, type="private", first_name="Lucía", last_name="Gómez", username="lucia")
WHEN = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def _update(update_id: int = 1, **message: Any) -> str:
    built = telegram.Message(
        message_id=message.pop("message_id", 77), date=WHEN, chat=PRIVATE, from_user=CUSTOMER, **message
    )
    return telegram.Update(update_id=update_id, message=built).to_json()


def test_photo_takes_the_largest_size() -> None:
    sizes = [
        telegram.PhotoSize(file_id="small", file_unique_id="s", width=90, height=60, file_size=1200),
        telegram.PhotoSize(file_id="large", file_unique_id="l", width=1280, height=853, file_size=98000),
        telegram.PhotoSize(file_id="medium", file_unique_id="m", width=320, height=213, file_size=15000),
    ]
    message = _parse(_update(photo=sizes, caption="¿Les queda en rojo?")).messages[0]
    assert (message.type, message.text) == (MessageType.IMAGE, "¿Les queda en rojo?")
    assert message.attachments[0]["provider_file"]["file_id"] == "large"
    assert message.attachments[0]["provider_file"]["content_type"] == "image/jpeg"


def test_location_contact_video_and_sticker() -> None:
    location = _parse(_update(location=telegram.Location(longitude=-99.1332, latitude=19.4326))).messages[0]
    assert (location.type, location.payload["location"]) == (
        MessageType.LOCATION,
        {"latitude": 19.4326, "longitude": -99.1332},
    )
    card = telegram.Contact(phone_number="+5215512345678", first_name="Ana", user_id=99)
    contact = _parse(_update(contact=card)).messages[0]
    assert (contact.type, contact.payload["contact"]["phone_number"]) == (MessageType.CONTACT, "+5215512345678")
    video = telegram.Video(file_id="v1", file_unique_id="uv1", width=640, height=360, duration=3, mime_type="video/mp4")
    assert _parse(_update(video=video)).messages[0].type == MessageType.VIDEO
    sticker = telegram.Sticker(
        file_id="st",
        file_unique_id="ust",
        width=512,
        height=512,
        is_animated=False,
        is_video=False,
        type="regular",
        emoji="👍",
    )
    shown = _parse(_update(sticker=sticker)).messages[0]
    assert (shown.type, shown.text, shown.payload["unsupported"]) == (MessageType.UNSUPPORTED, "👍", "sticker")
    dice = _parse(_update(dice=telegram.Dice(value=3, emoji="🎲"))).messages[0]
    assert (dice.type, dice.payload["unsupported"]) == (MessageType.UNSUPPORTED, "dice")


def test_start_with_a_deep_link_payload_and_menu_commands() -> None:
    channel = _channel(menu=[{"command": "precios", "description": "Ver precios"}])
    start = _parse(_update(text="/start promo-navidad"), channel).messages[0]
    assert start.payload["referral"] == {"source": "telegram_start", "ref": "promo-navidad"}
    chosen = _parse(_update(text="/precios"), channel).messages[0]
    assert (chosen.type, chosen.payload["postback"]) == (
        MessageType.POSTBACK,
        {"data": "/precios", "title": "Ver precios", "source": "chat_menu"},
    )
    assert _parse(_update(text="/otro"), channel).messages[0].type == MessageType.TEXT


def test_a_group_is_one_contact_and_the_author_is_kept() -> None:
    group = telegram.Chat(id=-100200300, type="supergroup", title="Clientes VIP")
    built = telegram.Message(message_id=5, date=WHEN, chat=group, from_user=CUSTOMER, text="hola a todos")
    message = _parse(telegram.Update(update_id=3, message=built).to_json()).messages[0]
    assert (message.sender_id, message.display_name, message.payload["author"]) == (
        "-100200300",
        "Clientes VIP",
        "Lucía Gómez",
    )


def test_button_press_records_the_buttons_title() -> None:
    keyboard = telegram.InlineKeyboardMarkup(
        [[telegram.InlineKeyboardButton("Sí, confirmar", callback_data="confirm")]]
    )
    shown = telegram.Message(message_id=90, date=WHEN, chat=PRIVATE, text="¿Confirmas?", reply_markup=keyboard)
    query = telegram.CallbackQuery(id="cq-1", from_user=CUSTOMER, chat_instance="ci", data="confirm", message=shown)
    parsed = _parse(telegram.Update(update_id=4, callback_query=query).to_json())
    [choice] = parsed.messages
    assert (choice.text, choice.payload["postback"]) == (
        "Sí, confirmar",
        {"data": "confirm", "title": "Sí, confirmar", "source": "inline_keyboard", "message": "424242:90"},
    )


# ----- sending, through the fake Bot API -----------------------------------------------------------------


def test_text_is_sent_as_typed_never_as_markup(fake: FakeTelegram) -> None:
    channel = _channel(fake.url)
    text = '<b>1 < 2</b> & "comillas"'
    result = ADAPTER.send(channel, _outbound(text))
    [call] = fake.sent("sendMessage")
    assert call.params["parse_mode"] == "HTML"
    assert call.params["chat_id"] == 1111111
    assert call.params["text"] == '&lt;b&gt;1 &lt; 2&lt;/b&gt; &amp; "comillas"'
    # The fake parses HTML as Telegram does: the customer sees exactly what the agent typed.
    assert result.provider_message_id.startswith("1111111:")
    assert result.status == "sent"


def test_answers_of_the_fake_parse_as_telegram_messages(fake: FakeTelegram) -> None:
    channel = _channel(fake.url)
    buttons = [{"title": "Sí", "payload": "yes"}, {"title": "Web", "url": "https://shop.example"}]
    ADAPTER.send(channel, _outbound("¿Confirmas?", payload={"buttons": buttons}, reply_to_provider_id="1111111:55"))
    [call] = fake.sent("sendMessage")
    assert call.params["reply_markup"] == {
        "inline_keyboard": [[{"text": "Sí", "callback_data": "yes"}], [{"text": "Web", "url": "https://shop.example"}]]
    }
    assert call.params["reply_parameters"] == {"message_id": 55, "allow_sending_without_reply": True}
    # python-telegram-bot, an independent client, reads the fake's answers as Telegram's.
    bot = telegram.Bot(BOT_TOKEN, base_url=f"{fake.url}/bot", base_file_url=f"{fake.url}/file/bot")

    file_id = fake.add_file(b"\xff\xd8 a photo", "photos/file_5.jpg")

    async def use() -> tuple[telegram.User, telegram.Message, bool, telegram.Message, bytearray]:
        async with bot:
            me = await bot.get_me()
            sent = await bot.send_message(chat_id=1111111, text="hola", reply_markup=None)
            commands = await bot.set_my_commands([telegram.BotCommand("precios", "Ver precios")])
            photo = await bot.send_photo(chat_id=1111111, photo=b"\x89PNG bytes", caption="foto")
            found = await bot.get_file(file_id)
            return me, sent, commands, photo, await found.download_as_bytearray()

    me, sent, commands, photo, downloaded = asyncio.run(use())
    assert (me.username, sent.text, sent.chat.id, commands) == ("tertulia_test_bot", "hola", 1111111, True)
    assert (photo.caption, photo.photo[-1].file_size) == ("foto", len(b"\x89PNG bytes"))
    assert bytes(downloaded) == b"\xff\xd8 a photo"
    # And the fake's raw answer, read by python-telegram-bot's own parser.
    raw = fake.handle(BOT_TOKEN, "sendMessage", {"chat_id": 1111111, "text": "hola"}, {})[1]["result"]
    assert telegram.Message.de_json(raw, bot).text == "hola"
    assert fake.commands[BOT_TOKEN] == [{"command": "precios", "description": "Ver precios"}]


def test_files_are_uploaded_from_our_storage_with_the_text_as_caption(fake: FakeTelegram) -> None:
    key = storage.new_key(1)
    storage.get_storage().put(key, b"\x89PNG fake bytes")
    photo = {"file_id": 1, "name": "foto.png", "size": 15, "content_type": "image/png", "storage_key": key}
    pdf = {
        "file_id": 2,
        "name": "menu.pdf",
        "size": 10,
        "content_type": "application/pdf",
        "url": "https://x.example/m.pdf",
    }
    ADAPTER.send(_channel(fake.url), _outbound("Aquí está", type=MessageType.IMAGE, attachments=[photo, pdf]))
    photo_call, document_call = fake.sent()
    assert photo_call.method == "sendPhoto"
    assert photo_call.files["photo"] == ("foto.png", b"\x89PNG fake bytes", "image/png")
    assert photo_call.params["caption"] == "Aquí está"
    assert (document_call.method, document_call.params["document"]) == ("sendDocument", "https://x.example/m.pdf")
    assert "caption" not in document_call.params


def test_a_text_too_long_for_a_caption_goes_first_on_its_own(fake: FakeTelegram) -> None:
    pdf = {
        "file_id": 2,
        "name": "m.pdf",
        "size": 10,
        "content_type": "application/pdf",
        "url": "https://x.example/m.pdf",
    }
    ADAPTER.send(_channel(fake.url), _outbound("x" * 1500, type=MessageType.FILE, attachments=[pdf]))
    assert [c.method for c in fake.sent()] == ["sendMessage", "sendDocument"]


def test_provider_errors_map_to_transient_and_permanent(fake: FakeTelegram) -> None:
    channel = _channel(fake.url)
    fake.fail_next("sendMessage", 429, "Too Many Requests: retry after 7", retry_after=7)
    with pytest.raises(TransientError) as throttled:
        ADAPTER.send(channel, _outbound())
    assert throttled.value.retry_after == 7
    fake.fail_next("sendMessage", 502, "Bad Gateway")
    with pytest.raises(TransientError):
        ADAPTER.send(channel, _outbound())
    fake.blocked.add(1111111)
    with pytest.raises(PermanentError) as blocked:
        ADAPTER.send(channel, _outbound())
    assert blocked.value.reason == "Forbidden: bot was blocked by the user"
    fake.fail_next("sendMessage", 400, "Bad Request: chat not found")
    with pytest.raises(PermanentError) as missing:
        ADAPTER.send(channel, _outbound())
    assert (missing.value.reason, missing.value.code) == ("Bad Request: chat not found", "400")


def test_an_unreachable_api_is_transient() -> None:
    with pytest.raises(TransientError):
        ADAPTER.send(_channel("http://127.0.0.1:9"), _outbound())


# ----- connecting, media, chat menu ---------------------------------------------------------------------------


def test_connect_names_the_bot_and_registers_the_webhook(fake: FakeTelegram) -> None:
    channel = _channel(fake.url)
    config = ADAPTER.connect(channel, "https://crm.example/webhooks/abc")
    assert config["bot"] == {"id": 123456789, "username": "tertulia_test_bot", "first_name": "Tertulia"}
    assert fake.webhooks[BOT_TOKEN] == {
        "url": "https://crm.example/webhooks/abc",
        "secret_token": SECRET,
        "allowed_updates": ["message", "edited_message", "callback_query"],
    }
    ADAPTER.disconnect(channel)
    assert BOT_TOKEN not in fake.webhooks


def test_connect_refusals_name_the_field_at_fault(fake: FakeTelegram) -> None:
    unknown = _channel(fake.url)
    unknown.secrets = {**unknown.secrets, "bot_token": "999:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}
    with pytest.raises(SetupRefused) as refused:
        ADAPTER.connect(unknown, "https://crm.example/webhooks/abc")
    assert (refused.value.field, refused.value.reason) == ("secrets.bot_token", "Unauthorized")
    fake.require_https = True
    with pytest.raises(SetupRefused) as http_only:
        ADAPTER.connect(_channel(fake.url), "http://crm.example/webhooks/abc")
    assert http_only.value.field == "callback_url"
    assert "HTTPS" in http_only.value.reason
    with pytest.raises(SetupRefused) as unreachable:
        ADAPTER.connect(_channel("http://127.0.0.1:9"), "https://crm.example/webhooks/abc")
    assert unreachable.value.field == "config.api_base_url"


def test_media_is_fetched_with_getfile_and_the_file_url(fake: FakeTelegram) -> None:
    file_id = fake.add_file(b"OggS voice", "voice/file_3.oga")
    fetched = ADAPTER.fetch_media(_channel(fake.url), {"file_id": file_id, "size": 10, "content_type": "audio/ogg"})
    assert (fetched.data, fetched.content_type, fetched.name) == (b"OggS voice", "audio/ogg", "file_3.oga")
    with pytest.raises(PermanentError):
        ADAPTER.fetch_media(_channel(fake.url), {"file_id": file_id, "size": 21 * 1024 * 1024})
    with pytest.raises(PermanentError):
        ADAPTER.fetch_media(_channel(fake.url), {"file_id": "gone"})


def test_menu_commands_are_checked_and_pushed(fake: FakeTelegram) -> None:
    items = ADAPTER.clean_menu([{"command": "/Precios", "description": "  Ver   precios "}])
    assert items == [{"command": "precios", "description": "Ver precios"}]
    answer = ADAPTER.push_menu(_channel(fake.url), items)
    assert json.loads(answer) == {"ok": True, "result": True}
    assert fake.commands[BOT_TOKEN] == items
    with pytest.raises(Exception, match="lowercase"):
        ADAPTER.clean_menu([{"command": "con espacio", "description": "x"}])


def test_config_is_checked() -> None:
    with pytest.raises(Exception, match="BotFather"):
        ADAPTER.clean_config({}, {"bot_token": "not a token"})
    with pytest.raises(Exception, match="http"):
        ADAPTER.clean_config({"api_base_url": "ftp://x"}, {"bot_token": BOT_TOKEN})
    config, secrets = ADAPTER.clean_config({}, {"bot_token": f" {BOT_TOKEN} "})
    assert config == {"api_base_url": "https://api.telegram.org"}
    assert secrets["bot_token"] == BOT_TOKEN
    assert len(secrets["webhook_secret"]) >= 32
