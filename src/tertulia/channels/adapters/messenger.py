"""Facebook Messenger: a Page's conversations over the Messenger Platform (Graph API).

Wire format: ../shared/reference/channels.md §2 and §4 (developers.facebook.com, Messenger Platform
webhook events and Send API).

- Connect (`connect`): `GET /{page-id}?fields=id,name` with the Page access token names the Page;
  `POST /{page-id}/subscribed_apps` subscribes the app to the Page's events (SUBSCRIBED_FIELDS).
  The callback URL and the verify token are pasted into the app's Webhooks settings by the manager
  (Meta sets that per app, with the app's token, which we do not keep). Disconnect:
  `DELETE /{page-id}/subscribed_apps`. Every call goes to the channel's `api_base_url`.
- Callbacks: verified as every Meta callback (channels/adapters/meta_graph.py). The envelope is
  `{"object": "page", "entry": [{"id": <page id>, "messaging": [<event>]}]}`; events of other Pages
  of the same app are skipped (each Page is its own channel).
- Events: messages (text, attachments fetched into our files by `fetch_media`, quick replies as the
  customer's choice), postbacks (buttons, the persistent menu, Get Started) as POSTBACK messages,
  referrals (m.me links, ads) recorded on the contact, echoes of messages the Page sent from
  elsewhere (ParsedWebhook.echoes, stored as outgoing; our own sends carry `metadata`
  `tertulia-msg-<id>` and their echoes are skipped), deliveries and reads (watermarks: every
  message sent up to that time), and reactions.
- Identity: the page-scoped id (PSID) of the customer; names and the profile picture are read from
  the Graph API for a sender not seen lately (cached in memory, a failure only leaves them empty).
- Sending: `POST /{page-id}/messages` with `messaging_type` RESPONSE, or MESSAGE_TAG with `tag` for
  a message outside the 24-hour window (the conversations service checks the window and the tag
  before anything is written). Text, quick replies, buttons (a button template), and files uploaded
  from our storage (multipart `filedata`) or sent by URL. A private reply to a Page comment goes to
  `recipient: {"comment_id": ...}`.
- Errors: Graph errors mapped by code (RETRYABLE_CODES) with a readable explanation (EXPLANATIONS)
  before Meta's own words.
"""

import json
import mimetypes
import re
import secrets
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx

from tertulia.channels import reply_choices
from tertulia.channels.adapters import meta_graph
from tertulia.channels.models import Channel
from tertulia.channels.protocol import (
    ChannelRules,
    DeliveryStatus,
    Fault,
    FetchedMedia,
    InboundMessage,
    MessageType,
    OutboundMessage,
    ParsedWebhook,
    PermanentError,
    ReplyChoices,
    SendResult,
    SetupRefused,
    StatusUpdate,
    TransientError,
    WebhookRequest,
)
from tertulia.kit import storage
from tertulia.kit.errors import ValidationFailed
from tertulia.kit.outgoing_http import provider_http

TYPE = "messenger"
DEFAULT_API_BASE_URL = "https://graph.facebook.com"
SUBSCRIBED_FIELDS = (
    "messages",
    "messaging_postbacks",
    "message_deliveries",
    "message_reads",
    "message_echoes",
    "messaging_referrals",
    "message_reactions",
    "feed",
)
OUR_METADATA = "tertulia-msg-"
GET_STARTED = "GET_STARTED"
MAX_TEXT = 2000
MAX_BUTTON_TEXT = 640
MAX_BUTTONS = 3
MAX_QUICK_REPLIES = 13
# developers.facebook.com/docs/messenger-platform/send-messages/quick-replies: a title of at most
# 20 characters, a payload of at most 1000.
QUICK_REPLY_TITLE = 20
QUICK_REPLY_PAYLOAD = 1000
MAX_MENU_ITEMS = 20
MAX_MEDIA_BYTES = 25 * 1024 * 1024  # what Messenger itself carries
PROFILE_TIMEOUT = httpx.Timeout(5.0, connect=2.0)
UPLOAD_TIMEOUT = httpx.Timeout(120.0, connect=5.0)
PROFILE_TTL = 24 * 3600.0
PROFILE_FAILURE_TTL = 600.0
_DIGITS = re.compile(r"^[0-9]{5,25}$")

# The message tags Meta's policy allows outside the standard window (reference §4.3) and for how
# long after the customer's last message each may be used.
MESSAGE_TAGS: tuple[tuple[str, timedelta | None], ...] = (
    ("ACCOUNT_UPDATE", None),
    ("POST_PURCHASE_UPDATE", None),
    ("CONFIRMED_EVENT_UPDATE", None),
    ("HUMAN_AGENT", timedelta(days=7)),
)

# Graph codes worth retrying: rate limits (app, user, Page, per-hour calls) and Meta's transient
# faults (1200: temporary send failure).
RETRYABLE_CODES: dict[int, float | None] = {
    1: None,
    2: None,
    4: 60.0,
    17: 60.0,
    32: 60.0,
    613: 60.0,
    1200: None,
}
# Whose fault Messenger's and Instagram's codes are, before the Graph codes every Meta platform
# shares (meta_graph.GRAPH_FAULTS: 190 the token, 10 and 200-299 permissions, 4/17/32/613 rate
# limits). Code 10 is a permission unless its subcode says otherwise.
FAULTS: dict[tuple[int, int | None], Fault] = {
    (10, 2018278): Fault.MESSAGE,  # outside the 24-hour window without an allowing tag
    (10, 1893063): Fault.ACCOUNT,  # the Page is temporarily restricted from sending
    (551, None): Fault.MESSAGE,  # this person is not available (blocked the Page, left)
    (100, 2018001): Fault.MESSAGE,  # no matching user
    (100, 33): Fault.ACCOUNT,  # the Page or account id does not exist for this token
}
EXPLANATIONS: dict[tuple[int, int | None], str] = {
    (10, 2018278): "Sent outside the 24-hour window without a message tag that allows it.",
    (10, 1893063): "The Page is temporarily restricted from sending messages.",
    (551, None): "This person is not available right now (they may have blocked the Page).",
    (190, None): "The Page access token is invalid or expired: connect the channel again with a new one.",
    (200, None): "The app lacks a permission Meta requires for this message.",
    (230, None): "The Page needs the pages_messaging permission.",
}

ATTACHMENT_TYPES = {
    "image": MessageType.IMAGE,
    "video": MessageType.VIDEO,
    "audio": MessageType.AUDIO,
    "file": MessageType.FILE,
    "sticker": MessageType.IMAGE,
}
OUTBOUND_TYPES = {MessageType.IMAGE: "image", MessageType.VIDEO: "video", MessageType.AUDIO: "audio"}


class _Profiles:
    """Customers' names and pictures by (channel, PSID), kept a day (a failure ten minutes), so a
    busy conversation costs one profile call a day."""

    def __init__(self, limit: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._found: dict[tuple[int, str], tuple[float, dict[str, Any] | None]] = {}
        self._limit = limit

    def get(self, key: tuple[int, str]) -> tuple[bool, dict[str, Any] | None]:
        with self._lock:
            hit = self._found.get(key)
        if hit is None or hit[0] < time.monotonic():
            return False, None
        return True, hit[1]

    def put(self, key: tuple[int, str], profile: dict[str, Any] | None) -> None:
        ttl = PROFILE_TTL if profile is not None else PROFILE_FAILURE_TTL
        with self._lock:
            if len(self._found) >= self._limit:
                self._found.clear()
            self._found[key] = (time.monotonic() + ttl, profile)

    def clear(self) -> None:
        with self._lock:
            self._found.clear()


PROFILES = _Profiles()


class MetaMessagingAdapter:
    """What Messenger and Instagram share: the messaging webhook events and the Send API body.
    A subclass names its type, webhook object, account id and Graph root."""

    type: ClassVar[str]
    webhook_object: ClassVar[str]
    provider: ClassVar[str]
    secret_fields: ClassVar[frozenset[str]]
    profile_fields: ClassVar[str] = "first_name,last_name,profile_pic"

    # ----- what a subclass says ------------------------------------------------------------------

    def account_id(self, channel: Channel) -> str:
        raise NotImplementedError

    def root(self, channel: Channel) -> str:
        raise NotImplementedError

    def token(self, channel: Channel) -> str:
        raise NotImplementedError

    def send_path(self, channel: Channel) -> str:
        raise NotImplementedError

    # ----- callbacks -----------------------------------------------------------------------------

    def verify_webhook(self, channel: Channel, request: WebhookRequest) -> None:
        meta_graph.verify_hub_request(channel, request)

    def parse_webhook(self, channel: Channel, request: WebhookRequest) -> ParsedWebhook:
        """Raises ValueError for a body that is not this platform's callback."""
        if request.method == "GET":
            return ParsedWebhook(reply=meta_graph.handshake_reply(request))
        data = json.loads(request.body)
        if not isinstance(data, dict) or data.get("object") != self.webhook_object:
            raise ValueError(f'expected {{"object": "{self.webhook_object}", ...}}')
        account = self.account_id(channel)
        parsed = ParsedEvents()
        for entry in _dicts(data.get("entry")):
            if account and str(entry.get("id")) != account:
                continue
            for event in _dicts(entry.get("messaging")):
                self._event(channel, event, parsed)
            for change in _dicts(entry.get("changes")):
                self.change(channel, change, parsed, entry)
        # A commenter's id is no Messenger id: their profile is not read (the comment names them).
        messages = [self._with_profile(channel, m) if m.opens_window else m for m in parsed.messages]
        return ParsedWebhook(messages=messages, statuses=parsed.statuses, echoes=parsed.echoes)

    def change(self, channel: Channel, change: dict[str, Any], parsed: "ParsedEvents", entry: dict[str, Any]) -> None:
        """An `entry[].changes[]` item (Page feed, Instagram comments); none are read by default."""

    def _event(self, channel: Channel, event: dict[str, Any], parsed: "ParsedEvents") -> None:
        sender = str((event.get("sender") or {}).get("id") or "")
        recipient = str((event.get("recipient") or {}).get("id") or "")
        at = _millis(event.get("timestamp"))
        message = event.get("message")
        if isinstance(message, dict):
            if message.get("is_echo"):
                if not str(message.get("metadata") or "").startswith(OUR_METADATA) and recipient:
                    parsed.echoes.append(self.echo(recipient, message, at))
                return
            if sender and message.get("mid"):
                parsed.messages.append(self.inbound(channel, sender, message, at))
            return
        postback = event.get("postback")
        if isinstance(postback, dict) and sender:
            parsed.messages.append(self._postback(channel, sender, postback, event.get("timestamp"), at))
            return
        referral = event.get("referral")
        if isinstance(referral, dict) and sender:
            parsed.messages.append(_referral(sender, referral, event.get("timestamp"), at))
            return
        reaction = event.get("reaction")
        if isinstance(reaction, dict) and sender:
            parsed.messages.append(_reaction(sender, reaction, event.get("timestamp"), at))
            return
        for key, status in (("delivery", DeliveryStatus.DELIVERED), ("read", DeliveryStatus.READ)):
            receipt = event.get(key)
            if isinstance(receipt, dict) and sender:
                parsed.statuses.extend(_receipts(sender, receipt, status, at))
                return

    def inbound(self, channel: Channel, sender: str, message: dict[str, Any], at: datetime | None) -> InboundMessage:
        kind, text, attachments, payload = content(message)
        quick = message.get("quick_reply")
        if isinstance(quick, dict) and kind == MessageType.TEXT:
            kind = MessageType.POSTBACK
            payload["postback"] = {"data": quick.get("payload"), "title": text, "source": "quick_reply"}
        reply = message.get("reply_to")
        if isinstance(reply, dict) and reply.get("mid"):
            payload["reply_to"] = str(reply["mid"])
        return InboundMessage(
            sender_id=sender,
            provider_message_id=str(message["mid"]),
            type=kind,
            text=text,
            attachments=attachments,
            payload=payload,
            sent_at=at,
        )

    def echo(self, customer: str, message: dict[str, Any], at: datetime | None) -> InboundMessage:
        kind, text, attachments, payload = content(message)
        # The Page's files are shown by their link; they are not fetched into our storage.
        links = [
            {
                "name": a["provider_file"].get("name"),
                "url": a["provider_file"].get("url"),
                "unavailable": "sent from the Page",
            }
            for a in attachments
        ]
        payload["echo"] = {"app_id": message.get("app_id")}
        return InboundMessage(
            sender_id=customer,
            provider_message_id=str(message.get("mid") or ""),
            type=kind,
            text=text,
            attachments=links,
            payload=payload,
            sent_at=at,
        )

    def _postback(
        self, channel: Channel, sender: str, postback: dict[str, Any], timestamp: Any, at: datetime | None
    ) -> InboundMessage:
        data = postback.get("payload")
        title = str(postback.get("title") or data or "")
        menu = {str(item.get("payload")) for item in (channel.config or {}).get("menu") or [] if item.get("payload")}
        source = "get_started" if data == GET_STARTED else "chat_menu" if data in menu else "button"
        payload: dict[str, Any] = {"postback": {"data": data, "title": postback.get("title"), "source": source}}
        if isinstance(postback.get("referral"), dict):
            payload["referral"] = _referral_fields(postback["referral"])
        provider_id = str(postback.get("mid") or f"postback:{sender}:{timestamp}")
        return InboundMessage(
            sender_id=sender,
            provider_message_id=provider_id,
            type=MessageType.POSTBACK,
            text=title or None,
            payload=payload,
            sent_at=at,
        )

    def _with_profile(self, channel: Channel, message: InboundMessage) -> InboundMessage:
        profile = self.profile(channel, message.sender_id)
        if not profile:
            return message
        first, last = profile.get("first_name"), profile.get("last_name")
        name = profile.get("name") or " ".join(str(p) for p in (first, last) if p).strip() or profile.get("username")
        payload = dict(message.payload)
        picture = profile.get("profile_pic")
        if picture:
            payload["sender_profile"] = {"picture": str(picture)}
        return replace(
            message,
            display_name=str(name) if name else message.display_name,
            first_name=str(first) if first else None,
            last_name=str(last) if last else None,
            payload=payload,
            avatar_url=str(picture) if picture else None,
        )

    def profile(self, channel: Channel, user_id: str) -> dict[str, Any] | None:
        """The customer's public profile (cached; None when Meta does not give it)."""
        key = (channel.id, user_id)
        known, found = PROFILES.get(key)
        if known:
            return found
        profile: dict[str, Any] | None = None
        try:
            response = provider_http().get(
                f"{self.root(channel)}/{user_id}",
                params={"fields": self.profile_fields},
                headers=self._auth(channel),
                timeout=PROFILE_TIMEOUT,
            )
            body = response.json() if response.is_success else None
            profile = body if isinstance(body, dict) else None
        except (httpx.HTTPError, ValueError):
            profile = None
        PROFILES.put(key, profile)
        return profile

    # ----- sending -------------------------------------------------------------------------------

    def _auth(self, channel: Channel) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(channel)}"}

    def _call(
        self, channel: Channel, method: str, path: str, *, params: dict[str, str], field: str, body: Any = None
    ) -> dict[str, Any]:
        """One Graph call made while a manager waits; a refusal names the field at fault."""
        try:
            response = provider_http().request(
                method,
                f"{self.root(channel)}/{path}",
                params=params,
                json=body,
                headers=self._auth(channel),
                timeout=meta_graph.TIMEOUT,
            )
        except httpx.TransportError as exc:
            raise SetupRefused(
                f"{self.provider} could not be reached ({type(exc).__name__})",
                field="config.api_base_url",
                code="unreachable",
            ) from exc
        if not response.is_success:
            error = meta_graph.graph_error(response, provider=self.provider, retryable=RETRYABLE_CODES, faults=FAULTS)
            code = "token" if field.startswith("secrets.") else "callback"
            raise SetupRefused(error.reason, field=field, code=code)
        try:
            answer = response.json()
        except ValueError as exc:
            raise SetupRefused(
                f"{self.provider} answered something that is not JSON", field=field, code="token"
            ) from exc
        return answer if isinstance(answer, dict) else {}

    def send(self, channel: Channel, message: OutboundMessage) -> SendResult:
        url = f"{self.root(channel)}/{self.send_path(channel)}"
        base = envelope(message)
        sent: list[tuple[str, str | None]] = []
        text_message = text_body(message)
        if text_message is not None:
            sent.append(self._post(channel, url, {**base, "message": text_message}))
        for attachment in message.attachments:
            sent.append(self._send_file(channel, url, base, message, attachment))
        if not sent:
            raise PermanentError("nothing to send: the message has neither text nor files")
        provider_id, recipient = sent[0]
        # A private reply reaches the commenter's Messenger id, which Meta answers with.
        return SendResult(
            provider_message_id=provider_id, recipient_id=recipient if "comment_id" in base["recipient"] else None
        )

    def _send_file(
        self, channel: Channel, url: str, base: dict[str, Any], message: OutboundMessage, attachment: dict[str, Any]
    ) -> tuple[str, str | None]:
        content_type = str(attachment.get("content_type") or "application/octet-stream").lower()
        kind = _outbound_kind(content_type)
        if attachment.get("url"):
            body = {"attachment": {"type": kind, "payload": {"url": str(attachment["url"]), "is_reusable": False}}}
            return self._post(channel, url, {**base, "message": {**body, "metadata": message.idempotency_key}})
        key = attachment.get("storage_key")
        if not key:
            raise PermanentError("the file to send is not in our storage")
        try:
            data = storage.get_storage().get(str(key))
        except (OSError, ValueError) as exc:
            raise PermanentError("the file to send is missing from our storage") from exc
        if len(data) > MAX_MEDIA_BYTES:
            raise PermanentError(f"larger than the {MAX_MEDIA_BYTES // (1024 * 1024)} MB {self.provider} accepts")
        form = {k: json.dumps(v) if isinstance(v, dict) else str(v) for k, v in base.items()}
        form["message"] = json.dumps(
            {"attachment": {"type": kind, "payload": {"is_reusable": False}}, "metadata": message.idempotency_key}
        )
        name = str(attachment.get("name") or "file")
        return self._post(channel, url, None, form=form, files={"filedata": (name, data, content_type)})

    def _post(
        self,
        channel: Channel,
        url: str,
        body: dict[str, Any] | None,
        *,
        form: dict[str, str] | None = None,
        files: dict[str, tuple[str, bytes, str]] | None = None,
    ) -> tuple[str, str | None]:
        """The message id Meta gave, and the recipient id it answered with."""
        try:
            if files is not None:
                response = provider_http().post(
                    url, data=form, files=files, headers=self._auth(channel), timeout=UPLOAD_TIMEOUT
                )
            else:
                response = provider_http().post(url, json=body, headers=self._auth(channel), timeout=meta_graph.TIMEOUT)
        except httpx.TimeoutException as exc:
            raise TransientError(f"{self.provider} did not answer in time") from exc
        except httpx.TransportError as exc:
            raise TransientError(f"{self.provider} could not be reached ({type(exc).__name__})") from exc
        if not response.is_success:
            raise meta_graph.graph_error(
                response, provider=self.provider, retryable=RETRYABLE_CODES, explain=EXPLANATIONS, faults=FAULTS
            )
        try:
            answer = response.json()
            recipient = answer.get("recipient_id")
            return str(answer["message_id"]), str(recipient) if recipient else None
        except (ValueError, LookupError, TypeError, AttributeError) as exc:
            raise TransientError(f"{self.provider} answered without a message id") from exc

    # ----- customers' files ----------------------------------------------------------------------

    def fetch_media(self, channel: Channel, reference: dict[str, Any]) -> FetchedMedia:
        """The file behind an attachment's URL (Meta's CDN, signed: no token), at most MAX_MEDIA_BYTES."""
        url = str(reference.get("url") or "")
        if not url.startswith(("https://", "http://")):
            raise PermanentError("the attachment has no URL")
        chunks: list[bytes] = []
        received = 0
        try:
            with provider_http().stream("GET", url, timeout=UPLOAD_TIMEOUT, follow_redirects=True) as response:
                if response.status_code == 429 or response.status_code >= 500:
                    raise TransientError(f"the file download answered {response.status_code}")
                if response.status_code != 200:
                    raise PermanentError(
                        f"the file download answered {response.status_code} (the link may have expired)"
                    )
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > MAX_MEDIA_BYTES:
                    raise PermanentError(
                        f"larger than the {MAX_MEDIA_BYTES // (1024 * 1024)} MB kept from {self.provider}"
                    )
                for chunk in response.iter_bytes():
                    received += len(chunk)
                    if received > MAX_MEDIA_BYTES:
                        raise PermanentError(
                            f"larger than the {MAX_MEDIA_BYTES // (1024 * 1024)} MB kept from {self.provider}"
                        )
                    chunks.append(chunk)
                header_type = response.headers.get("content-type", "")
        except httpx.TimeoutException as exc:
            raise TransientError("the file download timed out") from exc
        except httpx.TransportError as exc:
            raise TransientError(f"the file download failed ({type(exc).__name__})") from exc
        content_type = header_type or str(reference.get("content_type") or "") or "application/octet-stream"
        content_type = content_type.split(";", maxsplit=1)[0].strip().lower()
        if content_type in ("application/octet-stream", "binary/octet-stream") and reference.get("content_type"):
            content_type = str(reference["content_type"])
        return FetchedMedia(data=b"".join(chunks), content_type=content_type, name=str(reference.get("name") or "file"))

    def follow_up(self, channel: Channel, call: dict[str, Any]) -> None:
        raise ValueError(f"{self.provider} callbacks ask for no follow-up calls")

    def owns_identity(self, channel: Channel, external_id: str) -> bool:
        # Page-scoped (and Instagram-scoped) ids belong to one Page or account: only the channel whose
        # customer it is may answer it. The channel's id is recorded with the identity's first message.
        return external_id.isdigit()


class ParsedEvents:
    def __init__(self) -> None:
        self.messages: list[InboundMessage] = []
        self.statuses: list[StatusUpdate] = []
        self.echoes: list[InboundMessage] = []


class MessengerAdapter(MetaMessagingAdapter):
    type: ClassVar[str] = TYPE
    webhook_object: ClassVar[str] = "page"
    provider: ClassVar[str] = "Messenger"
    secret_fields: ClassVar[frozenset[str]] = frozenset({"page_access_token", "app_secret", "verify_token"})
    rules: ClassVar[ChannelRules] = ChannelRules(
        reply_window=timedelta(hours=24),
        max_text_length=MAX_TEXT,
        delivery_receipts=True,
        buttons=True,
        quick_replies=True,
        reply_choices=ReplyChoices(
            provider="Messenger",
            max_buttons=MAX_QUICK_REPLIES,
            title_length=QUICK_REPLY_TITLE,
            id_length=QUICK_REPLY_PAYLOAD,
            with_buttons=True,
        ),
        message_tags=MESSAGE_TAGS,
        private_replies=timedelta(days=7),
        echoes=True,
    )

    def account_id(self, channel: Channel) -> str:
        return str((channel.config or {}).get("page_id") or "")

    def root(self, channel: Channel) -> str:
        return meta_graph.graph_root(channel, DEFAULT_API_BASE_URL)

    def token(self, channel: Channel) -> str:
        return str((channel.secrets or {}).get("page_access_token") or "")

    def send_path(self, channel: Channel) -> str:
        return f"{self.account_id(channel)}/messages"

    def change(self, channel: Channel, change: dict[str, Any], parsed: ParsedEvents, entry: dict[str, Any]) -> None:
        """A comment on one of the Page's posts (the `feed` field): an item an agent may answer once,
        privately. Other feed changes (likes, edits, the Page's own posts) are not messages."""
        value = change.get("value")
        if change.get("field") != "feed" or not isinstance(value, dict):
            return
        if value.get("item") != "comment" or value.get("verb") != "add" or not value.get("comment_id"):
            return
        found = value.get("from")
        author: dict[str, Any] = found if isinstance(found, dict) else {}
        author_id = str(author.get("id") or "")
        if not author_id or author_id == self.account_id(channel):
            return  # the Page commenting on its own post
        created = value.get("created_time")
        created_at = datetime.fromtimestamp(created, UTC) if isinstance(created, int | float) else None
        parsed.messages.append(
            comment_message(
                str(value["comment_id"]),
                author_id,
                str(author.get("name") or "") or None,
                value.get("message"),
                created_at,
                {"post_id": value.get("post_id")},
            )
        )

    def public_config(self, channel: Channel) -> dict[str, Any]:
        config = channel.config or {}
        return {"name": channel.name, "page_id": config.get("page_id"), "page_name": config.get("page_name")}

    def clean_config(self, config: dict[str, Any], secrets_: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        page_id = str(config.get("page_id") or "").strip()
        if not _DIGITS.match(page_id):
            raise ValidationFailed.field("config.page_id", "must be the Page's numeric id (Page > About > Page ID)")
        cleaned: dict[str, Any] = {"page_id": page_id, **meta_graph.clean_graph_location(config, DEFAULT_API_BASE_URL)}
        if config.get("page_name"):
            cleaned["page_name"] = str(config["page_name"])[:200]
        if config.get("menu"):
            cleaned["menu"] = self.clean_menu(config["menu"])
        return cleaned, clean_secrets(secrets_, ("page_access_token", "app_secret"))

    # ----- connecting ----------------------------------------------------------------------------

    def connect(self, channel: Channel, callback_url: str) -> dict[str, Any]:
        page = self.account_id(channel)
        found = self._call(channel, "GET", page, params={"fields": "id,name"}, field="secrets.page_access_token")
        if str(found.get("id")) != page:
            raise SetupRefused("this token belongs to another Page", field="secrets.page_access_token", code="token")
        self._call(
            channel,
            "POST",
            f"{page}/subscribed_apps",
            params={"subscribed_fields": ",".join(SUBSCRIBED_FIELDS)},
            field="callback_url",
        )
        return {"page_name": found.get("name"), "account_name": found.get("name")}

    def disconnect(self, channel: Channel) -> None:
        try:
            response = provider_http().delete(
                f"{self.root(channel)}/{self.account_id(channel)}/subscribed_apps",
                headers=self._auth(channel),
                timeout=meta_graph.TIMEOUT,
            )
        except httpx.TransportError as exc:
            raise TransientError(f"Messenger could not be reached ({type(exc).__name__})") from exc
        if not response.is_success:
            raise meta_graph.graph_error(response, provider=self.provider, retryable=RETRYABLE_CODES, faults=FAULTS)

    # ----- chat menu: the persistent menu and the Get Started button ------------------------------

    def clean_menu(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return clean_menu_items(items, limit=MAX_MENU_ITEMS, title_length=30, links=True, label="title")

    def push_menu(self, channel: Channel, items: list[dict[str, Any]]) -> str:
        """Messenger Profile API: the Get Started button (a persistent menu needs it) and the menu;
        an empty menu removes it."""
        url = f"{self.root(channel)}/me/messenger_profile"
        try:
            if items:
                actions = [
                    {"type": "web_url", "title": i["title"], "url": i["url"]}
                    if i.get("url")
                    else {"type": "postback", "title": i["title"], "payload": i["payload"]}
                    for i in items
                ]
                body = {
                    "get_started": {"payload": GET_STARTED},
                    "persistent_menu": [
                        {"locale": "default", "composer_input_disabled": False, "call_to_actions": actions}
                    ],
                }
                response = provider_http().post(url, json=body, headers=self._auth(channel), timeout=meta_graph.TIMEOUT)
            else:
                response = provider_http().request(
                    "DELETE",
                    url,
                    json={"fields": ["persistent_menu"]},
                    headers=self._auth(channel),
                    timeout=meta_graph.TIMEOUT,
                )
        except httpx.TransportError as exc:
            raise TransientError(f"{self.provider} could not be reached ({type(exc).__name__})") from exc
        if not response.is_success:
            raise meta_graph.graph_error(response, provider=self.provider, retryable=RETRYABLE_CODES, faults=FAULTS)
        return response.text


# ----- pieces both platforms use ------------------------------------------------------------------


def comment_message(
    comment_id: str,
    author_id: str,
    author_name: str | None,
    text: Any,
    created_at: datetime | None,
    about: dict[str, Any],
) -> InboundMessage:
    """A comment on the business's post as an inbox item: it opens no reply window, and may be
    answered once, privately, within 7 days of `created_at` (conversations.service.check_private_reply)."""
    return InboundMessage(
        sender_id=author_id,
        provider_message_id=f"comment:{comment_id}",
        type=MessageType.TEXT,
        text=str(text or "") or "(comment)",
        payload={
            "comment": {"comment_id": comment_id, **about, "created_at": (created_at or datetime.now(UTC)).isoformat()}
        },
        display_name=author_name,
        sent_at=created_at,
        opens_window=False,
    )


def clean_secrets(secrets_: dict[str, Any], required: tuple[str, ...]) -> dict[str, Any]:
    kept = {name: value for name, value in secrets_.items() if value not in (None, "")}
    for name in required:
        if not isinstance(kept.get(name), str) or not kept[name].strip():
            raise ValidationFailed.field(f"secrets.{name}", "is required")
        kept[name] = kept[name].strip()
    kept.setdefault("verify_token", secrets.token_urlsafe(24))
    return kept


def clean_menu_items(items: Any, *, limit: int, title_length: int, links: bool, label: str) -> list[dict[str, Any]]:
    """Menu items `{label, "payload"}` (a choice recorded as a postback) or, where `links`, `{label,
    "url"}` (a web link)."""
    if not isinstance(items, list) or len(items) > limit:
        raise ValidationFailed.field("menu", f"must be a list of at most {limit} items")
    cleaned: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValidationFailed.field(f"menu[{index}]", "must be a title and a payload or a link")
        title = " ".join(str(item.get(label) or item.get("title") or "").split())
        if not title or len(title) > title_length:
            raise ValidationFailed.field(f"menu[{index}].{label}", f"is required (at most {title_length} characters)")
        url = str(item.get("url") or "").strip()
        payload = str(item.get("payload") or "").strip()
        if url:
            if not links:
                raise ValidationFailed.field(f"menu[{index}].url", "this menu takes no links")
            if not url.startswith(("https://", "http://")) or len(url) > 1000:
                raise ValidationFailed.field(f"menu[{index}].url", "must be an http(s) address")
            cleaned.append({label: title, "url": url})
            continue
        payload = payload or title.upper().replace(" ", "_")
        if len(payload) > 1000:
            raise ValidationFailed.field(f"menu[{index}].payload", "must be at most 1000 characters")
        if payload in seen:
            raise ValidationFailed.field(f"menu[{index}].payload", "is listed twice")
        seen.add(payload)
        cleaned.append({label: title, "payload": payload})
    return cleaned


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _millis(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def content(message: dict[str, Any]) -> tuple[MessageType, str | None, list[dict[str, Any]], dict[str, Any]]:
    """(type, text, files to fetch, payload) of a message event's `message`. A kind we cannot show
    is kept as UNSUPPORTED naming it, never dropped."""
    text = message.get("text") if isinstance(message.get("text"), str) else None
    payload: dict[str, Any] = {}
    files: list[dict[str, Any]] = []
    kind = MessageType.TEXT
    mid = str(message.get("mid") or "")
    for index, attachment in enumerate(_dicts(message.get("attachments"))):
        what = str(attachment.get("type") or "")
        given = attachment.get("payload")
        body: dict[str, Any] = given if isinstance(given, dict) else {}
        if what == "sticker" and any(a.get("type") == "image" for a in _dicts(message.get("attachments"))):
            continue  # sent alongside its image until the sticker type stands alone (reference §4.1)
        if what in ATTACHMENT_TYPES and body.get("url"):
            files.append({"provider_file": _file_reference(what, str(body["url"]), mid, index)})
            if kind == MessageType.TEXT:
                kind = ATTACHMENT_TYPES[what]
            if what == "sticker":
                payload["sticker_id"] = body.get("sticker_id")
            continue
        if what == "location" and isinstance(body.get("coordinates"), dict):
            coordinates = body["coordinates"]
            payload["location"] = {"latitude": coordinates.get("lat"), "longitude": coordinates.get("long")}
            kind = MessageType.LOCATION
            continue
        if what in ("story_mention", "share", "reel", "ig_reel", "ig_post", "fallback") and body.get("url"):
            payload.setdefault("links", []).append({"type": what, "url": str(body["url"]), "title": body.get("title")})
            if kind == MessageType.TEXT and not text:
                kind = MessageType.UNSUPPORTED
                payload["unsupported"] = what
            continue
        payload.setdefault("unsupported_attachments", []).append(what or "attachment")
        if kind == MessageType.TEXT and not text:
            kind = MessageType.UNSUPPORTED
            payload["unsupported"] = what or "attachment"
    if message.get("is_unsupported"):
        kind, payload["unsupported"] = MessageType.UNSUPPORTED, "message"
    if kind == MessageType.TEXT and not (text or "").strip():
        kind = MessageType.UNSUPPORTED
        payload.setdefault("unsupported", "message")
    return kind, text, files, payload


def _file_reference(what: str, url: str, mid: str, index: int) -> dict[str, Any]:
    path = url.split("?", 1)[0].rsplit("/", 1)[-1]
    guessed = mimetypes.guess_type(path)[0]
    extension = mimetypes.guess_extension(guessed) if guessed else ""
    suffix = re.sub(r"[^A-Za-z0-9]", "", mid)[-12:] or "file"
    name = path if guessed and "." in path and len(path) <= 100 else f"{what}-{suffix}-{index + 1}{extension or ''}"
    return {"url": url, "content_type": guessed, "name": name, "kind": what}


def _referral_fields(referral: dict[str, Any]) -> dict[str, Any]:
    return {
        k: referral.get(k) for k in ("ref", "source", "type", "ad_id", "referer_uri") if referral.get(k) is not None
    }


def _referral(sender: str, referral: dict[str, Any], timestamp: Any, at: datetime | None) -> InboundMessage:
    """The customer came through an m.me link, an ad or a chat plugin: recorded on the contact."""
    fields = _referral_fields(referral)
    label = str(fields.get("ref") or fields.get("source") or "referral")
    return InboundMessage(
        sender_id=sender,
        provider_message_id=f"referral:{sender}:{timestamp}",
        type=MessageType.POSTBACK,
        text=label,
        payload={"referral": fields, "postback": {"data": fields.get("ref"), "title": label, "source": "referral"}},
        sent_at=at,
    )


def _reaction(sender: str, reaction: dict[str, Any], timestamp: Any, at: datetime | None) -> InboundMessage:
    action = str(reaction.get("action") or "react")
    emoji = str(reaction.get("emoji") or "") if action == "react" else ""
    target = str(reaction.get("mid") or "")
    return InboundMessage(
        sender_id=sender,
        provider_message_id=f"reaction:{target}:{sender}:{action}:{timestamp}",
        type=MessageType.TEXT,
        text=emoji or ("(reaction removed)" if action == "unreact" else str(reaction.get("reaction") or "(reaction)")),
        payload={"reaction": {"provider_message_id": target or None, "emoji": emoji or None, "action": action}},
        sent_at=at,
    )


def _receipts(
    customer: str, receipt: dict[str, Any], status: DeliveryStatus, at: datetime | None
) -> list[StatusUpdate]:
    mids = [str(m) for m in receipt.get("mids") or [] if m]
    if receipt.get("mid"):
        mids.append(str(receipt["mid"]))
    updates = [StatusUpdate(provider_message_id=mid, status=status, at=at) for mid in mids]
    watermark = _millis(receipt.get("watermark"))
    if watermark is not None:
        updates.append(
            StatusUpdate(provider_message_id="", status=status, at=at, recipient_id=customer, up_to=watermark)
        )
    return updates


def envelope(message: OutboundMessage) -> dict[str, Any]:
    """Who the message goes to and under which rule: a private reply goes to the comment; a message
    outside the window carries its tag."""
    payload = message.payload or {}
    comment = payload.get("private_reply_to")
    recipient: dict[str, str] = {"comment_id": str(comment)} if comment else {"id": message.recipient_id}
    tag = payload.get("message_tag")
    if tag:
        return {"recipient": recipient, "messaging_type": "MESSAGE_TAG", "tag": str(tag)}
    return {"recipient": recipient, "messaging_type": "RESPONSE"}


def text_body(message: OutboundMessage) -> dict[str, Any] | None:
    """The `message` of the text part: the text with its quick replies or buttons (a button template)."""
    payload = message.payload or {}
    text = message.text or ""
    buttons = payload.get("buttons") or []
    # The one shape of reply choices (`quick_reply` buttons: the id comes back as the payload), or
    # the older `quick_replies` of messages written before it.
    quick = [
        {"title": b["title"], "payload": b["id"]} for b in reply_choices.buttons_of(payload.get("quick_reply"))
    ] or (payload.get("quick_replies") or [])
    if not text.strip():
        if buttons or quick:
            raise PermanentError("buttons and quick replies need a text")
        return None
    body: dict[str, Any]
    if buttons:
        if len(buttons) > MAX_BUTTONS:
            raise PermanentError(f"a message may carry at most {MAX_BUTTONS} buttons")
        if len(text) > MAX_BUTTON_TEXT:
            raise PermanentError(f"a message with buttons may have at most {MAX_BUTTON_TEXT} characters")
        body = {
            "attachment": {
                "type": "template",
                "payload": {"template_type": "button", "text": text, "buttons": [_button(b) for b in buttons]},
            }
        }
    else:
        body = {"text": text}
    if quick:
        if len(quick) > MAX_QUICK_REPLIES:
            raise PermanentError(f"a message may carry at most {MAX_QUICK_REPLIES} quick replies")
        body["quick_replies"] = [
            {"content_type": "text", "title": str(q["title"])[:20], "payload": str(q.get("payload") or q["title"])}
            for q in quick
        ]
    body["metadata"] = message.idempotency_key
    return body


def _button(button: dict[str, Any]) -> dict[str, str]:
    title = str(button.get("title") or "")[:20]
    if button.get("url"):
        return {"type": "web_url", "url": str(button["url"]), "title": title}
    return {"type": "postback", "title": title, "payload": str(button.get("payload") or title)}


def _outbound_kind(content_type: str) -> str:
    for prefix, kind in (("image/", "image"), ("video/", "video"), ("audio/", "audio")):
        if content_type.startswith(prefix):
            return kind
    return "file"
