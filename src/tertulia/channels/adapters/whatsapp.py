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
message with Meta's own title and details as the reason. Whose fault each code is (FAULTS): the
token, a permission, the number's or account's limits and locks are the channel's (it goes into
error, its owners are told); a customer's refusal or the window is the message's alone. Meta also
reports failures later, in `statuses[]` with status `failed` and `errors[]` (Meta's status webhook
reference); those errors are judged by the same table (`status_error`), so an account locked or
unpaid puts the channel in error from the callback even when the send itself was accepted.

- Files are ours, so Meta cannot fetch them by link: each is uploaded first
  (`POST /{phone_number_id}/media`, multipart `file`, `type`, `messaging_product=whatsapp`, answered
  `{"id"}`) and sent by that media id, one file per message, the text as its caption where the kind
  takes one (images, videos, documents; a document keeps its file name). What kinds and sizes Meta
  takes (MEDIA_RULES) is checked when the message is written (`check_outbound`, a 422 naming the
  rule), never found out from a refused upload.
- Reply buttons (at most 3, titles of at most 20 characters) and lists (at most 10 rows) are the
  API's `quick_reply` messages, checked against Meta's limits the same way; a reply quotes the
  customer's message (`context.message_id`); `preview_url` asks for a link preview.
- Throughput (§3.5): 80 messages a second per number unless the channel's `messages_per_second`
  says otherwise, and one message every 6 s to the same customer, kept by the outbox's pace.
- `check_connection` reads the number's name, quality rating and messaging limit for Settings.
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
    handshake_reply,
    hub_signature,
    verify_hub_request,
)
from tertulia.channels.models import Channel
from tertulia.channels.protocol import (
    PACE_SETTING,
    ChannelRules,
    DeliveryStatus,
    Fault,
    FetchedMedia,
    InboundMessage,
    ListLimits,
    MessageType,
    OutboundMessage,
    Pace,
    ParsedWebhook,
    PermanentError,
    ProviderTemplate,
    QualityChange,
    ReplyChoices,
    SendResult,
    StatusUpdate,
    TemplateChange,
    TransientError,
    WebhookRequest,
)
from tertulia.kit import storage
from tertulia.kit.errors import ValidationFailed
from tertulia.kit.outgoing_http import provider_http

TYPE = "whatsapp"
DEFAULT_API_BASE_URL = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v26.0"
SEND_TIMEOUT = httpx.Timeout(15.0, connect=5.0)
UPLOAD_TIMEOUT = httpx.Timeout(120.0, connect=5.0)
CAPTION_LENGTH = 1024
DEFAULT_MESSAGES_PER_SECOND = 80
MAX_MESSAGES_PER_SECOND = 1000  # the highest throughput Meta raises a number to
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

# Whose fault WhatsApp's own codes are (§3.4; Meta's error-codes page for 131005, 131042, 131045),
# beside the Graph codes every Meta platform shares (meta_graph.GRAPH_FAULTS: 190 the token, 10 and
# 200-299 permissions, 4 and 80007 rate limits, 368 a blocked account). The same table judges a
# refused send and a failure a status callback reports later (`status_error`). A code not listed
# fails the one message (a retryable one counts as the provider's).
FAULTS: dict[tuple[int, int | None], Fault] = {
    # The number or business account as a whole.
    (130429, None): Fault.ACCOUNT,  # the number's throughput reached
    (131048, None): Fault.ACCOUNT,  # spam rate limit: the number may send less after blocks or flags
    (131031, None): Fault.ACCOUNT,  # the business account is locked (a policy, or data Meta could not verify)
    (131042, None): Fault.ACCOUNT,  # a payment problem on the business account
    (131045, None): Fault.ACCOUNT,  # the number is not registered (certificate)
    (131037, None): Fault.ACCOUNT,  # the number's display name is not approved
    (131057, None): Fault.ACCOUNT,  # the business account is in maintenance mode
    (133010, None): Fault.ACCOUNT,  # the number is not registered with the Cloud API
    (100, 33): Fault.ACCOUNT,  # the phone number id does not exist (or the token cannot see it)
    (131005, None): Fault.CREDENTIALS,  # access denied: a permission not granted or removed (HTTP 403)
    # One customer or one message.
    (131026, None): Fault.MESSAGE,  # undeliverable: not on WhatsApp, an old app, the business blocked
    (131047, None): Fault.MESSAGE,  # more than 24 hours since the customer's last message
    (131049, None): Fault.MESSAGE,  # this customer's marketing cap
    (131050, None): Fault.MESSAGE,  # this customer stopped marketing messages
    (131051, None): Fault.MESSAGE,  # unsupported message type
    (131052, None): Fault.MESSAGE,  # media download failed
    (131053, None): Fault.MESSAGE,  # media upload failed
    (131056, None): Fault.MESSAGE,  # too many messages to this customer (retried)
    (130472, None): Fault.MESSAGE,  # the customer is in a Meta experiment
}

# Templates are read a page at a time; a business account holds at most 6,000 of them (Meta's
# template limits), so this many pages is the whole account and a cursor that never ends stops here.
TEMPLATE_PAGE = 100
MAX_TEMPLATE_PAGES = 60
TEMPLATE_FIELDS = "id,name,language,status,category,components,parameter_format,quality_score,rejected_reason"

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

_KB = 1024
_MB = 1024 * 1024
# What WhatsApp takes, by content type: the kind a file is sent as and its largest size. Source:
# Meta's "Supported media types" (developers.facebook.com/docs/whatsapp/cloud-api/reference/media,
# "Supported Media Types"): audio 16 MB, documents 100 MB, images 5 MB, stickers 100 KB (static) or
# 500 KB (animated), videos 16 MB (H.264 with AAC audio).
MEDIA_RULES: dict[str, tuple[str, int]] = {
    "audio/aac": ("audio", 16 * _MB),
    "audio/amr": ("audio", 16 * _MB),
    "audio/mpeg": ("audio", 16 * _MB),
    "audio/mp4": ("audio", 16 * _MB),
    "audio/ogg": ("audio", 16 * _MB),
    "text/plain": ("document", 100 * _MB),
    "application/pdf": ("document", 100 * _MB),
    "application/vnd.ms-excel": ("document", 100 * _MB),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ("document", 100 * _MB),
    "application/msword": ("document", 100 * _MB),
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ("document", 100 * _MB),
    "application/vnd.ms-powerpoint": ("document", 100 * _MB),
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": ("document", 100 * _MB),
    "image/jpeg": ("image", 5 * _MB),
    "image/png": ("image", 5 * _MB),
    "image/webp": ("sticker", 500 * _KB),  # animated; a static sticker is at most STATIC_STICKER_BYTES
    "video/mp4": ("video", 16 * _MB),
    "video/3gpp": ("video", 16 * _MB),
}
STATIC_STICKER_BYTES = 100 * _KB
CAPTIONED = frozenset({"image", "video", "document"})

# Interactive messages (developers.facebook.com/docs/whatsapp/cloud-api/messages/interactive-reply-buttons-messages
# and .../interactive-list-messages): reply buttons and list rows, with Meta's limits.
MAX_REPLY_BUTTONS = 3
BUTTON_TITLE_LENGTH = 20
BUTTON_ID_LENGTH = 256
BUTTONS_BODY_LENGTH = 1024
MAX_LIST_ROWS = 10
MAX_LIST_SECTIONS = 10
LIST_BUTTON_LENGTH = 20
ROW_TITLE_LENGTH = 24
ROW_DESCRIPTION_LENGTH = 72
ROW_ID_LENGTH = 200
SECTION_TITLE_LENGTH = 24
LIST_BODY_LENGTH = 4096
HEADER_LENGTH = 60
FOOTER_LENGTH = 60
# What Settings asks of the phone number (`GET /{phone-number-id}?fields=...`).
NUMBER_FIELDS = "verified_name,display_phone_number,quality_rating,messaging_limit_tier"


class WhatsAppAdapter:
    type: ClassVar[str] = TYPE
    secret_fields: ClassVar[frozenset[str]] = frozenset({"access_token", "app_secret", "verify_token"})
    rules: ClassVar[ChannelRules] = ChannelRules(
        reply_window=timedelta(hours=24),
        templates_outside_window=True,
        max_text_length=4096,
        delivery_receipts=True,
        channel_pace=Pace(DEFAULT_MESSAGES_PER_SECOND, 1.0),
        # Meta's pair rate limit (131056): about one message every 6 s to the same customer.
        recipient_pace=Pace(1, 6.0),
        reply_choices=ReplyChoices(
            provider="WhatsApp",
            max_buttons=MAX_REPLY_BUTTONS,
            title_length=BUTTON_TITLE_LENGTH,
            id_length=BUTTON_ID_LENGTH,
            lists=ListLimits(
                button_length=LIST_BUTTON_LENGTH,
                max_sections=MAX_LIST_SECTIONS,
                max_rows=MAX_LIST_ROWS,
                section_title_length=SECTION_TITLE_LENGTH,
                row_title_length=ROW_TITLE_LENGTH,
                row_description_length=ROW_DESCRIPTION_LENGTH,
            ),
            header_footer=True,
            body_length=BUTTONS_BODY_LENGTH,
        ),
        message_types=frozenset(
            {
                MessageType.TEXT,
                MessageType.TEMPLATE,
                MessageType.IMAGE,
                MessageType.FILE,
                MessageType.AUDIO,
                MessageType.VIDEO,
            }
        ),
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
        templates, quality = _account_changes(data, channel)
        return ParsedWebhook(messages=messages, statuses=statuses, templates=templates, quality=quality)

    # ----- sending ----------------------------------------------------------------------------

    def check_outbound(
        self,
        channel: Channel,
        message_type: MessageType,
        text: str | None,
        attachments: list[dict[str, Any]],
        payload: dict[str, Any],
    ) -> None:
        quick_reply = payload.get("quick_reply")
        if isinstance(quick_reply, dict):
            if attachments:
                raise ValidationFailed.field(
                    "message.attachments", "WhatsApp sends reply buttons and lists without files"
                )
            check_quick_reply(quick_reply, text)
            return
        if not attachments:
            return
        if len(attachments) > 1:
            raise ValidationFailed.field("message.attachments", "WhatsApp sends one file per message")
        kind = check_media(attachments[0], "message.attachments[0]")
        if text and kind not in CAPTIONED:
            raise ValidationFailed.field(
                "message.text",
                f"WhatsApp sends {kind} files without a caption: send the text in a message of its own",
            )
        if text and len(text) > CAPTION_LENGTH:
            raise ValidationFailed.field("message.text", f"a WhatsApp caption is at most {CAPTION_LENGTH} characters")

    def send(self, channel: Channel, message: OutboundMessage) -> SendResult:
        url = f"{_graph(channel)}/{(channel.config or {}).get('phone_number_id')}/messages"
        token = str(channel.secrets.get("access_token", ""))
        media_id = None
        if _sends_media(message) and not message.attachments[0].get("url"):
            media_id = upload_media(channel, message.attachments[0])
        try:
            response = provider_http().post(
                url,
                json=outbound_body(message, media_id),
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

    # ----- message templates ----------------------------------------------------------------------

    def fetch_templates(self, channel: Channel) -> list[ProviderTemplate]:
        """`GET /{waba-id}/message_templates`, a page at a time: each answer's `paging.cursors.after`
        asks for the next page while the answer has a `paging.next` link. The cursor is sent to our
        own `api_base_url` rather than following Meta's link, so a proxy or a test fake is kept."""
        account = str((channel.config or {}).get("business_account_id", ""))
        url = f"{_graph(channel)}/{account}/message_templates"
        headers = {"Authorization": f"Bearer {channel.secrets.get('access_token', '')}"}
        params: dict[str, str] = {"fields": TEMPLATE_FIELDS, "limit": str(TEMPLATE_PAGE)}
        found: list[ProviderTemplate] = []
        seen: set[str] = set()
        for _page in range(MAX_TEMPLATE_PAGES):
            try:
                response = provider_http().get(url, params=params, headers=headers, timeout=SEND_TIMEOUT)
            except httpx.TransportError as exc:
                raise TransientError(f"WhatsApp could not be reached: {exc}") from exc
            if not response.is_success:
                raise graph_error(response)
            try:
                answer = response.json()
            except ValueError as exc:
                raise TransientError("WhatsApp answered something that is not JSON") from exc
            if not isinstance(answer, dict) or not isinstance(answer.get("data"), list):
                raise TransientError("WhatsApp answered without a list of templates")
            found.extend(template for item in _dicts(answer["data"]) if (template := _template(item)) is not None)
            paging = _dict(answer.get("paging"))
            cursors = _dict(paging.get("cursors"))
            after = str(cursors.get("after") or "")
            if not paging.get("next") or not after or after in seen:
                return found
            seen.add(after)
            params = {**params, "after": after}
        raise PermanentError(f"more than {MAX_TEMPLATE_PAGES * TEMPLATE_PAGE} templates: only that many are kept")

    # ----- customers' files ----------------------------------------------------------------------

    def fetch_media(self, channel: Channel, reference: dict[str, Any]) -> FetchedMedia:
        """`GET /{media-id}` for a short-lived URL, then the bytes from it, both with the access token."""
        token = {"Authorization": f"Bearer {channel.secrets.get('access_token', '')}"}
        try:
            found = provider_http().get(
                f"{_graph(channel)}/{reference.get('media_id')}", headers=token, timeout=SEND_TIMEOUT
            )
            if not found.is_success:
                raise graph_error(found)
            info = found.json()
            size = info.get("file_size")
            if isinstance(size, int) and size > MAX_MEDIA_BYTES:
                raise PermanentError(f"larger than the {MAX_MEDIA_BYTES // (1024 * 1024)} MB kept from WhatsApp")
            download = provider_http().get(str(info["url"]), headers=token, timeout=SEND_TIMEOUT)
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

    # ----- the phone number, for Settings ------------------------------------------------------------

    def check_connection(self, channel: Channel) -> dict[str, Any]:
        """The number as Meta knows it (`verified_name`, `display_phone_number`, `quality_rating`,
        `messaging_limit_tier`); `ChannelError` with Meta's reason when it cannot be read."""
        number = (channel.config or {}).get("phone_number_id")
        token = {"Authorization": f"Bearer {channel.secrets.get('access_token', '')}"}
        try:
            response = provider_http().get(
                f"{_graph(channel)}/{number}", params={"fields": NUMBER_FIELDS}, headers=token, timeout=SEND_TIMEOUT
            )
        except httpx.TransportError as exc:
            raise TransientError(f"WhatsApp could not be reached: {exc}") from exc
        if not response.is_success:
            raise graph_error(response)
        try:
            found = response.json()
        except ValueError as exc:
            raise TransientError("WhatsApp answered without the phone number") from exc
        if not isinstance(found, dict):
            raise TransientError("WhatsApp answered without the phone number")
        return {key: found.get(key) for key in NUMBER_FIELDS.split(",")}

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
        pace = config.get(PACE_SETTING)
        if pace not in (None, ""):
            try:
                per_second = int(str(pace).strip())
            except ValueError:
                per_second = 0
            if not 1 <= per_second <= MAX_MESSAGES_PER_SECOND:
                raise ValidationFailed.field(
                    f"config.{PACE_SETTING}", f"must be a whole number from 1 to {MAX_MESSAGES_PER_SECOND}"
                )
            cleaned[PACE_SETTING] = per_second
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


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


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


def _account_changes(data: dict[str, Any], channel: Channel) -> tuple[list[TemplateChange], list[QualityChange]]:
    """Template and number changes for this channel's business account (the entry's id is the
    account's). A quality update names its number by display number: one of another number of the
    same account is skipped when this channel knows its own."""
    config = channel.config or {}
    account = str(config.get("business_account_id", ""))
    own_number = re.sub(r"\D", "", str(config.get("display_phone_number") or ""))
    templates: list[TemplateChange] = []
    quality: list[QualityChange] = []
    for entry in _dicts(data.get("entry")):
        if not account or str(entry.get("id")) != account:
            continue
        at = _timestamp(entry.get("time"))
        for change in _dicts(entry.get("changes")):
            value = change.get("value")
            if not isinstance(value, dict):
                continue
            field = change.get("field")
            if field in TEMPLATE_FIELDS_CHANGED:
                templates.append(_template_change(value, at))
            elif field == "phone_number_quality_update" and value.get("event"):
                number = re.sub(r"\D", "", str(value.get("display_phone_number") or ""))
                if own_number and number and number != own_number:
                    continue
                limit = value.get("max_daily_conversations_per_business") or value.get("current_limit")
                quality.append(QualityChange(str(value["event"])[:40], str(limit)[:40] if limit else None, at))
    return templates, quality


# The webhook fields that change a template. A quality update arrives under
# message_template_status_update in Meta's reference syntax and under its own name in the list of
# webhook fields: both are read.
TEMPLATE_FIELDS_CHANGED = frozenset(
    {"message_template_status_update", "template_category_update", "message_template_quality_update"}
)


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _template_change(value: dict[str, Any], at: datetime | None) -> TemplateChange:
    """One template webhook's value: a status event (with its reason, and the explanation of a
    rejection or a pause), a new category, or a new quality score."""
    reason_parts = [_text(value.get("reason"))]
    for extra in ("rejection_info", "other_info"):
        info = value.get(extra)
        if isinstance(info, dict):
            reason_parts.extend(_text(info.get(k)) for k in ("title", "reason", "description", "recommendation"))
    reasons = [part for part in reason_parts if part and part != "NONE"]
    return TemplateChange(
        provider_template_id=_text(value.get("message_template_id")),
        name=_text(value.get("message_template_name")),
        language=_text(value.get("message_template_language")),
        status=_text(value.get("event")),
        category=_text(value.get("new_category")) if "previous_category" in value else None,
        quality=_text(value.get("new_quality_score")),
        reason=" · ".join(dict.fromkeys(reasons)) or None,
        at=at,
    )


def _template(item: dict[str, Any]) -> ProviderTemplate | None:
    """A template of Meta's list, or None when it lacks a name or language (never sendable)."""
    name, language = _text(item.get("name")), _text(item.get("language"))
    if name is None or language is None:
        return None
    score = item.get("quality_score")
    quality = _text(score.get("score")) if isinstance(score, dict) else _text(score)
    reason = _text(item.get("rejected_reason"))
    return ProviderTemplate(
        provider_template_id=_text(item.get("id")),
        name=name[:512],
        language=language[:15],
        category=(_text(item.get("category")) or "UNKNOWN")[:32],
        status=(_text(item.get("status")) or "UNKNOWN")[:32],
        parameter_format=str(item.get("parameter_format") or "POSITIONAL").upper()[:16],
        components=_dicts(item.get("components")),
        quality=quality[:16] if quality else None,
        reason=reason if reason != "NONE" else None,
    )


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
    errors = _dicts(item.get("errors"))
    error = status_error(errors[0]) if status == DeliveryStatus.FAILED and errors else None
    return StatusUpdate(
        provider_message_id=str(item["id"]),
        status=status,
        reason=error.reason if error is not None else None,
        at=_timestamp(item.get("timestamp")),
        error=error,
    )


def status_error(error: dict[str, Any]) -> TransientError | PermanentError:
    """A failed status's error (`{"code", "title", "message", "error_data": {"details"}, "href"}`) by
    the rules and tables of a refused send (`graph_error`): the same code is the same fault whether
    Meta refuses the request or reports the failure later."""
    return meta_graph.classify_graph_error(error, None, provider="WhatsApp", retryable=RETRYABLE_CODES, faults=FAULTS)


# ----- sending, piece by piece -----------------------------------------------------------------


def outbound_body(message: OutboundMessage, media_id: str | None = None) -> dict[str, Any]:
    """The Graph API body for one message (§3.3). A template travels in the payload, already in Meta's
    shape; reply buttons and lists (`quick_reply`) become an interactive message; a file goes by the
    media id its upload returned (`media_id`), or by its link when it has one."""
    body: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual"}
    if message.recipient_id.isdigit():
        body["to"] = message.recipient_id
    else:
        body["recipient"] = message.recipient_id  # a BSUID, for customers known by username only
    payload = message.payload or {}
    if isinstance(payload.get("template"), dict):
        body.update(type="template", template=payload["template"])
    elif isinstance(payload.get("quick_reply"), dict):
        body.update(type="interactive", interactive=interactive(payload["quick_reply"], message.text or ""))
    elif _sends_media(message):
        attachment = message.attachments[0]
        kind = media_kind(attachment) or OUTBOUND_MEDIA.get(message.type, "document")
        media: dict[str, Any]
        if media_id or attachment.get("provider_media_id"):
            media = {"id": media_id or attachment["provider_media_id"]}
        elif attachment.get("url"):
            media = {"link": attachment["url"]}
        else:
            raise PermanentError("the file was not uploaded to WhatsApp")
        if message.text and kind in CAPTIONED:
            media["caption"] = message.text[:CAPTION_LENGTH]
        name = attachment.get("filename") or attachment.get("name")
        if kind == "document" and name:
            media["filename"] = str(name)
        body.update(type=kind, **{kind: media})
    else:
        text = {"body": message.text or "", "preview_url": bool(payload.get("preview_url", False))}
        body.update(type="text", text=text)
    if message.reply_to_provider_id:
        body["context"] = {"message_id": message.reply_to_provider_id}
    return body


def _sends_media(message: OutboundMessage) -> bool:
    payload = message.payload or {}
    return bool(message.attachments) and not isinstance(payload.get("template"), dict)


def interactive(quick_reply: dict[str, Any], text: str) -> dict[str, Any]:
    """Reply buttons or a list in Meta's interactive shape, from our `quick_reply` payload."""
    found: dict[str, Any]
    if quick_reply.get("buttons"):
        buttons = [
            {"type": "reply", "reply": {"id": str(b["id"]), "title": str(b["title"])}} for b in quick_reply["buttons"]
        ]
        found = {"type": "button", "body": {"text": text}, "action": {"buttons": buttons}}
    else:
        listed = quick_reply.get("list") or {}
        sections = []
        for section in listed.get("sections") or []:
            rows = []
            for row in section.get("rows") or []:
                shaped = {"id": str(row["id"]), "title": str(row["title"])}
                if row.get("description"):
                    shaped["description"] = str(row["description"])
                rows.append(shaped)
            sections.append({**({"title": str(section["title"])} if section.get("title") else {}), "rows": rows})
        found = {
            "type": "list",
            "body": {"text": text},
            "action": {"button": str(listed.get("button")), "sections": sections},
        }
    if quick_reply.get("header"):
        found["header"] = {"type": "text", "text": str(quick_reply["header"])}
    if quick_reply.get("footer"):
        found["footer"] = {"text": str(quick_reply["footer"])}
    return found


def _content_type(attachment: dict[str, Any]) -> str:
    return str(attachment.get("content_type") or "").split(";", maxsplit=1)[0].strip().lower()


def media_kind(attachment: dict[str, Any]) -> str | None:
    """What WhatsApp sends this file as (image, sticker, audio, video, document), by its content type."""
    rule = MEDIA_RULES.get(_content_type(attachment))
    return rule[0] if rule else None


def _size_text(size: int) -> str:
    return f"{size // _MB} MB" if size >= _MB else f"{size // _KB} KB"


def check_media(attachment: dict[str, Any], field: str) -> str:
    """The kind the file is sent as; a 422 naming Meta's rule when WhatsApp would refuse it."""
    content_type = _content_type(attachment)
    rule = MEDIA_RULES.get(content_type)
    if rule is None:
        raise ValidationFailed.field(
            field,
            f"WhatsApp cannot send files of type {content_type or 'unknown'}: it takes JPEG and PNG images, "
            "WebP stickers, MP4 and 3GPP videos, AAC, AMR, MP3, M4A and OGG audio, and PDF, text and Office documents",
        )
    kind, largest = rule
    size = attachment.get("size")
    if isinstance(size, int) and size > largest:
        raise ValidationFailed.field(field, f"WhatsApp sends {kind} files of at most {_size_text(largest)}")
    return kind


def _animated_webp(data: bytes) -> bool:
    """An extended WebP (VP8X) with its animation flag set."""
    return data[:4] == b"RIFF" and data[8:16] == b"WEBPVP8X" and len(data) > 20 and bool(data[20] & 0x02)


def upload_media(channel: Channel, attachment: dict[str, Any]) -> str:
    """Upload one of our files to the number's media endpoint; the media id Meta answers."""
    kind = check_media_for_send(attachment)
    key = attachment.get("storage_key")
    if not key:
        raise PermanentError("the file to send is not in our storage")
    try:
        data = storage.get_storage().get(str(key))
    except (OSError, ValueError) as exc:
        raise PermanentError("the file to send is missing from our storage") from exc
    if kind == "sticker" and len(data) > STATIC_STICKER_BYTES and not _animated_webp(data):
        raise PermanentError(f"WhatsApp sends static stickers of at most {_size_text(STATIC_STICKER_BYTES)}")
    content_type = _content_type(attachment)
    name = str(attachment.get("name") or "file")
    number = (channel.config or {}).get("phone_number_id")
    try:
        response = provider_http().post(
            f"{_graph(channel)}/{number}/media",
            data={"messaging_product": "whatsapp", "type": content_type},
            files={"file": (name, data, content_type)},
            headers={"Authorization": f"Bearer {channel.secrets.get('access_token', '')}"},
            timeout=UPLOAD_TIMEOUT,
        )
    except httpx.TransportError as exc:
        raise TransientError(f"WhatsApp could not be reached: {exc}") from exc
    if not response.is_success:
        raise graph_error(response)
    try:
        return str(response.json()["id"])
    except (ValueError, LookupError, TypeError) as exc:
        raise TransientError("WhatsApp answered the upload without a media id") from exc


def check_media_for_send(attachment: dict[str, Any]) -> str:
    """`check_media` at send time: a refusal is final (the message was written before a rule changed)."""
    try:
        return check_media(attachment, "attachment")
    except ValidationFailed as exc:
        raise PermanentError(next(iter((exc.details or {}).values()), exc.message)) from exc


def _text_field(value: Any, field: str, largest: int, *, required: bool = True) -> str:
    text = str(value or "").strip() if isinstance(value, str | int) else ""
    if required and not text:
        raise ValidationFailed.field(field, "is required")
    if len(text) > largest:
        raise ValidationFailed.field(field, f"WhatsApp allows at most {largest} characters here")
    return text


def check_quick_reply(quick_reply: dict[str, Any], text: str | None) -> None:
    """Meta's limits for reply buttons and lists, each refusal naming its field and the rule."""
    prefix = "message.quick_reply"
    buttons, listed = quick_reply.get("buttons"), quick_reply.get("list")
    if bool(buttons) == bool(listed):
        raise ValidationFailed.field(prefix, "give either `buttons` or a `list`")
    _text_field(quick_reply.get("header"), f"{prefix}.header", HEADER_LENGTH, required=False)
    _text_field(quick_reply.get("footer"), f"{prefix}.footer", FOOTER_LENGTH, required=False)
    body = text or ""
    if buttons:
        if not isinstance(buttons, list) or len(buttons) > MAX_REPLY_BUTTONS:
            raise ValidationFailed.field(
                f"{prefix}.buttons", f"WhatsApp allows at most {MAX_REPLY_BUTTONS} reply buttons"
            )
        if len(body) > BUTTONS_BODY_LENGTH:
            raise ValidationFailed.field(
                "message.text", f"WhatsApp allows at most {BUTTONS_BODY_LENGTH} characters above reply buttons"
            )
        _unique_choices(buttons, f"{prefix}.buttons", BUTTON_TITLE_LENGTH, BUTTON_ID_LENGTH)
        return
    if not isinstance(listed, dict):
        raise ValidationFailed.field(f"{prefix}.list", "must be a button label and sections of rows")
    _text_field(listed.get("button"), f"{prefix}.list.button", LIST_BUTTON_LENGTH)
    if len(body) > LIST_BODY_LENGTH:
        raise ValidationFailed.field(
            "message.text", f"WhatsApp allows at most {LIST_BODY_LENGTH} characters above a list"
        )
    sections = listed.get("sections")
    if not isinstance(sections, list) or not sections or len(sections) > MAX_LIST_SECTIONS:
        raise ValidationFailed.field(
            f"{prefix}.list.sections", f"WhatsApp lists have 1 to {MAX_LIST_SECTIONS} sections"
        )
    rows: list[Any] = []
    for index, section in enumerate(sections):
        field = f"{prefix}.list.sections[{index}]"
        if not isinstance(section, dict) or not isinstance(section.get("rows"), list) or not section["rows"]:
            raise ValidationFailed.field(f"{field}.rows", "a section needs at least one row")
        _text_field(section.get("title"), f"{field}.title", SECTION_TITLE_LENGTH, required=len(sections) > 1)
        rows.extend(section["rows"])
    if len(rows) > MAX_LIST_ROWS:
        raise ValidationFailed.field(
            f"{prefix}.list.sections", f"WhatsApp allows at most {MAX_LIST_ROWS} rows in a list"
        )
    _unique_choices(rows, f"{prefix}.list.rows", ROW_TITLE_LENGTH, ROW_ID_LENGTH, ROW_DESCRIPTION_LENGTH)


def _unique_choices(
    choices: list[Any], field: str, title_length: int, id_length: int, description_length: int | None = None
) -> None:
    seen: set[str] = set()
    for index, choice in enumerate(choices):
        if not isinstance(choice, dict):
            raise ValidationFailed.field(f"{field}[{index}]", "must have an id and a title")
        _text_field(choice.get("title"), f"{field}[{index}].title", title_length)
        choice_id = _text_field(choice.get("id"), f"{field}[{index}].id", id_length)
        if description_length is not None:
            _text_field(choice.get("description"), f"{field}[{index}].description", description_length, required=False)
        if choice_id in seen:
            raise ValidationFailed.field(f"{field}[{index}].id", "WhatsApp needs every choice's id to be different")
        seen.add(choice_id)


def graph_error(response: httpx.Response) -> TransientError | PermanentError:
    """The error a refused request means: retryable (throttling, Meta's faults) or permanent, with
    Meta's reason and `whatsapp:<code>` as its code."""
    return meta_graph.graph_error(response, provider="WhatsApp", retryable=RETRYABLE_CODES, faults=FAULTS)
