"""The Telegram adapter: a bot, connected by the token @BotFather gives, over the Bot API.

Wire format: ../shared/reference/channels.md section 6 (and core.telegram.org/bots/api).

- Connect (`connect`): `getMe` names the bot; `setWebhook` registers the channel's callback URL with
  a secret token we generate (`webhook_secret`) and the update types we read (ALLOWED_UPDATES).
  Disconnect: `deleteWebhook`. Every call goes to the channel's `api_base_url` (default
  https://api.telegram.org): a proxy, a local Bot API server or, in tests, a fake.
- Callbacks: Telegram signs nothing; every update carries the secret token in
  X-Telegram-Bot-Api-Secret-Token, compared in constant time. There is no handshake.
- Identity: the chat id (a private chat's id is the user's id, the same for every bot), so one person
  is one contact across the workspace's bots. A group the bot is in is one contact too (its title as
  the name); who wrote each message is in the message's payload.
- Provider message ids are "<chat id>:<message id>" (message ids are unique per chat only); a
  callback query is "cbq:<id>". An update delivered twice carries the same ids, so it is stored once.
- Inbound: text; photos (the largest size), documents, voice notes, audio, video, video notes and
  animations as files to fetch (`fetch_media`: getFile, then the file URL; the Bot API lets bots
  download at most 20 MB); locations, venues and shared contacts as payload; stickers and anything
  else as UNSUPPORTED, never dropped. `/start <payload>` (a t.me/<bot>?start=<payload> deep link)
  carries payload "referral", which the inbox records on the contact. A bot command the channel's
  chat menu lists, and a press on an inline-keyboard button (a callback query, answered with
  answerCallbackQuery once stored), are POSTBACKs: the customer's choice, usable by workflows.
  An edited message is an `InboundEdit` of the original.
- Outbound: text escaped for parse_mode HTML (what an agent types is shown as typed, never as
  markup), at most 4096 characters; files by upload from our storage (or by URL when the attachment
  has one), one message each, the text as the first one's caption when it fits in 1024 characters;
  `payload["buttons"]` as an inline keyboard; replies quote the original (reply_parameters).
  There are no receipts: a message Telegram accepted is SENT.
- Errors: 429 is a TransientError with Telegram's `retry_after`; 5xx and timeouts are transient;
  anything else (403 "bot was blocked by the user", 400 "chat not found") is a PermanentError whose
  reason is Telegram's description. Only 401/404 (the token) and 409 (another consumer of the
  bot's updates) are the channel's fault (FAULTS): a blocked bot or a missing chat fails that
  message and leaves the channel connected.
"""

import hmac
import html
import json
import mimetypes
import re
import secrets
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

from tertulia.channels import reply_choices
from tertulia.channels.models import Channel
from tertulia.channels.protocol import (
    ChannelError,
    ChannelRules,
    Fault,
    FetchedMedia,
    InboundEdit,
    InboundMessage,
    MessageType,
    OutboundMessage,
    Pace,
    ParsedWebhook,
    PermanentError,
    ReplyChoices,
    SendResult,
    SetupRefused,
    TransientError,
    WebhookRejected,
    WebhookRequest,
)
from tertulia.kit import storage
from tertulia.kit.errors import ValidationFailed
from tertulia.kit.outgoing_http import provider_http

TYPE = "telegram"
DEFAULT_API_BASE_URL = "https://api.telegram.org"
SECRET_HEADER = "x-telegram-bot-api-secret-token"  # noqa: S105 (a header name)
ALLOWED_UPDATES = ("message", "edited_message", "callback_query")
MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024  # what the Bot API lets a bot download
MAX_PHOTO_UPLOAD_BYTES = 10 * 1024 * 1024  # larger photos go as documents
MAX_BUTTONS = 20
MAX_CALLBACK_DATA_BYTES = 64
MAX_BUTTON_TITLE = 64  # what we cut a button's text to; Telegram shows no more on a phone anyway
MAX_COMMANDS = 100
BOT_TOKEN = re.compile(r"^\d{1,20}:[A-Za-z0-9_-]{20,200}$")
COMMAND = re.compile(r"^[a-z0-9_]{1,32}$")
TIMEOUT = httpx.Timeout(15.0, connect=5.0)
UPLOAD_TIMEOUT = httpx.Timeout(120.0, connect=5.0)
FOLLOW_UPS = frozenset({"answerCallbackQuery"})
# What a message may carry besides its content: the first key not listed is what it is.
_MESSAGE_META = frozenset(
    {
        "message_id",
        "message_thread_id",
        "from",
        "sender_chat",
        "sender_boost_count",
        "sender_business_bot",
        "date",
        "business_connection_id",
        "chat",
        "forward_origin",
        "forward_from",
        "forward_from_chat",
        "forward_from_message_id",
        "forward_signature",
        "forward_sender_name",
        "forward_date",
        "is_topic_message",
        "is_automatic_forward",
        "reply_to_message",
        "external_reply",
        "quote",
        "reply_to_story",
        "via_bot",
        "edit_date",
        "has_protected_content",
        "is_from_offline",
        "media_group_id",
        "author_signature",
        "entities",
        "caption",
        "caption_entities",
        "show_caption_above_media",
        "has_media_spoiler",
        "link_preview_options",
        "effect_id",
        "reply_markup",
    }
)


class TelegramAdapter:
    type: ClassVar[str] = TYPE
    rules: ClassVar[ChannelRules] = ChannelRules(
        reply_window=None,
        max_text_length=MAX_TEXT,
        delivery_receipts=False,
        # Bot FAQ: about one message a second in a chat, about 30 a second per bot.
        channel_pace=Pace(30, 1.0),
        recipient_pace=Pace(1, 1.0),
        buttons=True,
        # core.telegram.org/bots/api#inlinekeyboardbutton: callback_data is 1-64 bytes.
        reply_choices=ReplyChoices(
            provider="Telegram",
            max_buttons=MAX_BUTTONS,
            title_length=MAX_BUTTON_TITLE,
            id_length=MAX_CALLBACK_DATA_BYTES,
            id_in_bytes=True,
            with_files=True,
        ),
    )
    # Given with `--set` (CLI) or the form, but kept encrypted and never shown again.
    secret_fields: ClassVar[frozenset[str]] = frozenset({"bot_token"})

    # ----- callbacks ------------------------------------------------------------------------------

    def verify_webhook(self, channel: Channel, request: WebhookRequest) -> None:
        if request.method != "POST":
            raise WebhookRejected("Telegram posts updates; it has no handshake")
        expected = str((channel.secrets or {}).get("webhook_secret") or "")
        given = request.headers.get(SECRET_HEADER, "")
        if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
            raise WebhookRejected("bad secret token")

    def parse_webhook(self, channel: Channel, request: WebhookRequest) -> ParsedWebhook:
        """Raises ValueError for a body that is not an Update."""
        update = json.loads(request.body)
        if not isinstance(update, dict):
            raise ValueError("expected an Update object")
        update_id = update.get("update_id")
        if isinstance(update.get("message"), dict):
            return ParsedWebhook(messages=[_message(channel, update["message"], update_id)])
        if isinstance(update.get("edited_message"), dict):
            return ParsedWebhook(edits=[_edit(update["edited_message"])])
        if isinstance(update.get("callback_query"), dict):
            query = update["callback_query"]
            if not query.get("id") or not isinstance(query.get("from"), dict):
                raise ValueError("a callback query needs an id and a sender")
            return ParsedWebhook(
                messages=[_postback(query, update_id)],
                follow_ups=[{"method": "answerCallbackQuery", "callback_query_id": str(query["id"])}],
            )
        return ParsedWebhook()  # an update type the webhook was not registered for

    # ----- sending --------------------------------------------------------------------------------

    def send(self, channel: Channel, message: OutboundMessage) -> SendResult:
        api = BotApi(channel)
        chat_id = _chat_id(message.recipient_id)
        common: dict[str, Any] = {"chat_id": chat_id}
        reply_to = _message_id_of(message.reply_to_provider_id)
        if reply_to is not None:
            common["reply_parameters"] = {"message_id": reply_to, "allow_sending_without_reply": True}
        # Reply choices (`quick_reply` buttons) press back their id as callback_data.
        picks = reply_choices.buttons_of(message.payload.get("quick_reply"))
        choices = [{"title": b["title"], "payload": b["id"]} for b in picks]
        keyboard = inline_keyboard(choices or message.payload.get("buttons"))
        text = message.text or ""
        attachments = list(message.attachments)
        sent: list[dict[str, Any]] = []
        caption = ""
        if text and (not attachments or len(text) > MAX_CAPTION):
            markup = {"reply_markup": keyboard} if keyboard and not attachments else {}
            sent.append(api.call("sendMessage", {**common, **markup, "text": _html(text), "parse_mode": "HTML"}))
            common.pop("reply_parameters", None)
        elif text:
            caption = text
        for index, attachment in enumerate(attachments):
            params = dict(common)
            if index == 0 and caption:
                params.update(caption=_html(caption), parse_mode="HTML")
            if keyboard and index == len(attachments) - 1:
                params["reply_markup"] = keyboard
            sent.append(_send_file(api, params, attachment))
            common.pop("reply_parameters", None)
        if not sent:
            raise PermanentError("nothing to send: the message has neither text nor files")
        return SendResult(provider_message_id=f"{chat_id}:{sent[0]['message_id']}")

    # ----- settings -------------------------------------------------------------------------------

    def public_config(self, channel: Channel) -> dict[str, Any]:
        bot = (channel.config or {}).get("bot") or {}
        return {"name": channel.name, "bot_username": bot.get("username")}

    def clean_config(self, config: dict[str, Any], secrets_: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        base = clean_api_base_url(config.get("api_base_url"))
        token = str(secrets_.get("bot_token") or "").strip()
        if not BOT_TOKEN.match(token):
            raise ValidationFailed.field(
                "secrets.bot_token", "must be the token @BotFather gave you, like 123456789:AAE..."
            )
        cleaned: dict[str, Any] = {"api_base_url": base}
        bot = config.get("bot")
        if isinstance(bot, dict) and bot.get("id"):
            cleaned["bot"] = {k: bot.get(k) for k in ("id", "username", "first_name")}
        if config.get("menu"):
            cleaned["menu"] = self.clean_menu(config["menu"])
        kept = {
            "bot_token": token,
            # 1-256 characters of A-Z a-z 0-9 _ - (setWebhook's secret_token); token_urlsafe is that.
            "webhook_secret": str(secrets_.get("webhook_secret") or secrets.token_urlsafe(32)),
        }
        return cleaned, kept

    def owns_identity(self, channel: Channel, external_id: str) -> bool:
        # Chat ids are the same for every bot; one the customer never started answers 403 when sent to.
        return external_id.lstrip("-").isdigit()

    # ----- connecting -------------------------------------------------------------------------------

    def connect(self, channel: Channel, callback_url: str) -> dict[str, Any]:
        api = BotApi(channel)
        try:
            me = api.call("getMe")
        except TransientError as exc:
            raise SetupRefused(exc.reason, field="config.api_base_url", code="unreachable") from exc
        except PermanentError as exc:
            raise SetupRefused(exc.reason, field="secrets.bot_token", code="token") from exc
        if not isinstance(me, dict) or not me.get("is_bot", True):
            raise SetupRefused("this token is not a bot's", field="secrets.bot_token", code="token")
        try:
            api.call(
                "setWebhook",
                {
                    "url": callback_url,
                    "secret_token": channel.secrets["webhook_secret"],
                    "allowed_updates": list(ALLOWED_UPDATES),
                },
            )
        except ChannelError as exc:
            raise SetupRefused(exc.reason, field="callback_url", code="callback") from exc
        return {"bot": {"id": me.get("id"), "username": me.get("username"), "first_name": me.get("first_name")}}

    def disconnect(self, channel: Channel) -> None:
        BotApi(channel).call("deleteWebhook", {"drop_pending_updates": False})

    # ----- media and follow-ups --------------------------------------------------------------------

    def fetch_media(self, channel: Channel, reference: dict[str, Any]) -> FetchedMedia:
        size = reference.get("size")
        if isinstance(size, int) and size > MAX_DOWNLOAD_BYTES:
            raise PermanentError("larger than the 20 MB the Bot API lets a bot download")
        api = BotApi(channel)
        found = api.call("getFile", {"file_id": reference.get("file_id")})
        path = found.get("file_path") if isinstance(found, dict) else None
        if not path:
            raise PermanentError("Telegram gave no file path for this file")
        data = api.download(str(path))
        name = str(reference.get("name") or PurePosixPath(str(path)).name or "file")
        content_type = reference.get("content_type") or mimetypes.guess_type(str(path))[0] or "application/octet-stream"
        return FetchedMedia(data=data, content_type=str(content_type).lower(), name=name)

    def follow_up(self, channel: Channel, call: dict[str, Any]) -> None:
        method = call.get("method")
        if method not in FOLLOW_UPS:
            raise ValueError(f"not a follow-up call: {method!r}")
        BotApi(channel).call(str(method), {k: v for k, v in call.items() if k != "method"})

    # ----- chat menu (bot commands) ----------------------------------------------------------------

    def clean_menu(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not isinstance(items, list) or len(items) > MAX_COMMANDS:
            raise ValidationFailed.field("menu", f"must be a list of at most {MAX_COMMANDS} commands")
        cleaned: list[dict[str, Any]] = []
        seen: set[str] = set()
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise ValidationFailed.field(f"menu[{index}]", "must be a command and its description")
            command = str(item.get("command") or "").strip().removeprefix("/").lower()
            description = " ".join(str(item.get("description") or "").split())
            if not COMMAND.match(command):
                raise ValidationFailed.field(
                    f"menu[{index}].command", "use 1-32 lowercase letters, digits or underscores"
                )
            if command in seen:
                raise ValidationFailed.field(f"menu[{index}].command", "is listed twice")
            if not description or len(description) > 256:
                raise ValidationFailed.field(f"menu[{index}].description", "is required (at most 256 characters)")
            seen.add(command)
            cleaned.append({"command": command, "description": description})
        return cleaned

    def push_menu(self, channel: Channel, items: list[dict[str, Any]]) -> str:
        result = BotApi(channel).call("setMyCommands", {"commands": items})
        return json.dumps({"ok": True, "result": result})


# ----- the Bot API ----------------------------------------------------------------------------------


def clean_api_base_url(value: Any) -> str:
    base = str(value or DEFAULT_API_BASE_URL).strip().rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment or len(base) > 500:
        raise ValidationFailed.field("config.api_base_url", "must be an http(s) URL")
    return base


class BotApi:
    """Calls to one bot's Bot API; every failure is a TransientError or a PermanentError."""

    def __init__(self, channel: Channel) -> None:
        self.base = str((channel.config or {}).get("api_base_url") or DEFAULT_API_BASE_URL).rstrip("/")
        self.token = str((channel.secrets or {}).get("bot_token") or "")

    def call(
        self, method: str, params: dict[str, Any] | None = None, files: dict[str, tuple[str, bytes, str]] | None = None
    ) -> Any:
        url = f"{self.base}/bot{self.token}/{method}"
        try:
            if files:
                form = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (params or {}).items()}
                response = provider_http().post(url, data=form, files=files, timeout=UPLOAD_TIMEOUT)
            else:
                response = provider_http().post(url, json=params or {}, timeout=TIMEOUT)
        except httpx.TimeoutException as exc:
            raise TransientError(f"Telegram did not answer in time ({method})") from exc
        except httpx.TransportError as exc:
            raise TransientError(f"Telegram could not be reached ({type(exc).__name__})") from exc
        return _result(response)

    def download(self, path: str) -> bytes:
        url = f"{self.base}/file/bot{self.token}/{path.lstrip('/')}"
        chunks: list[bytes] = []
        received = 0
        try:
            with provider_http().stream("GET", url, timeout=UPLOAD_TIMEOUT) as response:
                if response.status_code >= 500 or response.status_code == 429:
                    raise TransientError(f"the file download answered {response.status_code}")
                if response.status_code != 200:
                    raise PermanentError(f"the file download answered {response.status_code}")
                for chunk in response.iter_bytes():
                    received += len(chunk)
                    if received > MAX_DOWNLOAD_BYTES:
                        raise PermanentError("larger than the 20 MB the Bot API lets a bot download")
                    chunks.append(chunk)
        except httpx.TimeoutException as exc:
            raise TransientError("the file download timed out") from exc
        except httpx.TransportError as exc:
            raise TransientError(f"the file download failed ({type(exc).__name__})") from exc
        return b"".join(chunks)


# Whose fault a Bot API refusal is, by its error code (the docs warn the codes may change, so an
# unknown one fails the message alone): 401 is a token Telegram no longer knows (revoked with
# /revoke, or the bot deleted), 404 a token it never knew; 409 another getUpdates or webhook taking
# the bot's updates. 403 is one chat's ("bot was blocked by the user", "user is deactivated", "bot
# was kicked"), 400 one message's ("chat not found", a text too long).
FAULTS: dict[str, Fault] = {
    "401": Fault.CREDENTIALS,
    "404": Fault.CREDENTIALS,
    "409": Fault.ACCOUNT,
    "403": Fault.MESSAGE,
    "400": Fault.MESSAGE,
}


def _result(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    if response.status_code == 200 and body.get("ok") is True:
        return body.get("result")
    description = str(body.get("description") or f"Telegram answered HTTP {response.status_code}")
    code = str(body.get("error_code") or response.status_code)
    parameters: dict[str, Any] = body["parameters"] if isinstance(body.get("parameters"), dict) else {}
    if response.status_code == 429 or code == "429":
        retry_after = parameters.get("retry_after")
        wait = float(retry_after) if isinstance(retry_after, int | float) else None
        # Telegram does not say whether the flood control is one chat's or the whole bot's; the
        # outbox keeps the bot's 30 a second, so it is taken as the chat's (retried, no alarm).
        raise TransientError(description, code="429", retry_after=wait, fault=Fault.MESSAGE)
    if response.status_code >= 500:
        raise TransientError(description, code=code)
    if "migrate_to_chat_id" in parameters:
        description = f"{description} (the group is now chat {parameters['migrate_to_chat_id']})"
    raise PermanentError(description, code=code, fault=FAULTS.get(code, FAULTS.get(str(response.status_code))))


# ----- inbound ----------------------------------------------------------------------------------------


def _when(timestamp: Any) -> datetime | None:
    return datetime.fromtimestamp(timestamp, UTC) if isinstance(timestamp, int | float) else None


def _name(user: dict[str, Any]) -> str | None:
    return " ".join(str(user.get(k) or "") for k in ("first_name", "last_name")).strip() or None


def _chat_of(message: dict[str, Any]) -> dict[str, Any]:
    chat = message.get("chat")
    if not isinstance(chat, dict) or not isinstance(chat.get("id"), int) or "message_id" not in message:
        raise ValueError("a message needs a chat with an id and a message_id")
    return chat


def _sender_fields(chat: dict[str, Any], sender: dict[str, Any]) -> dict[str, Any]:
    """Who the contact is: the user in a private chat, the group itself elsewhere."""
    if chat.get("type", "private") == "private":
        person = sender or chat
        return {
            "display_name": _name(person),
            "first_name": person.get("first_name"),
            "last_name": person.get("last_name"),
        }
    return {"display_name": chat.get("title") or f"Telegram chat {chat['id']}"}


def _file(item: dict[str, Any], content_type: str | None, name: str | None) -> dict[str, Any]:
    return {
        "provider_file": {
            "file_id": item.get("file_id"),
            "file_unique_id": item.get("file_unique_id"),
            "size": item.get("file_size"),
            "content_type": content_type,
            "name": name,
        }
    }


def _content(message: dict[str, Any]) -> tuple[MessageType, list[dict[str, Any]], dict[str, Any]]:
    """The message's type, the files to fetch and what its payload says about its content."""
    photos = message.get("photo")
    if isinstance(photos, list) and photos:
        largest = max(photos, key=lambda p: (p.get("width", 0) * p.get("height", 0), p.get("file_size") or 0))
        return MessageType.IMAGE, [_file(largest, "image/jpeg", f"photo-{largest.get('file_unique_id')}.jpg")], {}
    for key in ("animation", "video", "video_note"):
        item = message.get(key)
        if isinstance(item, dict):
            content_type = item.get("mime_type") or "video/mp4"
            name = item.get("file_name") or f"{key}-{item.get('file_unique_id')}.mp4"
            return MessageType.VIDEO, [_file(item, content_type, name)], {"telegram_kind": key}
    voice = message.get("voice")
    if isinstance(voice, dict):
        name = f"voice-{voice.get('file_unique_id') or voice.get('file_id', '')[:12]}.ogg"
        return MessageType.AUDIO, [_file(voice, voice.get("mime_type") or "audio/ogg", name)], {"voice": True}
    audio = message.get("audio")
    if isinstance(audio, dict):
        name = audio.get("file_name") or audio.get("title") or "audio"
        return MessageType.AUDIO, [_file(audio, audio.get("mime_type"), name)], {}
    document = message.get("document")
    if isinstance(document, dict):
        return MessageType.FILE, [_file(document, document.get("mime_type"), document.get("file_name"))], {}
    location = message.get("location")
    if isinstance(location, dict):
        payload: dict[str, Any] = {
            "location": {"latitude": location.get("latitude"), "longitude": location.get("longitude")}
        }
        venue = message.get("venue")
        if isinstance(venue, dict):
            payload["location"].update(name=venue.get("title"), address=venue.get("address"))
        return MessageType.LOCATION, [], payload
    contact = message.get("contact")
    if isinstance(contact, dict):
        card = {k: contact.get(k) for k in ("phone_number", "first_name", "last_name", "user_id")}
        return MessageType.CONTACT, [], {"contact": card}
    if isinstance(message.get("text"), str):
        return MessageType.TEXT, [], {}
    # Serialisers write absent flags as false (python-telegram-bot's group_chat_created: false).
    what = next(
        (k for k, v in message.items() if k not in _MESSAGE_META and v not in (None, False, "", [], {})), "message"
    )
    unsupported: dict[str, Any] = {"unsupported": what}
    if what == "sticker" and isinstance(message.get("sticker"), dict):
        unsupported["emoji"] = message["sticker"].get("emoji")
    return MessageType.UNSUPPORTED, [], unsupported


def _message(channel: Channel, message: dict[str, Any], update_id: Any) -> InboundMessage:
    chat = _chat_of(message)
    sender: dict[str, Any] = message["from"] if isinstance(message.get("from"), dict) else {}
    kind, files, content = _content(message)
    text = message.get("text") if kind == MessageType.TEXT else message.get("caption")
    if kind == MessageType.UNSUPPORTED and content.get("emoji"):
        text = content["emoji"]
    payload: dict[str, Any] = {
        "telegram": {
            "chat_id": chat["id"],
            "message_id": message["message_id"],
            "update_id": update_id,
            "username": sender.get("username") or chat.get("username"),
        },
        **content,
    }
    if chat.get("type", "private") != "private":
        payload["author"] = _name(sender) or sender.get("username")
    reply = message.get("reply_to_message")
    if isinstance(reply, dict) and "message_id" in reply:
        payload["reply_to"] = f"{chat['id']}:{reply['message_id']}"
    if message.get("forward_origin") or message.get("forward_from") or message.get("forward_date"):
        payload["forwarded"] = True
    if kind == MessageType.TEXT and isinstance(text, str) and text.startswith("/"):
        kind = _command(channel, text, payload)
    return InboundMessage(
        sender_id=str(chat["id"]),
        provider_message_id=f"{chat['id']}:{message['message_id']}",
        type=kind,
        text=text if isinstance(text, str) else None,
        attachments=files,
        payload=payload,
        sent_at=_when(message.get("date")),
        **_sender_fields(chat, sender),
    )


def _command(channel: Channel, text: str, payload: dict[str, Any]) -> MessageType:
    """`/start <payload>` records the deep link; a command of the chat menu is a postback."""
    head, _, rest = text.partition(" ")
    command, _, bot = head[1:].partition("@")
    username = ((channel.config or {}).get("bot") or {}).get("username")
    if bot and username and bot.lower() != str(username).lower():
        return MessageType.TEXT  # addressed to another bot in a group
    command = command.lower()
    if command == "start":
        payload["referral"] = {"source": "telegram_start", "ref": rest.strip() or None}
        return MessageType.TEXT
    menu = {item["command"]: item["description"] for item in (channel.config or {}).get("menu") or []}
    if command in menu:
        payload["postback"] = {"data": f"/{command}", "title": menu[command], "source": "chat_menu"}
        if rest.strip():
            payload["postback"]["argument"] = rest.strip()
        return MessageType.POSTBACK
    return MessageType.TEXT


def _edit(message: dict[str, Any]) -> InboundEdit:
    chat = _chat_of(message)
    text = message.get("text") if isinstance(message.get("text"), str) else message.get("caption")
    edited_at = _when(message.get("edit_date")) or _when(message.get("date")) or datetime.now(UTC)
    return InboundEdit(
        provider_message_id=f"{chat['id']}:{message['message_id']}",
        text=text if isinstance(text, str) else None,
        edited_at=edited_at,
        sender_id=str(chat["id"]),
    )


def _button_title(message: dict[str, Any] | None, data: str | None) -> str | None:
    markup = (message or {}).get("reply_markup") or {}
    for row in markup.get("inline_keyboard") or []:
        for button in row if isinstance(row, list) else []:
            if isinstance(button, dict) and button.get("callback_data") == data:
                return str(button.get("text") or "") or None
    return None


def _postback(query: dict[str, Any], update_id: Any) -> InboundMessage:
    sender = query["from"]
    message: dict[str, Any] | None = query["message"] if isinstance(query.get("message"), dict) else None
    chat: dict[str, Any] | None = message["chat"] if message and isinstance(message.get("chat"), dict) else None
    chat_id = chat["id"] if chat and isinstance(chat.get("id"), int) else sender.get("id")
    if not isinstance(chat_id, int):
        raise ValueError("a callback query needs a chat or a sender id")
    data = query.get("data") if isinstance(query.get("data"), str) else None
    title = _button_title(message, data)
    postback: dict[str, Any] = {"data": data, "title": title, "source": "inline_keyboard"}
    if message is not None and "message_id" in message:
        postback["message"] = f"{chat_id}:{message['message_id']}"
    return InboundMessage(
        sender_id=str(chat_id),
        provider_message_id=f"cbq:{query['id']}",
        type=MessageType.POSTBACK,
        text=title or data,
        payload={
            "postback": postback,
            "telegram": {"chat_id": chat_id, "update_id": update_id, "username": sender.get("username")},
        },
        **_sender_fields(chat or {"id": chat_id, "type": "private"}, sender),
    )


# ----- outbound ---------------------------------------------------------------------------------------


def _html(text: str) -> str:
    """Text shown as typed under parse_mode HTML: only <, > and & need escaping."""
    return html.escape(text, quote=False)


def _chat_id(recipient: str) -> int | str:
    return int(recipient) if recipient.lstrip("-").isdigit() else recipient


def _message_id_of(provider_id: str | None) -> int | None:
    if not provider_id:
        return None
    tail = provider_id.rpartition(":")[2]
    return int(tail) if tail.isdigit() else None


def inline_keyboard(buttons: Any) -> dict[str, Any] | None:
    """`[{"title", "payload"} | {"title", "url"}]` as an inline keyboard, one button a row."""
    if not buttons:
        return None
    if not isinstance(buttons, list) or len(buttons) > MAX_BUTTONS:
        raise PermanentError(f"buttons must be a list of at most {MAX_BUTTONS}")
    rows: list[list[dict[str, str]]] = []
    for button in buttons:
        if not isinstance(button, dict) or not str(button.get("title") or "").strip():
            raise PermanentError("every button needs a title")
        title = str(button["title"]).strip()[:64]
        if button.get("url"):
            rows.append([{"text": title, "url": str(button["url"])}])
            continue
        data = str(button.get("payload") or title)
        if len(data.encode()) > MAX_CALLBACK_DATA_BYTES:
            raise PermanentError(f"a button's payload may be at most {MAX_CALLBACK_DATA_BYTES} bytes")
        rows.append([{"text": title, "callback_data": data}])
    return {"inline_keyboard": rows}


def _method_for(content_type: str, size: int) -> tuple[str, str]:
    if content_type in ("image/jpeg", "image/png", "image/webp") and size <= MAX_PHOTO_UPLOAD_BYTES:
        return "sendPhoto", "photo"
    if content_type == "image/gif":
        return "sendAnimation", "animation"
    if content_type in ("video/mp4",):
        return "sendVideo", "video"
    if content_type in ("audio/ogg", "audio/opus"):
        return "sendVoice", "voice"
    if content_type in ("audio/mpeg", "audio/mp3", "audio/mp4", "audio/m4a", "audio/x-m4a"):
        return "sendAudio", "audio"
    return "sendDocument", "document"


def _send_file(api: BotApi, params: dict[str, Any], attachment: dict[str, Any]) -> dict[str, Any]:
    content_type = str(attachment.get("content_type") or "application/octet-stream").lower()
    method, field = _method_for(content_type, int(attachment.get("size") or 0))
    if attachment.get("url"):
        result = api.call(method, {**params, field: str(attachment["url"])})
    else:
        key = attachment.get("storage_key")
        if not key:
            raise PermanentError("the file to send is not in our storage")
        try:
            data = storage.get_storage().get(str(key))
        except (OSError, ValueError) as exc:
            raise PermanentError("the file to send is missing from our storage") from exc
        name = str(attachment.get("name") or "file")
        result = api.call(method, params, files={field: (name, data, content_type)})
    if not isinstance(result, dict) or "message_id" not in result:
        raise PermanentError(f"Telegram answered {method} without a message")
    return result
