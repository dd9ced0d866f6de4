"""WhatsApp Business Cloud API: Meta's callbacks in, Graph API messages out.

Callbacks (../shared/reference/channels.md §2-3): a GET handshake (`hub.mode=subscribe`,
`hub.verify_token`, answered with `hub.challenge`), then POSTs signed with
`X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>`. One callback may carry
several entries, changes, messages and statuses, and events of other phone numbers of the same
business account (ignored here: each number is its own channel).

Who the customer is: a phone number (`wa_id`) and, since 2026, a business-scoped user id (BSUID,
`user_id`); a customer with a WhatsApp username may come with the BSUID alone. The message's
`sender_id` is the phone when there is one, else the BSUID; the other id rides along as an alias, so
contacts/identities.py links both to one contact (a later message carrying both joins them).

Sending: `POST {api_base_url}/{api_version}/{phone_number_id}/messages` with the access token.
Graph errors are mapped by code (§3.4): throttling and transient faults are retried, policy
refusals (outside the 24-hour window, undeliverable, template problems, blocked accounts) fail the
message with Meta's own title and details as the reason.
"""

import json
import mimetypes
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx

from tertulia.channels.adapters import meta_graph
from tertulia.channels.adapters.meta_graph import (
    graph_reason,
    handshake_reply,
    hub_signature,
    verify_hub_request,
)
from tertulia.channels.models import Channel
from tertulia.channels.protocol import (
    ChannelRules,
    DeliveryStatus,
    FetchedMedia,
    InboundMessage,
    MessageType,
    OutboundMessage,
    ParsedWebhook,
    PermanentError,
    SendResult,
    StatusUpdate,
    TransientError,
    WebhookRequest,
)
from tertulia.kit.errors import ValidationFailed

TYPE = "whatsapp"
DEFAULT_API_BASE_URL = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v26.0"
SEND_TIMEOUT = httpx.Timeout(15.0, connect=5.0)
CAPTION_LENGTH = 1024
MAX_MEDIA_BYTES = 100 * 1024 * 1024  # WhatsApp's largest (documents); our own upload limit applies too
_DIGITS = re.compile(r"^[0-9]{5,20}$")
_VERSION = re.compile(r"^v[0-9]{1,3}\.[0-9]$")

# Graph error codes worth retrying (§3.4): throughput and rate limits, and Meta's own transient
# faults. 131056 is the pair rate limit (about one message per 6 s to the same customer).
RETRYABLE_CODES: dict[int, float | None] = {
    4: 60.0,  # application-level rate limit
    80007: 60.0,  # business-account rate limit
    130429: 1.0,  # throughput of the number reached
    131056: 6.0,  # too many messages to this customer
    1: None,  # unknown API error
    2: None,  # service temporarily unavailable
    131000: None,  # something went wrong
    133004: None,  # server temporarily unavailable
}

# The statuses Meta reports and ours; `played` (a voice message listened to) is as good as read.
STATUSES = {
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
    "played": DeliveryStatus.READ,
    "failed": DeliveryStatus.FAILED,
}

MEDIA_TYPES = {
    "image": MessageType.IMAGE,
    "video": MessageType.VIDEO,
    "audio": MessageType.AUDIO,
    "document": MessageType.FILE,
    "sticker": MessageType.IMAGE,
}
OUTBOUND_MEDIA = {
    MessageType.IMAGE: "image",
    MessageType.VIDEO: "video",
    MessageType.AUDIO: "audio",
    MessageType.FILE: "document",
}


class WhatsAppAdapter:
    type: ClassVar[str] = TYPE
    secret_fields: ClassVar[frozenset[str]] = frozenset({"access_token", "app_secret", "verify_token"})
    rules: ClassVar[ChannelRules] = ChannelRules(
        reply_window=timedelta(hours=24),
        templates_outside_window=True,
        max_text_length=4096,
        delivery_receipts=True,
        # What may be sent. Media wait for the upload to Meta's media endpoint (the files are ours,
        # Meta cannot fetch them by link); until then the composer and the API refuse them.
        message_types=frozenset({MessageType.TEXT, MessageType.TEMPLATE}),
    )

    # ----- callbacks --------------------------------------------------------------------------

    def verify_webhook(self, channel: Channel, request: WebhookRequest) -> None:
        verify_hub_request(channel, request)

    def parse_webhook(self, channel: Channel, request: WebhookRequest) -> ParsedWebhook:
        """Raises ValueError for a body that is not a WhatsApp Business Account callback."""
        if request.method == "GET":
            return ParsedWebhook(reply=handshake_reply(request))
        data = json.loads(request.body)
        if not isinstance(data, dict) or data.get("object") != "whatsapp_business_account":
            raise ValueError('expected {"object": "whatsapp_business_account", ...}')
        messages: list[InboundMessage] = []
        statuses: list[StatusUpdate] = []
        # Other numbers of the same business account are channels of their own: skipped here.
        for value in _message_values(data, str((channel.config or {}).get("phone_number_id", ""))):
            profiles = _profiles(value.get("contacts"))
            messages.extend(_inbound(item, profiles) for item in _dicts(value.get("messages")))
            statuses.extend(_status(item) for item in _dicts(value.get("statuses")))
        return ParsedWebhook(messages=messages, statuses=statuses)

    # ----- sending ----------------------------------------------------------------------------

    def send(self, channel: Channel, message: OutboundMessage) -> SendResult:
        url = f"{_graph(channel)}/{(channel.config or {}).get('phone_number_id')}/messages"
        token = str(channel.secrets.get("access_token", ""))
        try:
            response = httpx.post(
                url,
                json=outbound_body(message),
                headers={"Authorization": f"Bearer {token}"},
                timeout=SEND_TIMEOUT,
            )
        except httpx.TransportError as exc:
            raise TransientError(f"WhatsApp could not be reached: {exc}") from exc
        if response.is_success:
            try:
                provider_id = str(response.json()["messages"][0]["id"])
            except (ValueError, LookupError, TypeError) as exc:
                raise TransientError("WhatsApp answered without a message id") from exc
            return SendResult(provider_message_id=provider_id)
        raise graph_error(response)

    # ----- customers' files ----------------------------------------------------------------------

    def fetch_media(self, channel: Channel, reference: dict[str, Any]) -> FetchedMedia:
        """`GET /{media-id}` for a short-lived URL, then the bytes from it, both with the access token."""
        token = {"Authorization": f"Bearer {channel.secrets.get('access_token', '')}"}
        try:
            found = httpx.get(f"{_graph(channel)}/{reference.get('media_id')}", headers=token, timeout=SEND_TIMEOUT)
            if not found.is_success:
                raise graph_error(found)
            info = found.json()
            size = info.get("file_size")
            if isinstance(size, int) and size > MAX_MEDIA_BYTES:
                raise PermanentError(f"larger than the {MAX_MEDIA_BYTES // (1024 * 1024)} MB kept from WhatsApp")
            download = httpx.get(str(info["url"]), headers=token, timeout=SEND_TIMEOUT)
        except httpx.TransportError as exc:
            raise TransientError(f"WhatsApp could not be reached: {exc}") from exc
        except (ValueError, LookupError, TypeError) as exc:
            raise TransientError("WhatsApp answered without a media URL") from exc
        if not download.is_success:
            raise graph_error(download)
        content_type = str(info.get("mime_type") or reference.get("content_type") or "application/octet-stream")
        name = str(reference.get("name") or "file")
        return FetchedMedia(
            data=download.content, content_type=content_type.split(";", maxsplit=1)[0].strip().lower(), name=name
        )

    def follow_up(self, channel: Channel, call: dict[str, Any]) -> None:
        raise ValueError("WhatsApp callbacks ask for no follow-up calls")

    # ----- configuration ----------------------------------------------------------------------

    def public_config(self, channel: Channel) -> dict[str, Any]:
        config = channel.config or {}
        return {
            "name": channel.name,
            "phone_number_id": config.get("phone_number_id"),
            "display_phone_number": config.get("display_phone_number"),
        }

    def clean_config(self, config: dict[str, Any], secrets_: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        cleaned: dict[str, Any] = {}
        for name in ("phone_number_id", "business_account_id"):
            value = str(config.get(name) or "").strip()
            if not _DIGITS.match(value):
                raise ValidationFailed.field(f"config.{name}", "must be the numeric id shown in Meta's dashboard")
            cleaned[name] = value
        base = str(config.get("api_base_url") or DEFAULT_API_BASE_URL).strip().rstrip("/")
        if not base.startswith(("https://", "http://")):
            raise ValidationFailed.field("config.api_base_url", "must be an http(s) URL")
        cleaned["api_base_url"] = base
        version = str(config.get("api_version") or DEFAULT_API_VERSION).strip()
        if not _VERSION.match(version):
            raise ValidationFailed.field("config.api_version", "must be a Graph API version like v26.0")
        cleaned["api_version"] = version
        display = str(config.get("display_phone_number") or "").strip()
        if display:
            cleaned["display_phone_number"] = display[:32]
        kept = {name: value for name, value in secrets_.items() if value not in (None, "")}
        for name in ("access_token", "app_secret"):
            if not isinstance(kept.get(name), str) or not kept[name].strip():
                raise ValidationFailed.field(f"secrets.{name}", "is required")
        kept.setdefault("verify_token", secrets.token_urlsafe(24))
        return cleaned, kept

    def owns_identity(self, channel: Channel, external_id: str) -> bool:
        # A phone number or BSUID is the customer's own, whichever of the business's numbers they
        # write to (BSUIDs are scoped to the business portfolio, not to one number).
        return True


def _graph(channel: Channel) -> str:
    """The Graph API root of this channel: its base URL and version."""
    config = channel.config or {}
    base = str(config.get("api_base_url") or DEFAULT_API_BASE_URL).rstrip("/")
    return f"{base}/{config.get('api_version') or DEFAULT_API_VERSION}"


# ----- callbacks, piece by piece ---------------------------------------------------------------


def signature(channel: Channel, body: bytes) -> str:
    """Meta's X-Hub-Signature-256 value (without `sha256=`) for `body` on this channel."""
    return hub_signature(str(channel.secrets.get("app_secret", "")), body)


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


# The business account id of the App Dashboard's "Test" button fixture, which names a phone number
# id of its own: accepted for any number, so a manager's test reaches the inbox.
DASHBOARD_TEST_ENTRY = "0"


def _message_values(data: dict[str, Any], number: str) -> list[dict[str, Any]]:
    """The `messages` changes of this phone number (or of the dashboard's test)."""
    values = []
    for entry in _dicts(data.get("entry")):
        for change in _dicts(entry.get("changes")):
            value = change.get("value")
            if change.get("field") != "messages" or not isinstance(value, dict):
                continue
            found = value.get("metadata")
            metadata: dict[str, Any] = found if isinstance(found, dict) else {}
            ours = not number or str(metadata.get("phone_number_id", number)) == number
            if ours or str(entry.get("id")) == DASHBOARD_TEST_ENTRY:
                values.append(value)
    return values


def _profiles(contacts: Any) -> dict[str, dict[str, Any]]:
    """Each customer's contact entry, by every id it carries (wa_id and BSUID)."""
    found: dict[str, dict[str, Any]] = {}
    for contact in _dicts(contacts):
        for key in ("wa_id", "user_id"):
            if contact.get(key):
                found[str(contact[key])] = contact
    return found


def _timestamp(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _inbound(item: dict[str, Any], profiles: dict[str, dict[str, Any]]) -> InboundMessage:
    phone = str(item.get("from") or "") or None
    contact = profiles.get(phone or "")
    if contact is None and len({id(c) for c in profiles.values()}) == 1:
        contact = next(iter(profiles.values()))  # a username customer: no `from`, one contact entry
    contact = contact or {}
    phone = phone or (str(contact["wa_id"]) if contact.get("wa_id") else None)
    user_id = str(contact["user_id"]) if contact.get("user_id") else None
    sender = phone or user_id or ""
    name = (contact.get("profile") or {}).get("name")
    kind, text, attachments, payload = _content(item)
    context = item.get("context")
    if isinstance(context, dict) and context.get("id"):
        payload["reply_to"] = {"provider_message_id": str(context["id"]), "from": context.get("from")}
    payload["whatsapp_type"] = str(item.get("type", ""))
    return InboundMessage(
        sender_id=sender,
        provider_message_id=str(item["id"]) if item.get("id") else None,
        type=kind,
        text=text,
        attachments=attachments,
        payload=payload,
        display_name=str(name) if name else None,
        phone=f"+{phone}" if phone and phone.isdigit() else None,
        sent_at=_timestamp(item.get("timestamp")),
        sender_aliases=(user_id,) if user_id and user_id != sender else (),
    )


def _content(item: dict[str, Any]) -> tuple[MessageType, str | None, list[dict[str, Any]], dict[str, Any]]:
    """(type, text, attachments, payload) of one message, whatever its kind. A kind we do not know
    is kept as a text naming it, never dropped."""
    kind = str(item.get("type", ""))
    found = item.get(kind)
    body: dict[str, Any] = found if isinstance(found, dict) else {}
    if kind == "text":
        return MessageType.TEXT, str(body.get("body", "")), [], {}
    if kind in MEDIA_TYPES:
        content_type = str(body.get("mime_type") or "application/octet-stream").split(";")[0].strip()
        extension = mimetypes.guess_extension(content_type) or ""
        reference = {
            "media_id": str(body.get("id", "")),
            "content_type": content_type,
            "sha256": body.get("sha256"),
            "name": body.get("filename") or f"{kind}-{body.get('id', '')}{extension}",
        }
        caption = body.get("caption")
        payload: dict[str, Any] = {"media": kind}
        if body.get("voice"):
            payload["voice"] = True
        return MEDIA_TYPES[kind], str(caption) if caption else None, [{"provider_file": reference}], payload
    if kind == "location":
        label = ", ".join(str(body[k]) for k in ("name", "address") if body.get(k))
        location = {k: body.get(k) for k in ("latitude", "longitude", "name", "address", "url")}
        return MessageType.LOCATION, label or None, [], {"location": location}
    if kind == "contacts":
        shared = _dicts(item.get("contacts"))
        first: dict[str, Any] = shared[0] if shared else {}
        given = first.get("name")
        name: dict[str, Any] = given if isinstance(given, dict) else {}
        phones = _dicts(first.get("phones"))
        card = {
            "first_name": name.get("first_name") or name.get("formatted_name"),
            "last_name": name.get("last_name"),
            "phone_number": phones[0].get("phone") if phones else None,
            "wa_id": phones[0].get("wa_id") if phones else None,
        }
        return MessageType.CONTACT, name.get("formatted_name"), [], {"contact": card, "contacts": shared}
    if kind == "interactive":
        reply = body.get(str(body.get("type", ""))) or {}
        title = str(reply.get("title") or reply.get("id") or "")
        source = "whatsapp_list" if body.get("type") == "list_reply" else "whatsapp_button"
        choice = {"data": reply.get("id"), "title": reply.get("title"), "source": source}
        if reply.get("description"):
            choice["description"] = reply["description"]
        return MessageType.POSTBACK, title or None, [], {"postback": choice}
    if kind == "button":  # a template's quick-reply button
        choice = {"data": body.get("payload"), "title": body.get("text"), "source": "whatsapp_template"}
        return (
            MessageType.POSTBACK,
            str(body.get("text") or body.get("payload") or "") or None,
            [],
            {"postback": choice},
        )
    if kind == "reaction":
        emoji = str(body.get("emoji") or "")
        reaction = {"provider_message_id": body.get("message_id"), "emoji": emoji or None}
        return MessageType.TEXT, emoji or "(reaction removed)", [], {"reaction": reaction}
    errors = _dicts(item.get("errors"))
    detail = errors[0].get("title") if errors else None
    return MessageType.UNSUPPORTED, None, [], {"unsupported": kind or "message", "error": detail}


def _status(item: dict[str, Any]) -> StatusUpdate:
    status = STATUSES.get(str(item.get("status", "")))
    if status is None or not item.get("id"):
        raise ValueError(f"unknown status {item.get('status')!r}")
    reason = None
    errors = _dicts(item.get("errors"))
    if status == DeliveryStatus.FAILED and errors:
        reason = _reason(errors[0])
    return StatusUpdate(
        provider_message_id=str(item["id"]), status=status, reason=reason, at=_timestamp(item.get("timestamp"))
    )


def _reason(error: dict[str, Any]) -> str:
    return graph_reason(error)


# ----- sending, piece by piece -----------------------------------------------------------------


def outbound_body(message: OutboundMessage) -> dict[str, Any]:
    """The Graph API body for one message (§3.3). A template or an interactive message travels in
    the payload, already in Meta's shape."""
    body: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual"}
    if message.recipient_id.isdigit():
        body["to"] = message.recipient_id
    else:
        body["recipient"] = message.recipient_id  # a BSUID, for customers known by username only
    payload = message.payload or {}
    if isinstance(payload.get("template"), dict):
        body.update(type="template", template=payload["template"])
    elif isinstance(payload.get("interactive"), dict):
        body.update(type="interactive", interactive=payload["interactive"])
    elif message.type in OUTBOUND_MEDIA and message.attachments:
        kind = OUTBOUND_MEDIA[message.type]
        attachment = message.attachments[0]
        media: dict[str, Any] = (
            {"id": attachment["provider_media_id"]}
            if attachment.get("provider_media_id")
            else {"link": attachment.get("url")}
        )
        if message.text and kind != "audio":
            media["caption"] = message.text[:CAPTION_LENGTH]
        if kind == "document" and attachment.get("filename"):
            media["filename"] = attachment["filename"]
        body.update(type=kind, **{kind: media})
    elif message.type == MessageType.LOCATION and isinstance(payload.get("location"), dict):
        body.update(type="location", location=payload["location"])
    else:
        text = {"body": message.text or "", "preview_url": bool(payload.get("preview_url", False))}
        body.update(type="text", text=text)
    if message.reply_to_provider_id:
        body["context"] = {"message_id": message.reply_to_provider_id}
    return body


def graph_error(response: httpx.Response) -> TransientError | PermanentError:
    """The error a refused request means: retryable (throttling, Meta's faults) or permanent, with
    Meta's reason and `whatsapp:<code>` as its code."""
    return meta_graph.graph_error(response, provider="WhatsApp", retryable=RETRYABLE_CODES)
